# -*- test-case-name: tests.test_service_proxy -*-
"""
The PROXY protocol (v1 and v2) from trusted proxies (C{proxy_protocol},
our extension): a connection from a trusted address begins with a header
naming the real client, who is then the client for everything (access
control, per_source, SENSOR, logs, REMOTE_HOST).

Two readers for the two doors: L{HeaderReader} reads the header straight
from an accepted descriptor, taking exactly the header's bytes so that a
program given the socket reads the rest itself; L{ProxyHeaderFactory}
wraps a factory for connections served by Twisted transports (in-process
services, TLS: the header comes before the handshake).  Both parse with
Twisted's own parsers (L{twisted.protocols.haproxy}).
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHalfCloseableProtocol, IReadDescriptor
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.config.model import AddressEntry, ServiceConfig
from xinetd_twisted.policy.access import Refusal
from xinetd_twisted.policy.addresses import CompiledList, Peer
from xinetd_twisted.service.connection import hostOf

if TYPE_CHECKING:
    from xinetd_twisted.service.parts import ServiceParts

PROXY_REFUSED = "proxy"
"""
The FAIL reason of a trusted proxy's connection without a good header.
"""

PROXY_HEADER_TIMEOUT = 5.0
"""
Seconds a trusted proxy has to send the whole header.
"""

V1_MAX = 107
"""
The longest v1 header, CRLF included.
"""

_V1_PREFIX = b"PROXY "
_V2_PREFIX = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16

Address = Tuple[str, int]


class ProxyHeaderError(Exception):
    """
    Not a PROXY header, or a broken one.
    """


def headerLength(data: bytes) -> Optional[int]:
    """
    The length of the PROXY header C{data} begins with, or L{None} while
    too little of it has arrived to tell.

    @raise ProxyHeaderError: C{data} cannot begin a header.
    """
    if _V2_PREFIX.startswith(data[:12]):
        if len(data) < _V2_FIXED:
            return None
        return _V2_FIXED + struct.unpack("!H", data[14:16])[0]
    if _V1_PREFIX.startswith(data[:6]):
        end = data.find(b"\r\n", 0, V1_MAX)
        if end >= 0:
            return end + 2
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"no CRLF in the first {V1_MAX} bytes")
        return None
    raise ProxyHeaderError("not a PROXY header")


def _numeric(host: str) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host))
    except (OSError, ValueError):
        raise ProxyHeaderError(f"bad address {host!r}") from None


def parseHeader(header: bytes) -> Optional[Address]:
    """
    The client a whole PROXY header names, or L{None} when it names none
    (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC or UNIX): the connection is then its
    own client.

    @raise ProxyHeaderError: a broken header.
    """
    # Imported here: the haproxy package imports the endpoints module, and
    # with it pyOpenSSL (~13 MB), which a daemon without PROXY services
    # should not pay for.
    from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
    from twisted.protocols.haproxy._v1parser import V1Parser
    from twisted.protocols.haproxy._v2parser import V2Parser

    if header[:-2] == b"PROXY UNKNOWN":
        # Allowed without the rest of the line; Twisted's parser wants it.
        return None
    try:
        if header.startswith(_V1_PREFIX):
            info = V1Parser.parse(header[:-2])
        else:
            info = V2Parser.parse(header)
    except (InvalidProxyHeader, ValueError, KeyError, IndexError, struct.error):
        raise ProxyHeaderError("broken PROXY header") from None
    source = info.source
    if isinstance(source, (IPv4Address, IPv6Address)):
        if not 0 <= source.port <= 65535:
            raise ProxyHeaderError(f"bad port {source.port}")
        return (_numeric(source.host), source.port)
    return None


class TrustedProxies:
    """
    The addresses whose connections begin with a PROXY header (matched
    numerically: trust does not wait for names).
    """

    def __init__(self, entries: Tuple[AddressEntry, ...]) -> None:
        self._list = CompiledList(entries)

    @classmethod
    def forService(cls, service: ServiceConfig) -> Optional[TrustedProxies]:
        if service.proxyProtocol is None:
            return None
        return cls(service.proxyProtocol)

    def trusts(self, host: Optional[str]) -> bool:
        if host is None:
            return False
        peer = Peer.fromHost(host)
        return peer is not None and self._list.matchNumeric(peer)


def refuseProxied(parts: ServiceParts, peer: Optional[str], why: str) -> None:
    """
    Count and log (FAIL, reason C{proxy}) a trusted proxy's connection
    that brought no good header.
    """
    parts.admission.connections += 1
    parts.admission.refuse(Refusal(PROXY_REFUSED, why), peer)


@implementer(IReadDescriptor)
class HeaderReader:
    """
    Reads the PROXY header from an accepted descriptor without taking a
    byte past it: each read peeks, then takes only what belongs to the
    header (all of it while its end is not in sight), so the rest stays in
    the socket for whoever gets it.

    @ivar _fd: the descriptor (ours until handed to C{proceed}).
    """

    def __init__(
        self,
        reactor: Any,
        parts: ServiceParts,
        fd: int,
        address: object,
        proceed: Callable[[int, object], None],
    ) -> None:
        """
        @param proceed: called with the descriptor and the client's address
            once the header is read; it owns the descriptor then.
        """
        self._reactor = reactor
        self._parts = parts
        self._fd = fd
        self._address = address
        self._proceed = proceed
        self._buffer = b""
        self._timeout = reactor.callLater(PROXY_HEADER_TIMEOUT, self._timedOut)
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return f"xinetd:{self._parts.service.serviceId}"

    def doRead(self) -> None:
        sock = socket.socket(fileno=self._fd)
        try:
            try:
                peeked = sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                self._fail(f"reading the PROXY header: {e.strerror}")
                return
            if not peeked:
                self._fail("the connection closed before the PROXY header ended")
                return
            try:
                length = headerLength(self._buffer + peeked)
            except ProxyHeaderError as e:
                self._fail(str(e))
                return
            wanted = len(peeked)
            if length is not None:
                wanted = min(wanted, length - len(self._buffer))
            self._buffer += sock.recv(wanted, socket.MSG_DONTWAIT)
        finally:
            sock.detach()
        if length is not None and len(self._buffer) == length:
            self._done()

    def _done(self) -> None:
        self._stop()
        try:
            source = parseHeader(self._buffer)
        except ProxyHeaderError as e:
            self._refuse(str(e))
            return
        fd, self._fd = self._fd, -1
        self._proceed(fd, source if source is not None else self._address)

    def _timedOut(self) -> None:
        self._timeout = None
        self._fail(f"no whole PROXY header within {PROXY_HEADER_TIMEOUT:g} s")

    def _fail(self, why: str) -> None:
        self._stop()
        self._refuse(why)

    def _refuse(self, why: str) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            socket.socket(fileno=fd).close()
        refuseProxied(self._parts, hostOf(self._address), why)

    def _stop(self) -> None:
        self._reactor.removeReader(self)
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def connectionLost(self, reason: Failure) -> None:
        if self._fd >= 0:
            self._fail("the connection was lost before the PROXY header ended")


def proxyGate(
    reactor: Any, parts: ServiceParts, acceptRaw: Callable[[int, object], None]
) -> Callable[[int, object], None]:
    """
    A connection handler for L{StreamAcceptor}: connections from trusted
    proxies get their header read first, the others go straight on.
    """

    def handle(fd: int, address: object) -> None:
        trusted = parts.front.proxies
        if trusted is None or not trusted.trusts(hostOf(address)):
            acceptRaw(fd, address)
            return
        HeaderReader(reactor, parts, fd, address, acceptRaw)

    return handle


@implementer(IHalfCloseableProtocol)
class ProxyHeaderProtocol(ProtocolWrapper):
    """
    In front of a protocol served by a transport: from a trusted proxy,
    the header is read before the wrapped protocol is connected, and the
    header's client is then the transport's peer; from anyone else,
    nothing is read and nothing changes.
    """

    factory: ProxyHeaderFactory

    transport: Any
    wrappedProtocol: Any

    def __init__(self, factory: Any, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self._source: Optional[Any] = None
        self._reading = False
        self._buffer = b""
        self._timeout: Any = None

    def makeConnection(self, transport: Any) -> None:
        # Unlike ProtocolWrapper: the wrapped protocol is connected later.
        self.transport = transport
        self.connected = True
        self.factory.registerProtocol(self)
        trusted = self.factory.parts.front.proxies
        if trusted is None or not trusted.trusts(hostOf(transport.getPeer())):
            self._connectWrapped()
            return
        self._reading = True
        self._timeout = self.factory.parts.context.reactor.callLater(
            PROXY_HEADER_TIMEOUT, self._timedOut
        )

    def _connectWrapped(self) -> None:
        ProtocolWrapper.makeConnection(self, self.transport)

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        if not self._reading:
            self.wrappedProtocol.dataReceived(data)
            return
        self._buffer += data
        try:
            length = headerLength(self._buffer)
            if length is None or len(self._buffer) < length:
                return
            header, rest = self._buffer[:length], self._buffer[length:]
            source = parseHeader(header)
        except ProxyHeaderError as e:
            self._fail(str(e))
            return
        self._reading = False
        self._buffer = b""
        self._cancelTimeout()
        if source is not None:
            host, port = source
            kind = IPv6Address if ":" in host else IPv4Address
            self._source = kind("TCP", host, port)
        self._connectWrapped()
        if rest and self.connected:
            self.wrappedProtocol.dataReceived(rest)

    def getPeer(self) -> Any:
        if self._source is not None:
            return self._source
        return self.transport.getPeer()

    def _timedOut(self) -> None:
        self._timeout = None
        self._fail(f"no whole PROXY header within {PROXY_HEADER_TIMEOUT:g} s")

    def _cancelTimeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _fail(self, why: str, abort: bool = True) -> None:
        self._reading = False
        self._cancelTimeout()
        refuseProxied(self.factory.parts, hostOf(self.transport.getPeer()), why)
        if abort:
            self.transport.abortConnection()

    def readConnectionLost(self) -> None:
        wrapped = self.wrappedProtocol
        if not self._reading and IHalfCloseableProtocol.providedBy(wrapped):
            wrapped.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        wrapped = self.wrappedProtocol
        if not self._reading and IHalfCloseableProtocol.providedBy(wrapped):
            wrapped.writeConnectionLost()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._reading:
            self._fail("the connection closed before the PROXY header ended", False)
        self.connected = False
        self.factory.unregisterProtocol(self)
        if self.wrappedProtocol.transport is self:
            self.wrappedProtocol.connectionLost(reason)


class ProxyHeaderFactory(WrappingFactory):
    """
    Wraps a factory with L{ProxyHeaderProtocol}s for C{parts}' service.
    """

    protocol = ProxyHeaderProtocol
    noisy = False

    def __init__(self, parts: ServiceParts, wrappedFactory: Any) -> None:
        super().__init__(wrappedFactory)
        self.parts = parts
