"""Atomic output files: write to a hidden temporary next to the destination, rename over it on success.

A crash (exception, Ctrl-C) never leaves a partial or corrupt file at the destination: the temporary is
removed, and an existing destination is left untouched. Only a hard kill (SIGKILL, power loss before the
rename) can leave the hidden temporary `.<name>.<random>.tmp<suffix>` behind; the destination is still
either the old file or the complete new one, because `os.replace` is atomic within a directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def check_writable(path: PathLike) -> Path:
    """Raise ValueError naming `path` and the reason when `atomic_write(path)` would fail; return the Path.

    Meant for the CLI, before any work. Creates nothing: missing parents are only made at write time, so
    the nearest existing ancestor must be a writable directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output path {str(path)!r} is a directory; give a file name")
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: {str(ancestor)!r} exists and is not a directory")
    # Writing a new entry needs write + search permission on the directory, not on an existing file.
    if not os.access(ancestor, os.W_OK | os.X_OK):
        where = "its directory" if ancestor == path.parent.absolute() else "the nearest existing ancestor"
        raise ValueError(f"cannot write {str(path)!r}: {where} {str(ancestor)!r} is not writable")
    return path


def _nearest_existing(directory: Path) -> Path:
    """The directory itself or its closest ancestor that exists (absolute)."""
    directory = directory.absolute()
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def reserve_temp(path: PathLike) -> Path:
    """Create (empty, exclusively) and return a hidden temporary file next to `path`; parents are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        # Same suffix as the destination so writers that sniff the extension (PyAV, image libs) still work.
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            # O_EXCL: never clobber another writer's temporary; mode 0o666 lets the umask decide permissions,
            # as for a file opened normally (mkstemp would force 0o600).
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return temp


def commit_temp(temp: PathLike, path: PathLike) -> None:
    """Flush `temp` to disk and atomically rename it over `path`."""
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())  # otherwise a power loss after the rename can expose an empty file
    os.replace(temp, path)


def discard_temp(temp: PathLike) -> None:
    """Remove a temporary file if it is still there."""
    Path(temp).unlink(missing_ok=True)


@contextmanager
def atomic_write(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it over `path` on success, remove it on any exception."""
    temp = reserve_temp(path)
    try:
        yield temp
        commit_temp(temp, path)
    except BaseException:  # includes KeyboardInterrupt: Ctrl-C must not leave a partial file either
        discard_temp(temp)
        raise


@contextmanager
def atomic_directory(directory: PathLike) -> Iterator[Path]:
    """Yield a fresh hidden directory beside `directory` to fill; on success it replaces `directory` (an
    existing one is removed first), on any exception it is removed and `directory` is left as it was."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_write(path) as temp:
        temp.write_text(text, encoding="utf-8")


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write `obj` as JSON (indent 2, trailing newline) to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
