"""
Tests for L{xinetd_twisted.policy.access}.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import (
    AddressEntry,
    AddressKind,
    Location,
    ServiceConfig,
)
from xinetd_twisted.policy.access import PolicyContext, Refusal, ServicePolicy
from xinetd_twisted.policy.hostsaccess import HostsAccess, parseHostsFile
from xinetd_twisted.policy.limits import ProcessLimit
from xinetd_twisted.policy.sensor import FOREVER, SensorOutcome


def net(text: str, prefixLength: int) -> AddressEntry:
    return AddressEntry(
        word=text,
        kind=AddressKind.NETWORK,
        family=socket.AF_INET,
        network=socket.inet_pton(socket.AF_INET, text),
        prefixLength=prefixLength,
    )


def service(**kw: Any) -> ServiceConfig:
    base: dict = dict(
        name="svc",
        serviceId="svc",
        location=Location("t.conf", 1),
        socketType="stream",
        protocol="tcp",
        wait=False,
        server="/usr/sbin/in.svcd",
        cps=(0, 0),
    )
    base.update(kw)
    return ServiceConfig(**base)


class Fixture:
    """
    A context with a fake clock, local time and load average.
    """

    def __init__(self, hostsDeny: str = "") -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.minute = 12 * 60
        self.load = 0.0
        self.loadReads = 0
        hosts = None
        if hostsDeny:
            deny, _ = parseHostsFile("hosts.deny", hostsDeny, False)
            hosts = HostsAccess([], deny)
        self.context = PolicyContext(
            seconds=self.clock.seconds,
            localtime=self.localtime,
            loadAverage=self.loadAverage,
            processLimit=ProcessLimit(),
            hostsAccess=hosts,
        )

    def localtime(self, seconds: float) -> time.struct_time:
        hour, minute = divmod(self.minute, 60)
        return time.struct_time((2024, 1, 1, hour, minute, 0, 0, 1, 0))

    def loadAverage(self) -> float:
        self.loadReads += 1
        return self.load

    def policy(self, **kw: Any) -> ServicePolicy:
        return ServicePolicy(service(**kw), self.context)


def refused(refusal: Optional[Refusal]) -> Refusal:
    """
    The refusal, failing the test when there is none.
    """
    assert refusal is not None, "expected a refusal"
    return refusal


def reasonOf(refusal: Optional[Refusal]) -> Optional[str]:
    return None if refusal is None else refusal.reason


class OrderTests(SynchronousTestCase):
    def test_allowed(self) -> None:
        """A service without limits lets a client through."""
        self.assertIsNone(Fixture().policy().check("10.0.0.1"))

    def test_cpsFirst(self) -> None:
        """cps is checked before everything else and reports deactivation."""
        fx = Fixture()
        policy = fx.policy(cps=(1, 7), instances=0)
        self.assertEqual(reasonOf(policy.check("10.0.0.1")), "service_limit")
        refusal = refused(policy.check("10.0.0.1"))
        self.assertEqual(refusal.reason, "connections per second")
        self.assertTrue(refusal.deactivated)
        self.assertEqual(refusal.deactivateUntil, 1_000_007)
        self.assertIn("Restarting in 7 seconds.", refusal.message)
        later = refused(policy.check("10.0.0.1"))
        self.assertEqual(later.reason, "connections per second")
        self.assertFalse(later.deactivated)

    def test_loadBeforeTime(self) -> None:
        """max_load refuses with load before access_times is considered."""
        fx = Fixture()
        fx.load = 3.0
        fx.minute = 0
        policy = fx.policy(maxLoad=3.0, accessTimes=((600, 700),))
        refusal = refused(policy.check("10.0.0.1"))
        self.assertEqual(refusal.reason, "load")
        self.assertEqual(
            refusal.message, "refused connect from 10.0.0.1 due to excessive load"
        )
        fx.load = 2.9
        self.assertEqual(reasonOf(policy.check("10.0.0.1")), "time")

    def test_noLoadRead(self) -> None:
        """Without max_load the load average is never read."""
        fx = Fixture()
        fx.policy().check("10.0.0.1")
        self.assertEqual(fx.loadReads, 0)

    def test_timeWindow(self) -> None:
        """Inside access_times passes, outside refuses with time."""
        fx = Fixture()
        policy = fx.policy(accessTimes=((600, 700),))
        fx.minute = 650
        self.assertIsNone(policy.check("10.0.0.1"))
        fx.minute = 701
        self.assertEqual(reasonOf(policy.check("10.0.0.1")), "time")

    def test_instancesThenPerSourceThenProcess(self) -> None:
        """service_limit comes before per_source_limit, which comes before process_limit."""
        fx = Fixture()
        fx.context.processLimit.limit = 1
        policy = fx.policy(instances=1, perSource=1)
        policy.started("10.0.0.1")
        self.assertEqual(reasonOf(policy.check("10.0.0.1")), "service_limit")
        policy.limits.setLimits(None, 1)
        self.assertEqual(reasonOf(policy.check("10.0.0.1")), "per_source_limit")
        self.assertEqual(reasonOf(policy.check("10.0.0.2")), "process_limit")
        policy.ended("10.0.0.1")
        self.assertIsNone(policy.check("10.0.0.1"))
        self.assertEqual(fx.context.processLimit.running, 0)

    def test_limitsBeforeAddress(self) -> None:
        """A client denied by address is first refused by a limit when one applies."""
        fx = Fixture()
        policy = fx.policy(instances=0, onlyFrom=())
        self.assertEqual(reasonOf(policy.check("10.0.0.1")), "service_limit")

    def test_address(self) -> None:
        """only_from/no_access refuse with address; both matching is reported."""
        fx = Fixture()
        policy = fx.policy(
            onlyFrom=(net("10.0.0.0", 8),), noAccess=(net("10.1.0.0", 16),)
        )
        self.assertIsNone(policy.check("::ffff:10.0.0.1"))
        self.assertEqual(reasonOf(policy.check("11.0.0.1")), "address")
        both = refused(policy.check("10.1.0.1"))
        self.assertEqual(both.reason, "address")
        self.assertEqual(
            both.message,
            "Service=svc: only_from list and no_access list match equally "
            "the address 10.1.0.1",
        )

    def test_unknownAddressPasses(self) -> None:
        """An unknown client address passes the address checks, as in xinetd."""
        self.assertIsNone(Fixture().policy(onlyFrom=()).check(None))

    def test_libwrapAfterAddress(self) -> None:
        """hosts.deny refuses with libwrap and xinetd's message, after address checks."""
        fx = Fixture("in.svcd: 10.0.0.1 10.0.0.2\n")
        policy = fx.policy(noAccess=(net("10.0.0.2", 32),))
        refusal = refused(policy.check("10.0.0.1"))
        self.assertEqual(refusal.reason, "libwrap")
        self.assertEqual(
            refusal.message,
            "libwrap refused connection to svc (libwrap=in.svcd) from 10.0.0.1",
        )
        self.assertEqual(reasonOf(policy.check("10.0.0.2")), "address")
        self.assertIsNone(policy.check("10.0.0.3"))

    def test_nolibwrap(self) -> None:
        """NOLIBWRAP skips hosts.deny."""
        fx = Fixture("ALL: ALL\n")
        self.assertIsNone(fx.policy(flags=frozenset({"NOLIBWRAP"})).check("10.0.0.1"))


