# -*- test-case-name: tests.test_spawn_helper -*-
"""
L{HelperSpawner}: the fast, faithful L{ISpawner}, talking to the spawn helper
(L{xinetd_twisted.spawn.helper}) over a C{SOCK_SEQPACKET} socketpair.

Per connection the reactor encodes one small message, sends it with the
connection's fd attached and closes its own copy; the helper forks, sets the
child up as xinetd does and reports back.  Reaping, exit statuses and exec
failures arrive as batched events on the same socket.

Each sub-helper (one per credential set) has its own channel, queue and
back-pressure: a sub-helper that its user stopped or slowed only holds up
the services of that credential set.  What a user can do to their own
sub-helper, and what follows:

  - it backs up: the L{PressureObserver} is told C{(credentialKey, True)}
    for that channel only (C{None} is the root helper's channel, shared by
    all), and past L{HelperSpawner.maxQueued} waiting spawns a spawn fails
    at once with L{SpawnError};
  - it stops answering: after L{HelperSpawner.stuckTimeout} seconds of
    silence with spawns outstanding it is logged, killed by the root helper
    (the daemon may no longer be root) and its waiting spawns fail with
    L{SpawnError}; the next spawn starts another;
  - it dies (or the root helper does): the servers it started stay in
    C{running}, still get signals and are reported once, with their real
    status, when they end.  See L{xinetd_twisted.spawn.orphans}.
"""

from __future__ import annotations

import array
import errno
import os
import signal as _signal
import socket
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessTerminated
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.spawn import helper as _wire
from xinetd_twisted.spawn.channel import (
    Channel,
    HelperProcess,
    HelperProtocol,
    SpawnRequest,
)
from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    ISpawner,
    PressureObserver,
    SpawnError,
    credentialKey,
)
from xinetd_twisted.spawn.orphans import OrphanReaper
from xinetd_twisted.spawn.status import reasonForStatus

_log = Logger(namespace="xinetd_twisted.spawn")

HELPER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper.py")
_SEND_FLAGS = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
_READ_BATCH = 64
_RECV_FLAGS = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
_ANC_SIZE = socket.CMSG_SPACE(_wire.MAX_EVENTS_PER_MESSAGE * 4)


