"""What every command checks its flags with: the usage error (one line, exit status 2) and the common checks,
whose messages name the flag and what is allowed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable


class UsageError(Exception):
    """A bad command-line value: printed as one line, exit status 2."""


def positive_float(flag: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{flag}: got {value!r}; must be a finite number > 0")
    return value


def positive_int(flag: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{flag}: got {value!r}; must be an integer >= 1")
    return value


def check_outputs(outputs: list[tuple[str, str | None, str]], check_writable: Callable[[str], None]) -> None:
    """Each (flag, path, suffix): the path ends in the suffix and can be written."""
    for flag, path, suffix in outputs:
        if path is None:
            continue
        if Path(path).suffix.lower() != suffix:
            raise UsageError(f"{flag}: got {path!r}; must end in {suffix}")
        try:
            check_writable(path)
        except ValueError as error:
            raise UsageError(f"{flag}: {error}") from None
