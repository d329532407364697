# -*- test-case-name: tests.test_service_factory -*-
"""
The factory door: every stream service's C{factory}, an
L{IProtocolFactory} that serves the service on any Twisted endpoint (TCP,
UNIX, adopted sockets, TLS) exactly as on the daemon's own socket.

Each connection's L{ServiceProtocol} holds the transport while admission
decides, then hands it to the service's kind: a program gets the plain
socket itself when there is one, or a socketpair the daemon relays (TLS);
an in-process service gets an inner protocol attached to the transport.
"""

from __future__ import annotations

import os
import socket
import sys
import weakref
from typing import TYPE_CHECKING, Any, List, Optional
from typing import Protocol as Protocol_

import attr
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocolFactory,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from xinetd_twisted.policy.access import Refusal
from xinetd_twisted.records import plainRepr
from xinetd_twisted.service.connection import hostOf
from xinetd_twisted.service.context import DescriptorBudget

if TYPE_CHECKING:
    from xinetd_twisted.service.parts import ServiceParts

_log = Logger(namespace="xinetd_twisted.service")


class IStreamKind(Interface):
    """
    What a stream kind does with a connection that arrived by the factory
    door.
    """

    def connected(protocol: ServiceProtocol) -> None:
        """
        A connection was made: admit it and serve it (attaching an inner
        protocol, taking its socket, or closing it).
        """


def plainSocket(transport: Any) -> Optional[socket.socket]:
    """
    The transport's own socket when it carries the client's bytes as they
    are (TCP, UNIX): one a child can be given.  L{None} under TLS or any
    other transport that transforms or has read from the stream.
    """
    # No transport is a ProtocolWrapper while twisted.protocols.policies is
    # not imported (what wraps imports it): not imported for every start.
    policies = sys.modules.get("twisted.protocols.policies")
    if ISSLTransport.providedBy(transport) or (
        policies is not None and isinstance(transport, policies.ProtocolWrapper)
    ):
        # A wrapper may have read bytes past what it consumed (a PROXY
        # header): the socket no longer holds the whole stream.
        return None
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    handle = getHandle()
    return handle if isinstance(handle, socket.socket) else None


def detachSocket(transport: Any, sock: socket.socket) -> int:
    """
    Take a plain socket away from its transport without shutting it down:
    the reactor stops watching it and the caller gets a blocking duplicate
    to hand on.  The transport's own descriptor is closed (never
    loseConnection: that would shut down the child's connection too).
    """
    protocol = getattr(transport, "protocol", None)
    if isinstance(protocol, ServiceProtocol):
        protocol.detached()
    reactor = getattr(transport, "reactor", None)
    if reactor is not None:
        reactor.removeReader(transport)
        reactor.removeWriter(transport)
    fd = sock.dup().detach()
    sock.close()
    os.set_blocking(fd, True)
    return fd


class Watched(Protocol_):
    """
    What L{IdleSweep} watches: a connection that notes when data arrives.
    """

    sawData: bool

    def idled(self) -> None:
        """
        It received nothing for the idle timeout: close it.
        """


