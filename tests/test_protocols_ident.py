"""
Tests for L{xinetd_twisted.protocols.ident}: the RFC 1413 client.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet import error
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xinetd_twisted.protocols.ident import (
    BAD_RESPONSE,
    NO_SERVER,
    RECEIVE_ERROR,
    SYSTEM_ERROR,
    TIMEOUT,
    IdentResult,
    parseResponse,
    queryIdent,
)

reactor: Any = _reactor
LOCAL = IPv4Address("TCP", "127.0.0.1", 23)
PEER = IPv4Address("TCP", "127.0.0.2", 40000)


class ParseResponseTests(SynchronousTestCase):
    """
    Tests for L{parseResponse}, which follows xinetd's verify_line.
    """

    def test_rfcExample(self) -> None:
        """The RFC's spacing is accepted and the text kept verbatim."""
        self.assertEqual(
            parseResponse(b"40000 , 23 : USERID : UNIX : alice", 40000, 23),
            "UNIX : alice",
        )

    def test_compact(self) -> None:
        """No spaces at all is accepted too."""
        self.assertEqual(
            parseResponse(b"40000,23:USERID:UNIX:bob", 40000, 23), "UNIX:bob"
        )

    def test_wrongRemotePort(self) -> None:
        """A reply about another remote port is refused."""
        self.assertIsNone(parseResponse(b"40001,23:USERID:UNIX:bob", 40000, 23))

    def test_wrongLocalPort(self) -> None:
        """A reply about another local port is refused."""
        self.assertIsNone(parseResponse(b"40000,24:USERID:UNIX:bob", 40000, 23))

    def test_notNumber(self) -> None:
        """Ports must be numbers."""
        self.assertIsNone(parseResponse(b"x,23:USERID:UNIX:bob", 40000, 23))
        self.assertIsNone(parseResponse(b"40000,:USERID:UNIX:bob", 40000, 23))

    def test_error(self) -> None:
        """An ERROR reply is a bad response."""
        self.assertIsNone(parseResponse(b"40000, 23 : ERROR : NO-USER", 40000, 23))

    def test_noColonAfterUserid(self) -> None:
        """USERID must be followed by a colon."""
        self.assertIsNone(parseResponse(b"40000,23:USERID UNIX", 40000, 23))

    def test_emptyText(self) -> None:
        """Nothing after USERID : is a bad response."""
        self.assertIsNone(parseResponse(b"40000,23:USERID:   ", 40000, 23))

    def test_nul(self) -> None:
        """The line ends at a NUL, as in C."""
        self.assertEqual(parseResponse(b"1,2:USERID:UNIX:a\0junk", 1, 2), "UNIX:a")

    def test_bytesKept(self) -> None:
        """Non-UTF-8 bytes survive as surrogates (written back as bytes)."""
        text = parseResponse(b"1,2:USERID:OTHER:\xff", 1, 2)
        assert text is not None
        self.assertEqual(text.encode("utf-8", "surrogateescape"), b"OTHER:\xff")


