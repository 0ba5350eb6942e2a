"""The concurrency limit: at most `limit` live sessions (one per WebSocket connection) at a time."""

from __future__ import annotations

import itertools
import threading


class SessionLimitReached(RuntimeError):
    """Refusal past the limit; the text goes to the page."""


class SessionManager:
    """Hands out session ids up to `limit` at once; `release` frees one. Thread-safe."""

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"the session limit must be an integer >= 1, got {limit!r}")
        self.limit = limit
        self._active: set[int] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.started = 0  # sessions ever admitted
        self.refused = 0  # connections refused at the limit

    def acquire(self) -> int:
        """A new session id; SessionLimitReached when `limit` sessions are active."""
        with self._lock:
            if len(self._active) >= self.limit:
                self.refused += 1
                raise SessionLimitReached(
                    f"server busy: {len(self._active)} of {self.limit} sessions in use; "
                    f"close another page or try again later"
                )
            session_id = next(self._ids)
            self._active.add(session_id)
            self.started += 1
            return session_id

    def release(self, session_id: int) -> None:
        with self._lock:
            self._active.discard(session_id)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)
