"""
Tests for L{xinetd_twisted.policy.times}.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.policy.times import END_OF_DAY, AccessTimes


def at(hour: int, minute: int) -> time.struct_time:
    return time.struct_time((2024, 1, 1, hour, minute, 0, 0, 1, 0))


class AccessTimesTests(SynchronousTestCase):
    def test_inclusiveBounds(self) -> None:
        """Both the start and the end minute of a window are inside it."""
        times = AccessTimes([(8 * 60, 17 * 60)])
        self.assertTrue(times.allowedAt(at(8, 0)))
        self.assertTrue(times.allowedAt(at(17, 0)))
        self.assertFalse(times.allowedAt(at(7, 59)))
        self.assertFalse(times.allowedAt(at(17, 1)))

    def test_severalWindows(self) -> None:
        """Any of several windows allows; gaps between them refuse."""
        times = AccessTimes([(60, 120), (600, 660)])
        self.assertTrue(times.allowedAt(at(1, 30)))
        self.assertTrue(times.allowedAt(at(10, 59)))
        self.assertFalse(times.allowedAt(at(5, 0)))

    def test_endOfDay(self) -> None:
        """A window ending at 24:00 covers 23:59, not the next midnight."""
        times = AccessTimes([(12 * 60, END_OF_DAY)])
        self.assertTrue(times.allowedAt(at(23, 59)))
        self.assertFalse(times.allowedAt(at(0, 0)))

    def test_noWrap(self) -> None:
        """A window whose end is before its start matches nothing."""
        times = AccessTimes([(22 * 60, 2 * 60)])
        self.assertFalse(times.allowedAt(at(23, 0)))
        self.assertFalse(times.allowedAt(at(1, 0)))

    def test_empty(self) -> None:
        """No windows at all refuses every minute."""
        self.assertFalse(AccessTimes([]).allowedAt(at(12, 0)))

    def test_outOfRangeMinute(self) -> None:
        """A minute outside the day is not allowed."""
        times = AccessTimes([(0, END_OF_DAY)])
        self.assertTrue(times.allowedMinute(0))
        self.assertFalse(times.allowedMinute(END_OF_DAY))
        self.assertFalse(times.allowedMinute(-1))
