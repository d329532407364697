"""
Tests for L{xinetd_twisted.protocols.redirect}: the TCP forwarder with TRAFFIC counts.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, List, Tuple

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import (
    CannotListenError,
    ConnectionRefusedError,
    TimeoutError,
)
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from xinetd_twisted.protocols.redirect import (
    IRedirectObserver,
    NullRedirectObserver,
    RedirectFactory,
    Traffic,
    connectFailureReason,
)

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


@implementer(IRedirectObserver)
class RecordingRedirectObserver:
    """
    Records every call; C{ended} fires with the L{Traffic}.
    """

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []
        self.ended: Deferred = Deferred()

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        self.events.append(("made", serviceId))

    def connectFailed(self, serviceId: str, peer: Any, message: str) -> None:
        self.events.append(("failed", serviceId, message))

    def connectionEnded(self, serviceId: str, peer: Any, traffic: Traffic) -> None:
        self.events.append(("ended", serviceId, traffic))
        self.ended.callback(traffic)


class UnitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.observer = RecordingRedirectObserver()
        self.factory = RedirectFactory(
            "fwd", ("10.0.0.9", 8080), self.reactor, self.observer
        )
        self.protocol = self.factory.buildProtocol(PEER)
        self.client = StringTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.client)

    def connectUpstream(self) -> StringTransport:
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[0]
        upstream = StringTransport()
        factory.buildProtocol(None).makeConnection(upstream)
        return upstream

    def test_interfaces(self) -> None:
        """
        Both observers provide IRedirectObserver.
        """
        verifyObject(IRedirectObserver, NullRedirectObserver())
        verifyObject(IRedirectObserver, self.observer)

    def test_clientPausedUntilConnected(self) -> None:
        """
        The client is not read until the target connection exists; then the
        two transports are each other's producers and the client resumes.
        """
        self.assertEqual(self.client.producerState, "paused")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("10.0.0.9", 8080))
        self.assertEqual(self.reactor.tcpClients[0][3], 30.0)
        upstream = self.connectUpstream()
        self.assertEqual(self.client.producerState, "producing")
        self.assertIs(self.client.producer, upstream)
        self.assertIs(upstream.producer, self.client)
        self.assertTrue(self.client.streaming and upstream.streaming)

    def test_copyAndCount(self) -> None:
        """
        Bytes go both ways and are counted in (client to target) and out.
        """
        upstream = self.connectUpstream()
        self.protocol.dataReceived(b"request")
        self.protocol._upstream.dataReceived(b"response!")
        self.assertEqual(upstream.value(), b"request")
        self.assertEqual(self.client.value(), b"response!")
        self.assertEqual((self.protocol.bytesIn, self.protocol.bytesOut), (7, 9))

    def test_clientEofClosesBoth(self) -> None:
        """
        Client EOF closes the target side (no half-close); the totals are
        reported once both are closed.
        """
        upstream = self.connectUpstream()
        self.protocol.dataReceived(b"abc")
        self.protocol.connectionLost(Failure(Exception("eof")))
        self.assertTrue(upstream.disconnecting)
        self.assertIsNone(upstream.producer)
        self.assertEqual(self.observer.events[-1][0], "made")
        self.protocol._upstream.connectionLost(Failure(Exception("closed")))
        self.assertEqual(
            self.observer.events[-1], ("ended", "fwd", Traffic(3, 0, True))
        )

    def test_clientLeavesWhileConnecting(self) -> None:
        """
        A client that leaves before the target answers stops the connect and
        ends with connected=False and no failure report.
        """
        self.protocol.connectionLost(Failure(Exception("eof")))
        connector = self.reactor.connectors[0]
        self.assertEqual(connector.stoppedConnecting, True)
        self.assertEqual(
            self.observer.events,
            [("made", "fwd"), ("ended", "fwd", Traffic(0, 0, False))],
        )

    def test_connectFailed(self) -> None:
        """
        A failed connect reports xinetd's message, closes the client, and
        ends with connected=False once the client is gone.
        """
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[0],
            Failure(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
        )
        self.assertEqual(
            self.observer.events[1],
            (
                "failed",
                "fwd",
                "can't connect to remote host 10.0.0.9: Connection refused",
            ),
        )
        self.assertTrue(self.client.disconnecting)
        self.protocol.connectionLost(Failure(Exception("closed")))
        self.assertEqual(
            self.observer.events[-1], ("ended", "fwd", Traffic(0, 0, False))
        )

    def test_failureReasons(self) -> None:
        """
        Failures are described with strerror text, as xinetd's %m.
        """
        self.assertEqual(
            connectFailureReason(
                Failure(ConnectionRefusedError(errno.ECONNREFUSED, "x"))
            ),
            "Connection refused",
        )
        self.assertEqual(
            connectFailureReason(Failure(TimeoutError())), "Connection timed out"
        )
        self.assertEqual(
            connectFailureReason(Failure(OSError(errno.ENETUNREACH, "x"))),
            "Network is unreachable",
        )


def _freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class RealTests(TestCase):
    """
    The proxy between real loopback sockets.
    """

    def listen(self, factory: Any, interface: str = "127.0.0.1") -> int:
        port = reactor.listenTCP(0, factory, interface=interface)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def redirect(self, target: Tuple[str, int], **kw: Any):
        observer = RecordingRedirectObserver()
        built: List[Any] = []
        factory = RedirectFactory("fwd", target, reactor, observer, **kw)
        original = factory.buildProtocol

        def build(addr: Any) -> Any:
            p = original(addr)
            built.append(p)
            return p

        factory.buildProtocol = build  # type: ignore[method-assign]
        return self.listen(factory), observer, built

    def client(self, port: int, payload: bytes, closeAfter: int) -> Deferred:
        """
        Send C{payload}, close after C{closeAfter} bytes came back; fire with
        what was received.
        """
        done: Deferred = Deferred()

        class Client(Protocol):
            received = b""

            def connectionMade(self) -> None:
                self.transport.write(payload)

            def dataReceived(self, data: bytes) -> None:
                self.received += data
                if len(self.received) >= closeAfter:
                    self.transport.loseConnection()

            def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
                done.callback(self.received)

        reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(Client))
        return done

    @inlineCallbacks
    def test_roundTrip(self):
        """
        Data goes through both ways; client EOF closes both; the counts are
        reported, with TCP_NODELAY set on both sockets.
        """
        target = self.listen(ServerFactory.forProtocol(_Echo))
        port, observer, built = self.redirect(("127.0.0.1", target), keepAlive=True)
        got = yield self.client(port, b"hello", 5)
        traffic = yield observer.ended
        self.assertEqual(got, b"hello")
        self.assertEqual(traffic, Traffic(5, 5, True))
        self.assertEqual(observer.events[0], ("made", "fwd"))

    @inlineCallbacks
    def test_socketOptions(self):
        """
        TCP_NODELAY on both sides, and SO_KEEPALIVE when asked.
        """
        target = self.listen(ServerFactory.forProtocol(_Echo))
        port, observer, built = self.redirect(("127.0.0.1", target), keepAlive=True)
        done: Deferred = Deferred()
        options: List[int] = []

        class Client(Protocol):
            def dataReceived(self, data: bytes) -> None:
                proxy = built[0]
                for t in (proxy.transport, proxy._upstream.transport):
                    s = t.getHandle()
                    options.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    options.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
                self.transport.loseConnection()

            def connectionMade(self) -> None:
                self.transport.write(b"x")

            def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
                done.callback(None)

        reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(Client))
        yield done
        yield observer.ended
        self.assertEqual([bool(o) for o in options], [True] * 4)

    @inlineCallbacks
    def test_targetEofClosesBoth(self):
        """
        When the target closes after its reply, the client gets the reply
        and EOF.
        """

        class Banner(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"220 bye\r\n")
                self.transport.loseConnection()

        target = self.listen(ServerFactory.forProtocol(Banner))
        port, observer, built = self.redirect(("127.0.0.1", target))
        got = yield self.client(port, b"", 10**9)
        traffic = yield observer.ended
        self.assertEqual(got, b"220 bye\r\n")
        self.assertEqual(traffic, Traffic(0, 9, True))

    @inlineCallbacks
    def test_refused(self):
        """
        An unreachable target closes the client and reports xinetd's
        message; the totals say the target was never reached.
        """
        dead = _freePort()
        port, observer, built = self.redirect(("127.0.0.1", dead))
        got = yield self.client(port, b"lost", 10**9)
        traffic = yield observer.ended
        self.assertEqual(got, b"")
        self.assertEqual(
            observer.events[1],
            (
                "failed",
                "fwd",
                "can't connect to remote host 127.0.0.1: Connection refused",
            ),
        )
        self.assertEqual(traffic, Traffic(0, 0, False))

    @inlineCallbacks
    def test_ipv6(self):
        """
        A numeric IPv6 target works.
        """
        try:
            target = self.listen(ServerFactory.forProtocol(_Echo), interface="::1")
        except CannotListenError as e:
            raise SkipTest(f"no IPv6 loopback: {e}") from None
        port, observer, built = self.redirect(("::1", target))
        got = yield self.client(port, b"six", 3)
        self.assertEqual(got, b"six")
        yield observer.ended

    @inlineCallbacks
    def test_largeTransferBounded(self):
        """
        100 MiB pass intact while the target stalls then reads: during the
        stall, the client is paused instead of the proxy buffering.
        """
        total = 100 * 1024 * 1024
        chunk = bytes(range(256)) * 256  # 64 KiB
        state = {"sent": 0, "received": 0, "sink": None}
        finished: Deferred = Deferred()

        class Sink(Protocol):
            def connectionMade(self) -> None:
                state["sink"] = self
                self.transport.pauseProducing()  # stall: read nothing yet

            def dataReceived(self, data: bytes) -> None:
                state["received"] += len(data)
                if state["received"] >= total:
                    self.transport.loseConnection()

        @implementer(IPushProducer)
        class Source(Protocol):
            paused = False

            def connectionMade(self) -> None:
                self.transport.registerProducer(self, True)
                self.resumeProducing()

            def pauseProducing(self) -> None:
                self.paused = True

            def resumeProducing(self) -> None:
                self.paused = False
                while not self.paused and state["sent"] < total:
                    self.transport.write(chunk)
                    state["sent"] += len(chunk)
                if state["sent"] >= total:
                    self.transport.unregisterProducer()

            def stopProducing(self) -> None:
                pass

            def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
                finished.callback(None)

        target = self.listen(ServerFactory.forProtocol(Sink))
        port, observer, built = self.redirect(("127.0.0.1", target))
        reactor.connectTCP("127.0.0.1", port, ClientFactory.forProtocol(Source))

        previous, stable = -1, 0
        for _ in range(500):
            yield deferLater(reactor, 0.02, lambda: None)
            if state["sent"] == previous and state["sink"] is not None:
                stable += 1
                if stable == 10:
                    break
            else:
                stable = 0
            previous = state["sent"]
        stalledAt = state["sent"]
        # Kernel buffers of two loopback connections plus a transport
        # buffer; without back-pressure the proxy would take all 100 MiB.
        self.assertLess(stalledAt, 40 * 1024 * 1024)
        self.assertEqual(state["received"], 0)

        state["sink"].transport.resumeProducing()
        yield finished
        traffic = yield observer.ended
        self.assertEqual(state["received"], total)
        self.assertEqual(traffic, Traffic(total, 0, True))
