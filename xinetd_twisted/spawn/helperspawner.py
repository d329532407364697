# -*- test-case-name: tests.test_spawn_helper -*-
"""
L{HelperSpawner}: the fast, faithful L{ISpawner}, talking to the spawn helper
(L{xinetd_twisted.spawn.helper}) over a C{SOCK_SEQPACKET} socketpair.

Per connection the reactor encodes one small message, sends it with the
connection's fd attached and closes its own copy; the helper forks, sets the
child up as xinetd does and reports back.  Reaping, exit statuses and exec
failures arrive as batched events on the same socket.
"""

from __future__ import annotations

import array
import os
import signal as _signal
import socket
import sys
import warnings
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.internet.address import _ProcessAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import (
    IProcessTransport,
    IReadDescriptor,
    IWriteDescriptor,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.spawn import helper as _wire
from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    ISpawner,
    PressureObserver,
    SpawnError,
)
from xinetd_twisted.spawn.status import reasonForStatus

_log = Logger(namespace="xinetd_twisted.spawn")

HELPER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper.py")
_SEND_FLAGS = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
_READ_BATCH = 64
_RECV_FLAGS = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
_ANC_SIZE = socket.CMSG_SPACE(_wire.MAX_EVENTS_PER_MESSAGE * 4)


@implementer(IProcessTransport)
class HelperProcess:
    """
    The transport of one child started by the helper.

    The child has no pipes to the daemon (its fds 0-2 are the client's
    socket), so the stream methods do nothing.

    @ivar pid: the child's pid, L{None} once it has been reaped.
    @ivar setup: the L{ChildSetup} it was started with.
    """

    def __init__(
        self,
        spawner: HelperSpawner,
        pid: int,
        proto: Any,
        setup: ChildSetup,
        channel: _Channel,
    ) -> None:
        self.pid: Optional[int] = pid
        self.setup = setup
        self.proto = proto
        self.channel = channel
        self._spawner = spawner

    def signalProcess(self, signalID: Any) -> None:
        """
        Signal the child (C{"KILL"}, C{"TERM"}, C{"INT"} or a number) through
        the helper, which only signals it while it is unreaped.
        """
        if self.pid is None:
            raise ProcessExitedAlready()
        if isinstance(signalID, str):
            signalID = getattr(_signal, "SIG" + signalID)
        self._spawner.signalChild(self.pid, int(signalID))

    def closeStdin(self) -> None:
        """Nothing to close: the child has no pipe from us."""

    def closeStdout(self) -> None:
        """Nothing to close: the child has no pipe to us."""

    def closeStderr(self) -> None:
        """Nothing to close: the child has no pipe to us."""

    def closeChildFD(self, descriptor: int) -> None:
        """Nothing to close: the child has no pipes to us."""

    def writeToChild(self, childFD: int, data: bytes) -> None:
        """Dropped: the child reads the client's socket, not us."""

    def write(self, data: bytes) -> None:
        """Dropped: the child reads the client's socket, not us."""

    def writeSequence(self, data: Any) -> None:
        """Dropped: the child reads the client's socket, not us."""

    def loseConnection(self) -> None:
        """Nothing to close: the child has no pipes to us."""

    def getPeer(self) -> _ProcessAddress:
        """A process has no network address."""
        return _ProcessAddress()

    def getHost(self) -> _ProcessAddress:
        """A process has no network address."""
        return _ProcessAddress()


class _HelperProtocol(ProcessProtocol):
    """
    Watches the helper process itself: logs what it writes to stderr and
    tells the spawner when it is gone.
    """

    def __init__(self, spawner: HelperSpawner) -> None:
        self._spawner = spawner

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            _log.warn("spawn helper: {line}", line=line)

    def processEnded(self, reason: Failure) -> None:
        self._spawner._helperEnded(self, reason)


@implementer(IReadDescriptor, IWriteDescriptor)
class _Channel:
    """
    A socket to the root helper (C{subId} L{None}) or straight to one
    sub-helper, as a reactor descriptor, with its own send queue.

    @ivar queue: C{(message, fd or -1, requestId or 0)} waiting for the
        peer to read its socket.
    @ivar templates: template ids registered on this channel (sub-helpers).
    """

    def __init__(
        self, spawner: HelperSpawner, sock: socket.socket, subId: Optional[int]
    ) -> None:
        self.spawner = spawner
        self.sock = sock
        self.subId = subId
        self.queue: List[Tuple[bytes, int, int]] = []
        self.templates: Set[int] = set()
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "SpawnHelper" if self.subId is None else "SpawnSubHelper"

    def doRead(self) -> None:
        return self.spawner._readEvents(self)

    def doWrite(self) -> None:
        return self.spawner._flushQueue(self)

    def connectionLost(self, reason: Failure) -> None:
        self.spawner._channelLost(self, "socket lost")


