# -*- test-case-name: tests.test_runtime -*-
"""
One running service: its socket, its policy, its log, its children.

A L{ServiceRuntime} is the only place where a service's state lives.  The
configuration it serves (a frozen L{ServiceConfig}) can be swapped in place on
reload while the socket, the counters and the running children are kept.

This module holds what every kind of service shares: the per-connection
pipeline (banner, policy, refusal, log) and the children's bookkeeping.  The
kinds are in L{xinetd_twisted.service.programs} (services that start programs) and
L{xinetd_twisted.service.inprocess} (internal services, redirect, tcpmux).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Dict, Optional, Tuple

import attr
from twisted.internet.defer import fail
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from xinetd_twisted.config.model import FileLog, ServiceConfig
from xinetd_twisted.listen.sockets import SocketSpec, openServiceSocket
from xinetd_twisted.listen.stream import StreamAcceptor
from xinetd_twisted.logs.service import ServiceLog, wallDuration
from xinetd_twisted.logs.sinks import SyslogConnection, openSink
from xinetd_twisted.policy.access import PolicyContext, Refusal, ServicePolicy
from xinetd_twisted.protocols.ident import queryIdent
from xinetd_twisted.service.banners import Banners, sendNoWait
from xinetd_twisted.spawn.interfaces import ChildSetup, ISpawner, SpawnError
from xinetd_twisted.spawn.setup import childSetupFor

FORK_RETRY_INTERVAL = 5.0
"""
Seconds between spawn retries after a fork failure (xinetd's RETRY_INTERVAL).
"""

MAX_FORK_FAILURES = 5
"""
Consecutive failed spawns of one connection before it fails with C{fork}.
"""

IDENT_ON_FAILURE_LIMIT = 15
"""
Most ident queries for refused clients in flight at once (xinetd's
C{-logprocs} default).
"""


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
    @ivar policy: what every service's policy shares (kept across reloads).
    @ivar syslog: the daemon's one connection to syslog.
    @ivar fileSinks: open FILE logs by their configuration, shared by the
        services that name the same file with the same limits.
    @ivar wallClock: seconds since the epoch (for DURATION).
    @ivar identTimeout: seconds to wait for the client's identd (USERID).
    """

    reactor: Any
    spawner: ISpawner
    environ: Dict[str, str]
    umask: int
    isRoot: bool
    nofileHardLimit: int
    policy: PolicyContext
    syslog: SyslogConnection
    fileSinks: Dict[FileLog, Any] = attr.Factory(dict)
    wallClock: Callable[[], float] = time.time
    identTimeout: float = 30.0
    identPort: int = 113
    names: Any = None
    extras: Dict[str, Any] = attr.Factory(dict)

    def sinkFor(self, service: ServiceConfig) -> Any:
        """
        The log sink of a service: shared per FILE configuration, or a
        syslog sink, or L{None}.
        """
        logType = service.logType
        if isinstance(logType, FileLog):
            sink = self.fileSinks.get(logType)
            if sink is None:
                sink = openSink(service.serviceId, logType, self.syslog)
                self.fileSinks[logType] = sink
            return sink
        return openSink(service.serviceId, logType, self.syslog)


class _Child(ProcessProtocol):
    """
    Follows one child from start to reaping for its service.
    """

    def __init__(
        self, runtime: ServiceRuntime, peer: Optional[str], started: float
    ) -> None:
        self._runtime = runtime
        self.peer = peer
        self.started = started
        self.pid: Optional[int] = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self._runtime._childStarted(self)

    def processEnded(self, reason: Failure) -> None:
        self._runtime._childEnded(self, reason)


@attr.s(auto_attribs=True, eq=False)
class _SpawnAttempt:
    """
    One connection on its way to a child, kept while spawns are retried.

    @ivar held: our duplicate of the connection (C{-1}: none, no retry).
    @ivar failures: consecutive failed spawns.
    @ivar timer: the pending retry.
    """

    child: _Child
    setup: ChildSetup
    extra: Tuple[Tuple[str, str], ...]
    held: int = -1
    failures: int = 0
    timer: Any = None

    def release(self) -> None:
        """
        Cancel any retry and close our copy of the connection.
        """
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.held >= 0:
            fd, self.held = self.held, -1
            os.close(fd)


class ServiceRuntime:
    """
    What every kind of service shares.  Subclasses implement L{_open},
    L{_close} and the way a connection is served.

    @ivar service: the configuration in force (swapped on reload).
    @ivar requested: the socket the configuration asks for (compared on
        reload; the bound one may differ after an IPv6 -> IPv4 fallback).
    @ivar spec: the socket actually bound.
    @ivar policy: access control and limits (state kept across reloads).
    @ivar log: the service's xinetd log (START/EXIT/FAIL lines).
    @ivar daemonLog: the daemon's own messages about this service.
    @ivar running: children started and not yet reaped, by pid.
    """

    daemonLog = Logger()
    countsInstances = True

    def __init__(self, context: DaemonContext, service: ServiceConfig) -> None:
        self._context = context
        self.service = service
        self.requested: Optional[SocketSpec] = (
            SocketSpec.forService(service) if service.port is not None else None
        )
        self.spec: Optional[SocketSpec] = None
        self.policy = ServicePolicy(service, context.policy)
        self.log = ServiceLog.fromConfig(service, context.sinkFor(service))
        self._setup: Optional[ChildSetup] = self._makeSetup(service)
        self._banners = Banners.forService(service)
        self.running: Dict[int, _Child] = {}
        self.connections = 0
        self.refused = 0
        self._reactivation: Any = None
        self.active = False
        self.retrying: list[_SpawnAttempt] = []

    # --- configuration -----------------------------------------------------

    def _makeSetup(self, service: ServiceConfig) -> Optional[ChildSetup]:
        if service.server is None or service.redirect is not None or service.isInternal:
            return None
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

    def update(self, service: ServiceConfig) -> None:
        """
        Take a new configuration in place, keeping the socket, the counters
        and the children.
        """
        self.service = service
        self.requested = (
            SocketSpec.forService(service) if service.port is not None else None
        )
        self.policy = self.policy.reconfigured(service, self._context.policy)
        if self.log.sink is not None:
            self.log.sink.reopen()
        self.log = ServiceLog.fromConfig(service, self._context.sinkFor(service))
        self._setup = self._makeSetup(service)
        self._banners = Banners.forService(service)

    # --- life ----------------------------------------------------------------

    def activate(self) -> None:
        """
        Create and bind the socket, and start serving.

        @raise OSError: when the socket cannot be created or bound.
        """
        sock, spec, notice = openServiceSocket(self.service)
        if notice:
            self.daemonLog.info(notice)
        self.spec = spec
        self._open(sock)
        self.active = True
        self.daemonLog.info(
            "service {service} listening on {where}",
            service=self.serviceId,
            where=spec.describe(),
        )

    def deactivate(self) -> None:
        """
        Stop serving and close our socket.  Running children are left alone.
        """
        if self._reactivation is not None and self._reactivation.active():
            self._reactivation.cancel()
        self._reactivation = None
        self.cancelRetries()
        if self.active:
            self.active = False
            self._close()

    def _open(self, sock: socket.socket) -> None:
        raise NotImplementedError()

    def _close(self) -> None:
        raise NotImplementedError()

    def pause(self) -> None:
        """
        Stop taking connections for a while (the spawner is backed up);
        they wait in the kernel's backlog.
        """
        acceptor = getattr(self, "_acceptor", None)
        if acceptor is not None:
            acceptor.stopReading()

    def resume(self) -> None:
        """
        Take connections again after L{pause}.
        """
        acceptor = getattr(self, "_acceptor", None)
        if acceptor is not None and self.active:
            acceptor.startReading()

    def killChildren(self, signum: int) -> None:
        """
        Send C{signum} to every running child (reload dropped the service).
        """
        for pid in list(self.running):
            self._context.spawner.signalChild(pid, signum)

    # --- the per-connection pipeline -----------------------------------------

    def _admit(
        self, fd: int, peer: Optional[str], proceed: Callable[[int], None]
    ) -> None:
        """
        Banner, then limits and access control, for a stream connection;
        C{proceed(fd)} serves it once admitted (at once, or after the
        client's name came back from a reverse lookup, with a duplicate of
        the descriptor that is closed afterwards).  On refusal: FAIL log
        line, banner_fail, and (cps) deactivation.
        """
        self.connections += 1
        banner = self._banners.connect
        if banner:
            sendNoWait(fd, banner)
        refusal = self.policy.checkLimits(peer)
        if refusal is None:
            name: Optional[str] = None
            names = self._context.names
            if names is not None and peer is not None and self.policy.needsName(peer):
                known, name = names.cached(peer)
                if not known:
                    held = os.dup(fd)
                    d = names.lookup(peer)
                    d.addCallback(self._admitNamed, held, peer, proceed)
                    return
            refusal = self.policy.checkAccess(peer, name)
        if refusal is None:
            proceed(fd)
        else:
            self._refuseConnection(fd, refusal, peer)

    def _admitNamed(
        self,
        name: Optional[str],
        held: int,
        peer: str,
        proceed: Callable[[int], None],
    ) -> None:
        try:
            refusal = self.policy.checkAccess(peer, name)
            if refusal is None:
                proceed(held)
            else:
                self._refuseConnection(held, refusal, peer)
        except Exception:
            self.daemonLog.failure(
                "service {service}: admitting", service=self.serviceId
            )
        finally:
            os.close(held)

    def _refuseConnection(self, fd: int, refusal: Refusal, peer: Optional[str]) -> None:
        self._refuse(refusal, peer)
        bannerFail = self._banners.fail
        if bannerFail:
            sendNoWait(fd, bannerFail)
        if "USERID" in self.service.logOnFailure:
            self._identAfterFailure(fd, peer)

    def _identAfterFailure(self, fd: int, peer: Optional[str]) -> None:
        """
        C{log_on_failure = USERID}: ask the refused client's identd and log
        the answer, at most L{IDENT_ON_FAILURE_LIMIT} at a time daemon-wide
        (xinetd's C{-logprocs}), so a flood of refusals cannot become a
        flood of ident queries.
        """
        extras = self._context.extras
        if extras.get("identsOnFailure", 0) >= IDENT_ON_FAILURE_LIMIT:
            return
        sock = socket.socket(fileno=os.dup(fd))
        try:
            local, remote = sock.getsockname(), sock.getpeername()
        except OSError:
            return
        finally:
            sock.close()
        extras["identsOnFailure"] = extras.get("identsOnFailure", 0) + 1

        def done(result: Any) -> None:
            extras["identsOnFailure"] -= 1
            self.log.identified(result, peer)

        d = queryIdent(
            self._context.reactor,
            local,
            remote,
            timeout=self._context.identTimeout,
            identPort=self._context.identPort,
        )
        d.addCallback(done)

    def _cachedName(self, peer: Optional[str]) -> Optional[str]:
        """
        For checks that cannot wait (datagrams, wait mode): the client's
        name if already known, else start a lookup for next time and treat
        it as unknown now.
        """
        names = self._context.names
        if names is None or peer is None or not self.policy.needsName(peer):
            return None
        known, name = names.cached(peer)
        if not known:
            names.lookup(peer)
        return name

    def _refuse(self, refusal: Refusal, peer: Optional[str]) -> None:
        self.refused += 1
        if refusal.reason in ("load", "libwrap") or (
            refusal.reason == "address" and "equally" in refusal.message
        ):
            self.daemonLog.error("{message}", message=refusal.message)
        self.log.fail(refusal.reason, peer)
        if refusal.deactivated and refusal.deactivateUntil is not None:
            self.daemonLog.error("{message}", message=refusal.message)
            self._deactivateFor(refusal.deactivateUntil)
        if refusal.sensor is not None and refusal.sensor.name == "ADDED":
            self.daemonLog.critical(
                "{pid} {{process_sensor}} Adding {peer} to the global_no_access "
                "list for {minutes} minutes",
                pid=os.getpid(),
                peer=peer,
                minutes=self.service.denyTime,
            )

    def _deactivateFor(self, until: float) -> None:
        """
        cps tripped: close the socket (clients get ECONNREFUSED, as with
        xinetd) and bind it again when the pause ends.
        """
        if not self.active:
            return
        self.active = False
        self._close()
        clock = self._context.reactor
        delay = max(0.0, until - self._context.policy.seconds())
        self._reactivation = clock.callLater(delay, self._reactivate)

    def _reactivate(self) -> None:
        self._reactivation = None
        try:
            self.activate()
        except OSError as e:
            self.daemonLog.error(
                "Error activating service {service}: {error}; retrying in 10 s",
                service=self.serviceId,
                error=e.strerror or str(e),
            )
            self._reactivation = self._context.reactor.callLater(10, self._reactivate)
            return
        self.daemonLog.error("Activating service {service}", service=self.serviceId)

    # --- children ------------------------------------------------------------

    def _spawn(
        self, fd: int, peer: Optional[str], setup: Optional[ChildSetup] = None
    ) -> None:
        """
        Start the server on C{fd} (the caller closes its copy afterwards).
        A failed spawn is retried as xinetd does (L{FORK_RETRY_INTERVAL},
        at most L{MAX_FORK_FAILURES} tries) unless the service has NORETRY.
        """
        setup = setup or self._setup
        assert setup is not None
        child = _Child(self, peer, self._context.wallClock())
        if self.countsInstances:
            self.policy.started(peer)
        extra: Tuple[Tuple[str, str], ...] = (
            (("REMOTE_HOST", peer),) if peer is not None else ()
        )
        self._trySpawn(_SpawnAttempt(child, setup, extra), fd)

    def _trySpawn(self, attempt: _SpawnAttempt, fd: int) -> None:
        if "NORETRY" not in self.service.flags:
            # The caller closes fd when we return, but a retry needs the
            # client connection: keep our own copy until the child exists.
            try:
                attempt.held = os.dup(fd)
            except OSError:
                attempt.held = -1
        try:
            d: Any = self._context.spawner.spawn(
                attempt.child, attempt.setup, fd, attempt.extra
            )
        except Exception:
            d = fail()
        d.addCallbacks(
            self._spawned,
            self._spawnFailed,
            callbackArgs=(attempt,),
            errbackArgs=(attempt,),
        )

    def _spawned(self, transport: Any, attempt: _SpawnAttempt) -> Any:
        attempt.release()
        return transport

    def _spawnFailed(self, reason: Failure, attempt: _SpawnAttempt) -> None:
        attempt.failures += 1
        self.daemonLog.error(
            "{service}: fork failed: {reason}",
            service=self.serviceId,
            reason=reason.getErrorMessage(),
        )
        if (
            reason.check(SpawnError)
            and attempt.held >= 0
            and attempt.failures < MAX_FORK_FAILURES
            and self.active
        ):
            attempt.timer = self._context.reactor.callLater(
                FORK_RETRY_INTERVAL, self._retrySpawn, attempt
            )
            self.retrying.append(attempt)
            return
        if attempt.failures >= MAX_FORK_FAILURES:
            self.daemonLog.error(
                "service {service}: too many consecutive fork failures",
                service=self.serviceId,
            )
        self._giveUp(attempt, logFailure=True)

    def _retrySpawn(self, attempt: _SpawnAttempt) -> None:
        attempt.timer = None
        if attempt in self.retrying:
            self.retrying.remove(attempt)
        # As xinetd, the access checks run again before each retry: the
        # configuration or the SENSOR list may have changed meanwhile.
        peer = attempt.child.peer
        refusal = self.policy.checkAccess(peer, self._cachedName(peer))
        if refusal is not None:
            self._refuse(refusal, peer)
            self._giveUp(attempt, logFailure=False)
            return
        fd, attempt.held = attempt.held, -1
        try:
            self._trySpawn(attempt, fd)
        finally:
            os.close(fd)

    def _giveUp(self, attempt: _SpawnAttempt, logFailure: bool) -> None:
        attempt.release()
        if self.countsInstances:
            self.policy.ended(attempt.child.peer)
        if logFailure:
            self.log.fail("fork", attempt.child.peer)
        self._childGone()

    def cancelRetries(self) -> None:
        """
        Forget connections waiting for a spawn retry (the service is gone):
        their connections are closed, as xinetd's cancel_retry does.
        """
        retrying, self.retrying = self.retrying, []
        for attempt in retrying:
            self._giveUp(attempt, logFailure=False)

    def _childStarted(self, child: _Child) -> None:
        assert child.pid is not None
        self.running[child.pid] = child
        self.log.start(child.pid, child.peer)

    def _childEnded(self, child: _Child, reason: Failure) -> None:
        if child.pid is not None:
            self.running.pop(child.pid, None)
        if self.countsInstances:
            self.policy.ended(child.peer)
        self.log.exitFromReason(
            child.pid or 0,
            reason,
            wallDuration(child.started, self._context.wallClock()),
        )
        if self.log.sink is not None and hasattr(self.log.sink, "sizeCheck"):
            self.log.sink.sizeCheck()
        self._childGone()

    def _childGone(self) -> None:
        """
        A child ended (or never started): wait-mode services resume here.
        """


class AcceptingRuntime(ServiceRuntime):
    """
    A stream service whose connections arrive through a L{StreamAcceptor}
    and are handed to L{_connection} (which owns and closes the fd).
    """

    _acceptor: Optional[StreamAcceptor] = None

    def _open(self, sock: socket.socket) -> None:
        self._acceptor = StreamAcceptor(
            self._context.reactor, sock, self._connection, self.serviceId
        )
        self._acceptor.startReading()

    def _close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None

    def _connection(self, fd: int, address: object) -> None:
        raise NotImplementedError()
