# -*- test-case-name: tests.test_service_tls -*-
"""
What stands in front of a stream service on its own socket (our
extensions): TLS and the PROXY header from trusted proxies.

Without either, connections take the raw fast door (L{StreamAcceptor}).
With TLS, or with PROXY for an in-process service, the socket is served
by a Twisted port and connections come in by the factory door (behind a
L{ProxyHeaderFactory} when proxies are trusted).  With PROXY for a
program, the fast door stays, the header read from the descriptor first.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from twisted.internet.main import CONNECTION_DONE
from twisted.python.failure import Failure

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.stream import StreamAcceptor

if TYPE_CHECKING:
    from xinetd_twisted.service.parts import ServiceParts
    from xinetd_twisted.service.proxy import TrustedProxies
    from xinetd_twisted.service.tls import ServiceTLS


def _trustedProxies(service: ServiceConfig) -> Optional[TrustedProxies]:
    """
    The service's trusted proxies, or L{None}: the PROXY machinery is
    imported only for a service that names some.
    """
    if service.proxyProtocol is None:
        return None
    from xinetd_twisted.service.proxy import TrustedProxies

    return TrustedProxies.forService(service)


def _serviceTLS(service: ServiceConfig) -> Optional[ServiceTLS]:
    """
    The service's TLS server side, or L{None}: the TLS machinery is
    imported only for a service that has a certificate.
    """
    if service.tlsCertificate is None:
        return None
    from xinetd_twisted.service.tls import ServiceTLS

    return ServiceTLS(service)


class ServiceFront:
    """
    A service's TLS and trusted proxies, kept across reloads (TLS files are
    read again at each one).

    @ivar tls: the TLS server side, or L{None} for plaintext.
    @ivar proxies: the trusted proxies, or L{None}.
    """

    __slots__ = ("tls", "proxies")

    def __init__(self, service: ServiceConfig) -> None:
        self.tls: Optional[ServiceTLS] = _serviceTLS(service)
        self.proxies = _trustedProxies(service)

    def reconfigure(self, service: ServiceConfig) -> None:
        """
        Take a reloaded configuration: read the TLS files again (a reload
        that turns TLS on or off rebinds the service instead).
        """
        if service.tlsCertificate is None or self.tls is None:
            self.tls = _serviceTLS(service)
        else:
            self.tls.reload(service)
        self.proxies = _trustedProxies(service)


class PortListener:
    """
    A listening socket served by a Twisted port: the same face as
    L{StreamAcceptor} for the kinds.
    """

    def __init__(self, reactor: Any, sock: socket.socket, factory: Any) -> None:
        """
        @param sock: the bound, listening socket (closed here: the port has
            its own copy).
        """
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # The daemon relays small TLS records: without this, Nagle and
            # the peer's delayed ACK cost ~40 ms per round trip.  Accepted
            # sockets inherit it.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._port = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
        finally:
            sock.close()

    @property
    def socket(self) -> socket.socket:
        return self._port.socket  # type: ignore[no-any-return]

    def startReading(self) -> None:
        self._port.startReading()

    def stopReading(self) -> None:
        self._port.stopReading()

    def close(self) -> None:
        # Closed now, not on the next turn as stopListening would: a reload
        # may bind the same port again at once.
        if self._port.connected:
            self._port.stopReading()
            self._port.connectionLost(Failure(CONNECTION_DONE))


StreamListener = Union[StreamAcceptor, PortListener]


class StreamDoors(Protocol):
    """
    The two doors of a stream kind, read when its socket is opened (the
    factory door only when something stands in front of the socket).
    """

    factory: Any

    def acceptRaw(self, fd: int, address: object) -> None: ...


def openStreamListener(
    parts: ServiceParts,
    sock: socket.socket,
    doors: StreamDoors,
    handsOffSockets: bool,
) -> StreamListener:
    """
    Serve a stream service's own listening socket, with what its front
    asks for.

    @param doors: the kind: its fast door C{acceptRaw} and its factory
        door C{factory}.
    @param handsOffSockets: the kind gives the connection's socket to a
        child (a program) rather than serving it in-process.
    """
    reactor = parts.context.reactor
    service = parts.service
    serviceId = service.serviceId
    if service.tlsCertificate is None and service.proxyProtocol is None:
        # Nothing in front: the front is not even built.
        return StreamAcceptor(reactor, sock, doors.acceptRaw, serviceId)
    front = parts.front
    if front.proxies is not None:
        from xinetd_twisted.service.proxy import ProxyHeaderFactory, proxyGate
    if front.tls is not None:
        served = front.tls.wrap(doors.factory)
        served.noisy = False
        if front.proxies is not None:
            served = ProxyHeaderFactory(parts, served)
        return PortListener(reactor, sock, served)
    if front.proxies is None:
        return StreamAcceptor(reactor, sock, doors.acceptRaw, serviceId)
    if handsOffSockets:
        return StreamAcceptor(
            reactor, sock, proxyGate(reactor, parts, doors.acceptRaw), serviceId
        )
    return PortListener(reactor, sock, ProxyHeaderFactory(parts, doors.factory))


class OwnListener:
    """
    A stream kind's listener on its own socket: opened, paused, resumed and
    closed for the kind.

    @ivar family: the socket's family (to adopt accepted descriptors).
    """

    __slots__ = ("_parts", "_doors", "_handsOff", "_listener", "family")

    def __init__(
        self,
        parts: ServiceParts,
        doors: StreamDoors,
        handsOffSockets: bool,
    ) -> None:
        """
        @param doors: the kind (its doors are read when a socket is opened,
            so a kind may build its factory door only when asked for it).
        """
        self._parts = parts
        self._doors = doors
        self._handsOff = handsOffSockets
        self._listener: Optional[StreamListener] = None
        self.family = socket.AF_INET

    def open(self, sock: socket.socket) -> None:
        """
        Serve C{sock}.
        """
        self.family = sock.family
        self._listener = openStreamListener(
            self._parts, sock, self._doors, self._handsOff
        )
        self._listener.startReading()

    @property
    def socket(self) -> Optional[socket.socket]:
        """
        The listening socket while open.
        """
        return None if self._listener is None else self._listener.socket

    def close(self) -> None:
        """
        Stop serving and close our descriptor.
        """
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def pause(self) -> None:
        """
        Stop accepting for a while.
        """
        if self._listener is not None:
            self._listener.stopReading()

    def resume(self) -> None:
        """
        Accept again.
        """
        if self._listener is not None:
            self._listener.startReading()


class OwnSocketKind:
    """
    What a stream kind does with its own socket, through its
    L{OwnListener} (C{self._own}, set by the kind).
    """

    _own: OwnListener

    def open(self, sock: socket.socket) -> None:
        self._own.open(sock)

    @property
    def listeningSocket(self) -> Optional[socket.socket]:
        return self._own.socket

    def close(self) -> None:
        self._own.close()

    def pause(self) -> None:
        self._own.pause()

    def resume(self) -> None:
        self._own.resume()