@implementer(ISpawner)
class HelperSpawner:
    """
    Spawns through a helper process started (as root) by L{start}, and
    through the per-credential sub-helpers it creates, each reached on its
    own channel once the helper has handed it over.

    @ivar maxQueued: how many messages may wait on one channel for its
        peer to read before L{spawn} fails with L{SpawnError}.
    @ivar _pressure: the L{PressureObserver}: told C{(None, True)} when
        messages start to queue on any channel and C{(None, False)} when no
        channel has a queue any more, so listeners can pause.
    """

    def __init__(
        self,
        reactor: Any = None,
        maxQueued: int = 4096,
        helperEnvironment: Optional[Dict[str, str]] = None,
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess} and C{IReactorFDSet}.
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
        self._control: Optional[_Channel] = None
        self._subs: Dict[int, _Channel] = {}  # subId -> channel
        self._routes: Dict[int, _Channel] = {}  # templateId -> sub channel
        self._backedUp = 0  # channels with a queue
        self._helperProtocol: Optional[_HelperProtocol] = None
        self._helperTransport: Any = None
        self._templates: Dict[ChildSetup, int] = {}
        self._pending: Dict[int, Tuple[Any, ChildSetup, Deferred, _Channel]] = {}
        self._running: Dict[int, HelperProcess] = {}
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
        if self._helperProtocol is None:
            return succeed(None)
        d: Deferred = Deferred()
        self._ended.append(d)
        self._running.clear()  # left running: no processEnded will come
        if self._control is not None:
            self._channelLost(self._control, "spawner stopped")
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
        if channel is not None and not channel.closed:
            if len(channel.queue) >= self.maxQueued:
                return fail(SpawnError("the spawn sub-helper is backed up"))
            requestId = self._sendSpawn(
                channel, templateId, setup, socketFD, extraEnvironment
            )
            if requestId:
                return self._expect(requestId, processProtocol, setup, channel)
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
        return self._expect(requestId, processProtocol, setup, control)

    def observePressure(self, observer: Optional[PressureObserver]) -> None:
        """
        See L{ISpawner.observePressure}.
        """
        self._pressure = observer

    def signalChild(self, pid: int, signal: int) -> None:
        """
        See L{ISpawner.signalChild}.
        """
        process = self._running.get(pid)
        if process is None or self._control is None:
            return
        channel = process.channel
        if channel.closed:
            # The root helper passes it on to every sub-helper.
            channel = self._control
        # int(): a signal.Signals member does not marshal.
        self._send(channel, _wire.signalMessage(pid, int(signal)), -1)

    def isBackedUp(self) -> bool:
        """
        Whether messages are waiting on any channel for a helper to catch up.
        """
        return self._backedUp > 0

    # --- helper lifecycle ---------------------------------------------

    def _launch(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proto = _HelperProtocol(self)
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
        ours.setblocking(False)
        self._helperProtocol = proto
        self._helperTransport = transport
        self._control = _Channel(self, ours, None)
        self._templates = {}
        self._routes = {}
        self._isReady = False
        self._reactor.addReader(self._control)

    def _helperEnded(self, proto: _HelperProtocol, reason: Failure) -> None:
        if proto is not self._helperProtocol:
            return
        if self._control is not None:
            self._channelLost(self._control, "spawn helper ended")
        self._helperProtocol = None
        self._helperTransport = None
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)

    def _close(self, channel: _Channel) -> List[int]:
        """
        Close a channel; return the request ids of its unsent spawns.
        """
        channel.closed = True
        self._reactor.removeReader(channel)
        self._reactor.removeWriter(channel)
        channel.sock.close()
        unsent = []
        for _data, fd, requestId in channel.queue:
            if fd >= 0:
                os.close(fd)
            if requestId:
                unsent.append(requestId)
        if channel.queue:
            channel.queue = []
            self._queueChanged(-1)
        if channel.subId is not None:
            self._subs.pop(channel.subId, None)
            for templateId in [t for t, c in self._routes.items() if c is channel]:
                del self._routes[templateId]
        return unsent

    def _channelLost(self, channel: _Channel, why: str) -> None:
        if channel.closed:
            return
        if channel.subId is not None:
            # The children it started are reaped by the root helper; the
            # spawns it may still have started fail on its "g" event, which
            # comes after all it said.  Unsent ones fail now.
            for requestId in self._close(channel):
                self._subHelperDied(requestId)
            return
        if channel is not self._control:
            return
        self._control = None
        self._close(channel)
        for sub in list(self._subs.values()):
            self._close(sub)
        pending, self._pending = self._pending, {}
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(SpawnError(f"spawn helper: {why}"))
        for _proto, _setup, d, _channel in pending.values():
            d.errback(SpawnError(f"spawn helper: {why}"))
        running, self._running = self._running, {}
        for pid, process in running.items():
            _log.error(
                "spawn helper: {why}; child {pid} ({executable}) can no longer"
                " be followed and is reported ended",
                why=why,
                pid=pid,
                executable=process.setup.executable,
            )
            process.pid = None
            reason = Failure(ProcessTerminated(status=None))
            process.proto.processExited(reason)
            process.proto.processEnded(reason)

    # --- sending --------------------------------------------------------

    def _register(self, setup: ChildSetup) -> int:
        templateId = self._nextId
        self._nextId += 1
        assert self._control is not None
        for message in self._templateMessages(templateId, setup):
            self._send(self._control, message, -1)
        self._templates[setup] = templateId
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
        channel: _Channel,
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
        self, requestId: int, proto: Any, setup: ChildSetup, channel: _Channel
    ) -> Deferred:
        d: Deferred = Deferred()
        self._pending[requestId] = (proto, setup, d, channel)
        return d

    def _send(
        self, channel: _Channel, data: bytes, fd: int, requestId: int = 0
    ) -> bool:
        """
        Send or queue a message; L{False} when the channel is lost (and the
        message was neither sent nor queued).
        """
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
        channel.queue.append((data, os.dup(fd) if fd >= 0 else -1, requestId))
        if len(channel.queue) == 1:
            self._reactor.addWriter(channel)
            self._queueChanged(+1)
        return True

    @staticmethod
    def _sendNow(channel: _Channel, data: bytes, fd: int) -> None:
        if fd >= 0:
            fds = array.array("i", (fd,))
            channel.sock.sendmsg(
                [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], _SEND_FLAGS
            )
        else:
            channel.sock.send(data, _SEND_FLAGS)

    def _queueChanged(self, delta: int) -> None:
        self._backedUp += delta
        if self._pressure is not None and self._backedUp == (delta > 0):
            self._pressure(None, delta > 0)

    def _flushQueue(self, channel: _Channel) -> None:
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
        self._queueChanged(-1)

    # --- receiving ------------------------------------------------------

    def _readEvents(self, channel: _Channel) -> None:
        for _ in range(_READ_BATCH):
            if channel.closed:
                return
            try:
                data, anc, _flags, _addr = channel.sock.recvmsg(
                    _wire.MAX_MESSAGE, _ANC_SIZE, _RECV_FLAGS
                )
            except BlockingIOError:
                return
            except OSError as e:
                self._channelLost(
                    channel, f"receive failed: {os.strerror(e.errno or 0)}"
                )
                return
            fds: List[int] = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(payload) - len(payload) % 4
                    fds.extend(memoryview(payload)[:n].cast("i"))
            if not data:
                self._channelLost(channel, "the helper closed its socket")
                return
            try:
                for event in _wire.decode(data):
                    try:
                        self._dispatch(event, fds)
                    except Exception:
                        # A process protocol's bug must not take the channel
                        # (and every other child's reports) down with it.
                        _log.failure("spawn helper event {event!r}", event=event)
            finally:
                for fd in fds:
                    os.close(fd)

    def _dispatch(self, event: tuple, fds: List[int]) -> None:
        kind = event[0]
        if kind == "s":
            _, requestId, pid = event
            proto, setup, d, channel = self._pending.pop(requestId)
            process = HelperProcess(self, pid, proto, setup, channel)
            self._running[pid] = process
            proto.makeConnection(process)
            d.callback(process)
        elif kind == "e":
            _, pid, status = event
            ended = self._running.pop(pid, None)
            if ended is None:
                return
            ended.pid = None
            reason = reasonForStatus(status)
            ended.proto.processExited(reason)
            ended.proto.processEnded(reason)
        elif kind == "x":
            _, pid, code, stage = event
            execFailed = self._running.get(pid)
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
            _, requestId, code = event
            _proto, setup, d, _channel = self._pending.pop(requestId)
            _log.error(
                "{executable}: fork failed: {reason}",
                executable=setup.executable,
                reason=os.strerror(code),
            )
            d.errback(SpawnError(f"fork failed: {os.strerror(code)}", code))
        elif kind == "c":
            self._route(event, fds)
        elif kind == "g":
            _, forwarded, subId = event
            lost = [
                requestId
                for requestId, entry in self._pending.items()
                if entry[3].subId == subId
            ]
            for requestId in list(forwarded) + lost:
                self._subHelperDied(requestId)
            gone = self._subs.get(subId)
            if gone is not None:
                self._close(gone)
        elif kind == "r":
            self._isReady = True
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(None)

    def _route(self, event: tuple, fds: List[int]) -> None:
        """
        Send the template's next spawns straight to the sub-helper that
        starts its children.
        """
        _, subId, templateId, hasFd = event
        if hasFd:
            if not fds:  # truncated: keep going through the root helper
                return
            sock = socket.socket(fileno=fds.pop(0))
            sock.setblocking(False)
            new = _Channel(self, sock, subId)
            self._subs[subId] = new
            self._reactor.addReader(new)
        channel = self._subs.get(subId)
        if channel is not None:
            self._routes[templateId] = channel

    def _subHelperDied(self, requestId: int) -> None:
        lost = self._pending.pop(requestId, None)
        if lost is not None:
            _log.error(
                "{executable}: the spawn sub-helper died before starting it",
                executable=lost[1].executable,
            )
            lost[2].errback(SpawnError("spawn sub-helper died"))


__all__ = ["HelperSpawner", "HelperProcess", "HELPER_PATH"]
