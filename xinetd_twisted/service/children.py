# -*- test-case-name: tests.test_service_retry -*-
"""
Children: the servers started for one service's connections, from the
spawn (retried as xinetd does after a fork failure) to the reaping, with
their bookkeeping (instances, per_source, the process limit) and their
START and EXIT lines.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
from twisted.internet.defer import fail
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.logs.service import ServiceLog, wallDuration
from xinetd_twisted.logs.sinks import FileLogSink
from xinetd_twisted.policy.access import ServicePolicy
from xinetd_twisted.service.connection import peerLabel
from xinetd_twisted.service.context import DaemonContext
from xinetd_twisted.service.duration import serverDeadline
from xinetd_twisted.spawn.interfaces import ChildSetup, SpawnError

FORK_RETRY_INTERVAL = 5.0
"""
Seconds between spawn retries after a fork failure (xinetd's RETRY_INTERVAL).
"""

MAX_FORK_FAILURES = 5
"""
Consecutive failed spawns of one connection before it fails with C{fork}.
"""


class Child(ProcessProtocol):
    """
    Follows one child from start to reaping for its service.

    @ivar peer: the client's numeric host.
    @ivar address: the client's C{(host, port)} when known, for the logs.
    @ivar started: wall-clock time the connection was handed on.
    @ivar pid: the child's pid once it exists.
    """

    def __init__(
        self,
        children: Children,
        peer: Optional[str],
        started: float,
        accepted: float,
        address: Optional[Tuple[Any, ...]] = None,
    ) -> None:
        self._children = children
        self.peer = peer
        self.address = address
        self.started = started
        self.accepted = accepted
        self.pid: Optional[int] = None
        self.deadline: Any = None  # max_duration (service/duration.py)
        self.shown: Any = peer
        """
        What its START, EXIT and FAIL lines write for the client.
        """

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self._children.childStarted(self)

    def processEnded(self, reason: Failure) -> None:
        self._children.childEnded(self, reason)


@attr.s(auto_attribs=True, eq=False)
class SpawnAttempt:
    """
    One connection on its way to a child, kept while spawns are retried.

    @ivar held: our duplicate of the connection (C{-1}: none, no retry).
    @ivar failures: consecutive failed spawns.
    @ivar timer: the pending retry.
    """

    child: Child
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


def _nothing() -> None:
    """
    L{Children.onChildGone} until someone sets it: one function for every
    service instead of a lambda each.
    """


class Children:
    """
    The running servers of one service.

    @ivar running: children started and not yet reaped, by pid.
    @ivar retrying: connections waiting for a spawn retry.
    @ivar countsInstances: whether servers count towards instances,
        per_source and the process limit.
    """

    daemonLog = Logger(namespace="xinetd_twisted.service")

    __slots__ = (
        "_context",
        "_service",
        "_policy",
        "_log",
        "_recheck",
        "countsInstances",
        "running",
        "retrying",
        "active",
        "onChildGone",
    )

    def __init__(
        self,
        context: DaemonContext,
        service: ServiceConfig,
        policy: Callable[[], ServicePolicy],
        log: Callable[[], ServiceLog],
        recheck: Callable[[Optional[str]], bool],
        countsInstances: bool = True,
    ) -> None:
        """
        @param policy: the service's policy now (it changes on reload).
        @param log: the service's log now.
        @param recheck: the access checks again before a retry; L{False}
            (already logged) stops it.
        """
        self._context = context
        self._service = service
        self._policy = policy
        self._log = log
        self._recheck = recheck
        self.countsInstances = countsInstances
        self.running: Dict[int, Child] = {}
        self.retrying: List[SpawnAttempt] = []
        self.active = True
        self.onChildGone: Callable[[], None] = _nothing

    def reconfigure(self, service: ServiceConfig) -> None:
        """
        Take a reloaded configuration (running children are kept).
        """
        self._service = service

    # --- starting ------------------------------------------------------------

    def spawn(
        self,
        fd: int,
        peer: Optional[str],
        setup: ChildSetup,
        accepted: float = 0.0,
        extra: Tuple[Tuple[str, str], ...] = (),
        address: Optional[Tuple[Any, ...]] = None,
    ) -> None:
        """
        Start a server on C{fd} (the caller closes its copy afterwards).  A
        failed spawn is retried as xinetd does (L{FORK_RETRY_INTERVAL}, at
        most L{MAX_FORK_FAILURES} tries) unless the service has NORETRY.
        """
        child = Child(self, peer, self._context.wallClock(), accepted, address)
        child.shown = address or peerLabel(peer, extra)
        if peer is not None:
            extra = (("REMOTE_HOST", peer),) + extra
        attempt = SpawnAttempt(child, setup, extra)
        # The request goes first: the client waits for it, not for what
        # only the daemon needs to know (instances, metrics), which still
        # comes before anything the spawner can report.
        d = self._request(attempt, fd)
        self._context.hooks.connection(self._service.serviceId)
        if self.countsInstances:
            self._policy().started(peer)
        self._follow(attempt, fd, d)

    def adopted(self, peer: str, address: Tuple[Any, ...]) -> Child:
        """
        The spawner's sub-helper accepted a connection from C{address} and
        started its server (see L{xinetd_twisted.spawn.delegation}): what
        L{spawn} does for one, but the spawn; returns the process protocol
        that follows the server.
        """
        child = Child(self, peer, self._context.wallClock(), 0.0, address)
        child.shown = address
        self._context.hooks.connection(self._service.serviceId)
        if self.countsInstances:
            self._policy().started(peer)
        return child

    def _trySpawn(self, attempt: SpawnAttempt, fd: int) -> None:
        self._follow(attempt, fd, self._request(attempt, fd))

    def _request(self, attempt: SpawnAttempt, fd: int) -> Any:
        try:
            return self._context.spawner.spawn(
                attempt.child, attempt.setup, fd, attempt.extra
            )
        except Exception:
            return fail()

    def _follow(self, attempt: SpawnAttempt, fd: int, d: Any) -> None:
        """
        Keep a copy of the connection for a retry unless the spawner gives
        it back with a later failure, then follow the spawn's outcome.
        """
        if "NORETRY" not in self._service.flags and (
            d.called or not self._context.spawner.givesConnectionBack
        ):
            # The caller closes fd when we return, but a retry needs the
            # client connection: keep our own copy until the child exists.
            # (A copy kept longer than needed delays the client's EOF.)
            try:
                attempt.held = os.dup(fd)
            except OSError:
                attempt.held = -1
        if attempt.held < 0:
            # Nothing of ours to release once the child exists (no copy, no
            # retry pending): only a failure needs us.
            d.addErrback(self._spawnFailed, attempt)
            return
        d.addCallbacks(
            self._spawned,
            self._spawnFailed,
            callbackArgs=(attempt,),
            errbackArgs=(attempt,),
        )

    def _spawned(self, transport: Any, attempt: SpawnAttempt) -> Any:
        attempt.release()
        return transport

    def _spawnFailed(self, reason: Failure, attempt: SpawnAttempt) -> None:
        attempt.failures += 1
        serviceId = self._service.serviceId
        given = reason.value.connection if reason.check(SpawnError) else -1
        if given >= 0:
            if attempt.held < 0 and "NORETRY" not in self._service.flags:
                attempt.held = given
            else:
                os.close(given)
        self.daemonLog.error(
            "{service}: fork failed: {reason}",
            service=serviceId,
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
                service=serviceId,
            )
        self._giveUp(attempt, logFailure=True)

    def _retrySpawn(self, attempt: SpawnAttempt) -> None:
        attempt.timer = None
        if attempt in self.retrying:
            self.retrying.remove(attempt)
        # As xinetd, the access checks run again before each retry: the
        # configuration or the SENSOR list may have changed meanwhile.
        if not self._recheck(attempt.child.peer):
            self._giveUp(attempt, logFailure=False)
            return
        fd, attempt.held = attempt.held, -1
        try:
            self._trySpawn(attempt, fd)
        finally:
            os.close(fd)

    def _giveUp(self, attempt: SpawnAttempt, logFailure: bool) -> None:
        attempt.release()
        if self.countsInstances:
            self._policy().ended(attempt.child.peer)
        if logFailure:
            self._log().fail("fork", attempt.child.shown)
        self.onChildGone()

    def cancelRetries(self) -> None:
        """
        Forget connections waiting for a spawn retry (the service is gone or
        paused): their connections are closed, as xinetd's cancel_retry does.
        """
        retrying, self.retrying = self.retrying, []
        for attempt in retrying:
            self._giveUp(attempt, logFailure=False)

    # --- running and ending ----------------------------------------------------

    def childStarted(self, child: Child) -> None:
        """
        The spawner made the child: count it and log START.
        """
        assert child.pid is not None
        self.running[child.pid] = child
        if self._service.maxDuration:
            child.deadline = serverDeadline(self._context, self._service, child.pid)
        self._log().start(child.pid, child.shown)
        hooks = self._context.hooks
        hooks.serverStarted(self._service.serviceId)
        if child.accepted:
            hooks.spawnDuration(max(0.0, self._seconds() - child.accepted))

    def childEnded(self, child: Child, reason: Failure) -> None:
        """
        The child was reaped: uncount it and log EXIT.
        """
        if child.pid is not None:
            self.running.pop(child.pid, None)
        if child.deadline is not None:
            child.deadline.cancel()
        if self.countsInstances:
            self._policy().ended(child.peer)
        log = self._log()
        log.exitFromReason(
            child.pid or 0,
            reason,
            wallDuration(child.started, self._context.wallClock()),
            peer=child.shown,
        )
        if isinstance(log.sink, FileLogSink):
            log.sink.sizeCheck()
        self._context.hooks.serverExited(self._service.serviceId)
        self.onChildGone()

    def signal(self, signum: int) -> None:
        """
        Send C{signum} to every running child.
        """
        for pid in list(self.running):
            self._context.spawner.signalChild(pid, signum)

    def _seconds(self) -> float:
        return self._context.policy.seconds()
