# -*- test-case-name: tests.test_policy_times -*-
"""
C{access_times}: windows of the day during which a service accepts
connections (reference 2.1), in local time.
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple

END_OF_DAY = 24 * 60
"""
Minutes in a day: a window written as ending at C{24:00} ends here, which
includes every minute up to 23:59.
"""


class AccessTimes:
    """
    Compiled C{access_times} windows.

    Each window is C{(startMinute, endMinute)} after local midnight with both
    bounds inclusive, as xinetd compares them (C{08:00-17:00} still accepts
    at 17:00).  There is no midnight wrap: a window whose end is before its
    start matches nothing.  An end of C{24:00} (L{END_OF_DAY}) means up to
    the end of the day; xinetd rejects that spelling (reference 11.4).
    """

    __slots__ = ("_allowed",)

    def __init__(self, windows: Sequence[Tuple[int, int]]) -> None:
        # 1440 booleans: one lookup per connection, whatever the window count.
        allowed = bytearray(END_OF_DAY)
        for start, end in windows:
            start = max(0, start)
            end = min(END_OF_DAY - 1, end)
            for minute in range(start, end + 1):
                allowed[minute] = 1
        self._allowed = bytes(allowed)

    def allowedMinute(self, minute: int) -> bool:
        """
        Whether C{minute} after local midnight is inside a window.
        """
        return 0 <= minute < END_OF_DAY and self._allowed[minute] == 1

    def allowedAt(self, localTime: Any) -> bool:
        """
        Whether a local time (anything with C{tm_hour} and C{tm_min}, such
        as a L{time.struct_time}) is inside a window.
        """
        return self.allowedMinute(localTime.tm_hour * 60 + localTime.tm_min)
