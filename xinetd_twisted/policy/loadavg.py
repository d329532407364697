# -*- test-case-name: tests.test_policy_loadavg -*-
"""
C{max_load}: refuse while the 1-minute load average is at or above a value
(reference 2.1).  The load is read from C{/proc/loadavg} at most once per
second, so a burst of connections costs one small read.
"""

from __future__ import annotations

from typing import Callable, Optional

LOAD = "load"


class LoadAverage:
    """
    A cached reader of the 1-minute load average.

    An unreadable or malformed file reads as load 0 (never refuses), which is
    what xinetd's reader amounts to on error; L{lastError} keeps the reason
    so the runtime can report it.

    @ivar path: the file to read (C{/proc/loadavg} format).
    @ivar maxAge: seconds a value is reused.
    @ivar lastError: the last read error, or L{None}.
    """

    def __init__(
        self,
        seconds: Callable[[], float],
        path: str = "/proc/loadavg",
        maxAge: float = 1.0,
    ) -> None:
        self.path = path
        self.maxAge = maxAge
        self.lastError: Optional[str] = None
        self._seconds = seconds
        self._value = 0.0
        self._readAt: Optional[float] = None

    def _read(self) -> float:
        try:
            with open(self.path, "rb") as f:
                data = f.read(128)
            value = float(data.split(None, 1)[0])
        except (OSError, ValueError, IndexError) as e:
            self.lastError = f"{self.path}: {e}"
            return 0.0
        self.lastError = None
        return value

    def __call__(self) -> float:
        """
        The 1-minute load average, re-read when the cached value is older
        than L{maxAge}.
        """
        now = self._seconds()
        readAt = self._readAt
        if readAt is None or now - readAt >= self.maxAge or now < readAt:
            self._value = self._read()
            self._readAt = now
        return self._value


def overloaded(maxLoad: Optional[float], loadAverage: Callable[[], float]) -> bool:
    """
    Whether a service with C{max_load = maxLoad} refuses now (load at or
    above the value).  L{None} or C{0} means no limit.
    """
    if not maxLoad:
        return False
    return loadAverage() >= maxLoad