@implementer(ISpawner)
class HelperSpawner:
    """
    Spawns through a helper process started (as root) by L{start}, and
    through the per-credential sub-helpers it creates, each reached on its
    own channel once the helper has handed it over.

    @cvar stuckTimeout: seconds a sub-helper may stay silent while spawns
        wait on it before it is declared stuck, killed and replaced.
    @ivar maxQueued: how many messages may wait on one channel for its
        peer to read before L{spawn} fails with L{SpawnError}.
    @ivar running: C{{pid: HelperProcess}} of the children not reaped yet.
    @ivar _pressure: the L{PressureObserver}: told C{(key, True)} when
        messages start to queue on the channel of credential set C{key}
        (C{None}: the root helper's, shared by all) and C{(key, False)}
        when that queue has drained (or the channel is gone).
    """

    stuckTimeout = 5.0

    def __init__(
        self,
        reactor: Any = None,
        maxQueued: int = 64,
        helperEnvironment: Optional[Dict[str, str]] = None,
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess}, C{IReactorFDSet} and
            C{IReactorTime}.
        @param helperEnvironment: the helper's own environment (children
            never see it); only tests and benchmarks need to set it.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.maxQueued = maxQueued
        self._pressure: Optional[PressureObserver] = None
        self._helperEnv = dict(helperEnvironment or {})
        self._control: Optional[Channel] = None
        self._subs: Dict[int, Channel] = {}  # subId -> channel
        self._orphanedSubs: List[Channel] = []  # of a dead root helper
        self._routes: Dict[int, Channel] = {}  # templateId -> sub channel
        self._helperProtocol: Optional[HelperProtocol] = None
        self._helperTransport: Any = None
        self._templates: Dict[ChildSetup, int] = {}
        self._setups: Dict[int, ChildSetup] = {}  # templateId -> setup
        self._pending: Dict[int, SpawnRequest] = {}
        self.running: Dict[int, HelperProcess] = {}
        self._reaper = OrphanReaper(reactor)
        self._ready: List[Deferred] = []
        self._ended: List[Deferred] = []
        self._isReady = False
        self._nextId = 1

    # --- ISpawner -----------------------------------------------------

    def start(self) -> Deferred:
        """
        Start the helper unless it runs; fires once it has said it is ready.
        """
        if self._control is None:
            self._launch()
        if self._isReady:
            return succeed(None)
        d: Deferred = Deferred()
        self._ready.append(d)
        return d

    def stop(self) -> Deferred:
        """
        Close the channels; the helpers exit and leave running children
        alone.  Fires when the helper process has ended.
        """
        # Children left running go to init, not to us, once we stop.
        self._reaper.stop()
        self.running.clear()  # left running: no processEnded will come
        for orphaned in list(self._orphanedSubs):
            self._close(orphaned)
        if self._helperProtocol is None:
            return succeed(None)
        d: Deferred = Deferred()
        self._ended.append(d)
        if self._control is not None:
            self._channelLost(self._control, "spawner stopped")
        for orphaned in list(self._orphanedSubs):
            self._close(orphaned)
        return d

    def spawn(
        self,
        processProtocol: Any,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> Deferred:
        """
        See L{ISpawner.spawn}.  Restarts the helper if it has died.
        """
        if self._control is None:
            _log.info("starting the spawn helper")
            self._launch()
        templateId = self._templates.get(setup)
        if templateId is None:
            templateId = self._register(setup)
        channel = self._routes.get(templateId)
        if channel is not None and not (channel.closed or channel.stuck):
            if len(channel.queue) >= self.maxQueued:
                return fail(SpawnError(f"{channel.describe()} is backed up"))
            requestId = self._sendSpawn(
                channel, templateId, setup, socketFD, extraEnvironment
            )
            if requestId:
                return self._expect(
                    requestId, processProtocol, setup, channel, templateId
                )
            # That sub-helper has gone: the root helper starts another.
        control = self._control
        if control is None:
            return fail(SpawnError("spawn helper: control socket lost"))
        if len(control.queue) >= self.maxQueued:
            return fail(SpawnError("the spawn helper is backed up"))
        requestId = self._sendSpawn(
            control, templateId, setup, socketFD, extraEnvironment
        )
        if not requestId:
            return fail(SpawnError("spawn helper: control socket lost"))
        return self._expect(requestId, processProtocol, setup, control, templateId)

    def observePressure(self, observer: Optional[PressureObserver]) -> None:
        """
        See L{ISpawner.observePressure}.
        """
        self._pressure = observer

    def signalChild(self, pid: int, signal: int) -> None:
        """
        See L{ISpawner.signalChild}.
        """
        process = self.running.get(pid)
        if process is None:
            return
        signal = int(signal)  # a signal.Signals member does not marshal
        if process.adopted:  # ours: its helper died
            self._reaper.signal(pid, signal)
            return
        message = _wire.signalMessage(pid, signal)
        channel = process.channel
        if not channel.closed:
            self._send(channel, message, -1)
        if (channel.closed or channel.stuck) and self._control is not None:
            # Its sub-helper has died (or is being killed): the root
            # helper has adopted it.
            self._send(self._control, message, -1)

    def isBackedUp(self) -> bool:
        """
        Whether messages are waiting on any channel for a helper to catch up.
        """
        return any(channel.queue for channel in self._channels())

    # --- helper lifecycle ---------------------------------------------

    def _channels(self) -> List[Channel]:
        control = [] if self._control is None else [self._control]
        return control + list(self._subs.values()) + self._orphanedSubs

    def _launch(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proto = HelperProtocol(self)
        # glibc's posix_spawn leaves its internal signals (32, 33) ignored in
        # the new program, and ignored stays ignored across our children's
        # exec; Twisted's fork path (taken when uid/gid are given) does not.
        # Starting the helper is rare, so take the fork path when root.
        creds = {"uid": 0, "gid": 0} if os.getuid() == 0 else {}
        try:
            with warnings.catch_warnings():
                # Twisted's fork path then warns, in the child, that it is
                # asked to become root while already root: it is on purpose.
                warnings.filterwarnings("ignore", message="tried to drop privileges")
                transport = self._reactor.spawnProcess(
                    proto,
                    sys.executable,
                    [sys.executable, "-I", "-S", HELPER_PATH, "3"],
                    env=self._helperEnv,
                    childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()},
                    **creds,
                )
        finally:
            theirs.close()
        # If it dies, what it started becomes ours (see orphans).
        self._reaper.becomeSubreaper()
        ours.setblocking(False)
        self._helperProtocol = proto
        self._helperTransport = transport
        self._control = Channel(self, ours, None)
        self._templates = {}
        self._setups = {}
        self._routes = {}
        self._isReady = False
        self._reactor.addReader(self._control)

    def _helperEnded(self, proto: HelperProtocol, reason: Failure) -> None:
        if proto is not self._helperProtocol:
            return
        stopping = bool(self._ended)
        if self._control is not None:
            self._channelLost(self._control, "spawn helper ended")
        self._helperProtocol = None
        self._helperTransport = None
        if not stopping:
            # Reaped: what it started is ours now (we are a subreaper).
            self._adoptOrphans()
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)

    def _adoptOrphans(self) -> None:
        """
        Follow, as their parent, the children of the dead root helper (and
        the orphans it had adopted); sub-helpers go on reporting theirs.
        """
        followed = 0
        for process in list(self.running.values()):
            if process.channel.subId is not None and not process.channel.closed:
                continue  # its sub-helper lives on
            if self._adopt(process):
                followed += 1
        for channel in self._orphanedSubs:
            if channel.subPid is not None:
                self._reaper.adopt(channel.subPid, self._subReapedCallback(channel))
        _log.error(
            "spawn helper ended; {count} server(s) it started are followed"
            " by the daemon, {subs} sub-helper(s) go on for theirs",
            count=followed,
            subs=len(self._orphanedSubs),
        )
        self._reaper.reapStrays()
        self._closeIdleOrphans()

    def _adopt(self, process: HelperProcess) -> bool:
        pid = process.pid
        assert pid is not None
        if self._reaper.adopt(pid, lambda status: self._adoptedEnded(pid, status)):
            process.adopted = True
            return True
        # Not ours: it ended and the report died with its helper.
        _log.error(
            "child {pid} ({executable}) ended while its spawn helper died:"
            " its status is unknown",
            pid=pid,
            executable=process.setup.executable,
        )
        self._reportEnded(pid, Failure(ProcessTerminated(status=None)))
        return False

    def _adoptedEnded(self, pid: int, status: int) -> None:
        if status < 0:
            self._reportEnded(pid, Failure(ProcessTerminated(status=None)))
        else:
            self._reportEnded(pid, reasonForStatus(status))

    def _reportEnded(self, pid: int, reason: Failure) -> None:
        ended = self.running.pop(pid, None)
        if ended is None:
            return
        ended.pid = None
        ended.proto.processExited(reason)
        ended.proto.processEnded(reason)

    def _subReapedCallback(self, channel: Channel) -> Callable[[int], None]:
        return lambda status: self._subReaped(channel)

    def _subReaped(self, channel: Channel) -> None:
        """
        An orphaned sub-helper, our child, has been reaped by us: all it
        said is in its socket, and its children are ours now.
        """
        self._drain(channel)
        for requestId in list(channel.requests):
            self._subHelperDied(requestId)
        self._close(channel)
        for process in list(self.running.values()):
            if process.channel is channel and not process.adopted:
                self._adopt(process)

    def _closeIdleOrphans(self) -> None:
        """
        Close the channels of orphaned sub-helpers that have nothing left
        to report: they exit (and are reaped by us).
        """
        for channel in list(self._orphanedSubs):
            if channel.busy():
                continue
            if any(p.channel is channel for p in self.running.values()):
                continue
            self._close(channel)

    def _close(self, channel: Channel) -> List[int]:
        """
        Close a channel; return the request ids of its unsent spawns.
        """
        if channel.closed:
            return []
        channel.closed = True
        self._reactor.removeReader(channel)
        self._reactor.removeWriter(channel)
        channel.sock.close()
        if channel.watchdog is not None and channel.watchdog.active():
            channel.watchdog.cancel()
        channel.watchdog = None
        unsent = self._dropQueue(channel)
        if channel.subId is not None:
            # A current sub-helper's channel stays in _subs until the root
            # helper's "g" says which of its spawns will never start.
            if channel in self._orphanedSubs:
                self._orphanedSubs.remove(channel)
            self._unroute(channel)
        return unsent

    def _dropQueue(self, channel: Channel) -> List[int]:
        """
        Forget a channel's unsent messages; return their request ids.
        """
        unsent = []
        for _data, fd, requestId in channel.queue:
            if fd >= 0:
                os.close(fd)
            if requestId:
                unsent.append(requestId)
        if channel.queue:
            channel.queue = []
            self._reactor.removeWriter(channel)
            self._queueChanged(channel, False)
        return unsent

    def _unroute(self, channel: Channel) -> None:
        for templateId in [t for t, c in self._routes.items() if c is channel]:
            del self._routes[templateId]

    def _channelLost(self, channel: Channel, why: str) -> None:
        if channel.closed:
            return
        if channel.subId is not None:
            # The children it started are reaped by the root helper (or by
            # us, if it has died too); the spawns it may still have started
            # fail on its "g" event, which comes after all it said.  Unsent
            # ones fail now.
            for requestId in self._close(channel):
                self._subHelperDied(requestId)
            if channel.orphaned:  # no "g" will come; EOF was its last word
                for requestId in list(channel.requests):
                    self._subHelperDied(requestId)
            return
        if channel is not self._control:
            return
        self._control = None
        for requestId in self._close(channel):
            self._failRequest(requestId, f"spawn helper: {why}")
        for request in list(self._pending.values()):
            # Also those it had forwarded: a sub-helper that still starts
            # one reports a child nobody expects, which it then kills.
            if request.sentOn is channel:
                self._failRequest(request.requestId, f"spawn helper: {why}")
        # Its sub-helpers live on for the children they started.
        for sub in list(self._subs.values()):
            if sub.closed:  # dead, and no "g" will come
                for requestId in list(sub.requests):
                    self._subHelperDied(requestId)
                continue
            sub.orphaned = True
            self._unroute(sub)
            self._orphanedSubs.append(sub)
        self._subs = {}
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(SpawnError(f"spawn helper: {why}"))

    # --- stuck sub-helpers ----------------------------------------------

    def _busy(self, channel: Channel) -> None:
        """
        A spawn now waits on C{channel}: watch that its peer answers.
        """
        if channel.subId is None or channel.stuck:
            return
        if channel.watchdog is None:
            channel.watchdog = self._reactor.callLater(
                self.stuckTimeout, self._checkStuck, channel
            )

    def _checkStuck(self, channel: Channel) -> None:
        channel.watchdog = None
        if channel.closed or channel.stuck or not channel.busy():
            return
        quiet = self._reactor.seconds() - channel.progress
        if quiet < self.stuckTimeout:
            channel.watchdog = self._reactor.callLater(
                self.stuckTimeout - quiet, self._checkStuck, channel
            )
            return
        self._stuck(channel, quiet)

    def _stuck(self, channel: Channel, quiet: float) -> None:
        """
        Kill a sub-helper that has not answered for C{quiet} seconds while
        spawns waited on it; fail its spawns.  The next spawn of its
        credentials starts another.
        """
        channel.stuck = True
        _log.error(
            "{helper} answered nothing for {quiet:.1f} s with {count} spawn(s)"
            " waiting: killing it; they fail and the next spawn starts"
            " another",
            helper=channel.describe(),
            quiet=quiet,
            count=len(channel.requests),
            uid=(channel.key or (None,))[0],
        )
        self._unroute(channel)
        for requestId in self._dropQueue(channel):
            self._subHelperDied(requestId)
        if not channel.orphaned and self._control is not None:
            self._send(self._control, _wire.killSubMessage(channel.subId or 0), -1)
        elif channel.subPid is not None:
            self._reaper.signal(channel.subPid, _signal.SIGKILL)

    # --- sending --------------------------------------------------------

    def _register(self, setup: ChildSetup) -> int:
        templateId = self._nextId
        self._nextId += 1
        assert self._control is not None
        for message in self._templateMessages(templateId, setup):
            self._send(self._control, message, -1)
        self._templates[setup] = templateId
        self._setups[templateId] = setup
        return templateId

    def _templateMessages(self, templateId: int, setup: ChildSetup) -> List[bytes]:
        blob = _wire.encodeTemplate(
            setup.executable,
            setup.argv,
            setup.environment,
            setup.uid,
            setup.gid,
            setup.supplementaryGroups,
            setup.umask,
            setup.nice,
            setup.rlimits,
            setup.chroot,
            setup.workingDirectory,
            setup.newSession,
        )
        return _wire.templateMessages(templateId, blob)

    def _sendSpawn(
        self,
        channel: Channel,
        templateId: int,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> int:
        """
        Send a start request on C{channel} (registering the template with a
        sub-helper first); return its request id, 0 if the channel is lost.
        """
        if channel.subId is not None and templateId not in channel.templates:
            for message in self._templateMessages(templateId, setup):
                if not self._send(channel, message, -1):
                    return 0
            channel.templates.add(templateId)
        requestId = self._nextId
        self._nextId += 1
        message = _wire.spawnMessage(requestId, templateId, extraEnvironment)
        if not self._send(channel, message, socketFD, requestId):
            return 0
        return requestId

    def _expect(
        self,
        requestId: int,
        proto: Any,
        setup: ChildSetup,
        channel: Channel,
        templateId: int,
    ) -> Deferred:
        d: Deferred = Deferred()
        request = SpawnRequest(requestId, proto, setup, d, channel, templateId)
        self._pending[requestId] = request
        self._attribute(request, channel)
        return d

    def _attribute(self, request: SpawnRequest, channel: Channel) -> None:
        """
        Make C{channel}'s peer the one that must answer C{request}.
        """
        request.channel.requests.discard(request.requestId)
        request.channel = channel
        if not channel.busy():
            channel.progress = self._reactor.seconds()
        channel.requests.add(request.requestId)
        self._busy(channel)

    def _take(self, requestId: int) -> Optional[SpawnRequest]:
        request = self._pending.pop(requestId, None)
        if request is not None:
            request.channel.requests.discard(requestId)
        return request

    def _failRequest(self, requestId: int, why: str) -> None:
        request = self._take(requestId)
        if request is not None:
            request.deferred.errback(SpawnError(why))

    def _send(self, channel: Channel, data: bytes, fd: int, requestId: int = 0) -> bool:
        """
        Send or queue a message; L{False} when the channel is lost (and the
        message was neither sent nor queued).
        """
        if channel.closed:
            return False
        if not channel.queue:
            try:
                self._sendNow(channel, data, fd)
                return True
            except BlockingIOError:
                pass
            except OSError as e:
                self._channelLost(channel, f"send failed: {os.strerror(e.errno or 0)}")
                return False
        # The caller closes its fd when we return: keep our own copy.
        if not channel.busy():
            channel.progress = self._reactor.seconds()
        channel.queue.append((data, os.dup(fd) if fd >= 0 else -1, requestId))
        if len(channel.queue) == 1:
            self._reactor.addWriter(channel)
            self._queueChanged(channel, True)
        self._busy(channel)
        return True

    @staticmethod
    def _sendNow(channel: Channel, data: bytes, fd: int) -> None:
        if fd >= 0:
            fds = array.array("i", (fd,))
            channel.sock.sendmsg(
                [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], _SEND_FLAGS
            )
        else:
            channel.sock.send(data, _SEND_FLAGS)

    def _queueChanged(self, channel: Channel, backedUp: bool) -> None:
        if self._pressure is not None:
            self._pressure(channel.key, backedUp)

    def _flushQueue(self, channel: Channel) -> None:
        while channel.queue:
            data, fd, _requestId = channel.queue[0]
            try:
                self._sendNow(channel, data, fd)
            except BlockingIOError:
                return
            except OSError as e:
                self._channelLost(channel, f"send failed: {os.strerror(e.errno or 0)}")
                return
            del channel.queue[0]
            if fd >= 0:
                os.close(fd)
        self._reactor.removeWriter(channel)
        self._queueChanged(channel, False)

    # --- receiving ------------------------------------------------------

    def _readEvents(self, channel: Channel) -> bool:
        """
        Handle up to a batch of messages; L{True} if more may be waiting.
        """
        for _ in range(_READ_BATCH):
            if channel.closed:
                return False
            try:
                data, anc, _flags, _addr = channel.sock.recvmsg(
                    _wire.MAX_MESSAGE, _ANC_SIZE, _RECV_FLAGS
                )
            except BlockingIOError:
                return False
            except OSError as e:
                self._channelLost(
                    channel, f"receive failed: {os.strerror(e.errno or 0)}"
                )
                return False
            fds: List[int] = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(payload) - len(payload) % 4
                    fds.extend(memoryview(payload)[:n].cast("i"))
            if not data:
                self._channelLost(channel, "the helper closed its socket")
                return False
            channel.progress = self._reactor.seconds()
            try:
                for event in _wire.decode(data):
                    try:
                        self._dispatch(channel, event, fds)
                    except Exception:
                        # A process protocol's bug must not take the channel
                        # (and every other child's reports) down with it.
                        _log.failure("spawn helper event {event!r}", event=event)
            finally:
                for fd in fds:
                    os.close(fd)
        return True

    def _drain(self, channel: Channel) -> None:
        """
        Handle everything a dead helper left in its socket.
        """
        for _ in range(10000):
            if not self._readEvents(channel):
                return

    def _dispatch(self, channel: Channel, event: tuple, fds: List[int]) -> None:
        kind = event[0]
        if kind == "s":
            _, requestId, pid = event
            request = self._take(requestId)
            if request is None:  # failed meanwhile: nobody follows it
                self._send(channel, _wire.signalMessage(pid, int(_signal.SIGKILL)), -1)
                return
            process = HelperProcess(self, pid, request.proto, request.setup, channel)
            self.running[pid] = process
            request.proto.makeConnection(process)
            request.deferred.callback(process)
        elif kind == "e":
            _, pid, status = event
            self._reportEnded(pid, reasonForStatus(status))
        elif kind == "x":
            _, pid, code, stage = event
            execFailed = self.running.get(pid)
            path = execFailed.setup.executable if execFailed else "?"
            if stage == "exec":
                _log.error(
                    "execv( {executable} ) failed: {reason}",
                    executable=path,
                    reason=os.strerror(code),
                    pid=pid,
                    errno=code,
                )
            else:
                _log.error(
                    "setting up the child for {executable} failed: {reason}",
                    executable=path,
                    reason=os.strerror(code),
                    pid=pid,
                    errno=code,
                )
        elif kind == "f":
            self._spawnFailed(channel, event)
        elif kind == "c":
            self._route(event, fds)
        elif kind == "g":
            _, forwarded, subId = event
            gone = self._subs.pop(subId, None)
            if gone is not None:
                self._drain(gone)  # dead: all it said is there
                forwarded = list(forwarded) + list(gone.requests)
            for requestId in forwarded:
                self._subHelperDied(requestId)
            if gone is not None:
                self._close(gone)
        elif kind == "r":
            self._isReady = True
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(None)
        if channel.orphaned:
            self._closeIdleOrphans()

    def _spawnFailed(self, channel: Channel, event: tuple) -> None:
        requestId, code = event[1], event[2]
        request = self._take(requestId)
        if request is None:
            return
        setup = request.setup
        credentials = credentialKey(setup) != (None, None, None)
        if len(event) > 3 and event[3] == "rlimits":
            why = (
                f"{channel.describe()} cannot restore its resource limits"
                " (changed with prlimit): it ends, the next spawn starts another"
            )
        elif code == errno.EAGAIN and credentials:
            why = f"the spawn sub-helper for uid {setup.uid} is backed up"
        else:
            why = f"fork failed: {os.strerror(code)}"
        _log.error("{executable}: {why}", executable=setup.executable, why=why)
        request.deferred.errback(SpawnError(why, code))

    def _route(self, event: tuple, fds: List[int]) -> None:
        """
        Send the template's next spawns straight to the sub-helper that
        starts its children.
        """
        _, subId, templateId, hasFd, subPid = event
        setup = self._setups.get(templateId)
        if hasFd:
            if not fds or setup is None:
                # Truncated (we are out of descriptors): we would never
                # hear from it; have it replaced.
                _log.error("spawn helper: no socket for sub-helper {pid}", pid=subPid)
                if self._control is not None:
                    self._send(self._control, _wire.killSubMessage(subId), -1)
                return
            sock = socket.socket(fileno=fds.pop(0))
            sock.setblocking(False)
            new = Channel(self, sock, subId, credentialKey(setup), subPid)
            new.progress = self._reactor.seconds()
            self._subs[subId] = new
            self._reactor.addReader(new)
        channel = self._subs.get(subId)
        if channel is None or channel.stuck or channel.closed:
            return
        self._routes[templateId] = channel
        # The root helper forwards this template's spawns to it: it is the
        # one that must answer them.
        for request in list(self._pending.values()):
            if request.templateId == templateId and request.channel is self._control:
                self._attribute(request, channel)

    def _subHelperDied(self, requestId: int) -> None:
        lost = self._take(requestId)
        if lost is not None:
            _log.error(
                "{executable}: the spawn sub-helper died before starting it",
                executable=lost.setup.executable,
            )
            lost.deferred.errback(SpawnError("spawn sub-helper died"))


__all__ = ["HelperSpawner", "HelperProcess", "HELPER_PATH"]