class QueryTests(SynchronousTestCase):
    """
    Tests for L{queryIdent} with a memory reactor.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.results: List[IdentResult] = []

    def query(self, **kw: Any) -> None:
        d = queryIdent(self.reactor, LOCAL, PEER, identPort=1113, **kw)
        d.addCallback(self.results.append)

    def connect(self) -> Tuple[Any, StringTransport]:
        factory = self.reactor.tcpClients[0][2]
        proto: Any = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_connects(self) -> None:
        """The query goes to the peer's host from our host, port 0."""
        self.query()
        host, port, _, timeout, bindAddress = self.reactor.tcpClients[0]
        self.assertEqual(
            (host, port, bindAddress), ("127.0.0.2", 1113, ("127.0.0.1", 0))
        )
        self.assertGreater(timeout, 30)

    def test_sendsPorts(self) -> None:
        """The query is <remoteport>,<localport> CRLF, as xinetd sends it."""
        self.query()
        _, transport = self.connect()
        self.assertEqual(transport.value(), b"40000,23\r\n")

    def test_userid(self) -> None:
        """A good reply gives the text and closes the connection."""
        self.query()
        proto, transport = self.connect()
        proto.dataReceived(b"40000 , 23 : USERID : UNIX : alice\r\nrest")
        self.assertEqual(self.results, [IdentResult(userid="UNIX : alice")])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_splitReply(self) -> None:
        """A reply may come in pieces, even between CR and LF."""
        self.query()
        proto, _ = self.connect()
        for piece in (b"40000,23:USE", b"RID:UNIX:carol\r", b"\n"):
            proto.dataReceived(piece)
        self.assertEqual(self.results, [IdentResult(userid="UNIX:carol")])

    def test_badResponse(self) -> None:
        """A line that is not a matching USERID reply is a bad response."""
        self.query()
        proto, _ = self.connect()
        proto.dataReceived(b"40000, 23 : ERROR : NO-USER\r\n")
        self.assertEqual(self.results, [IdentResult(noid=BAD_RESPONSE)])

    def test_tooLong(self) -> None:
        """1024 bytes without CRLF is an error while receiving."""
        self.query()
        proto, transport = self.connect()
        proto.dataReceived(b"x" * 1023)
        self.assertEqual(self.results, [])
        proto.dataReceived(b"x\r\n")
        self.assertEqual(self.results, [IdentResult(noid=RECEIVE_ERROR)])
        self.assertTrue(transport.disconnecting)

    def test_closedEarly(self) -> None:
        """A connection closed before CRLF is an error while receiving."""
        self.query()
        proto, _ = self.connect()
        proto.dataReceived(b"40000,23:USERID:UNIX:a")
        proto.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(self.results, [IdentResult(noid=RECEIVE_ERROR)])

    def test_refused(self) -> None:
        """A refused connection means no server."""
        self.query()
        connector = self.reactor.connectors[0]
        self.reactor.tcpClients[0][2].clientConnectionFailed(
            connector, Failure(error.ConnectionRefusedError())
        )
        self.assertEqual(self.results, [IdentResult(noid=NO_SERVER)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_bindError(self) -> None:
        """Failing to bind our address is a system error."""
        self.query()
        self.reactor.tcpClients[0][2].clientConnectionFailed(
            self.reactor.connectors[0], Failure(error.ConnectBindError())
        )
        self.assertEqual(self.results, [IdentResult(noid=SYSTEM_ERROR)])

    def test_timeoutConnecting(self) -> None:
        """No connection within the timeout: timeout, connecting stopped."""
        self.query(timeout=7)
        self.reactor.advance(6.9)
        self.assertEqual(self.results, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.results, [IdentResult(noid=TIMEOUT)])
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_timeoutReading(self) -> None:
        """No reply within 30 s: timeout, connection aborted."""
        self.query()
        proto, transport = self.connect()
        self.reactor.advance(30)
        self.assertEqual(self.results, [IdentResult(noid=TIMEOUT)])
        self.assertTrue(transport.disconnected)
        # The abort's connectionLost must not fire the Deferred twice.
        proto.connectionLost(Failure(error.ConnectionAborted()))
        self.assertEqual(len(self.results), 1)

    def test_noTimeout(self) -> None:
        """timeout=None (IDONLY) schedules no timer."""
        self.query(timeout=None)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class FakeIdentd(Protocol):
    """
    Answers every query with the configured reply and records queries.
    """

    def dataReceived(self, data: bytes) -> None:
        factory: Any = self.factory
        transport: Any = self.transport
        factory.queries.append(data)
        transport.write(factory.reply)


class RealReactorTests(TestCase):
    """
    L{queryIdent} against a fake identd on 127.0.0.1.
    """

    def listen(self, reply: bytes) -> Tuple[int, List[bytes]]:
        factory: Any = Factory.forProtocol(FakeIdentd)
        factory.reply = reply
        factory.queries = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port, factory.queries

    @inlineCallbacks
    def test_userid(self) -> Any:
        """A fake identd's USERID reply comes back verbatim."""
        identPort, queries = self.listen(b"40000 , 23 : USERID : UNIX : alice\r\n")
        result = yield queryIdent(
            reactor, LOCAL, IPv4Address("TCP", "127.0.0.1", 40000), identPort=identPort
        )
        self.assertEqual(result, IdentResult(userid="UNIX : alice"))
        self.assertEqual(queries, [b"40000,23\r\n"])

    @inlineCallbacks
    def test_mappedAddresses(self) -> Any:
        """A dual-stack connection's ::ffff: addresses reach an IPv4 identd."""
        identPort, _ = self.listen(b"5,6:USERID:UNIX:bob\r\n")
        result = yield queryIdent(
            reactor,
            IPv6Address("TCP", "::ffff:127.0.0.1", 6),
            IPv6Address("TCP", "::ffff:127.0.0.1", 5),
            identPort=identPort,
        )
        self.assertEqual(result, IdentResult(userid="UNIX:bob"))

    @inlineCallbacks
    def test_noServer(self) -> Any:
        """Nobody listening means no server."""
        port = reactor.listenTCP(
            0, Factory.forProtocol(Protocol), interface="127.0.0.1"
        )
        closedPort = port.getHost().port
        yield port.stopListening()
        result = yield queryIdent(
            reactor, LOCAL, IPv4Address("TCP", "127.0.0.1", 1), identPort=closedPort
        )
        self.assertEqual(result, IdentResult(noid=NO_SERVER))
