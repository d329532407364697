# -*- test-case-name: tests.test_inprocess -*-
"""
Services served inside the daemon: internal services (stream and
datagram), redirect, and the tcpmux multiplexer (which hands the chosen
sub-service's program the connection).

Connections still arrive through L{StreamAcceptor} and the shared pipeline
of L{ServiceRuntime} (banner, policy, refusal, log) before a Twisted
transport is made for them.
"""

from __future__ import annotations

import os
import socket
import weakref
from typing import Any, Dict, Iterable, Optional, Tuple

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.builtins import (
    IBuiltinObserver,
    LoopGuard,
    NullObserver,
    datagramProtocol,
    streamFactory,
)
from xinetd_twisted.builtins.formats import daytimeString, timeBytes
from xinetd_twisted.builtins.tcpmux import TcpmuxFactory
from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.sockets import numericHost
from xinetd_twisted.logs.service import wallDuration
from xinetd_twisted.protocols.redirect import (
    IRedirectObserver,
    RedirectFactory,
    Traffic,
)
from xinetd_twisted.service.banners import sendNoWait
from xinetd_twisted.service.runtime import (
    AcceptingRuntime,
    DaemonContext,
    ServiceRuntime,
)
from xinetd_twisted.spawn.interfaces import ChildSetup
from xinetd_twisted.spawn.setup import childSetupFor

_INLINE = {"daytime": daytimeString, "time": timeBytes}

FORKING_BUILTINS = frozenset({"echo", "discard", "chargen"})
"""
Internal stream services xinetd runs in a forked child: they count towards
C{instances}/C{per_source} and get an EXIT line, as there.  daytime and
time are answered inline by xinetd (START pid=0, no EXIT).
"""

DGRAM_FAIL_INTERVAL = 60.0
"""
xinetd logs a refused datagram source at most once a minute per service.
"""


def _host(peer: Any) -> Optional[str]:
    host = getattr(peer, "host", None)
    if host is None and isinstance(peer, tuple):
        host = peer[0]
    return host if isinstance(host, str) else None


class _Recording:
    """
    Builds protocols with C{factory} and remembers them (weakly), so a
    dropped service can end its connections.  adoptStreamConnection needs
    only C{buildProtocol}.
    """

    def __init__(self, factory: Any, protocols: "weakref.WeakSet[Any]") -> None:
        self._factory = factory
        self._protocols = protocols

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self._factory.buildProtocol(addr)
        if protocol is not None:
            self._protocols.add(protocol)
        return protocol


class _AdoptingRuntime(AcceptingRuntime):
    """
    A stream service whose connections become Twisted transports after the
    shared pipeline admitted them.
    """

    def _factory(self) -> Any:
        raise NotImplementedError()

    def _open(self, sock: socket.socket) -> None:
        if not hasattr(self, "_protocols"):
            self._protocols: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._family = sock.family
        self._currentFactory = self._factory()
        super()._open(sock)

    def update(self, service: ServiceConfig) -> None:
        super().update(service)
        if self.active:
            self._currentFactory = self._factory()

    def _connection(self, fd: int, address: object) -> None:
        try:
            self._admit(fd, numericHost(address), self._adopt)
        finally:
            os.close(fd)

    def _adopt(self, fd: int) -> None:
        success = self._banners.success
        if success:
            sendNoWait(fd, success)
        self._context.reactor.adoptStreamConnection(
            fd, self._family, _Recording(self._currentFactory, self._protocols)
        )

    def killChildren(self, signum: int) -> None:
        """
        The service was dropped: end its in-process connections, as xinetd
        ends the servers it forked for them (a tcpmux connection handed to a
        program is that program's, and is left alone).
        """
        super().killChildren(signum)
        for protocol in list(getattr(self, "_protocols", ())):
            transport = getattr(protocol, "transport", None)
            if transport is not None and not getattr(protocol, "handedOff", False):
                transport.abortConnection()


