# -*- test-case-name: tests.test_builtins_xinetd -*-
"""
The stream kinds served inside the daemon: internal services, redirect,
and the tcpmux multiplexer (which hands the chosen sub-service's program
the connection).  The datagram internal services are in
L{xinetd_twisted.service.internaldatagram}.

Stream connections arrive by either door (our own socket, or the factory
from any endpoint), go through the service's admission, then get an inner
protocol from the builtins, the redirect relay or tcpmux; on the fast
door daytime and time are answered inline and echo and discard served on
the bare descriptor (L{xinetd_twisted.service.rawstream}).
"""

from __future__ import annotations

import _signal
import functools
import os
import socket
from typing import Any, Callable, Dict, Iterable, Optional

from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.builtins import (
    IBuiltinObserver,
    NullObserver,
    streamFactory,
)
from xinetd_twisted.builtins.formats import PerSecond, daytimeString, timeBytes
from xinetd_twisted.builtins.tcpmux import TcpmuxFactory
from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.sockets import numericHost
from xinetd_twisted.logs.service import wallDuration
from xinetd_twisted.policy.access import Refusal
from xinetd_twisted.protocols.redirect import (
    IRedirectObserver,
    RedirectFactory,
    Traffic,
)
from xinetd_twisted.service.connection import Connection, hostOf
from xinetd_twisted.service.duration import LimitedConnections
from xinetd_twisted.service.factory import (
    ConnectionLimits,
    IStreamKind,
    ServiceFactory,
    ServiceProtocol,
    detachSocket,
    plainSocket,
)
from xinetd_twisted.service.front import OwnListener, OwnSocketKind
from xinetd_twisted.service.identity import identThenServe
from xinetd_twisted.service.internaldatagram import InternalDatagramKind
from xinetd_twisted.service.parts import ServiceParts
from xinetd_twisted.service.program import setupFor
from xinetd_twisted.service.rawstream import RawDoor
from xinetd_twisted.spawn.interfaces import ChildSetup

_INLINE = {"daytime": PerSecond(daytimeString), "time": PerSecond(timeBytes)}

_RAW = frozenset({"echo", "discard"})


def _handedOff(protocol: Any) -> bool:
    inner = getattr(protocol, "inner", None)
    return bool(
        getattr(protocol, "handedOff", False) or getattr(inner, "handedOff", False)
    )


