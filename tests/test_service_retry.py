"""
Tests for spawn retries after a fork failure (xinetd's retry.c): every
5 s, at most 5 tries, the client connection kept meanwhile, NORETRY failing
at once.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Tuple

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import freePort
from tests.test_daemon_superserver import ServerHarness, serviceBlock
from xinetd_twisted.service.children import FORK_RETRY_INTERVAL, MAX_FORK_FAILURES


class _RetryCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.port = freePort()
        self.logPath = os.path.join(self.mktemp())
        self.messages: list = []
        observer: Any = self.messages.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def harness(self, extra: str = "") -> ServerHarness:
        logLine = f"log_type = FILE {os.path.abspath(self.logPath)}\n"
        logLine += "log_on_failure = HOST\nlog_on_success = PID HOST EXIT\n"
        return ServerHarness(
            self, serviceBlock("probe", self.port, extra=logLine + extra)
        )

    def serviceLog(self) -> str:
        with open(self.logPath) as f:
            return f.read()

    def daemonLog(self) -> list:
        return [
            e.get("log_format", "").format(**e)
            for e in self.messages
            if "log_format" in e and e.get("log_namespace", "").startswith("xinetd")
        ]

    def connect(self, h: ServerHarness) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        h.server.runtimes["probe"].kind.acceptRaw(theirs.detach(), ("127.0.0.1", 4242))  # type: ignore[union-attr]
        return ours


class SpawnRetryTests(_RetryCase):
    def test_retriedAfterInterval(self) -> None:
        """A failed spawn is tried again after 5 s with the client connection kept open."""
        h = self.harness()
        client = self.connect(h)
        h.records[0].failed("fork failed: Resource temporarily unavailable")
        self.assertEqual(len(h.records), 1)
        # The daemon still holds the client's connection.
        (waiting,) = h.server.runtimes["probe"].parts.children.retrying
        os.write(waiting.held, b"hello")
        self.assertEqual(client.recv(5), b"hello")
        h.reactor.advance(FORK_RETRY_INTERVAL)
        self.assertEqual(len(h.records), 2)
        h.records[1].started(100)
        self.assertEqual(h.server.runtimes["probe"].parts.children.retrying, [])
        self.assertIn("START: probe pid=100 from=127.0.0.1", self.serviceLog())
        self.assertNotIn("FAIL", self.serviceLog())

    def test_accessCheckedAgainBeforeRetry(self) -> None:
        """A client blocklisted while its spawn waits for a retry is refused (FAIL address), not spawned."""
        h = self.harness()
        client = self.connect(h)
        h.records[0].failed("fork failed: Resource temporarily unavailable")
        sensor = h.server.context.policy.sensorList
        assert sensor is not None
        sensor.add("127.0.0.1", -1)
        h.reactor.advance(FORK_RETRY_INTERVAL)
        self.assertEqual(len(h.records), 1)
        self.assertEqual(h.server.runtimes["probe"].parts.children.retrying, [])
        self.assertIn("FAIL: probe address from=127.0.0.1", self.serviceLog())
        client.settimeout(1)
        self.assertEqual(client.recv(1), b"")

    def test_heldCopyClosedAfterSuccess(self) -> None:
        """Once the child exists the daemon holds no copy of the connection: the client sees EOF when the child's copy goes."""
        h = self.harness()
        client = self.connect(h)
        h.records[0].started(100)
        client.settimeout(1)
        self.assertEqual(client.recv(1), b"")

    def test_tooManyFailures(self) -> None:
        """After 5 consecutive failures the connection fails with FAIL fork and is closed."""
        h = self.harness()
        client = self.connect(h)
        for attempt in range(MAX_FORK_FAILURES):
            h.records[attempt].failed()
            h.reactor.advance(FORK_RETRY_INTERVAL)
        self.assertEqual(len(h.records), MAX_FORK_FAILURES)
        self.assertIn("FAIL: probe fork from=127.0.0.1", self.serviceLog())
        self.assertIn(
            "service probe: too many consecutive fork failures", self.daemonLog()
        )
        client.settimeout(1)
        self.assertEqual(client.recv(1), b"")
        self.assertIsNone(
            h.server.runtimes["probe"].parts.admission.policy.check("127.0.0.1")
        )

    def test_noretryFailsAtOnce(self) -> None:
        """With NORETRY the first failure is final: FAIL fork, no retry."""
        h = self.harness("flags = NORETRY")
        self.connect(h)
        h.records[0].failed()
        h.reactor.advance(FORK_RETRY_INTERVAL * 2)
        self.assertEqual(len(h.records), 1)
        self.assertIn("FAIL: probe fork from=127.0.0.1", self.serviceLog())

    def test_instanceSlotHeldWhileRetrying(self) -> None:
        """A connection waiting for a retry keeps its instance slot."""
        h = self.harness("instances = 1")
        self.connect(h)
        h.records[0].failed()
        refusal = h.server.runtimes["probe"].parts.admission.policy.check("127.0.0.1")
        assert refusal is not None
        self.assertEqual(refusal.reason, "service_limit")

    def test_removedServiceCancelsRetries(self) -> None:
        """A reload that removes the service closes connections waiting for a retry."""
        h = self.harness()
        client = self.connect(h)
        h.records[0].failed()
        h.reload("")
        h.reactor.advance(FORK_RETRY_INTERVAL)
        self.assertEqual(len(h.records), 1)
        client.settimeout(1)
        self.assertEqual(client.recv(1), b"")


