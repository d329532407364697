"""
Tests for L{xinetd_twisted.policy.sensor}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.policy.sensor import FOREVER, SensorList, SensorOutcome


class SensorListTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sensor = SensorList(self.clock.seconds)

    def test_addAndExpire(self) -> None:
        """An address is denied for deny_time minutes, then no longer."""
        self.assertIs(self.sensor.add("10.0.0.1", 2), SensorOutcome.ADDED)
        self.assertIn("10.0.0.1", self.sensor)
        self.clock.advance(119)
        self.assertTrue(self.sensor.isDenied("10.0.0.1"))
        self.clock.advance(1)
        self.assertNotIn("10.0.0.1", self.sensor)
        self.assertEqual(len(self.sensor), 0)

    def test_never(self) -> None:
        """deny_time 0 records nothing."""
        self.assertIs(self.sensor.add("10.0.0.1", 0), SensorOutcome.IGNORED)
        self.assertNotIn("10.0.0.1", self.sensor)

    def test_forever(self) -> None:
        """FOREVER entries never expire and survive scrubbing."""
        self.sensor.add("10.0.0.1", FOREVER)
        self.clock.advance(10**9)
        self.assertEqual(self.sensor.scrub(), 0)
        self.assertIn("10.0.0.1", self.sensor)

    def test_repeatExtends(self) -> None:
        """A repeat hit moves the expiry later; an earlier one changes nothing."""
        self.sensor.add("10.0.0.1", 2)
        self.clock.advance(60)
        self.assertIs(self.sensor.add("10.0.0.1", 2), SensorOutcome.EXTENDED)
        self.assertIs(self.sensor.add("10.0.0.1", 1), SensorOutcome.UNCHANGED)
        self.clock.advance(119)
        self.assertIn("10.0.0.1", self.sensor)
        self.clock.advance(1)
        self.assertNotIn("10.0.0.1", self.sensor)

    def test_repeatForever(self) -> None:
        """A FOREVER hit on a timed entry makes it permanent."""
        self.sensor.add("10.0.0.1", 1)
        self.assertIs(self.sensor.add("10.0.0.1", FOREVER), SensorOutcome.EXTENDED)
        self.clock.advance(3600)
        self.assertIn("10.0.0.1", self.sensor)

    def test_exactAddress(self) -> None:
        """An address ending in .0 is not a wildcard for its network."""
        self.sensor.add("10.1.2.0", 5)
        self.assertIn("10.1.2.0", self.sensor)
        self.assertNotIn("10.1.2.7", self.sensor)

    def test_mappedIsSameEntry(self) -> None:
        """Mapped and plain IPv4 forms are the same entry."""
        self.sensor.add("::ffff:10.0.0.1", 5)
        self.assertIn("10.0.0.1", self.sensor)
        self.assertEqual(len(self.sensor), 1)

    def test_full(self) -> None:
        """A full list refuses new addresses, reporting FULL once until room appears."""
        sensor = SensorList(self.clock.seconds, maxEntries=2)
        sensor.add("10.0.0.1", 1)
        sensor.add("10.0.0.2", 5)
        self.assertIs(sensor.add("10.0.0.3", 5), SensorOutcome.FULL)
        self.assertIs(sensor.add("10.0.0.4", 5), SensorOutcome.FULL_AGAIN)
        self.assertNotIn("10.0.0.3", sensor)
        self.assertIs(sensor.add("10.0.0.2", 9), SensorOutcome.EXTENDED)
        self.clock.advance(60)
        self.assertIs(sensor.add("10.0.0.3", 5), SensorOutcome.ADDED)
        self.assertIs(sensor.add("10.0.0.4", 5), SensorOutcome.FULL)

    def test_scrub(self) -> None:
        """scrub drops only expired entries and says how many."""
        self.sensor.add("10.0.0.1", 1)
        self.sensor.add("10.0.0.2", 2)
        self.clock.advance(60)
        self.assertEqual(self.sensor.scrub(), 1)
        self.assertEqual([a for a, _ in self.sensor.entries()], ["10.0.0.2"])

    def test_reAddAfterExpiry(self) -> None:
        """An expired address that hits again is added anew."""
        self.sensor.add("10.0.0.1", 1)
        self.clock.advance(61)
        self.assertIs(self.sensor.add("10.0.0.1", 1), SensorOutcome.ADDED)
