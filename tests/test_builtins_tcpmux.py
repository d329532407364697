"""
Tests for L{xinetd_twisted.builtins.tcpmux}: the RFC 1078 multiplexer.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xinetd_twisted.builtins.tcpmux import GO, NOT_FOUND, TcpmuxFactory
from xinetd_twisted.config.model import Location, ServiceConfig

from .test_builtins_stream import RecordingObserver

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def service(name: str, *types: str) -> ServiceConfig:
    """
    A minimal service of the given types.
    """
    return ServiceConfig(
        name=name,
        serviceId=name,
        location=Location("test.conf", 1),
        socketType="stream",
        protocol="tcp",
        wait=False,
        types=frozenset(types),
    )


PLAIN = service("plain", "TCPMUX")
PLUS = service("Plus", "TCPMUXPLUS")
SSH = service("ssh")  # an ordinary service: never selectable (CVE-2012-0862)


class Harness:
    """
    A tcpmux factory with a recording hand-off, connected to a
    L{StringTransport}.
    """

    def __init__(self, subservices: Any = (PLAIN, PLUS, SSH), **kw: Any) -> None:
        self.handoffs: List[Tuple[ServiceConfig, bytes, Any]] = []
        self.clock = Clock()
        self.observer = RecordingObserver()
        self.factory = TcpmuxFactory(
            "tcpmux",
            subservices,
            self.handoff,
            self.clock,
            self.observer,
            **kw,
        )
        self.protocol = self.factory.buildProtocol(PEER)
        self.transport = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def handoff(self, subservice: ServiceConfig, pipelined: bytes, transport: Any):
        self.handoffs.append((subservice, pipelined, transport))


class TcpmuxTests(SynchronousTestCase):
    def test_notFound(self) -> None:
        """
        An unknown name gets the negative reply, with no trailing NUL, and
        the connection closes.
        """
        h = Harness()
        h.protocol.dataReceived(b"nosuch\r\n")
        self.assertEqual(h.transport.value(), b"-Service name not found\r\n")
        self.assertEqual(h.transport.value(), NOT_FOUND)
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.handoffs, [])

    def test_onlyTcpmuxServices(self) -> None:
        """
        A configured service that is not TCPMUX/TCPMUXPLUS cannot be reached
        through tcpmux (CVE-2012-0862).
        """
        h = Harness()
        h.protocol.dataReceived(b"ssh\r\n")
        self.assertEqual(h.transport.value(), NOT_FOUND)
        self.assertEqual(h.factory.names(), ("plain", "Plus"))

    def test_plainHandedOff(self) -> None:
        """
        A TCPMUX service is handed the connection at once; tcpmux writes
        nothing (the server sends its own reply) and stops reading.
        """
        h = Harness()
        h.protocol.dataReceived(b"plain\r\n")
        self.assertEqual(h.handoffs, [(PLAIN, b"", h.transport)])
        self.assertEqual(h.transport.value(), b"")
        self.assertEqual(h.transport.producerState, "paused")
        self.assertFalse(h.transport.disconnecting)
        self.assertTrue(h.protocol.handedOff)

    def test_caseInsensitive(self) -> None:
        """
        Names compare case-insensitively.
        """
        h = Harness()
        h.protocol.dataReceived(b"PLAIN\r\n")
        self.assertEqual(h.handoffs[0][0], PLAIN)

    def test_lfAccepted(self) -> None:
        """
        A bare LF ends the name too, and surrounding blanks are ignored.
        """
        h = Harness()
        h.protocol.dataReceived(b" plain \n")
        self.assertEqual(h.handoffs[0][0], PLAIN)

    def test_split(self) -> None:
        """
        The name may arrive over several reads.
        """
        h = Harness()
        for piece in (b"pl", b"ain\r", b"\n"):
            h.protocol.dataReceived(piece)
        self.assertEqual(h.handoffs[0][0], PLAIN)

    def test_pipelined(self) -> None:
        """
        Bytes after the name line are handed to the sub-service.
        """
        h = Harness()
        h.protocol.dataReceived(b"plain\r\nGET / HTTP/1.0\r\n\r\n")
        self.assertEqual(h.handoffs[0][1], b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(h.protocol.pipelined, b"GET / HTTP/1.0\r\n\r\n")

    def test_plusWaitsForFlush(self) -> None:
        """
        For TCPMUXPLUS, "+Go" is written first, and the hand-off happens only
        when the transport asks its pull producer for more (buffer empty).
        """
        h = Harness()
        h.protocol.dataReceived(b"plus\r\nearly")
        producer = h.transport.producer
        self.assertIsNotNone(producer)
        self.assertFalse(h.transport.streaming)
        producer.resumeProducing()  # what registerProducer does at once
        self.assertEqual(h.transport.value(), GO)
        self.assertEqual(h.transport.value(), b"+Go\r\n")
        self.assertEqual(h.handoffs, [])
        producer.resumeProducing()  # the buffer has drained
        self.assertEqual(h.handoffs, [(PLUS, b"early", h.transport)])
        self.assertIsNone(h.transport.producer)

    def test_help(self) -> None:
        """
        HELP lists the sub-service names, one per CRLF line, then closes.
        """
        h = Harness()
        h.protocol.dataReceived(b"help\r\n")
        self.assertEqual(h.transport.value(), b"plain\r\nPlus\r\n")
        self.assertTrue(h.transport.disconnecting)

    def test_tooLong(self) -> None:
        """
        1 KiB without a line end closes the connection without a reply.
        """
        h = Harness()
        h.protocol.dataReceived(b"x" * 1023)
        self.assertFalse(h.transport.disconnecting)
        h.protocol.dataReceived(b"x")
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.transport.value(), b"")

    def test_longestLine(self) -> None:
        """
        A line of 1024 bytes including its LF is still read.
        """
        h = Harness()
        h.protocol.dataReceived(b" " * 1018 + b"plain\n")
        self.assertEqual(h.handoffs[0][0], PLAIN)

    def test_timeout(self) -> None:
        """
        A client that never sends its line is closed after nameTimeout.
        """
        h = Harness(nameTimeout=5)
        h.clock.advance(4.9)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(0.1)
        self.assertTrue(h.transport.disconnecting)

    def test_timeoutCancelled(self) -> None:
        """
        The timeout is cancelled once the line arrives.
        """
        h = Harness(nameTimeout=5)
        h.protocol.dataReceived(b"plain\r\n")
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_noTimeout(self) -> None:
        """
        With nameTimeout None, nothing is scheduled (xinetd's behaviour).
        """
        h = Harness(nameTimeout=None)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_observer(self) -> None:
        """
        A connection that ends in tcpmux is reported made and lost; a
        handed-off one only made.
        """
        h = Harness()
        h.protocol.dataReceived(b"nosuch\r\n")
        h.protocol.connectionLost(Failure(Exception("done")))
        self.assertEqual(
            h.observer.events, [("made", "tcpmux", PEER), ("lost", "tcpmux", PEER)]
        )
        h2 = Harness()
        h2.protocol.dataReceived(b"plain\r\n")
        h2.protocol.connectionLost(Failure(Exception("done")))
        self.assertEqual(h2.observer.events, [("made", "tcpmux", PEER)])

    def test_handoffFails(self) -> None:
        """
        If the hand-off raises, the error is logged and the client closed.
        """
        h = Harness()

        def broken(*args: Any) -> None:
            raise RuntimeError("no spawn")

        h.factory.handoff = broken
        h.protocol.dataReceived(b"plain\r\n")
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_reload(self) -> None:
        """
        setSubservices replaces the selectable services.
        """
        h = Harness()
        h.factory.setSubservices([service("new", "TCPMUX")])
        h.protocol.dataReceived(b"plain\r\n")
        self.assertEqual(h.transport.value(), NOT_FOUND)


class RealHandoffTests(TestCase):
    @inlineCallbacks
    def test_plusOrderOnRealSocket(self):
        """
        On a real socket, "+Go" reaches the client before anything the
        sub-service writes on the handed-off descriptor, and the pipelined
        bytes are available to it.
        """

        def handoff(subservice: ServiceConfig, pipelined: bytes, transport: Any):
            # What the integrator does for a child, done in-process: take
            # the descriptor, drop it from the reactor, close our copy.
            child = transport.getHandle().dup()
            reactor.removeReader(transport)
            reactor.removeWriter(transport)
            transport.getHandle().close()
            child.setblocking(True)
            child.sendall(b"served " + pipelined)
            child.close()

        factory = TcpmuxFactory("tcpmux", [PLUS], handoff, reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        done: Deferred = Deferred()
        chunks: List[bytes] = []

        class Client(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"PLUS\r\nhello")

            def dataReceived(self, data: bytes) -> None:
                chunks.append(data)

            def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
                done.callback(b"".join(chunks))

        reactor.connectTCP(
            "127.0.0.1", port.getHost().port, ClientFactory.forProtocol(Client)
        )
        got = yield done
        self.assertEqual(got, b"+Go\r\nserved hello")