class IdleSweep:
    """
    Closes the connections that received nothing for a timeout, with one
    timer for all of them (a timer per connection cost the hot path more
    than the rest of an echo).  A sweep runs every quarter of the timeout
    while connections are watched; a connection is closed after four sweeps
    in a row without data, so between the timeout and 1.25 times it.
    """

    SWEEPS = 4

    def __init__(self, clock: Any, timeout: float) -> None:
        self._clock = clock
        self._interval = timeout / self.SWEEPS
        self._watched: "weakref.WeakKeyDictionary[Watched, int]" = (
            weakref.WeakKeyDictionary()
        )
        self._timer: Any = None

    def watch(self, protocol: Watched) -> None:
        """
        Watch a new connection.
        """
        self._watched[protocol] = 0
        if self._timer is None:
            self._timer = self._clock.callLater(self._interval, self._sweep)

    def forget(self, protocol: Watched) -> None:
        """
        The connection is closed or handed to a child.
        """
        self._watched.pop(protocol, None)
        if not self._watched and self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        self._timer = None
        for protocol, quiet in list(self._watched.items()):
            if protocol.sawData:
                protocol.sawData = False
                self._watched[protocol] = 0
            elif quiet + 1 >= self.SWEEPS:
                del self._watched[protocol]
                protocol.idled()
            else:
                self._watched[protocol] = quiet + 1
        if self._watched:
            self._timer = self._clock.callLater(self._interval, self._sweep)


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False, slots=True)
class ConnectionLimits:
    """
    What bounds one connection kept in the daemon.

    @ivar descriptors: the daemon-wide budget it draws from.
    @ivar clock: schedules the idle timeout.
    @ivar idleTimeout: seconds the client may send nothing, or L{None}.
    @ivar cost: descriptors the connection holds.
    """

    descriptors: DescriptorBudget
    clock: Any
    idleTimeout: Optional[float] = None
    cost: int = 1
    sweep: Optional[IdleSweep] = attr.ib(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.idleTimeout is not None:
            object.__setattr__(self, "sweep", IdleSweep(self.clock, self.idleTimeout))

    def take(self, serviceId: str) -> bool:
        """
        Take a new connection's descriptors from the daemon's budget;
        L{False} (logged once per episode) when there are none: the caller
        closes the connection.
        """
        budget = self.descriptors
        if budget.acquire(self.cost):
            return True
        if not budget.refusedSince:
            budget.refusedSince = True
            _log.error(
                "{service}: {held} descriptors held by in-process "
                "connections (the most allowed); closing new ones",
                service=serviceId,
                held=budget.held,
            )
        return False


@implementer(IHalfCloseableProtocol, IHandshakeListener)
class ServiceProtocol(Protocol):
    """
    One connection of the factory door.  Under TLS the kind sees it only
    once the handshake has completed (a handshake that fails is refused
    with reason C{tls}); until something is attached it reads nothing
    (admission may wait for a name lookup), keeping what already arrived
    for the attached protocol, to which it then passes every event.

    @ivar inner: the attached protocol, or L{None}.
    @ivar handedOff: the connection now belongs to a child.
    """

    transport: Any

    def __init__(
        self,
        kind: IStreamKind,
        parts: Optional[ServiceParts] = None,
        limits: Optional[ConnectionLimits] = None,
    ) -> None:
        self._kind = kind
        self._parts = parts
        self._limits = limits
        self._holds = 0
        self.sawData = False
        self.inner: Optional[Protocol] = None
        self.handedOff = False
        self._pending: List[bytes] = []
        self._handshake: Any = None
        self._awaitingHandshake = False

    def connectionMade(self) -> None:
        if not self._withinLimits():
            return
        if ISSLTransport.providedBy(self.transport):
            # The handshake needs the transport reading: no pause yet.
            from xinetd_twisted.service.tls import TLS_HANDSHAKE_TIMEOUT

            self._awaitingHandshake = True
            if self._parts is not None:
                self._handshake = self._parts.context.reactor.callLater(
                    TLS_HANDSHAKE_TIMEOUT, self._handshakeTimedOut
                )
            return
        self._begin()

    def _withinLimits(self) -> bool:
        """
        Take the connection's descriptors from the daemon's budget (closing
        it when there are none) and start its idle timeout.
        """
        limits = self._limits
        if limits is None:
            return True
        if not limits.take(getattr(self.factory, "serviceId", "?")):
            self.transport.abortConnection()
            return False
        self._holds = limits.cost
        if limits.sweep is not None:
            limits.sweep.watch(self)
        return True

    def idled(self) -> None:
        """
        It received nothing for the idle timeout: close it.
        """
        if not self.handedOff and not getattr(self.inner, "handedOff", False):
            self.transport.abortConnection()

    def _release(self) -> None:
        if self._limits is not None and self._limits.sweep is not None:
            self._limits.sweep.forget(self)
        if self._holds and self._limits is not None:
            self._limits.descriptors.release(self._holds)
            self._holds = 0

    def detached(self) -> None:
        """
        The socket went to a child: the daemon holds nothing of it now.
        """
        self.handedOff = True
        self._release()

    def handshakeCompleted(self) -> None:
        if self._awaitingHandshake:
            self._awaitingHandshake = False
            self._cancelHandshakeTimeout()
            self._begin()

    def _begin(self) -> None:
        self.transport.pauseProducing()
        self._kind.connected(self)

    def _cancelHandshakeTimeout(self) -> None:
        if self._handshake is not None and self._handshake.active():
            self._handshake.cancel()
        self._handshake = None

    def _handshakeTimedOut(self) -> None:
        self._handshake = None
        if self._awaitingHandshake:
            self._handshakeFailed("the TLS handshake timed out")
            self.transport.abortConnection()

    def _handshakeFailed(self, why: str) -> None:
        self._awaitingHandshake = False
        parts = self._parts
        if parts is None:
            return
        from xinetd_twisted.service.tls import TLS_REFUSED

        peer = hostOf(self.transport.getPeer())
        parts.admission.connections += 1
        parts.admission.refuse(Refusal(TLS_REFUSED, why), peer)

    def attach(self, inner: Protocol) -> None:
        """
        Serve the connection with C{inner} from now on.
        """
        self.inner = inner
        # Resume first: the inner protocol may pause the transport again
        # (a redirect reads nothing until its upstream is connected).
        if self.transport.connected and not self.handedOff:
            self.transport.resumeProducing()
        inner.makeConnection(self.transport)
        pending, self._pending = self._pending, []
        for data in pending:
            inner.dataReceived(data)

    def dataReceived(self, data: bytes) -> None:
        self.sawData = True
        if self.inner is not None:
            self.inner.dataReceived(data)
        elif not self.handedOff:
            # Arrived with the end of the handshake, before the pause.
            self._pending.append(data)

    def readConnectionLost(self) -> None:
        inner = self.inner
        if inner is not None and IHalfCloseableProtocol.providedBy(inner):
            inner.readConnectionLost()
        else:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        inner = self.inner
        if inner is not None and IHalfCloseableProtocol.providedBy(inner):
            inner.writeConnectionLost()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._release()
        if self._awaitingHandshake:
            self._cancelHandshakeTimeout()
            self._handshakeFailed(
                "TLS handshake failed: " + reason.getErrorMessage()
                if reason is not None
                else "TLS handshake failed"
            )
        if self.inner is not None:
            self.inner.connectionLost(reason)


@implementer(IProtocolFactory)
class ServiceFactory(Factory):
    """
    A service's factory: serve it on any stream endpoint with
    C{endpoint.listen(runtime.factory)}.
    """

    noisy = False

    def __init__(
        self,
        kind: IStreamKind,
        serviceId: str,
        parts: Optional[ServiceParts] = None,
        limits: Optional[ConnectionLimits] = None,
    ) -> None:
        """
        @param parts: the service's parts, for refusals before the kind
            sees a connection (a failed TLS handshake) and the clock.
        @param limits: what bounds connections kept in the daemon.
        """
        self._kind = kind
        self._parts = parts
        self._limits = limits
        self.serviceId = serviceId

    def buildProtocol(self, addr: Optional[IAddress]) -> ServiceProtocol:
        protocol = ServiceProtocol(self._kind, self._parts, self._limits)
        protocol.factory = self
        return protocol

    def logPrefix(self) -> str:
        return f"xinetd:{self.serviceId}"


@implementer(IHalfCloseableProtocol)
class ChildRelay(Protocol):
    """
    The daemon's end of the socketpair a child got instead of a plain
    socket: bytes go both ways between it and the client's transport, each
    side the other's producer, so neither buffers without bound.
    """

    transport: Any

    def __init__(self, client: Any) -> None:
        self._client = client

    def connectionMade(self) -> None:
        self.transport.registerProducer(self._client, True)
        self._client.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self._client.write(data)

    def readConnectionLost(self) -> None:
        # The child closed its output (or exited): the client has it all.
        self._end()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._end()

    def _end(self) -> None:
        client = self._client
        if getattr(client, "producer", None) is not None:
            client.unregisterProducer()
        client.loseConnection()


@implementer(IHalfCloseableProtocol)
class ClientToChild(Protocol):
    """
    Attached to the client's transport: what the client sends goes to the
    child's socketpair; the client's half-close becomes the child's EOF.
    """

    transport: Any

    def __init__(self) -> None:
        self.child: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self.child is not None:
            self.child.write(data)

    def readConnectionLost(self) -> None:
        if self.child is not None:
            self.child.loseWriteConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        child = self.child
        if child is not None:
            if getattr(child, "producer", None) is not None:
                child.unregisterProducer()
            child.loseConnection()


class _RelayFactory(Factory):
    noisy = False

    def __init__(self, client: Any) -> None:
        self._client = client
        self.built: Optional[ChildRelay] = None

    def buildProtocol(self, addr: Optional[IAddress]) -> ChildRelay:
        self.built = ChildRelay(self._client)
        return self.built


def relayToChild(reactor: Any, protocol: ServiceProtocol, ours: socket.socket) -> None:
    """
    Relay the client connection of C{protocol} to C{ours}, the daemon's end
    of a socketpair whose other end a child has on its fds 0-2.
    """
    factory = _RelayFactory(protocol.transport)
    try:
        reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, factory)
    finally:
        ours.close()
    assert factory.built is not None
    toChild = ClientToChild()
    toChild.child = factory.built.transport
    protocol.attach(toChild)