@implementer(IBuiltinObserver)
class InternalStreamRuntime(NullObserver, _AdoptingRuntime):
    """
    echo, discard, daytime, time, chargen over TCP, answered in-process.
    """

    def __init__(self, context: DaemonContext, service: ServiceConfig) -> None:
        super().__init__(context, service)
        self.countsInstances = service.name.lower() in FORKING_BUILTINS
        self._starts: Dict[int, float] = {}

    def _factory(self) -> Any:
        name = (
            "discard" if "SENSOR" in self.service.flags else self.service.name.lower()
        )
        return streamFactory(name, self.serviceId, self._context.reactor, observer=self)

    def _adopt(self, fd: int) -> None:
        """
        daytime and time write a few bytes and close, as xinetd does inline:
        answered straight on the descriptor, no transport is built for them.
        """
        name = self.service.name.lower()
        if name not in _INLINE or "SENSOR" in self.service.flags:
            super()._adopt(fd)
            return
        sock = socket.socket(fileno=os.dup(fd))
        try:
            peer = numericHost(sock.getpeername())
            success = self._banners.success
            payload = _INLINE[name](self._context.reactor.seconds())
            sock.send(success + payload, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except OSError:
            return
        finally:
            sock.close()
        self.log.start(0, peer)

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        host = _host(peer)
        self._starts[id(peer)] = self._context.wallClock()
        if self.countsInstances:
            self.policy.started(host)
        self.log.start(0, host)

    def connectionLost(self, serviceId: str, peer: Any, reason: Failure) -> None:
        started = self._starts.pop(id(peer), self._context.wallClock())
        if self.countsInstances:
            self.policy.ended(_host(peer))
            self.log.exit(
                0, status=0, duration=wallDuration(started, self._context.wallClock())
            )


@implementer(IBuiltinObserver)
class InternalDatagramRuntime(NullObserver, ServiceRuntime):
    """
    echo, discard, daytime, time, chargen over UDP: each datagram answered
    in-process, within the reply budget, never to a reply (loop guard).
    """

    countsInstances = False
    _port: Any = None

    def __init__(self, context: DaemonContext, service: ServiceConfig) -> None:
        super().__init__(context, service)
        self._failLogged: Dict[Tuple[str, int], float] = {}

    def _open(self, sock: socket.socket) -> None:
        guard = self._context.extras.setdefault("loopGuard", LoopGuard())
        protocol = datagramProtocol(
            self.service.name.lower(),
            self.serviceId,
            self._context.reactor,
            observer=self,
            guard=guard,
            admit=self._admitDatagram,
        )
        try:
            self._port = self._context.reactor.adoptDatagramPort(
                sock.fileno(), sock.family, protocol
            )
        finally:
            sock.close()

    def _close(self) -> None:
        if self._port is not None:
            self._port.stopListening()
            self._port = None

    def _admitDatagram(self, peer: Tuple[str, int]) -> bool:
        self.connections += 1
        refusal = self.policy.check(peer[0], self._cachedName(peer[0]))
        if refusal is None:
            return True
        now = self._context.policy.seconds()
        last = self._failLogged.get(peer)
        if last is None or now - last >= DGRAM_FAIL_INTERVAL:
            if len(self._failLogged) > 4096:
                self._failLogged.clear()
            self._failLogged[peer] = now
            self._refuse(refusal, peer[0])
        elif refusal.deactivated and refusal.deactivateUntil is not None:
            self._deactivateFor(refusal.deactivateUntil)
        return False

    def datagramServed(self, serviceId: str, peer: Tuple[str, int]) -> None:
        self.log.start(0, peer[0])


@implementer(IRedirectObserver)
class RedirectRuntime(_AdoptingRuntime):
    """
    C{redirect = host port}: a TCP proxy, with the TRAFFIC line at the end.
    """

    def __init__(self, context: DaemonContext, service: ServiceConfig) -> None:
        super().__init__(context, service)
        self._starts: Dict[int, float] = {}

    def _factory(self) -> Any:
        assert self.service.redirect is not None
        return RedirectFactory(
            self.serviceId,
            self.service.redirect,
            self._context.reactor,
            observer=self,
            keepAlive="KEEPALIVE" in self.service.flags,
        )

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        self._starts[id(peer)] = self._context.wallClock()
        self.policy.started(_host(peer))
        self.log.start(0, _host(peer))

    def connectFailed(self, serviceId: str, peer: Any, message: str) -> None:
        self.daemonLog.error("{message}", message=message)

    def connectionEnded(self, serviceId: str, peer: Any, traffic: Traffic) -> None:
        started = self._starts.pop(id(peer), self._context.wallClock())
        self.policy.ended(_host(peer))
        if traffic.connected:
            self.log.traffic(traffic.bytesIn, traffic.bytesOut)
        self.log.exit(
            0, status=0, duration=wallDuration(started, self._context.wallClock())
        )


@implementer(IBuiltinObserver)
class TcpmuxRuntime(NullObserver, _AdoptingRuntime):
    """
    The tcpmux multiplexer (RFC 1078): reads a service name and hands the
    connection to that TCPMUX/TCPMUXPLUS sub-service's program, started
    through the one spawner with the sub-service's own credentials.
    """

    def __init__(
        self,
        context: DaemonContext,
        service: ServiceConfig,
        subservices: Iterable[ServiceConfig] = (),
    ) -> None:
        self._subservices = tuple(subservices)
        self._subSetups: Dict[str, ChildSetup] = {}
        self._starts: Dict[Any, float] = {}
        super().__init__(context, service)

    def setSubservices(self, subservices: Iterable[ServiceConfig]) -> None:
        """
        Replace the selectable sub-services (reload).
        """
        self._subservices = tuple(subservices)
        self._subSetups.clear()
        if self.active:
            self._currentFactory.setSubservices(self._subservices)

    def _factory(self) -> Any:
        return TcpmuxFactory(
            self.serviceId,
            self._subservices,
            self._handoff,
            self._context.reactor,
            observer=self,
        )

    def _setupFor(self, sub: ServiceConfig) -> Optional[ChildSetup]:
        if sub.server is None:
            return None
        setup = self._subSetups.get(sub.serviceId)
        if setup is None:
            ctx = self._context
            setup = childSetupFor(
                sub,
                daemonEnviron=ctx.environ,
                daemonUmask=ctx.umask,
                isRoot=ctx.isRoot,
                nofileHardLimit=ctx.nofileHardLimit,
            )
            self._subSetups[sub.serviceId] = setup
        return setup

    def _handoff(self, sub: ServiceConfig, pipelined: bytes, transport: Any) -> None:
        self._starts.pop(transport.getPeer(), None)
        peer = _host(transport.getPeer())
        setup = self._setupFor(sub)
        if pipelined or setup is None:
            # The bytes after the name line were read by us; a child could
            # not see them.  Say so rather than lose them.
            why = "data after the service name" if pipelined else "not runnable"
            transport.write(f"-{sub.name}: {why} is not supported\r\n".encode())
            transport.loseConnection()
            return
        sock = transport.getHandle()
        reactor = self._context.reactor
        reactor.removeReader(transport)
        reactor.removeWriter(transport)
        sock.setblocking(True)
        try:
            self._spawn(sock.fileno(), peer, setup)
        finally:
            # Never loseConnection(): it would shut the child's socket down.
            sock.close()

    def connectionMade(self, serviceId: str, peer: Any) -> None:
        self._starts[peer] = self._context.wallClock()

    def connectionLost(self, serviceId: str, peer: Any, reason: Failure) -> None:
        """
        A connection that reached no sub-service (unknown name, HELP,
        refused, timed out) is logged as xinetd logs its multiplexer child,
        START and EXIT, with pid 0 since it ran in the daemon.  Handed-off
        connections are logged by the sub-service's child instead.
        """
        started = self._starts.pop(peer, self._context.wallClock())
        self.log.start(0, _host(peer))
        self.log.exit(
            0, status=0, duration=wallDuration(started, self._context.wallClock())
        )


_log = Logger()
