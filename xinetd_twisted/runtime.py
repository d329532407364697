# -*- test-case-name: tests.test_runtime -*-
"""
One running service: its socket, its children and their bookkeeping.

A L{ServiceRuntime} is the only place where a service's state lives.  The
configuration it serves (a frozen L{ServiceConfig}) can be swapped in place on
reload while the socket and the running children are kept.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable, Dict, Optional

import attr
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.sockets import SocketSpec, numericHost, openServiceSocket
from xinetd_twisted.listen.stream import StreamAcceptor
from xinetd_twisted.spawn.interfaces import ChildSetup, ISpawner
from xinetd_twisted.spawn.setup import childSetupFor


@attr.s(auto_attribs=True)
class DaemonContext:
    """
    What every service runtime shares with the daemon.

    @ivar reactor: the reactor (injected everywhere, never imported).
    @ivar spawner: the one L{ISpawner} every child goes through.
    @ivar environ: the daemon's environment at start-up (xinetd's "standard
        environment", passed to children unless C{passenv} is set).
    @ivar umask: the daemon's umask at start-up; children get it | 022
        unless the service sets C{umask}.
    @ivar isRoot: whether children may change credentials.
    @ivar nofileHardLimit: the daemon's hard RLIMIT_NOFILE, xinetd's default
        for the child's soft and hard limits.
    @ivar wallClock: seconds since the epoch (for DURATION).
    """

    reactor: object
    spawner: ISpawner
    environ: Dict[str, str]
    umask: int
    isRoot: bool
    nofileHardLimit: int
    wallClock: Callable[[], float] = time.time


class _Child(ProcessProtocol):
    """
    Follows one child from start to reaping for its service.

    @ivar _runtime: the owning service.
    @ivar peer: the client's numeric address.
    @ivar started: wall-clock start time (for DURATION).
    """

    def __init__(self, runtime: ServiceRuntime, peer: str, started: float) -> None:
        self._runtime = runtime
        self.peer = peer
        self.started = started
        self.pid: Optional[int] = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self._runtime._childStarted(self)

    def processEnded(self, reason: Failure) -> None:
        self._runtime._childEnded(self, reason)


class ServiceRuntime:
    """
    A service that spawns a program per stream connection (C{wait = no}).

    @ivar service: the configuration in force (swapped on reload).
    @ivar spec: the socket identity (kept across reloads when equal).
    @ivar running: children started and not yet reaped, by pid.
    """

    log = Logger()

    def __init__(self, context: DaemonContext, service: ServiceConfig) -> None:
        self._context = context
        self.service = service
        self.spec: Optional[SocketSpec] = None
        self._setup: ChildSetup = self._makeSetup(service)
        self._acceptor: Optional[StreamAcceptor] = None
        self.running: Dict[int, _Child] = {}
        self._pending = 0
        self.connections = 0

    def _makeSetup(self, service: ServiceConfig) -> ChildSetup:
        ctx = self._context
        return childSetupFor(
            service,
            daemonEnviron=ctx.environ,
            daemonUmask=ctx.umask,
            isRoot=ctx.isRoot,
            nofileHardLimit=ctx.nofileHardLimit,
        )

    @property
    def serviceId(self) -> str:
        return self.service.serviceId

    def activate(self) -> None:
        """
        Create and bind the socket, and start serving.

        @raise OSError: when the socket cannot be created or bound.
        """
        sock, spec, notice = openServiceSocket(self.service)
        if notice:
            self.log.info(notice)
        self.spec = spec
        self._acceptor = StreamAcceptor(
            self._context.reactor, sock, self._connection, self.serviceId
        )
        self._acceptor.startReading()
        self.log.info(
            "service {service} listening on {where}",
            service=self.serviceId,
            where=spec.describe(),
        )

    def update(self, service: ServiceConfig) -> None:
        """
        Take a new configuration in place, keeping the socket and children.
        """
        self.service = service
        self._setup = self._makeSetup(service)

    def deactivate(self) -> None:
        """
        Stop serving and close our socket.  Running children are left alone.
        """
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None

    def _connection(self, fd: int, address: object) -> None:
        """
        A client connected: give it a server.
        """
        try:
            peer = numericHost(address)
            self.connections += 1
            child = _Child(self, peer, self._context.wallClock())
            self._pending += 1
            d = self._context.spawner.spawn(
                child, self._setup, fd, (("REMOTE_HOST", peer),)
            )
        finally:
            os.close(fd)
        d.addErrback(self._spawnFailed, child)

    def _spawnFailed(self, reason: Failure, child: _Child) -> None:
        self._pending -= 1
        self.log.error(
            "{service}: fork failed: {reason}",
            service=self.serviceId,
            reason=reason.getErrorMessage(),
            event="fail",
            failReason="fork",
            peer=child.peer,
        )

    def _childStarted(self, child: _Child) -> None:
        self._pending -= 1
        assert child.pid is not None
        self.running[child.pid] = child
        self.log.info(
            "START: {service} pid={pid} from={peer}",
            service=self.serviceId,
            pid=child.pid,
            peer=child.peer,
            event="start",
        )

    def _childEnded(self, child: _Child, reason: Failure) -> None:
        if child.pid is not None:
            self.running.pop(child.pid, None)
        status: Optional[int] = None
        signal: Optional[int] = None
        value = reason.value
        if isinstance(value, ProcessDone):
            status = 0
        elif isinstance(value, ProcessTerminated):
            status = value.exitCode
            signal = value.signal
        duration = int(self._context.wallClock() - child.started)
        self.log.info(
            "EXIT: {service} status={status} signal={signal} pid={pid} "
            "duration={duration}(sec)",
            service=self.serviceId,
            status=status,
            signal=signal,
            pid=child.pid,
            duration=duration,
            event="exit",
        )

    def socketFamily(self) -> int:
        """
        The family of the bound socket (for reload decisions).
        """
        return self.spec.family if self.spec is not None else socket.AF_UNSPEC