def replyAndClose(fd: int, data: bytes) -> bool:
    """
    Write C{data} (a few bytes: far below the smallest send buffer Linux
    allows, so on a just-accepted socket it cannot block) to the client on
    C{fd}, then close C{fd}, at once: the client's EOF leaves before the
    bookkeeping.  A plain C{write} when SIGPIPE is ignored (as Python sets
    it, unless the application around the daemon changed it): no socket
    object, no C{getsockname}; otherwise a C{send} with C{MSG_NOSIGNAL}, so
    a client that reset its connection can never kill the daemon.

    @return: whether the reply was written.
    """
    try:
        # _signal: signal.getsignal wraps the answer in an enum (1 us).
        if _signal.getsignal(_signal.SIGPIPE) == _signal.SIG_IGN:
            os.write(fd, data)
        else:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.send(data, socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


@implementer(IStreamKind)
class InProcessStreamKind(OwnSocketKind):
    """
    What the in-process stream kinds share: both doors, admission, then an
    inner protocol from L{innerFactory}.

    @ivar factory: the factory door.
    """

    def __init__(self, parts: ServiceParts) -> None:
        self._parts = parts
        # Weakly held, each closed after max_duration.
        self._protocols = LimitedConnections(
            parts.context.reactor, lambda: self._parts.service
        )
        self._inner = self.innerFactory()
        serviceId = parts.service.serviceId
        # One set of bounds (descriptor budget, idle sweep) for both doors.
        self._limits = self.limits()
        self.factory = ServiceFactory(self, serviceId, parts, self._limits)
        self._admittedFactory = ServiceFactory(
            _Admitted(self), serviceId, parts, self._limits
        )
        self._own = OwnListener(parts, self, False)

    def innerFactory(self) -> Any:
        """
        The factory of the protocols that serve admitted connections.
        """
        raise NotImplementedError()

    def limits(self) -> ConnectionLimits:
        """
        What bounds one in-process connection: the daemon's descriptor
        budget and, for services a client only talks to, an idle timeout.
        """
        context = self._parts.context
        return ConnectionLimits(context.descriptors, context.reactor, None, 1)

    def serveAdmitted(self, protocol: ServiceProtocol) -> None:
        """
        Attach an inner protocol to an admitted connection's protocol.
        """
        inner = self._inner.buildProtocol(protocol.transport.getPeer())
        self._protocols.add(protocol)
        protocol.attach(inner)

    def update(self, service: ServiceConfig) -> None:
        self._inner = self.innerFactory()

    def endConnections(self) -> None:
        """
        The service was removed: end its in-process connections, as xinetd
        ends the servers it forked for them (a tcpmux connection handed to
        a program is that program's, and is left alone).
        """
        for protocol in list(self._protocols):
            transport = getattr(protocol, "transport", None)
            if transport is not None and not _handedOff(protocol):
                transport.abortConnection()

    # --- the fast door -----------------------------------------------------

    def acceptRaw(self, fd: int, address: object) -> None:
        try:
            connection = Connection.fromDescriptor(
                fd, address, self._own.family, self._parts.seconds()
            )
        except BaseException:
            os.close(fd)
            raise
        try:
            self._parts.admission.admit(
                connection, lambda admitted: self._admitted(admitted, self.adopt)
            )
        finally:
            # Closed unless a door took it (Connection.take).
            if connection.fd >= 0:
                os.close(connection.fd)

    def _admitted(
        self, connection: Connection, serve: Callable[[Connection], None]
    ) -> None:
        if "USERID" in self._parts.service.logOnSuccess:
            identThenServe(self._parts, connection, serve)
            return
        connection.send(self._parts.admission.banners.success)
        serve(connection)

    def adopt(self, connection: Connection) -> None:
        """
        Make an admitted raw connection a transport served by the inner
        protocol.
        """
        self._parts.context.reactor.adoptStreamConnection(
            connection.fd, self._own.family, self._admittedFactory
        )

    # --- the factory door --------------------------------------------------

    def connected(self, protocol: ServiceProtocol) -> None:
        transport = protocol.transport
        connection = Connection.fromTransport(transport, self._parts.seconds())

        def attach(admitted: Connection) -> None:
            if transport.connected:
                self.serveAdmitted(protocol)

        self._parts.admission.admit(
            connection, lambda admitted: self._admitted(admitted, attach)
        )


@implementer(IStreamKind)
class _Admitted:
    """
    The kind of the fast door's adopted transports: admission already ran.
    """

    def __init__(self, kind: InProcessStreamKind) -> None:
        self._kind = kind

    def connected(self, protocol: ServiceProtocol) -> None:
        self._kind.serveAdmitted(protocol)


@implementer(IBuiltinObserver)
class InternalStreamKind(NullObserver, InProcessStreamKind):
    """
    echo, discard, daytime, time, chargen over TCP, answered in-process.
    """

    def __init__(self, parts: ServiceParts) -> None:
        self._starts: Dict[int, float] = {}
        InProcessStreamKind.__init__(self, parts)
        self._raw = RawDoor(
            parts.context.reactor,
            self._limits,
            self._protocols,
            self.began,
            self.ended,
        )
        self._door = self._fastDoor()
        self._inlineReply = self._inlineFor(parts.service)

    def limits(self) -> ConnectionLimits:
        """
        echo and discard connections that send nothing for
        L{DaemonContext.idleTimeout} are closed; chargen streams to a
        silent client, daytime and time close at once.
        """
        context = self._parts.context
        name = self._parts.service.name.lower()
        idle = context.idleTimeout if name in ("echo", "discard", "sensor") else None
        return ConnectionLimits(context.descriptors, context.reactor, idle, 1)

    def innerFactory(self) -> Any:
        service = self._parts.service
        name = "discard" if "SENSOR" in service.flags else service.name.lower()
        return streamFactory(
            name, service.serviceId, self._parts.context.reactor, observer=self
        )

    def update(self, service: ServiceConfig) -> None:
        super().update(service)
        self._door = self._fastDoor()
        self._inlineReply = self._inlineFor(service)

    def adopt(self, connection: Connection) -> None:
        """
        Serve an admitted connection of the fast door: see L{_fastDoor}.
        """
        self._door(connection)

    def _fastDoor(self) -> Callable[[Connection], None]:
        """
        How the fast door serves this service: daytime and time write a
        few bytes and close, as xinetd does inline, straight on the
        descriptor; echo and discard are served on the bare descriptor
        (L{RawDoor}); chargen and SENSOR services get a transport.
        """
        service = self._parts.service
        name = service.name.lower()
        if "SENSOR" in service.flags:
            return super().adopt
        if name in _INLINE:
            return functools.partial(self._answerInline, _INLINE[name])
        if name in _RAW:
            return functools.partial(self._serveRaw, name == "echo")
        return super().adopt

    @staticmethod
    def _inlineFor(service: ServiceConfig) -> Optional[Callable[[float], bytes]]:
        # daytime and time: answered by acceptRaw when admission is plain.
        if "SENSOR" in service.flags:
            return None
        return _INLINE.get(service.name.lower())

    def _serveRaw(self, echo: bool, connection: Connection) -> None:
        self._raw.serve(connection, self._parts.service.serviceId, echo)

    def acceptRaw(self, fd: int, address: object) -> None:
        """
        daytime and time with a plain admission (L{Admission.plain}) are
        answered without a L{Connection}; anything else takes the general
        fast door.
        """
        reply = self._inlineReply
        peer = hostOf(address) if reply is not None else None
        admission = self._parts.admission
        if peer is None or not admission.plain:
            InProcessStreamKind.acceptRaw(self, fd, address)
            return
        try:
            refusal = admission.admitPlain(peer)
        except BaseException:
            os.close(fd)
            raise
        if refusal is None:
            self._replyOn(reply, fd, peer)  # type: ignore[arg-type]
        else:
            self._refusePlain(fd, address, refusal)

    def _refusePlain(self, fd: int, address: object, refusal: Refusal) -> None:
        try:
            connection = Connection.fromDescriptor(
                fd, address, self._own.family, self._parts.seconds()
            )
            self._parts.admission.refuseConnection(connection, refusal)
        finally:
            os.close(fd)

    def _answerInline(
        self, reply: Callable[[float], bytes], connection: Connection
    ) -> None:
        self._replyOn(reply, connection.take(), numericHost(connection.remote))

    def _replyOn(self, reply: Callable[[float], bytes], fd: int, peer: str) -> None:
        if not replyAndClose(fd, reply(self._parts.context.reactor.seconds())):
            return
        parts = self._parts
        parts.context.hooks.connection(parts.service.serviceId)
        parts.log.start(0, peer)

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        self._starts[id(peer)] = self.began(peer)

    def connectionLost(self, serviceId: str, peer: Any, reason: Failure) -> None:
        self.ended(peer, self._starts.pop(id(peer), self._parts.context.wallClock()))

    def began(self, peer: Any) -> float:
        """
        A connection from C{peer} is being served, by either door: count
        it, log START; its start time on the wall clock.
        """
        parts = self._parts
        if parts.children.countsInstances:
            parts.admission.policy.started(hostOf(peer))
        parts.context.hooks.connection(parts.service.serviceId)
        parts.log.start(0, peer)
        return parts.context.wallClock()

    def ended(self, peer: Any, started: float) -> None:
        """
        The connection from C{peer}, served since C{started}, is closed:
        uncount it, log EXIT.
        """
        parts = self._parts
        if parts.children.countsInstances:
            parts.admission.policy.ended(hostOf(peer))
            parts.log.exit(
                0,
                status=0,
                duration=wallDuration(started, parts.context.wallClock()),
                peer=peer,
            )


@implementer(IRedirectObserver)
class RedirectKind(InProcessStreamKind):
    """
    C{redirect = host port}: a TCP proxy, with the TRAFFIC line at the end.
    """

    def __init__(self, parts: ServiceParts) -> None:
        self._starts: Dict[int, float] = {}
        InProcessStreamKind.__init__(self, parts)

    def innerFactory(self) -> Any:
        service = self._parts.service
        assert service.redirect is not None
        return RedirectFactory(
            service.serviceId,
            service.redirect,
            self._parts.context.reactor,
            observer=self,
            keepAlive="KEEPALIVE" in service.flags,
        )

    def limits(self) -> ConnectionLimits:
        """
        A relayed connection holds two descriptors; it is never cut for
        being idle (a quiet login session is no attack).
        """
        context = self._parts.context
        return ConnectionLimits(context.descriptors, context.reactor, None, 2)

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        parts = self._parts
        self._starts[id(peer)] = parts.context.wallClock()
        parts.admission.policy.started(hostOf(peer))
        parts.context.hooks.connection(serviceId)
        parts.log.start(0, peer)

    def connectFailed(self, serviceId: str, peer: Any, message: str) -> None:
        self._parts.daemonLog.error("{message}", message=message)

    def connectionEnded(self, serviceId: str, peer: Any, traffic: Traffic) -> None:
        parts = self._parts
        started = self._starts.pop(id(peer), parts.context.wallClock())
        parts.admission.policy.ended(hostOf(peer))
        if traffic.connected:
            parts.log.traffic(traffic.bytesIn, traffic.bytesOut, peer=peer)
        parts.log.exit(
            0,
            status=0,
            duration=wallDuration(started, parts.context.wallClock()),
            peer=peer,
        )


@implementer(IBuiltinObserver)
class TcpmuxKind(NullObserver, InProcessStreamKind):
    """
    The tcpmux multiplexer (RFC 1078): reads a service name and hands the
    connection to that TCPMUX/TCPMUXPLUS sub-service's program, started
    through the one spawner with the sub-service's own credentials.
    """

    def __init__(
        self, parts: ServiceParts, subservices: Iterable[ServiceConfig] = ()
    ) -> None:
        self._subservices = tuple(subservices)
        self._subSetups: Dict[str, ChildSetup] = {}
        self._starts: Dict[Any, float] = {}
        InProcessStreamKind.__init__(self, parts)

    def setSubservices(self, subservices: Iterable[ServiceConfig]) -> None:
        """
        Replace the selectable sub-services (reload).
        """
        self._subservices = tuple(subservices)
        self._subSetups.clear()
        self._inner.setSubservices(self._subservices)

    def innerFactory(self) -> Any:
        return TcpmuxFactory(
            self._parts.service.serviceId,
            self._subservices,
            self._handoff,
            self._parts.context.reactor,
            observer=self,
        )

    def _setupFor(self, sub: ServiceConfig) -> Optional[ChildSetup]:
        if sub.server is None:
            return None
        setup = self._subSetups.get(sub.serviceId)
        if setup is None:
            setup = setupFor(self._parts.context, sub)
            self._subSetups[sub.serviceId] = setup
        return setup

    def _handoff(self, sub: ServiceConfig, pipelined: bytes, transport: Any) -> None:
        self._starts.pop(transport.getPeer(), None)
        peer = hostOf(transport.getPeer())
        # The wait for the name line is over: from here the sub-service's
        # child is counted (or, refused, nothing is).
        self._parts.admission.policy.ended(peer)
        setup = self._setupFor(sub)
        sock = plainSocket(transport)
        if pipelined or setup is None or sock is None:
            # The bytes after the name line were read by us; a child could
            # not see them.  Say so rather than lose them.
            why = (
                "data after the service name"
                if pipelined
                else "not runnable"
                if setup is None
                else "this transport"
            )
            transport.write(f"-{sub.name}: {why} is not supported\r\n".encode())
            transport.loseConnection()
            return
        fd = detachSocket(transport, sock)
        try:
            self._parts.children.spawn(fd, peer, setup, self._parts.seconds())
        finally:
            os.close(fd)

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        # Waiting for its name line, a connection holds a descriptor as
        # xinetd's forked multiplexer holds a process: it counts.
        self._starts[peer] = self._parts.context.wallClock()
        self._parts.admission.policy.started(hostOf(peer))

    def connectionLost(self, serviceId: str, peer: Any, reason: Failure) -> None:
        """
        A connection that reached no sub-service (unknown name, HELP,
        refused, timed out) is logged as xinetd logs its multiplexer child,
        START and EXIT, with pid 0 since it ran in the daemon.  Handed-off
        connections are logged by the sub-service's child instead.
        """
        parts = self._parts
        started = self._starts.pop(peer, parts.context.wallClock())
        parts.admission.policy.ended(hostOf(peer))
        parts.log.start(0, peer)
        parts.log.exit(
            0,
            status=0,
            duration=wallDuration(started, parts.context.wallClock()),
            peer=peer,
        )


__all__ = [
    "InternalStreamKind",
    "InternalDatagramKind",
    "RedirectKind",
    "TcpmuxKind",
]
