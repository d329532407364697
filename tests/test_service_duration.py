"""
Tests for C{max_duration} (L{xinetd_twisted.service.duration}): servers get
SIGTERM then SIGKILL, in-process connections are closed, on the injected
clock.
"""

from __future__ import annotations

import gc
import os
import signal
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import freePort
from tests.test_daemon_superserver import ServerHarness, serviceBlock
from xinetd_twisted.config.model import Location, ServiceConfig
from xinetd_twisted.service.duration import KILL_GRACE, LimitedConnections


def daemonLines(messages: list) -> list:
    return [
        e["log_format"].format(**e)
        for e in messages
        if "log_format" in e and e.get("log_namespace", "").startswith("xinetd")
    ]


class ServerDeadlineTests(SynchronousTestCase):
    """
    Servers over their C{max_duration}, through the super-server with a
    spawner spy and a memory clock.
    """

    def setUp(self) -> None:
        self.port = freePort()
        self.logPath = os.path.abspath(self.mktemp())
        self.messages: list = []
        observer: Any = self.messages.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def harness(self, extra: str = "max_duration = 30") -> ServerHarness:
        logLine = f"log_type = FILE {self.logPath}\nlog_on_success = PID EXIT\n"
        return ServerHarness(
            self, serviceBlock("probe", self.port, extra=logLine + extra)
        )

    def serviceLog(self) -> str:
        with open(self.logPath) as f:
            return f.read()

    def test_termAtDeadline(self) -> None:
        """
        At max_duration the server gets SIGTERM, not before; logged.
        """
        h = self.harness()
        h.connect("probe").started(100)
        h.reactor.advance(29.9)
        self.assertEqual(h.spawner.signalled, [])
        h.reactor.advance(0.1)
        self.assertEqual(h.spawner.signalled, [(100, signal.SIGTERM)])
        self.assertIn(
            "service probe: server 100 still running after max_duration 30 s: "
            "sending signal 15",
            daemonLines(self.messages),
        )

    def test_exitAfterTerm(self) -> None:
        """
        A server that ends on SIGTERM logs EXIT signal=15 and gets no SIGKILL.
        """
        h = self.harness()
        record = h.connect("probe")
        record.started(100)
        h.reactor.advance(30)
        record.ended(signal.SIGTERM)
        h.reactor.advance(KILL_GRACE * 2)
        self.assertEqual(h.spawner.signalled, [(100, signal.SIGTERM)])
        self.assertIn("EXIT: probe signal=15 pid=100", self.serviceLog())

    def test_killAfterGrace(self) -> None:
        """
        Still running 5 s after SIGTERM: SIGKILL, and EXIT signal=9.
        """
        h = self.harness()
        record = h.connect("probe")
        record.started(100)
        h.reactor.advance(30)
        h.reactor.advance(KILL_GRACE - 0.1)
        self.assertEqual(len(h.spawner.signalled), 1)
        h.reactor.advance(0.1)
        self.assertEqual(
            h.spawner.signalled, [(100, signal.SIGTERM), (100, signal.SIGKILL)]
        )
        record.ended(signal.SIGKILL)
        self.assertIn("EXIT: probe signal=9 pid=100", self.serviceLog())
        self.assertIn(
            "service probe: server 100 still running 5.0 s after SIGTERM: "
            "sending signal 9",
            daemonLines(self.messages),
        )

    def test_endedInTime(self) -> None:
        """
        A server that ends before its deadline is never signalled, and no
        timer is left behind.
        """
        h = self.harness()
        record = h.connect("probe")
        record.started(100)
        h.reactor.advance(10)
        record.ended(0)
        self.assertEqual(
            [c for c in h.reactor.getDelayedCalls() if c.getTime() == 30 + 0.0], []
        )
        h.reactor.advance(100)
        self.assertEqual(h.spawner.signalled, [])

    def test_noLimit(self) -> None:
        """
        Without max_duration a server runs for ever.
        """
        h = self.harness(extra="")
        h.connect("probe").started(100)
        h.reactor.advance(10**6)
        self.assertEqual(h.spawner.signalled, [])

    def test_eachServerItsOwnClock(self) -> None:
        """
        Each server's deadline counts from its own start.
        """
        h = self.harness()
        h.connect("probe").started(100)
        h.reactor.advance(20)
        h.connect("probe").started(101)
        h.reactor.advance(10)
        self.assertEqual(h.spawner.signalled, [(100, signal.SIGTERM)])
        h.reactor.advance(20)
        self.assertIn((101, signal.SIGTERM), h.spawner.signalled)


def config(maxDuration: Any) -> ServiceConfig:
    return ServiceConfig(
        name="echo",
        serviceId="echo",
        location=Location("t.conf", 1),
        socketType="stream",
        protocol="tcp",
        wait=False,
        types=frozenset({"INTERNAL"}),
        maxDuration=maxDuration,
    )


class LimitedConnectionsTests(SynchronousTestCase):
    """
    In-process connections over their C{max_duration}.
    """

    def connection(self, connections: LimitedConnections) -> Any:
        protocol = Protocol()
        transport = StringTransport()
        protocol.makeConnection(transport)
        connections.add(protocol)
        return protocol, transport

    def test_closedAtDeadline(self) -> None:
        """
        At max_duration the connection is aborted, not before.
        """
        clock = Clock()
        connections = LimitedConnections(clock, lambda: config(5))
        protocol, transport = self.connection(connections)
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_noLimit(self) -> None:
        """
        Without max_duration no timer is started.
        """
        clock = Clock()
        connections = LimitedConnections(clock, lambda: config(None))
        protocol, transport = self.connection(connections)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(list(connections), [protocol])

    def test_endedConnectionLeavesNoTimer(self) -> None:
        """
        A connection whose protocol is gone leaves no timer in the reactor.
        """
        clock = Clock()
        connections = LimitedConnections(clock, lambda: config(5))
        protocol, transport = self.connection(connections)
        del protocol, transport
        gc.collect()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(len(connections), 0)

    def test_handedOffLeftAlone(self) -> None:
        """
        A tcpmux connection handed to a server is not closed by the
        multiplexer's clock.
        """
        clock = Clock()
        connections = LimitedConnections(clock, lambda: config(5))
        protocol, transport = self.connection(connections)
        protocol.handedOff = True  # type: ignore[attr-defined]
        clock.advance(5)
        self.assertFalse(transport.disconnecting)

    def test_logged(self) -> None:
        """
        Closing is logged with the service and the client.
        """
        messages: list = []
        observer: Any = messages.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        clock = Clock()
        connections = LimitedConnections(clock, lambda: config(5))
        protocol, transport = self.connection(connections)
        clock.advance(5)
        self.assertIn(
            "service echo: closing the connection from 192.168.1.1 after "
            "max_duration 5 s",
            daemonLines(messages),
        )