class ContextTests(SynchronousTestCase):
    def test_forReactor(self) -> None:
        """forReactor takes its clock from an IReactorTime provider."""
        clock = Clock()
        clock.advance(42)
        context = PolicyContext.forReactor(clock)
        self.assertEqual(context.seconds(), 42)
        self.assertIsNotNone(context.sensorList)

    def test_noAddressIsUnknown(self) -> None:
        """A non-numeric peer (stream wait) is not counted per source."""
        fx = Fixture()
        policy = fx.policy(perSource=1)
        policy.started("<no address>")
        self.assertIsNone(policy.check("<no address>"))
        self.assertEqual(policy.limits.running, 1)


class SensorTests(SynchronousTestCase):
    def test_sensorRefusesAndRecords(self) -> None:
        """A SENSOR service refuses with address and blocks the client elsewhere."""
        fx = Fixture()
        sensor = fx.policy(serviceId="trap", flags=frozenset({"SENSOR"}), denyTime=2)
        other = fx.policy()
        refusal = refused(sensor.check("::ffff:10.0.0.9"))
        self.assertEqual(
            (refusal.reason, refusal.sensor), ("address", SensorOutcome.ADDED)
        )
        self.assertEqual(reasonOf(other.check("10.0.0.9")), "address")
        self.assertIsNone(other.check("10.0.0.8"))
        fx.clock.advance(120)
        self.assertIsNone(other.check("10.0.0.9"))

    def test_sensorNever(self) -> None:
        """deny_time 0: the SENSOR service refuses but records nothing."""
        fx = Fixture()
        refusal = refused(fx.policy(flags=frozenset({"SENSOR"})).check("10.0.0.9"))
        self.assertEqual(
            (refusal.reason, refusal.sensor), ("address", SensorOutcome.IGNORED)
        )
        self.assertIsNone(fx.policy().check("10.0.0.9"))

    def test_sensorNeedsNoName(self) -> None:
        """A SENSOR service never asks for a reverse lookup."""
        fx = Fixture("ALL: KNOWN\n")
        self.assertFalse(fx.policy(flags=frozenset({"SENSOR"})).needsName("10.0.0.1"))
        self.assertTrue(fx.policy().needsName("10.0.0.1"))


