"""
Tests for L{xinetd_twisted.builtins.stream} and the lookup in
L{xinetd_twisted.builtins}.
"""

from __future__ import annotations

import calendar
from typing import Any, List, Tuple

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from xinetd_twisted.builtins import (
    IBuiltinObserver,
    NullObserver,
    UnknownBuiltin,
    streamFactory,
)
from xinetd_twisted.builtins.formats import ChargenRing, globalChargenRing
from xinetd_twisted.builtins.stream import ChargenProtocol

from .test_builtins_formats import FIRST_LINE, useTimeZone

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


@implementer(IBuiltinObserver)
class RecordingObserver:
    """
    Records every observer call as a tuple.
    """

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        self.events.append(("made", serviceId, peer))

    def connectionLost(self, serviceId: str, peer: Any, reason: Failure) -> None:
        self.events.append(("lost", serviceId, peer))

    def datagramServed(self, serviceId: str, peer: Tuple[str, int]) -> None:
        self.events.append(("served", serviceId, peer))

    def datagramRefused(
        self, serviceId: str, peer: Tuple[str, int], reason: str
    ) -> None:
        self.events.append(("refused", serviceId, peer, reason))


def connect(name: str, clock: Any = None, observer: Any = None, ring: Any = None):
    """
    Build the C{name} service and connect it to a L{StringTransport}.
    """
    factory = streamFactory(name, name + "-id", clock or Clock(), observer, ring)
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, transport


class LookupTests(SynchronousTestCase):
    def test_unknown(self) -> None:
        """
        An unknown name (xinetd's removed 'servers') raises UnknownBuiltin.
        """
        self.assertRaises(UnknownBuiltin, streamFactory, "servers", "s", Clock())

    def test_observerInterfaces(self) -> None:
        """
        The null and the test observer provide IBuiltinObserver.
        """
        verifyObject(IBuiltinObserver, NullObserver())
        verifyObject(IBuiltinObserver, RecordingObserver())

    def test_observed(self) -> None:
        """
        The observer hears of each connection's start and end, with the
        service id and peer.
        """
        observer = RecordingObserver()
        protocol, transport = connect("discard", observer=observer)
        protocol.connectionLost(Failure(Exception("gone")))
        self.assertEqual(
            observer.events,
            [("made", "discard-id", PEER), ("lost", "discard-id", PEER)],
        )


class EchoTests(SynchronousTestCase):
    def test_echoes(self) -> None:
        """
        Every byte received is written back.
        """
        protocol, transport = connect("echo")
        protocol.dataReceived(b"hello ")
        protocol.dataReceived(b"world")
        self.assertEqual(transport.value(), b"hello world")
        self.assertFalse(transport.disconnecting)

    def test_backPressure(self) -> None:
        """
        The transport is registered as its own streaming producer, so it stops
        reading while its write buffer is full.
        """
        protocol, transport = connect("echo")
        self.assertIs(transport.producer, transport)
        self.assertTrue(transport.streaming)

    def test_halfClose(self) -> None:
        """
        A client half-close unregisters the producer and closes after
        flushing.
        """
        protocol, transport = connect("echo")
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))
        protocol.dataReceived(b"last")
        protocol.readConnectionLost()
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"last")


class DiscardTests(SynchronousTestCase):
    def test_discards(self) -> None:
        """
        Nothing is written back; a half-close closes.
        """
        protocol, transport = connect("discard")
        protocol.dataReceived(b"x" * 5000)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        protocol.readConnectionLost()
        self.assertTrue(transport.disconnecting)


class DaytimeTimeTests(SynchronousTestCase):
    def test_daytime(self) -> None:
        """
        Daytime writes the time of the injected clock in xinetd's format and
        closes.
        """
        useTimeZone(self, "UTC")
        clock = Clock()
        clock.advance(calendar.timegm((2026, 11, 26, 3, 0, 5, 0, 0, 0)) + 0.25)
        protocol, transport = connect("daytime", clock=clock)
        self.assertEqual(transport.value(), b"26 NOV 2026 03:00:05 UTC\r\n")
        self.assertTrue(transport.disconnecting)

    def test_time(self) -> None:
        """
        Time writes 4 big-endian bytes of the injected clock and closes.
        """
        clock = Clock()
        clock.advance(1795665600.5)
        protocol, transport = connect("time", clock=clock)
        self.assertEqual(
            transport.value(), (1795665600 + 2208988800).to_bytes(4, "big")
        )
        self.assertTrue(transport.disconnecting)


