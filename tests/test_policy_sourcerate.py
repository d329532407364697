"""
Tests for L{xinetd_twisted.policy.sourcerate} (C{per_source_cps}) and its
place in L{ServicePolicy.checkLimits}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.test_policy_access import Fixture, service
from xinetd_twisted.policy.access import ServicePolicy
from xinetd_twisted.policy.sourcerate import PER_SOURCE_CPS, SourceRate


def limiter(rate: int = 2, wait: int = 10, maxSources: int = 100) -> tuple:
    clock = Clock()
    clock.advance(1000)
    return clock, SourceRate(rate, wait, clock.seconds, maxSources)


class SourceRateTests(SynchronousTestCase):
    """
    The per-source windows.
    """

    def test_withinRate(self) -> None:
        """
        Up to RATE connections within a second pass.
        """
        _, rate = limiter(rate=2)
        self.assertEqual([rate.check("1.2.3.4"), rate.check("1.2.3.4")], [None, None])

    def test_overRate(self) -> None:
        """
        The RATE+1th connection within a second is refused for WAIT seconds.
        """
        clock, rate = limiter(rate=2, wait=10)
        rate.check("1.2.3.4")
        rate.check("1.2.3.4")
        self.assertEqual(rate.check("1.2.3.4"), clock.seconds() + 10)
        self.assertTrue(rate.justBlocked)

    def test_otherSourcesUnaffected(self) -> None:
        """
        Another address is not refused when one is.
        """
        _, rate = limiter(rate=1)
        rate.check("1.2.3.4")
        rate.check("1.2.3.4")
        self.assertIsNone(rate.check("5.6.7.8"))

    def test_stillRefused(self) -> None:
        """
        During WAIT the address stays refused, reported as not new.
        """
        clock, rate = limiter(rate=1, wait=10)
        rate.check("1.2.3.4")
        until = rate.check("1.2.3.4")
        clock.advance(9.5)
        self.assertEqual(rate.check("1.2.3.4"), until)
        self.assertFalse(rate.justBlocked)

    def test_afterWait(self) -> None:
        """
        After WAIT the address is let in again.
        """
        clock, rate = limiter(rate=1, wait=10)
        rate.check("1.2.3.4")
        rate.check("1.2.3.4")
        clock.advance(10)
        self.assertIsNone(rate.check("1.2.3.4"))
        self.assertFalse(rate.isBlocked("1.2.3.4"))

    def test_newWindow(self) -> None:
        """
        RATE connections every second, spread over seconds, never trip.
        """
        clock, rate = limiter(rate=2)
        results = []
        for _ in range(5):
            results += [rate.check("1.2.3.4"), rate.check("1.2.3.4")]
            clock.advance(1.0)
        self.assertEqual(results, [None] * 10)

    def test_bounded(self) -> None:
        """
        No more than maxSources addresses are ever tracked.
        """
        _, rate = limiter(maxSources=50)
        for i in range(500):
            rate.check(f"10.0.{i // 256}.{i % 256}")
            self.assertLessEqual(len(rate), 50)

    def test_finishedForgottenFirst(self) -> None:
        """
        When full, addresses whose window is over are forgotten before a
        refused one.
        """
        clock, rate = limiter(rate=1, wait=100, maxSources=3)
        rate.check("9.9.9.9")
        rate.check("9.9.9.9")
        rate.check("1.1.1.1")
        rate.check("2.2.2.2")
        clock.advance(2)
        rate.check("3.3.3.3")
        self.assertTrue(rate.isBlocked("9.9.9.9"))
        self.assertEqual(len(rate), 2)

    def test_setLimits(self) -> None:
        """
        New limits keep a refusal in progress.
        """
        _, rate = limiter(rate=1, wait=10)
        rate.check("1.2.3.4")
        rate.check("1.2.3.4")
        rate.setLimits(5, 1)
        self.assertTrue(rate.isBlocked("1.2.3.4"))
        self.assertEqual((rate.rate, rate.wait), (5, 1))


class ServicePolicyTests(SynchronousTestCase):
    """
    C{per_source_cps} in the service's limits.
    """

    def test_refusal(self) -> None:
        """
        Over the rate: refused with reason C{per_source_cps}, logged once in
        the daemon's log when the refusal starts.
        """
        fixture = Fixture()
        policy = ServicePolicy(service(perSourceCps=(1, 10)), fixture.context)
        self.assertIsNone(policy.check("10.0.0.1"))
        first = policy.check("10.0.0.1")
        assert first is not None
        self.assertEqual(first.reason, PER_SOURCE_CPS)
        self.assertTrue(first.daemonMessage)
        again = policy.check("10.0.0.1")
        assert again is not None
        self.assertEqual(again.reason, "per_source_cps")
        self.assertFalse(again.daemonMessage)
        self.assertIsNone(policy.check("10.0.0.2"))

    def test_ipv4MappedSameSource(self) -> None:
        """
        An IPv4 client is the same source on a dual-stack socket.
        """
        fixture = Fixture()
        policy = ServicePolicy(service(perSourceCps=(1, 10)), fixture.context)
        policy.check("10.0.0.1")
        refusal = policy.check("::ffff:10.0.0.1")
        self.assertIsNotNone(refusal)

    def test_beforeInstances(self) -> None:
        """
        Checked before instances: a source over its rate is refused with
        C{per_source_cps} even when the service is full.
        """
        fixture = Fixture()
        policy = ServicePolicy(
            service(perSourceCps=(1, 10), instances=1), fixture.context
        )
        policy.check("10.0.0.1")
        policy.started("10.0.0.1")
        refusal = policy.check("10.0.0.1")
        assert refusal is not None
        self.assertEqual(refusal.reason, PER_SOURCE_CPS)

    def test_afterCps(self) -> None:
        """
        Checked after cps: a deactivated service refuses with cps.
        """
        fixture = Fixture()
        policy = ServicePolicy(
            service(perSourceCps=(1, 10), cps=(1, 10)), fixture.context
        )
        results = [policy.check("10.0.0.1") for _ in range(3)]
        last = results[-1]
        assert last is not None
        self.assertEqual(last.reason, "connections per second")

    def test_unknownAddress(self) -> None:
        """
        A client with no address is not rate limited by source.
        """
        fixture = Fixture()
        policy = ServicePolicy(service(perSourceCps=(1, 10)), fixture.context)
        self.assertEqual([policy.check(None) for _ in range(3)], [None] * 3)

    def test_keptAcrossReload(self) -> None:
        """
        A reload keeps the refusals in progress.
        """
        fixture = Fixture()
        policy = ServicePolicy(service(perSourceCps=(1, 10)), fixture.context)
        policy.check("10.0.0.1")
        policy.check("10.0.0.1")
        reloaded = policy.reconfigured(service(perSourceCps=(5, 10)), fixture.context)
        self.assertIs(reloaded.sourceRate, policy.sourceRate)
        refusal = reloaded.check("10.0.0.1")
        assert refusal is not None
        self.assertEqual(refusal.reason, PER_SOURCE_CPS)

    def test_off(self) -> None:
        """
        Without per_source_cps there is no state at all.
        """
        fixture = Fixture()
        policy = ServicePolicy(service(), fixture.context)
        self.assertIsNone(policy.sourceRate)
        self.assertEqual([policy.check("10.0.0.1") for _ in range(50)], [None] * 50)