class GivenBackTests(_RetryCase):
    """
    With a spawner that gives the connection back with a failure, the
    daemon keeps no copy of its own (which would hold the client's EOF back
    until the daemon heard of the child) and retries on the one given back.
    """

    def harness(self, extra: str = "") -> ServerHarness:
        h = super().harness(extra)
        h.spawner.givesConnectionBack = True
        return h

    def connectKeeping(self, h: ServerHarness) -> Tuple[socket.socket, int]:
        """
        Connect; return the client's end and the copy a spawn helper would
        hold.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        helperCopy = os.dup(theirs.fileno())
        h.server.runtimes["probe"].kind.acceptRaw(theirs.detach(), ("127.0.0.1", 4242))  # type: ignore[union-attr]
        return ours, helperCopy

    def test_noCopyKept(self) -> None:
        """Once the spawn is on its way the daemon holds no copy of the connection."""
        h = self.harness()
        client, helperCopy = self.connectKeeping(h)
        os.close(helperCopy)
        client.settimeout(1)
        self.assertEqual(client.recv(1), b"")

    def test_retriedOnTheConnectionGivenBack(self) -> None:
        """A failure that gives the connection back is retried on it after 5 s."""
        h = self.harness()
        client, helperCopy = self.connectKeeping(h)
        h.records[0].failed("fork failed: Resource temporarily unavailable", helperCopy)
        (waiting,) = h.server.runtimes["probe"].parts.children.retrying
        self.assertEqual(waiting.held, helperCopy)
        os.write(waiting.held, b"hello")
        self.assertEqual(client.recv(5), b"hello")
        h.reactor.advance(FORK_RETRY_INTERVAL)
        self.assertEqual(len(h.records), 2)
        h.records[1].started(100)
        self.assertIn("START: probe pid=100 from=127.0.0.1", self.serviceLog())

    def test_givenBackUnderNoretryIsClosed(self) -> None:
        """With NORETRY a connection given back is closed: the client sees EOF."""
        h = self.harness("flags = NORETRY")
        client, helperCopy = self.connectKeeping(h)
        h.records[0].failed("fork failed", helperCopy)
        client.settimeout(1)
        self.assertEqual(client.recv(1), b"")
        self.assertIn("FAIL: probe fork from=127.0.0.1", self.serviceLog())