class ChargenTests(SynchronousTestCase):
    def test_pullProducer(self) -> None:
        """
        Chargen registers as a pull producer and writes only when asked, a
        bounded batch of whole lines each time.
        """
        protocol, transport = connect("chargen", ring=ChargenRing())
        self.assertIs(transport.producer, protocol)
        self.assertFalse(transport.streaming)
        self.assertEqual(transport.value(), b"")
        protocol.resumeProducing()
        first = transport.value()
        self.assertTrue(first.startswith(FIRST_LINE))
        self.assertLess(len(first), 64 * 1024)
        self.assertEqual(len(first) % 74, 0)
        protocol.resumeProducing()
        self.assertEqual(transport.value(), first * 2)

    def test_continuous(self) -> None:
        """
        The stream is the ring's lines in order.
        """
        protocol, transport = connect("chargen", ring=ChargenRing())
        for _ in range(3):
            protocol.resumeProducing()
        data = transport.value()
        ring = ChargenRing()
        expected = b"".join(ring.nextLine() for _ in range(len(data) // 74))
        self.assertEqual(data, expected)

    def test_startsAtSharedPosition(self) -> None:
        """
        A connection starts at the shared ring's position but does not move
        it (xinetd's child moves only its copy).
        """
        shared = ChargenRing(40)
        protocol, transport = connect("chargen", ring=shared)
        protocol.resumeProducing()
        self.assertEqual(transport.value()[:74], ChargenRing(40).nextLine())
        self.assertEqual(shared.position, 40)

    def test_defaultRing(self) -> None:
        """
        Without a ring the process-wide one is used.
        """
        protocol, transport = connect("chargen")
        self.assertEqual(protocol._ring.position, globalChargenRing.position)

    def test_inputIgnored(self) -> None:
        """
        Input and a client half-close neither stop nor change the stream.
        """
        protocol, transport = connect("chargen", ring=ChargenRing())
        protocol.dataReceived(b"junk")
        protocol.readConnectionLost()
        self.assertFalse(transport.disconnecting)
        protocol.resumeProducing()
        self.assertTrue(transport.value().startswith(FIRST_LINE))


@implementer(IHalfCloseableProtocol)
class _Collector(Protocol):
    """
    A client that sends C{payload}, half-closes, and collects the reply.
    """

    def __init__(self, payload: bytes, done: Deferred) -> None:
        self.payload = payload
        self.done = done
        self.received: List[bytes] = []

    def connectionMade(self) -> None:
        self.transport.write(self.payload)
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.done.callback(b"".join(self.received))


class _Factory(ClientFactory):
    def __init__(self, make):
        self.make = make

    def buildProtocol(self, addr):
        return self.make()


class RealSocketTests(TestCase):
    """
    The services on real loopback sockets.
    """

    def listen(self, name: str, factory: Any = None) -> int:
        factory = factory or streamFactory(name, name, reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def roundTrip(self, portNumber: int, payload: bytes) -> Deferred:
        done: Deferred = Deferred()
        reactor.connectTCP(
            "127.0.0.1", portNumber, _Factory(lambda: _Collector(payload, done))
        )
        return done

    @inlineCallbacks
    def test_echoHalfCloseSameRead(self):
        """
        A short message and the half-close arriving together are both
        honoured: the whole message comes back, then EOF (wire.Echo loses
        it).
        """
        got = yield self.roundTrip(self.listen("echo"), b"ping\n")
        self.assertEqual(got, b"ping\n")

    @inlineCallbacks
    def test_echoLargeHalfClose(self):
        """
        4 MiB sent then half-closed come back complete and in order.
        """
        payload = bytes(range(256)) * (4 * 4096)
        got = yield self.roundTrip(self.listen("echo"), payload)
        self.assertEqual(len(got), len(payload))
        self.assertEqual(got, payload)

    @inlineCallbacks
    def test_chargenBackPressure(self):
        """
        A client that never reads makes chargen stop writing: the amount
        written settles instead of growing without bound.
        """
        written: List[int] = [0]
        protocols: List[Protocol] = []

        class Counting(ChargenProtocol):
            def resumeProducing(self) -> None:
                before = len(self._ring.cycle())
                written[0] += before * 9
                ChargenProtocol.resumeProducing(self)

        factory = streamFactory("chargen", "chargen", reactor)
        factory.protocolClass = Counting

        class Stalled(Protocol):
            def connectionMade(self) -> None:
                self.transport.pauseProducing()
                protocols.append(self)

        reactor.connectTCP(
            "127.0.0.1", self.listen("chargen", factory), _Factory(Stalled)
        )
        previous = -1
        stable = 0
        for _ in range(200):
            yield deferLater(reactor, 0.02, lambda: None)
            if written[0] == previous and written[0] > 0:
                stable += 1
                if stable == 5:
                    break
            else:
                stable = 0
            previous = written[0]
        self.assertEqual(stable, 5, "chargen never stopped writing")
        self.assertLess(written[0], 64 * 1024 * 1024)
        for p in protocols:
            p.transport.abortConnection()
        yield deferLater(reactor, 0.05, lambda: None)
