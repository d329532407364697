# -*- test-case-name: tests.test_protocols_redirect -*-
"""
xinetd's C{redirect}: forward each accepted TCP connection to a fixed
address and copy bytes both ways (src/redirect.c), in-process.

As in xinetd: TCP_NODELAY on both sockets (SO_KEEPALIVE too when asked),
no half-close (EOF or an error on either side closes both), the TRAFFIC
counters are bytes client->server (C{in}) and server->client (C{out}), and a
failed connect reports C{can't connect to remote host ADDR: REASON}.

Unlike xinetd's blocking child, one process serves every connection, so each
direction is flow-controlled: a side is read only while the other side's
transport is not full, and the client is not read at all until the upstream
connection exists.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Optional, Tuple

import attr
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import IAddress, IConnector, IReactorTCP
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = [
    "Traffic",
    "IRedirectObserver",
    "NullRedirectObserver",
    "RedirectFactory",
    "connectFailureReason",
]


@attr.s(frozen=True, auto_attribs=True)
class Traffic:
    """
    What one redirected connection carried.

    @ivar bytesIn: bytes from the client to the target (TRAFFIC C{in=}).
    @ivar bytesOut: bytes from the target to the client (TRAFFIC C{out=}).
    @ivar connected: whether the target was ever reached; xinetd logs
        TRAFFIC only then (its child exits after a failed connect).
    """

    bytesIn: int
    bytesOut: int
    connected: bool


class IRedirectObserver(Interface):
    """
    Told of what redirected connections do; calls must not raise.
    """

    def connectionMade(serviceId: str, peer: IAddress) -> None:
        """
        A client connection was accepted; the connect to the target starts.
        """

    def connectFailed(serviceId: str, peer: IAddress, message: str) -> None:
        """
        The target could not be reached: C{message} is xinetd's error text,
        C{can't connect to remote host ADDR: REASON}.  The client is closed.
        """

    def connectionEnded(serviceId: str, peer: IAddress, traffic: Traffic) -> None:
        """
        Both sides are closed; called exactly once per C{connectionMade}.
        """


@implementer(IRedirectObserver)
class NullRedirectObserver:
    """
    Ignores everything; the default observer.
    """

    def connectionMade(self, serviceId: str, peer: IAddress) -> None:
        pass

    def connectFailed(self, serviceId: str, peer: IAddress, message: str) -> None:
        pass

    def connectionEnded(self, serviceId: str, peer: IAddress, traffic: Traffic) -> None:
        pass


def connectFailureReason(reason: Failure) -> str:
    """
    The C{strerror} text xinetd's C{%m} would print for a failed connect.
    """
    value = reason.value
    if isinstance(value, TimeoutError):
        return os.strerror(errno.ETIMEDOUT)
    if isinstance(value, ConnectError) and isinstance(value.osError, int):
        return os.strerror(value.osError)
    if isinstance(value, OSError) and value.errno is not None:
        return os.strerror(value.errno)
    return str(value)


class RedirectFactory(ServerFactory):
    """
    The factory of one redirect service.

    @ivar serviceId: the service's C{id}, passed to the observer.
    @ivar target: C{(numericHost, port)}, IPv4 or IPv6.
    @ivar keepAlive: set SO_KEEPALIVE on both sockets (flags = KEEPALIVE).
    @ivar connectTimeout: seconds before a connect attempt is given up;
        xinetd has none but the kernel's.
    """

    protocol = None  # type: ignore[assignment]
    noisy = False

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.serviceId

    def __init__(
        self,
        serviceId: str,
        target: Tuple[str, int],
        reactor: IReactorTCP,
        observer: Optional[IRedirectObserver] = None,
        keepAlive: bool = False,
        connectTimeout: float = 30.0,
    ) -> None:
        self.serviceId = serviceId
        self.target = target
        # Any: without the zope mypy plugin, interface methods type badly.
        self.reactor: Any = reactor
        self.observer: Any = (
            observer if observer is not None else NullRedirectObserver()
        )
        self.keepAlive = keepAlive
        self.connectTimeout = connectTimeout

    def buildProtocol(self, addr: IAddress) -> RedirectProtocol:  # type: ignore[override]
        p = RedirectProtocol()
        p.factory = self
        return p


def _tuneSocket(transport: object, keepAlive: bool) -> None:
    # Not every transport (a test's) has these; a real TCP one always does.
    setNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setNoDelay is not None:
        setNoDelay(True)
    if keepAlive:
        setKeepAlive = getattr(transport, "setTcpKeepAlive", None)
        if setKeepAlive is not None:
            setKeepAlive(True)


def _close(transport: object) -> None:
    # A transport with a registered producer never finishes closing.
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()  # type: ignore[attr-defined]
    transport.loseConnection()  # type: ignore[attr-defined]


class RedirectProtocol(Protocol):
    """
    The client side of one redirected connection.

    @ivar bytesIn: bytes received from the client and sent to the target.
    @ivar bytesOut: bytes received from the target and sent to the client.
    """

    factory: RedirectFactory
    transport: Any

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.factory.serviceId

    def __init__(self) -> None:
        self.bytesIn = 0
        self.bytesOut = 0
        self._peer: Optional[IAddress] = None
        self._connector: Any = None
        self._upstream: Optional[_UpstreamProtocol] = None
        self._clientOpen = False
        self._upstreamOpen = False
        self._connecting = False
        self._connected = False
        self._ended = False

    def connectionMade(self) -> None:
        self._clientOpen = True
        self._peer = self.transport.getPeer()
        f = self.factory
        f.observer.connectionMade(f.serviceId, self._peer)
        _tuneSocket(self.transport, f.keepAlive)
        # Nothing is read from the client until there is somewhere to send it.
        self.transport.pauseProducing()
        host, port = f.target
        self._connecting = True
        self._connector = f.reactor.connectTCP(
            host, port, _UpstreamFactory(self), timeout=f.connectTimeout
        )

    def dataReceived(self, data: bytes) -> None:
        if self._upstream is None:
            return  # cannot happen while paused; never forward into nothing
        self.bytesIn += len(data)
        self._upstream.transport.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._clientOpen = False
        if self._upstream is not None and self._upstreamOpen:
            _close(self._upstream.transport)
        elif self._connector is not None and self._connecting:
            # Still connecting: give up; the failure that follows is ours.
            self._connecting = False
            self._connector.stopConnecting()
        self._maybeEnd()

    def upstreamConnected(self, upstream: _UpstreamProtocol) -> None:
        """
        The target accepted: link the two transports, each the other's
        producer, and start reading the client.
        """
        self._connecting = False
        self._upstream = upstream
        self._upstreamOpen = True
        self._connected = True
        if not self._clientOpen:
            _close(upstream.transport)
            return
        _tuneSocket(upstream.transport, self.factory.keepAlive)
        self.transport.registerProducer(upstream.transport, True)
        upstream.transport.registerProducer(self.transport, True)
        self.transport.resumeProducing()

    def upstreamData(self, data: bytes) -> None:
        """
        Bytes from the target, for the client.
        """
        self.bytesOut += len(data)
        self.transport.write(data)

    def upstreamLost(self) -> None:
        """
        The target side is closed: close the client (after what is queued).
        """
        self._upstreamOpen = False
        if self._clientOpen:
            _close(self.transport)
        self._maybeEnd()

    def connectFailed(self, reason: Failure) -> None:
        """
        The target could not be reached.
        """
        self._connecting = False
        if not self._clientOpen:
            return  # we gave up ourselves because the client left
        f = self.factory
        message = "can't connect to remote host %s: %s" % (
            f.target[0],
            connectFailureReason(reason),
        )
        f.observer.connectFailed(f.serviceId, self._peer, message)
        self.transport.loseConnection()

    def _maybeEnd(self) -> None:
        if self._ended or self._clientOpen or self._upstreamOpen:
            return
        self._ended = True
        f = self.factory
        f.observer.connectionEnded(
            f.serviceId,
            self._peer,
            Traffic(self.bytesIn, self.bytesOut, self._connected),
        )


class _UpstreamProtocol(Protocol):
    """
    The target side of one redirected connection.
    """

    transport: Any

    def __init__(self, client: RedirectProtocol) -> None:
        self._client = client

    def connectionMade(self) -> None:
        self._client.upstreamConnected(self)

    def dataReceived(self, data: bytes) -> None:
        self._client.upstreamData(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._client.upstreamLost()


class _UpstreamFactory(ClientFactory):
    noisy = False

    def __init__(self, client: RedirectProtocol) -> None:
        self._client = client

    def buildProtocol(self, addr: IAddress) -> _UpstreamProtocol:  # type: ignore[override]
        return _UpstreamProtocol(self._client)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._client.connectFailed(reason)
