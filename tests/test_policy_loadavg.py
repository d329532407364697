"""
Tests for L{xinetd_twisted.policy.loadavg}.
"""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from xinetd_twisted.policy.loadavg import LoadAverage, overloaded


class LoadAverageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.path = self.mktemp()
        self.write("0.50 0.40 0.30 1/100 1234\n")

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def test_readsFirstField(self) -> None:
        """The 1-minute value is the first field."""
        self.assertEqual(LoadAverage(self.clock.seconds, self.path)(), 0.5)

    def test_cachedForMaxAge(self) -> None:
        """The file is re-read only once the value is maxAge old."""
        load = LoadAverage(self.clock.seconds, self.path, maxAge=1.0)
        load()
        self.write("3.00 0 0 1/1 1\n")
        self.clock.advance(0.5)
        self.assertEqual(load(), 0.5)
        self.clock.advance(0.5)
        self.assertEqual(load(), 3.0)

    def test_unreadable(self) -> None:
        """A missing or malformed file reads as 0 and records the error."""
        load = LoadAverage(self.clock.seconds, self.path + ".missing")
        self.assertEqual(load(), 0.0)
        self.assertIsNotNone(load.lastError)
        self.write("garbage\n")
        load = LoadAverage(self.clock.seconds, self.path)
        self.assertEqual(load(), 0.0)
        self.assertIn(self.path, load.lastError or "")

    def test_realProc(self) -> None:
        """The default path reads a non-negative number on Linux."""
        if not os.path.exists("/proc/loadavg"):
            raise SkipTest("no /proc/loadavg on this system")
        load = LoadAverage(self.clock.seconds)
        self.assertGreaterEqual(load(), 0.0)
        self.assertIsNone(load.lastError)


class OverloadedTests(SynchronousTestCase):
    def test_atOrAbove(self) -> None:
        """Load equal to or above max_load is overloaded; below is not."""
        self.assertTrue(overloaded(2.0, lambda: 2.0))
        self.assertTrue(overloaded(2.0, lambda: 2.5))
        self.assertFalse(overloaded(2.0, lambda: 1.99))

    def test_off(self) -> None:
        """max_load unset or 0 never reads the load."""

        def boom() -> float:
            raise AssertionError("read")

        self.assertFalse(overloaded(None, boom))
        self.assertFalse(overloaded(0, boom))
