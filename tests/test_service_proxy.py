"""
Tests for the PROXY header readers (L{xinetd_twisted.service.proxy}): the
header found and parsed with Twisted's parsers, on a raw descriptor
without taking a byte past it, and in front of a protocol.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.addresses import parseAddress
from xinetd_twisted.service.proxy import (
    PROXY_HEADER_TIMEOUT,
    HeaderReader,
    ProxyHeaderError,
    ProxyHeaderFactory,
    TrustedProxies,
    headerLength,
    parseHeader,
    proxyGate,
)

V2_PREFIX = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command: int = 1, family: int = 0x11, body: Optional[bytes] = None) -> bytes:
    """
    A v2 header; by default PROXY TCP4 from 192.0.2.7:4242 to 10.0.0.1:80.
    """
    if body is None:
        body = socket.inet_aton("192.0.2.7") + socket.inet_aton("10.0.0.1")
        body += struct.pack("!HH", 4242, 80)
    return (
        V2_PREFIX
        + bytes([0x20 | command, family])
        + struct.pack("!H", len(body))
        + body
    )


V1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 4242 80\r\n"


class _Admission:
    def __init__(self) -> None:
        self.connections = 0
        self.refusals: List[Tuple[str, Optional[str]]] = []

    def refuse(self, refusal: Any, peer: Optional[str]) -> None:
        self.refusals.append((refusal.reason, peer))


class _Reactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.readers: List[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        if reader in self.readers:
            self.readers.remove(reader)


class _Parts:
    """
    What the readers use of a service's parts.
    """

    def __init__(self, trusted: str = "127.0.0.1") -> None:
        class front:
            proxies = TrustedProxies(tuple(parseAddress(trusted, lambda n: [], {})))

        class service:
            serviceId = "svc"

        class context:
            reactor = _Reactor()

        self.front = front
        self.service = service
        self.context = context
        self.admission = _Admission()


class HeaderTests(SynchronousTestCase):
    """
    headerLength and parseHeader.
    """

    def test_v1Length(self) -> None:
        """
        A v1 header ends after its CRLF; bytes after it are not counted.
        """
        self.assertEqual(headerLength(V1 + b"rest"), len(V1))

    def test_v1Unfinished(self) -> None:
        """
        A v1 header without its CRLF yet needs more.
        """
        self.assertIsNone(headerLength(V1[:20]))
        self.assertIsNone(headerLength(b"PRO"))

    def test_v1TooLong(self) -> None:
        """
        No CRLF within 107 bytes is not a header.
        """
        self.assertRaises(ProxyHeaderError, headerLength, b"PROXY " + b"1" * 120)

    def test_v2Length(self) -> None:
        """
        A v2 header is its 16 bytes and the length they give.
        """
        self.assertEqual(headerLength(v2() + b"rest"), 16 + 12)
        self.assertIsNone(headerLength(v2()[:15]))

    def test_notAHeader(self) -> None:
        """
        Anything else is refused at once.
        """
        self.assertRaises(ProxyHeaderError, headerLength, b"GET / HTTP/1.0\r\n")

    def test_v1Source(self) -> None:
        """
        A v1 TCP4 header names its source.
        """
        self.assertEqual(parseHeader(V1), ("192.0.2.7", 4242))

    def test_v1TCP6(self) -> None:
        """
        A v1 TCP6 source is normalised.
        """
        header = b"PROXY TCP6 2001:db8:0::1 ::1 4242 80\r\n"
        self.assertEqual(parseHeader(header), ("2001:db8::1", 4242))

    def test_v1Unknown(self) -> None:
        """
        v1 UNKNOWN names no client.
        """
        self.assertIsNone(parseHeader(b"PROXY UNKNOWN\r\n"))

    def test_v2Source(self) -> None:
        """
        A v2 PROXY header names its source.
        """
        self.assertEqual(parseHeader(v2()), ("192.0.2.7", 4242))

    def test_v2IPv6(self) -> None:
        """
        A v2 IPv6 source is written the usual (compressed) way.
        """
        body = socket.inet_pton(socket.AF_INET6, "2001:db8::5") * 2
        body += struct.pack("!HH", 1, 2)
        self.assertEqual(parseHeader(v2(family=0x21, body=body)), ("2001:db8::5", 1))

    def test_v2Local(self) -> None:
        """
        v2 LOCAL (health checks) names no client.
        """
        self.assertIsNone(parseHeader(v2(command=0, family=0, body=b"")))

    def test_broken(self) -> None:
        """
        Broken headers raise ProxyHeaderError.
        """
        for header in (
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 x 80\r\n",
            b"PROXY TCP4 999.0.2.7 10.0.0.1 1 80\r\n",
            v2(family=0x11, body=b"\x00" * 3),
            V2_PREFIX + b"\x31\x11\x00\x00",
        ):
            self.assertRaises(ProxyHeaderError, parseHeader, header)


class HeaderReaderTests(SynchronousTestCase):
    """
    The raw door's reader, on a real socketpair.
    """

    def setUp(self) -> None:
        self.parts = _Parts()
        self.ours, self.theirs = socket.socketpair()
        self.addCleanup(self.theirs.close)
        self.proceeded: List[Tuple[int, object]] = []

    def read(self) -> HeaderReader:
        fd = self.ours.detach()
        reader = HeaderReader(
            self.parts.context.reactor,
            self.parts,  # type: ignore[arg-type]
            fd,
            ("127.0.0.1", 5555),
            lambda fd, address: self.proceeded.append((fd, address)),
        )
        return reader

    def tearDown(self) -> None:
        for fd, _ in self.proceeded:
            socket.socket(fileno=fd).close()

    def test_restStaysInTheSocket(self) -> None:
        """
        Only the header is taken: what follows is left for the program.
        """
        self.theirs.sendall(V1 + b"hello\n")
        reader = self.read()
        reader.doRead()
        ((fd, address),) = self.proceeded
        self.assertEqual(address, ("192.0.2.7", 4242))
        self.assertEqual(socket.socket(fileno=fd).recv(100), b"hello\n")
        self.proceeded = []  # closed by the socket above
        self.assertEqual(self.parts.context.reactor.readers, [])

    def test_headerInPieces(self) -> None:
        """
        A header sent in pieces is read piece by piece, then the rest
        (v2 here) is left.
        """
        header = v2()
        reader = self.read()
        for piece in (header[:5], header[5:17], header[17:] + b"rest"):
            self.theirs.sendall(piece)
            reader.doRead()
        ((fd, address),) = self.proceeded
        self.assertEqual(address, ("192.0.2.7", 4242))
        sock = socket.socket(fileno=os_dup(fd))
        self.addCleanup(sock.close)
        self.assertEqual(sock.recv(100), b"rest")

    def test_localIsTheConnection(self) -> None:
        """
        v2 LOCAL leaves the connection's own address.
        """
        self.theirs.sendall(v2(command=0, family=0, body=b""))
        self.read().doRead()
        ((_, address),) = self.proceeded
        self.assertEqual(address, ("127.0.0.1", 5555))

    def test_malformedClosesAtOnce(self) -> None:
        """
        A malformed header closes the connection at once: FAIL proxy,
        with the proxy's address.
        """
        self.theirs.sendall(b"GET / HTTP/1.0\r\n\r\n")
        self.read().doRead()
        self.assertEqual(self.proceeded, [])
        self.assertEqual(self.parts.admission.refusals, [("proxy", "127.0.0.1")])
        self.assertEqual(self.parts.admission.connections, 1)
        self.theirs.settimeout(1)
        try:
            closed = self.theirs.recv(10)
        except ConnectionResetError:
            closed = b""  # closed with our bytes unread: a reset
        self.assertEqual(closed, b"")

    def test_unfinishedTimesOut(self) -> None:
        """
        An unfinished header is given up after 5 s.
        """
        self.theirs.sendall(V1[:10])
        reader = self.read()
        reader.doRead()
        self.parts.context.reactor.advance(PROXY_HEADER_TIMEOUT - 0.1)
        self.assertEqual(self.parts.admission.refusals, [])
        self.parts.context.reactor.advance(0.2)
        self.assertEqual(self.parts.admission.refusals, [("proxy", "127.0.0.1")])
        self.assertEqual(self.parts.context.reactor.readers, [])

    def test_untrustedPassesStraightOn(self) -> None:
        """
        The gate reads nothing from addresses it does not trust.
        """
        gate = proxyGate(
            self.parts.context.reactor,
            self.parts,  # type: ignore[arg-type]
            lambda fd, address: self.proceeded.append((fd, address)),
        )
        self.theirs.sendall(V1)
        fd = self.ours.detach()
        gate(fd, ("10.9.9.9", 1))
        self.assertEqual(self.proceeded, [(fd, ("10.9.9.9", 1))])
        self.assertEqual(self.parts.context.reactor.readers, [])


def os_dup(fd: int) -> int:
    import os

    return os.dup(fd)


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.peer: Any = None
        self.made = 0

    def connectionMade(self) -> None:
        self.made += 1
        self.peer = self.transport.getPeer()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class ProxyHeaderProtocolTests(SynchronousTestCase):
    """
    The wrapper in front of protocols with transports.
    """

    def connect(
        self, host: str = "127.0.0.1"
    ) -> Tuple[Any, _Recorder, StringTransport]:
        self.parts = _Parts()
        recorder = _Recorder()
        factory = ProxyHeaderFactory(self.parts, Factory.forProtocol(lambda: recorder))  # type: ignore[arg-type]
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5555))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, recorder, transport

    def test_connectedAfterHeader(self) -> None:
        """
        The wrapped protocol is connected once the header is read, sees the
        header's client as its peer, and gets the bytes after the header.
        """
        protocol, recorder, _ = self.connect()
        self.assertEqual(recorder.made, 0)
        protocol.dataReceived(V1[:12])
        protocol.dataReceived(V1[12:] + b"hello")
        self.assertEqual(recorder.made, 1)
        self.assertEqual((recorder.peer.host, recorder.peer.port), ("192.0.2.7", 4242))
        self.assertEqual(recorder.data, b"hello")

    def test_untrustedUntouched(self) -> None:
        """
        From an untrusted address the bytes are the client's, unparsed.
        """
        protocol, recorder, _ = self.connect("10.1.1.1")
        protocol.dataReceived(V1)
        self.assertEqual(recorder.made, 1)
        self.assertEqual(recorder.data, V1)
        self.assertEqual(recorder.peer.host, "10.1.1.1")

    def test_malformed(self) -> None:
        """
        A malformed header aborts the connection with FAIL proxy.
        """
        protocol, recorder, transport = self.connect()
        protocol.dataReceived(b"HELO there\r\n")
        self.assertEqual(recorder.made, 0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.parts.admission.refusals, [("proxy", "127.0.0.1")])

    def test_timeout(self) -> None:
        """
        An unfinished header aborts the connection after 5 s.
        """
        protocol, recorder, transport = self.connect()
        protocol.dataReceived(b"PROXY TCP4")
        self.parts.context.reactor.advance(PROXY_HEADER_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.parts.admission.refusals, [("proxy", "127.0.0.1")])
