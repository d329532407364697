# -*- test-case-name: tests.test_service_factory -*-
"""
What every service runtime shares with the daemon: one typed, immutable
L{DaemonContext} of named parts (the loop guard, the ident limiter, the log
sink pool, the hooks), built once by the daemon.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Mapping, Optional

import attr
from zope.interface import Interface, implementer

from xinetd_twisted.config.model import FileLog, ServiceConfig
from xinetd_twisted.logs.sinks import LogSink, SyslogConnection, openSink
from xinetd_twisted.policy.access import PolicyContext
from xinetd_twisted.records import plainRepr
from xinetd_twisted.spawn.interfaces import ISpawner

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from xinetd_twisted.builtins.datagram import AmplificationBudget, LoopGuard
    from xinetd_twisted.protocols.names import ReverseResolver

IDENT_ON_FAILURE_LIMIT = 15
"""
Most ident queries for refused clients in flight at once (xinetd's
C{-logprocs} default).
"""


class IServiceHooks(Interface):
    """
    Told of what every service does, for counters such as metrics.  Calls
    must be cheap and must not raise.
    """

    def connection(serviceId: str) -> None:
        """
        A connection (or datagram) was handed to a server or an in-process
        handler.
        """

    def refused(serviceId: str, reason: str) -> None:
        """
        A connection was refused with xinetd's FAIL C{reason}.
        """

    def serverStarted(serviceId: str) -> None:
        """
        A server (a child) started.
        """

    def spawnDuration(seconds: float) -> None:
        """
        A child started C{seconds} after its connection was accepted.
        """

    def serverExited(serviceId: str) -> None:
        """
        A server (or in-process connection) ended.
        """


@implementer(IServiceHooks)
class NoHooks:
    """
    The default: nothing is counted.
    """

    def connection(self, serviceId: str) -> None:
        pass

    def refused(self, serviceId: str, reason: str) -> None:
        pass

    def serverStarted(self, serviceId: str) -> None:
        pass

    def spawnDuration(self, seconds: float) -> None:
        pass

    def serverExited(self, serviceId: str) -> None:
        pass


@plainRepr
@attr.s(auto_attribs=True, eq=False, repr=False)
class IdentLimiter:
    """
    Bounds the ident queries made for refused clients, daemon-wide, so a
    flood of refusals cannot become a flood of queries.

    @ivar limit: most queries in flight at once.
    @ivar inFlight: queries in flight now.
    """

    limit: int = IDENT_ON_FAILURE_LIMIT
    inFlight: int = 0

    def acquire(self) -> bool:
        """
        Take a slot; L{False} when none is free.
        """
        if self.inFlight >= self.limit:
            return False
        self.inFlight += 1
        return True

    def release(self) -> None:
        """
        Give a slot back.
        """
        self.inFlight -= 1


@plainRepr
@attr.s(auto_attribs=True, eq=False, repr=False)
class DescriptorBudget:
    """
    The descriptors in-process connections may hold, daemon-wide, so that
    idle clients of internal services, redirects and tcpmux can never take
    the descriptors other services need to accept and spawn.

    @ivar limit: most descriptors held by in-process connections.
    @ivar held: descriptors they hold now.
    @ivar refusedSince: whether a connection was refused since the budget
        last had room (logged once per episode).
    """

    limit: int = 1 << 30
    held: int = 0
    refusedSince: bool = False

    def acquire(self, count: int) -> bool:
        """
        Take C{count} descriptors; L{False} when that would pass the limit.
        """
        if self.held + count > self.limit:
            return False
        self.held += count
        self.refusedSince = False
        return True

    def release(self, count: int) -> None:
        """
        Give C{count} descriptors back.
        """
        self.held = max(0, self.held - count)


@plainRepr
@attr.s(auto_attribs=True, eq=False, repr=False)
class LogSinks:
    """
    The daemon's log sinks: one syslog connection, and one FILE sink per
    C{log_type = FILE} configuration, shared by every service naming it.
    """

    syslog: SyslogConnection
    _files: Dict[FileLog, LogSink] = attr.ib(factory=dict)

    def sinkFor(self, service: ServiceConfig) -> Optional[LogSink]:
        """
        The sink a service writes to, or L{None} when it logs nothing.
        """
        logType = service.logType
        if isinstance(logType, FileLog):
            sink = self._files.get(logType)
            if sink is None:
                sink = openSink(
                    service.serviceId,
                    logType,
                    self.syslog,
                    location=service.locations.get("log_type"),
                )
                assert sink is not None
                self._files[logType] = sink
            return sink
        return openSink(
            service.serviceId,
            logType,
            self.syslog,
            location=service.locations.get("log_type"),
        )

    def closeUnused(self, used: Iterable[ServiceConfig]) -> None:
        """
        Close the FILE sinks none of C{used} writes to any more.
        """
        keep = {s.logType for s in used if isinstance(s.logType, FileLog)}
        for key in [k for k in self._files if k not in keep]:
            self._files.pop(key).close()

    def close(self) -> None:
        """
        Close every sink and the syslog connection.
        """
        for sink in self._files.values():
            sink.close()
        self._files.clear()
        self.syslog.disconnect()


class ResolverOnFirstUse:
    """
    A L{ReverseResolver} made by C{make} when first asked, and stopped only
    if made: only services with name rules ask (so that a daemon without
    any does not import the resolver nor read C{/etc/hosts}).
    """

    __slots__ = ("_make", "_resolver")

    def __init__(self, make: Callable[[], ReverseResolver]) -> None:
        self._make = make
        self._resolver: Optional[ReverseResolver] = None

    def _made(self) -> ReverseResolver:
        if self._resolver is None:
            self._resolver = self._make()
        return self._resolver

    def cached(self, host: str) -> tuple[bool, Optional[str]]:
        """
        L{ReverseResolver.cached}.
        """
        return self._made().cached(host)

    def lookup(self, host: str) -> Deferred:
        """
        L{ReverseResolver.lookup}.
        """
        return self._made().lookup(host)

    def stop(self) -> None:
        """
        L{ReverseResolver.stop}, if it was made.
        """
        if self._resolver is not None:
            self._resolver.stop()


class DatagramShare:
    """
    What the UDP internal services share, made when the first of them asks
    (so that a daemon without any does not import them).
    """

    __slots__ = ("_reactor", "_guard", "_amplification")

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._guard: Optional[LoopGuard] = None
        self._amplification: Optional[AmplificationBudget] = None

    def loopGuard(self) -> LoopGuard:
        """
        The loop guard (see L{DaemonContext.loopGuard}).
        """
        if self._guard is None:
            from xinetd_twisted.builtins.datagram import LoopGuard

            self._guard = LoopGuard()
        return self._guard

    def amplification(self) -> AmplificationBudget:
        """
        The amplification budget (see L{DaemonContext.amplification}).
        """
        if self._amplification is None:
            from xinetd_twisted.builtins.datagram import AmplificationBudget

            self._amplification = AmplificationBudget(self._reactor)
        return self._amplification


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class DaemonContext:
    """
    What every service runtime shares with the daemon.

    @ivar reactor: the reactor (injected everywhere, never imported): an
        C{IReactorTime}, C{IReactorFDSet}, C{IReactorSocket} and
        C{IReactorTCP} provider (no one interface names them all, hence
        C{Any}).
    @ivar spawner: the one L{ISpawner} every child goes through.
    @ivar environ: the daemon's environment at start-up (xinetd's "standard
        environment", passed to children unless C{passenv} is set).
    @ivar umask: the daemon's umask at start-up; children get it | 022
        unless the service sets C{umask}.
    @ivar isRoot: whether children may change credentials.
    @ivar nofileHardLimit: the daemon's hard RLIMIT_NOFILE, xinetd's default
        for the child's soft and hard limits.
    @ivar policy: what every service's policy shares (kept across reloads).
    @ivar sinks: the log sink pool.
    @ivar names: client names for host and domain rules, looked up without
        blocking, or L{None} for none.
    @ivar datagrams: what the UDP internal services share: L{loopGuard}
        and L{amplification}.
    @ivar identLimiter: bounds ident queries for refused clients.
    @ivar descriptors: bounds the descriptors in-process connections hold.
    @ivar idleTimeout: seconds an echo or discard connection may send
        nothing before it is closed.
    @ivar hooks: told of every connection, refusal, start and exit.
    @ivar wallClock: seconds since the epoch (for DURATION).
    @ivar identTimeout: seconds to wait for the client's identd (USERID,
        and IDONLY before the server starts).
    @ivar identPort: the port identd is asked on.
    """

    reactor: Any
    spawner: ISpawner
    environ: Mapping[str, str]
    umask: int
    isRoot: bool
    nofileHardLimit: int
    policy: PolicyContext
    sinks: LogSinks
    names: Optional[ReverseResolver | ResolverOnFirstUse] = None
    datagrams: DatagramShare = attr.Factory(
        lambda self: DatagramShare(self.reactor), takes_self=True
    )
    identLimiter: IdentLimiter = attr.Factory(IdentLimiter)
    descriptors: DescriptorBudget = attr.Factory(DescriptorBudget)
    idleTimeout: float = 300.0
    hooks: IServiceHooks = attr.Factory(NoHooks)
    wallClock: Callable[[], float] = time.time
    identTimeout: float = 30.0
    identPort: int = 113

    @property
    def loopGuard(self) -> LoopGuard:
        """
        Shared by every UDP internal service, so that two of ours never
        answer each other.
        """
        return self.datagrams.loopGuard()

    @property
    def amplification(self) -> AmplificationBudget:
        """
        Bounds what the UDP internal services together send beyond what
        they received, per source address.
        """
        return self.datagrams.amplification()
