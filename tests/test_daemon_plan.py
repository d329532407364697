"""
Tests for L{xinetd_twisted.daemon.plan}: the reload plan, without sockets.
"""

from __future__ import annotations

import socket
from typing import Any, Dict

import attr
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Config, Location, ServiceConfig
from xinetd_twisted.daemon.plan import planReload


def service(serviceId: str, **kw: Any) -> ServiceConfig:
    values: Dict[str, Any] = dict(
        serviceId=serviceId,
        name=serviceId,
        location=Location("/etc/xinetd.conf", 1),
        family=socket.AF_INET,
        socketType="stream",
        protocol="tcp",
        port=1000,
        wait=False,
        server="/bin/cat",
        bind="127.0.0.1",
    )
    values.update(kw)
    return ServiceConfig(**values)


def config(*services: ServiceConfig) -> Config:
    return Config(services=tuple(services))


class PlanTests(SynchronousTestCase):
    def test_unchangedIsUpdatedInPlace(self) -> None:
        """A service on the same socket is kept and updated in place."""
        old = service("a")
        new = attr.evolve(old, serverArgs=("x",))
        plan = planReload({"a": old}, config(new))
        self.assertEqual(plan.update, (("a", new),))
        self.assertEqual((plan.stop, plan.start), ((), ()))

    def test_changedPortRebinds(self) -> None:
        """A new port stops the old runtime and starts a new one."""
        old = service("a")
        new = attr.evolve(old, port=1001)
        plan = planReload({"a": old}, config(new))
        self.assertEqual(plan.stop, ("a",))
        self.assertEqual(plan.start, (new,))
        self.assertEqual(plan.rebound, ("a",))

    def test_removedStops(self) -> None:
        """A service no longer configured is stopped."""
        plan = planReload({"a": service("a")}, config())
        self.assertEqual(plan.stop, ("a",))
        self.assertEqual(plan.rebound, ())

    def test_addedStarts(self) -> None:
        """A new service is started."""
        new = service("b")
        plan = planReload({}, config(new))
        self.assertEqual(plan.start, (new,))

    def test_idMatchedWithoutCase(self) -> None:
        """Ids match whatever their case, as xinetd's do."""
        old = service("Echo")
        new = attr.evolve(old, serviceId="echo")
        plan = planReload({"Echo": old}, config(new))
        self.assertEqual(plan.update, (("Echo", new),))

    def test_waitChangeRebinds(self) -> None:
        """A change of wait mode is a new service on the socket."""
        old = service("a")
        plan = planReload({"a": old}, config(attr.evolve(old, wait=True)))
        self.assertEqual(plan.stop, ("a",))

    def test_tcpmuxSubservicesHaveNoRuntime(self) -> None:
        """tcpmux sub-services are passed on, never started on their own."""
        sub = service("sub", types=frozenset({"TCPMUX"}), port=None)
        plan = planReload({}, config(sub))
        self.assertEqual(plan.start, ())
        self.assertEqual(plan.subservices, (sub,))


class KeptTests(SynchronousTestCase):
    """
    A mistake in a reload never stops a running service.
    """

    def test_brokenDefinitionKept(self) -> None:
        """A service whose new block was dropped for an error keeps running."""
        old = service("a")
        plan = planReload(
            {"a": old}, Config(services=(), droppedServices=frozenset({"a"}))
        )
        self.assertEqual((plan.stop, plan.kept), ((), ("a",)))

    def test_vanishedFromBrokenFileKept(self) -> None:
        """A service gone from a file with errors (a swallowing brace) is kept."""
        old = service("a")
        broken = Config(services=(), filesWithErrors=frozenset({"/etc/xinetd.conf"}))
        self.assertEqual(planReload({"a": old}, broken).kept, ("a",))

    def test_removedFromCleanFileStops(self) -> None:
        """A service removed from a file without errors is removed."""
        old = service("a")
        other = Config(services=(), filesWithErrors=frozenset({"/etc/xinetd.d/b"}))
        self.assertEqual(planReload({"a": old}, other).stop, ("a",))
