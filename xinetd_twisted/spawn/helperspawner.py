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
from typing import Any, Callable, Dict, List, Optional, Tuple

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
from xinetd_twisted.spawn.interfaces import ChildSetup, ISpawner, SpawnError
from xinetd_twisted.spawn.status import reasonForStatus

_log = Logger(namespace="xinetd_twisted.spawn")

HELPER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper.py")
_SEND_FLAGS = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
_READ_BATCH = 64


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
        self, spawner: HelperSpawner, pid: int, proto: Any, setup: ChildSetup
    ) -> None:
        self.pid: Optional[int] = pid
        self.setup = setup
        self.proto = proto
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
class _Control:
    """
    The daemon's end of the control socket, as a reactor descriptor.
    """

    def __init__(self, spawner: HelperSpawner, sock: socket.socket) -> None:
        self.spawner = spawner
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "SpawnHelper"

    def doRead(self) -> None:
        return self.spawner._readEvents(self)

    def doWrite(self) -> None:
        return self.spawner._flushQueue(self)

    def connectionLost(self, reason: Failure) -> None:
        self.spawner._controlLost(self, "control socket lost")


@implementer(ISpawner)
class HelperSpawner:
    """
    Spawns through a helper process started (as root) by L{start}.

    @ivar maxQueued: how many messages may wait for the helper to read its
        socket before L{spawn} fails with L{SpawnError}.
    @ivar onBackPressure: called with L{True} when messages start to queue
        and L{False} when the queue is empty again, so listeners can pause.
    """

    def __init__(
        self,
        reactor: Any = None,
        maxQueued: int = 4096,
        onBackPressure: Optional[Callable[[bool], None]] = None,
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
        self.onBackPressure = onBackPressure
        self._helperEnv = dict(helperEnvironment or {})
        self._control: Optional[_Control] = None
        self._helperProtocol: Optional[_HelperProtocol] = None
        self._helperTransport: Any = None
        self._templates: Dict[ChildSetup, int] = {}
        self._pending: Dict[int, Tuple[Any, ChildSetup, Deferred]] = {}
        self._running: Dict[int, HelperProcess] = {}
        self._queue: List[Tuple[bytes, int]] = []
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
        Close the control socket; the helper exits and leaves running
        children alone.  Fires when the helper process has ended.
        """
        if self._helperProtocol is None:
            return succeed(None)
        d: Deferred = Deferred()
        self._ended.append(d)
        self._running.clear()  # left running: no processEnded will come
        if self._control is not None:
            self._controlLost(self._control, "spawner stopped")
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
        if len(self._queue) >= self.maxQueued:
            return fail(SpawnError("the spawn helper is backed up"))
        templateId = self._templates.get(setup)
        if templateId is None:
            templateId = self._register(setup)
        requestId = self._nextId
        self._nextId += 1
        d: Deferred = Deferred()
        self._pending[requestId] = (processProtocol, setup, d)
        self._send(
            _wire.spawnMessage(requestId, templateId, extraEnvironment), socketFD
        )
        return d

    def signalChild(self, pid: int, signal: int) -> None:
        """
        See L{ISpawner.signalChild}.
        """
        if pid in self._running and self._control is not None:
            self._send(_wire.signalMessage(pid, signal), -1)

    def isBackedUp(self) -> bool:
        """
        Whether messages are waiting for the helper to catch up.
        """
        return bool(self._queue)

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
        self._control = _Control(self, ours)
        self._templates = {}
        self._isReady = False
        self._reactor.addReader(self._control)

    def _helperEnded(self, proto: _HelperProtocol, reason: Failure) -> None:
        if proto is not self._helperProtocol:
            return
        if self._control is not None:
            self._controlLost(self._control, "spawn helper ended")
        self._helperProtocol = None
        self._helperTransport = None
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)

    def _controlLost(self, control: _Control, why: str) -> None:
        if control is not self._control:
            return
        self._control = None
        self._reactor.removeReader(control)
        self._reactor.removeWriter(control)
        control.sock.close()
        for _data, fd in self._queue:
            if fd >= 0:
                os.close(fd)
        wasBackedUp = bool(self._queue)
        self._queue = []
        if wasBackedUp and self.onBackPressure is not None:
            self.onBackPressure(False)
        pending, self._pending = self._pending, {}
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(SpawnError(f"spawn helper: {why}"))
        for _proto, _setup, d in pending.values():
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
        for message in _wire.templateMessages(templateId, blob):
            self._send(message, -1)
        self._templates[setup] = templateId
        return templateId

    def _send(self, data: bytes, fd: int) -> None:
        control = self._control
        assert control is not None
        if not self._queue:
            try:
                if fd >= 0:
                    fds = array.array("i", (fd,))
                    control.sock.sendmsg(
                        [data],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
                        _SEND_FLAGS,
                    )
                else:
                    control.sock.send(data, _SEND_FLAGS)
                return
            except BlockingIOError:
                pass
            except OSError as e:
                self._controlLost(control, f"send failed: {os.strerror(e.errno or 0)}")
                return
        # The caller closes its fd when we return: keep our own copy.
        self._queue.append((data, os.dup(fd) if fd >= 0 else -1))
        if len(self._queue) == 1:
            self._reactor.addWriter(control)
            if self.onBackPressure is not None:
                self.onBackPressure(True)

    def _flushQueue(self, control: _Control) -> None:
        while self._queue:
            data, fd = self._queue[0]
            try:
                if fd >= 0:
                    fds = array.array("i", (fd,))
                    control.sock.sendmsg(
                        [data],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
                        _SEND_FLAGS,
                    )
                else:
                    control.sock.send(data, _SEND_FLAGS)
            except BlockingIOError:
                return
            except OSError as e:
                self._controlLost(control, f"send failed: {os.strerror(e.errno or 0)}")
                return
            del self._queue[0]
            if fd >= 0:
                os.close(fd)
        self._reactor.removeWriter(control)
        if self.onBackPressure is not None:
            self.onBackPressure(False)

    # --- receiving ------------------------------------------------------

    def _readEvents(self, control: _Control) -> None:
        for _ in range(_READ_BATCH):
            if control is not self._control:
                return
            try:
                data = control.sock.recv(_wire.MAX_MESSAGE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                self._controlLost(
                    control, f"receive failed: {os.strerror(e.errno or 0)}"
                )
                return
            if not data:
                self._controlLost(control, "the helper closed its socket")
                return
            for event in _wire.decode(data):
                self._dispatch(event)

    def _dispatch(self, event: tuple) -> None:
        kind = event[0]
        if kind == "s":
            _, requestId, pid = event
            proto, setup, d = self._pending.pop(requestId)
            process = HelperProcess(self, pid, proto, setup)
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
            _proto, setup, d = self._pending.pop(requestId)
            _log.error(
                "{executable}: fork failed: {reason}",
                executable=setup.executable,
                reason=os.strerror(code),
            )
            d.errback(SpawnError(f"fork failed: {os.strerror(code)}", code))
        elif kind == "g":
            for requestId in event[1]:
                lost = self._pending.pop(requestId, None)
                if lost is not None:
                    _log.error(
                        "{executable}: the spawn sub-helper died before starting it",
                        executable=lost[1].executable,
                    )
                    lost[2].errback(SpawnError("spawn sub-helper died"))
        elif kind == "r":
            self._isReady = True
            ready, self._ready = self._ready, []
            for d in ready:
                d.callback(None)


__all__ = ["HelperSpawner", "HelperProcess", "HELPER_PATH"]
