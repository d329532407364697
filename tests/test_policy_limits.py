"""
Tests for L{xinetd_twisted.policy.limits}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.policy.limits import ProcessLimit, ServiceLimits


class ServiceLimitsTests(SynchronousTestCase):
    def test_unlimited(self) -> None:
        """Without limits every check passes."""
        limits = ServiceLimits()
        for _ in range(100):
            limits.started("10.0.0.1")
        self.assertIsNone(limits.check("10.0.0.1"))

    def test_instances(self) -> None:
        """running >= instances refuses with service_limit until one ends."""
        limits = ServiceLimits(instances=2)
        limits.started("10.0.0.1")
        self.assertIsNone(limits.check("10.0.0.2"))
        limits.started("10.0.0.2")
        self.assertEqual(limits.check("10.0.0.3"), "service_limit")
        limits.ended("10.0.0.1")
        self.assertIsNone(limits.check("10.0.0.3"))

    def test_instancesZero(self) -> None:
        """instances = 0 refuses every request."""
        self.assertEqual(ServiceLimits(instances=0).check("10.0.0.1"), "service_limit")

    def test_perSource(self) -> None:
        """per_source counts each client address separately."""
        limits = ServiceLimits(perSource=1)
        limits.started("10.0.0.1")
        self.assertEqual(limits.check("10.0.0.1"), "per_source_limit")
        self.assertIsNone(limits.check("10.0.0.2"))
        limits.ended("10.0.0.1")
        self.assertIsNone(limits.check("10.0.0.1"))

    def test_perSourceMapped(self) -> None:
        """An IPv4 client counts the same in plain and mapped form."""
        limits = ServiceLimits(perSource=1)
        limits.started("::ffff:10.0.0.1")
        self.assertEqual(limits.check("10.0.0.1"), "per_source_limit")
        self.assertEqual(limits.runningFrom("10.0.0.1"), 1)
        limits.ended("10.0.0.1")
        self.assertEqual(limits.runningFrom("::ffff:10.0.0.1"), 0)

    def test_unknownPeerSkipsPerSource(self) -> None:
        """An unknown address skips per_source but still counts for instances."""
        limits = ServiceLimits(instances=1, perSource=0)
        self.assertIsNone(limits.check(None))
        limits.started(None)
        self.assertEqual(limits.check(None), "service_limit")

    def test_endedNeverNegative(self) -> None:
        """Extra ended calls do not make counts negative."""
        limits = ServiceLimits(instances=1)
        limits.ended("10.0.0.1")
        limits.ended(None)
        self.assertEqual(limits.running, 0)
        self.assertIsNone(limits.check("10.0.0.1"))

    def test_setLimitsKeepsCounts(self) -> None:
        """Changing limits (reload) keeps the running counts."""
        limits = ServiceLimits(instances=5, perSource=5)
        limits.started("10.0.0.1")
        limits.started("10.0.0.1")
        limits.setLimits(2, 2)
        self.assertEqual(limits.check("10.0.0.1"), "service_limit")
        limits.setLimits(3, 2)
        self.assertEqual(limits.check("10.0.0.1"), "per_source_limit")


class ProcessLimitTests(SynchronousTestCase):
    def test_noLimit(self) -> None:
        """Without -limit nothing is refused."""
        limit = ProcessLimit()
        limit.started(1000)
        self.assertIsNone(limit.check())

    def test_limit(self) -> None:
        """count + new > limit refuses with process_limit."""
        limit = ProcessLimit(2)
        limit.started()
        self.assertIsNone(limit.check())
        self.assertEqual(limit.check(2), "process_limit")
        limit.started()
        self.assertEqual(limit.check(), "process_limit")
        limit.ended()
        self.assertIsNone(limit.check())

    def test_endedNeverNegative(self) -> None:
        """Extra ended calls stop at zero."""
        limit = ProcessLimit(1)
        limit.ended()
        self.assertEqual(limit.running, 0)
