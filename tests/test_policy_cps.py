"""
Tests for L{xinetd_twisted.policy.cps}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.policy.cps import ConnectionRate


class ConnectionRateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)

    def test_verifiedSequence(self) -> None:
        """cps = 2 3: two connections pass, the third deactivates for 3 s."""
        rate = ConnectionRate(2, 3, self.clock.seconds)
        self.assertIsNone(rate.check())
        self.assertIsNone(rate.check())
        self.assertEqual(rate.check(), 1003)
        self.assertTrue(rate.justDeactivated)
        self.assertFalse(rate.isActive())
        self.clock.advance(2.9)
        self.assertFalse(rate.isActive())
        self.clock.advance(0.1)
        self.assertTrue(rate.isActive())
        self.assertIsNone(rate.check())

    def test_refusedWhileDeactivated(self) -> None:
        """A connection while deactivated is refused without a new deactivation."""
        rate = ConnectionRate(1, 10, self.clock.seconds)
        rate.check()
        rate.check()
        self.clock.advance(1)
        self.assertEqual(rate.check(), 1010)
        self.assertFalse(rate.justDeactivated)

    def test_integerDivisionExact(self) -> None:
        """With max 3, 7 connections 2 s into the window pass (7 // 2 = 3); the 8th fails."""
        rate = ConnectionRate(3, 5, self.clock.seconds)
        self.assertIsNone(rate.check())
        self.clock.advance(2)
        for _ in range(6):
            self.assertIsNone(rate.check())
        self.assertEqual(rate.check(), 1007)  # 8 // 2 = 4 > 3

    def test_wholeSeconds(self) -> None:
        """Time is counted in whole seconds: fractions do not spread the window."""
        rate = ConnectionRate(2, 1, self.clock.seconds)
        rate.check()
        self.clock.advance(0.9)
        rate.check()
        self.assertIsNotNone(rate.check())

    def test_windowRestart(self) -> None:
        """After max seconds the window restarts with a count of one."""
        rate = ConnectionRate(2, 3, self.clock.seconds)
        rate.check()
        rate.check()
        self.clock.advance(2)
        self.assertIsNone(rate.check())  # restart: count 1
        self.assertIsNone(rate.check())  # 2 // 1
        self.assertIsNotNone(rate.check())  # 3 // 1 > 2

    def test_disabled(self) -> None:
        """cps = 0 x never refuses."""
        rate = ConnectionRate(0, 10, self.clock.seconds)
        for _ in range(1000):
            self.assertIsNone(rate.check())

    def test_defaultOverFlood(self) -> None:
        """The default 50 10 lets 50 through in one second and stops the 51st."""
        rate = ConnectionRate(50, 10, self.clock.seconds)
        results = [rate.check() for _ in range(51)]
        self.assertEqual(results[:50], [None] * 50)
        self.assertEqual(results[50], 1010)

    def test_setLimitsKeepsPause(self) -> None:
        """Changing the limits keeps an ongoing deactivation."""
        rate = ConnectionRate(1, 10, self.clock.seconds)
        rate.check()
        rate.check()
        rate.setLimits(100, 1)
        self.assertFalse(rate.isActive())
        self.assertEqual(rate.maximum, 100)
