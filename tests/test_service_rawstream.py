"""
Tests for L{xinetd_twisted.service.rawstream}: echo and discard served on
the bare descriptor, driven by hand over real socketpairs with a memory
reactor (no reactor runs, nothing waits).
"""

from __future__ import annotations

import socket
from typing import Any, List, Tuple

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IReadWriteDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.daemon import readNow
from xinetd_twisted.service.connection import Connection
from xinetd_twisted.service.context import DescriptorBudget
from xinetd_twisted.service.duration import LimitedConnections
from xinetd_twisted.service.factory import ConnectionLimits
from xinetd_twisted.service.rawstream import (
    CHUNK,
    READS_PER_EVENT,
    RawDoor,
    RawStreamConnection,
)

PEER = ("127.0.0.1", 4242)


def _atEOF(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


class RawStreamConnectionTests(SynchronousTestCase):
    def connect(
        self, echo: bool = True, buffer: int = 0, first: bytes = b""
    ) -> Tuple[RawStreamConnection, socket.socket]:
        """
        A connection over a socketpair, started; the client's end.

        @param buffer: with a size, small socket buffers on both ends
            (to fill them).
        """
        ours, client = socket.socketpair()
        self.addCleanup(client.close)
        if buffer:
            for s in (ours, client):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        if first:
            client.sendall(first)
            client.shutdown(socket.SHUT_WR)
        self.reactor = MemoryReactorClock()
        self.ended: List[RawStreamConnection] = []
        raw = RawStreamConnection(
            self.reactor, ours, PEER, echo, self.ended.append, name="echo"
        )
        self.addCleanup(raw.abortConnection)
        raw.start()
        return raw, client

    def test_interface(self) -> None:
        """
        It is a read-write descriptor for the reactor.
        """
        raw, _ = self.connect()
        self.assertTrue(verifyObject(IReadWriteDescriptor, raw))
        self.assertEqual(raw.logPrefix(), "xinetd:echo")

    def test_startReads(self) -> None:
        """
        Started, it waits for the client: the reactor watches it for
        reading only.
        """
        raw, _ = self.connect()
        self.assertIn(raw, self.reactor.readers)
        self.assertNotIn(raw, self.reactor.writers)

    def test_servedAtStart(self) -> None:
        """
        A client whose bytes and half-close are there when it is accepted
        is served at once, without the reactor ever watching it.
        """
        raw, client = self.connect(first=b"early")
        self.assertEqual(readNow(client), b"early")
        self.assertEqual(self.ended, [raw])
        self.assertEqual(self.reactor.readers, set())

    def test_echoThenHalfCloseInOneRead(self) -> None:
        """
        Data and the client's half-close seen in the same read: all of
        it comes back, then EOF, and it ends once.
        """
        raw, client = self.connect()
        client.sendall(b"hello")
        client.shutdown(socket.SHUT_WR)
        raw.doRead()
        self.assertEqual(readNow(client), b"hello")
        self.assertFalse(raw.connected)
        self.assertEqual(self.ended, [raw])
        self.assertEqual(raw.fileno(), -1)
        self.assertNotIn(raw, self.reactor.readers)

    def test_echoKeepsOpen(self) -> None:
        """
        Without a half-close, what arrives is echoed and the connection
        stays open, marked as having seen data.
        """
        raw, client = self.connect()
        client.sendall(b"one")
        raw.doRead()
        self.assertEqual(readNow(client), b"one")
        self.assertTrue(raw.connected)
        self.assertTrue(raw.sawData)
        self.assertEqual(self.ended, [])

    def test_discard(self) -> None:
        """
        discard reads and drops; the client's half-close closes it with
        nothing written.
        """
        raw, client = self.connect(echo=False)
        client.sendall(b"x" * 1000)
        client.shutdown(socket.SHUT_WR)
        raw.doRead()
        self.assertTrue(_atEOF(client))
        self.assertEqual(self.ended, [raw])

    def test_readsBounded(self) -> None:
        """
        One readiness event reads at most READS_PER_EVENT chunks (the
        others wait for the next event).
        """
        raw, client = self.connect(echo=False)
        client.setblocking(False)
        total = CHUNK * (READS_PER_EVENT + 2)
        sent = 0
        try:
            while sent < total:
                sent += client.send(b"y" * min(CHUNK, total - sent))
        except BlockingIOError:
            pass
        raw.doRead()
        self.assertTrue(raw.connected)
        self.assertIn(raw, self.reactor.readers)

    def fill(
        self, raw: RawStreamConnection, client: socket.socket, payload: bytes
    ) -> int:
        """
        Send from a client that does not read until the connection holds
        output back; the bytes sent.
        """
        client.setblocking(False)
        sent = 0
        for _ in range(10000):
            if raw in self.reactor.writers:
                return sent
            try:
                sent += client.send(payload[sent : sent + 4096])
            except BlockingIOError:
                pass
            if raw in self.reactor.readers:
                raw.doRead()
        self.fail("the socket buffers never filled")

    def test_backPressure(self) -> None:
        """
        When the client does not read, what the socket does not take is
        held and reading stops until it is written; once the client reads,
        the rest goes out and reading resumes; nothing is lost.
        """
        raw, client = self.connect(buffer=4096)
        payload = bytes(range(256)) * 1024
        sent = self.fill(raw, client, payload)
        self.assertNotIn(raw, self.reactor.readers)
        received = []
        for _ in range(10000):
            received.append(readNow(client))
            if raw in self.reactor.writers:
                raw.doWrite()
            elif raw in self.reactor.readers:
                raw.doRead()
            if sent < len(payload):
                try:
                    sent += client.send(payload[sent : sent + 4096])
                except BlockingIOError:
                    pass
            elif sum(map(len, received)) == len(payload):
                break
        self.assertEqual(b"".join(received), payload)
        self.assertTrue(raw.connected)
        self.assertIn(raw, self.reactor.readers)
        self.assertNotIn(raw, self.reactor.writers)

    def test_halfCloseWhileHeldBack(self) -> None:
        """
        A client that half-closes while its echo is held back gets all of
        it before the EOF.
        """
        raw, client = self.connect(buffer=4096)
        payload = b"z" * 200000
        sent = self.fill(raw, client, payload)
        client.shutdown(socket.SHUT_WR)
        received = []
        for _ in range(10000):
            received.append(readNow(client))
            if not raw.connected:
                break
            if raw in self.reactor.writers:
                raw.doWrite()
            elif raw in self.reactor.readers:
                raw.doRead()
        received.append(readNow(client))
        self.assertEqual(b"".join(received), payload[:sent])
        self.assertEqual(self.ended, [raw])
        self.assertTrue(_atEOF(client))

    def test_clientGone(self) -> None:
        """
        Writing to a client that closed ends the connection.
        """
        raw, client = self.connect()
        client.sendall(b"late")
        client.close()
        raw.doRead()
        for _ in range(3):
            if raw.connected:
                raw.doRead()
        self.assertFalse(raw.connected)
        self.assertEqual(self.ended, [raw])

    def test_connectionLostFromReactor(self) -> None:
        """
        The reactor reporting the connection lost closes it, once.
        """
        raw, _ = self.connect()
        raw.connectionLost(Failure(Exception("gone")))
        raw.connectionLost(Failure(Exception("again")))
        self.assertEqual(self.ended, [raw])

    def test_readConnectionLostFromReactor(self) -> None:
        """
        The reactor reporting the end of input closes it when nothing is
        pending.
        """
        raw, _ = self.connect()
        raw.readConnectionLost(Failure(Exception("done")))
        self.assertEqual(self.ended, [raw])

    def test_idledAndAbort(self) -> None:
        """
        The idle sweep and abortConnection close it; the client sees EOF.
        """
        raw, client = self.connect()
        raw.idled()
        self.assertTrue(_atEOF(client))
        raw.abortConnection()
        self.assertEqual(self.ended, [raw])

    def test_itsOwnTransport(self) -> None:
        """
        max_duration and removal reach it as a transport: connected,
        getPeer, abortConnection.
        """
        raw, _ = self.connect()
        self.assertIs(raw.transport, raw)
        self.assertEqual(raw.getPeer(), IPv4Address("TCP", "127.0.0.1", 4242))
        raw.peer = ("::1", 7, 0, 0)
        self.assertEqual(raw.getPeer(), IPv6Address("TCP", "::1", 7, 0, 0))
        self.assertFalse(raw.handedOff)


class _Hooks:
    def __init__(self) -> None:
        self.events: List[Tuple[str, Any]] = []

    def began(self, peer: Any) -> float:
        self.events.append(("began", peer))
        return 12.5

    def ended(self, peer: Any, started: float) -> None:
        self.events.append(("ended", (peer, started)))


class RawDoorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.budget = DescriptorBudget(limit=1)
        self.limits = ConnectionLimits(self.budget, self.reactor, 300.0, 1)
        self.connections = LimitedConnections(self.reactor, lambda: None)
        self.hooks = _Hooks()
        self.door = RawDoor(
            self.reactor,
            self.limits,
            self.connections,
            self.hooks.began,
            self.hooks.ended,
        )

    def connection(self) -> Tuple[Connection, socket.socket]:
        ours, client = socket.socketpair()
        self.addCleanup(client.close)
        connection = Connection.fromDescriptor(ours.detach(), PEER, socket.AF_UNIX)
        self.addCleanup(lambda: connection.fd >= 0 and connection.release())
        return connection, client

    def test_serve(self) -> None:
        """
        Served: the descriptor is taken, the budget drawn on, the start
        logged with the peer, the connection tracked and read.
        """
        connection, _ = self.connection()
        self.assertTrue(self.door.serve(connection, "echo", True))
        self.assertEqual(connection.fd, -1)
        self.assertEqual(self.budget.held, 1)
        self.assertEqual(self.hooks.events, [("began", PEER)])
        [raw] = list(self.connections)
        self.assertEqual(raw.started, 12.5)
        self.assertIn(raw, self.reactor.readers)
        raw.abortConnection()

    def test_endReleases(self) -> None:
        """
        Ended: the budget is given back and the end logged with the start
        time.
        """
        connection, client = self.connection()
        self.door.serve(connection, "echo", True)
        client.sendall(b"bye")
        client.shutdown(socket.SHUT_WR)
        [raw] = list(self.connections)
        raw.doRead()
        self.assertEqual(self.budget.held, 0)
        self.assertEqual(self.hooks.events[-1], ("ended", (PEER, 12.5)))
        self.assertEqual(readNow(client), b"bye")

    def test_budgetSpent(self) -> None:
        """
        With the budget spent the connection is not served and its
        descriptor stays the caller's.
        """
        first, _ = self.connection()
        self.door.serve(first, "echo", True)
        second, _ = self.connection()
        self.assertFalse(self.door.serve(second, "echo", True))
        self.assertGreaterEqual(second.fd, 0)
        self.assertEqual(len(self.hooks.events), 1)
        self.flushLoggedErrors()
        for raw in list(self.connections):
            raw.abortConnection()

    def test_idleSweep(self) -> None:
        """
        A connection that sends nothing for the idle timeout is closed.
        """
        connection, client = self.connection()
        self.door.serve(connection, "echo", True)
        self.reactor.pump([75.0] * 5)
        self.assertTrue(_atEOF(client))
        self.assertEqual(self.budget.held, 0)

    def test_servedAtOnceLeavesNothing(self) -> None:
        """
        A connection served completely when accepted is logged, but
        leaves no timer, no tracking and no descriptor held.
        """
        connection, client = self.connection()
        client.sendall(b"ping")
        client.shutdown(socket.SHUT_WR)
        self.door.serve(connection, "echo", True)
        self.assertEqual(readNow(client), b"ping")
        self.assertEqual(list(self.connections), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.budget.held, 0)
        self.assertEqual(self.hooks.events, [("began", PEER), ("ended", (PEER, 12.5))])

    def test_unixClient(self) -> None:
        """
        A UNIX-domain client (no address) is logged with a UNIXAddress, as
        a transport's getPeer gives it.
        """
        ours, client = socket.socketpair()
        self.addCleanup(client.close)
        connection = Connection.fromDescriptor(ours.detach(), "", socket.AF_UNIX)
        self.door.serve(connection, "echo", True)
        [(event, peer)] = self.hooks.events
        self.assertEqual((event, peer), ("began", UNIXAddress(None)))
        for raw in list(self.connections):
            self.assertEqual(raw.getPeer(), UNIXAddress(None))
            raw.abortConnection()