class NeedsNameTests(SynchronousTestCase):
    def test_numeric(self) -> None:
        """Numeric lists and no hosts rules need no name."""
        self.assertFalse(
            Fixture().policy(onlyFrom=(net("10.0.0.0", 8),)).needsName("1.2.3.4")
        )

    def test_domain(self) -> None:
        """A domain entry makes a name worth looking up, and the name decides."""
        fx = Fixture()
        entry = AddressEntry(word=".ok.org", kind=AddressKind.DOMAIN, name=".ok.org")
        policy = fx.policy(onlyFrom=(entry,))
        self.assertTrue(policy.needsName("1.2.3.4"))
        self.assertIsNone(policy.check("1.2.3.4", "a.ok.org"))
        self.assertEqual(reasonOf(policy.check("1.2.3.4", None)), "address")


class ReloadTests(SynchronousTestCase):
    def test_countsSurviveReload(self) -> None:
        """A reconfigured policy keeps running counts and applies the new limits."""
        fx = Fixture()
        policy = fx.policy(instances=5)
        policy.started("10.0.0.1")
        policy.started("10.0.0.2")
        newer = policy.reconfigured(service(instances=2), fx.context)
        self.assertIs(newer.limits, policy.limits)
        self.assertEqual(reasonOf(newer.check("10.0.0.3")), "service_limit")
        newer.ended("10.0.0.1")
        self.assertIsNone(newer.check("10.0.0.3"))

    def test_cpsReactivationKeepsCounts(self) -> None:
        """cps deactivation and reactivation do not reset instances (RH bz770858)."""
        fx = Fixture()
        policy = fx.policy(cps=(1, 3), instances=1)
        self.assertIsNone(policy.check("10.0.0.1"))
        policy.started("10.0.0.1")
        policy.check("10.0.0.2")
        self.assertEqual(reasonOf(policy.check("10.0.0.2")), "connections per second")
        fx.clock.advance(3)
        self.assertTrue(policy.rate.isActive())
        self.assertEqual(reasonOf(policy.check("10.0.0.2")), "service_limit")

    def test_sensorForeverAcrossReload(self) -> None:
        """FOREVER entries live in the shared list, so a reload keeps them."""
        fx = Fixture()
        fx.policy(flags=frozenset({"SENSOR"}), denyTime=FOREVER).check("10.0.0.9")
        reloaded = fx.policy().reconfigured(service(), fx.context)
        fx.clock.advance(10**7)
        self.assertEqual(reasonOf(reloaded.check("10.0.0.9")), "address")
