# -*- test-case-name: tests.test_spawn_helper,tests.test_spawn_resilience -*-
"""
L{HelperLauncher}: the root spawn helper process's life: started (as root),
ready, ended.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable, Dict, List

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from xinetd_twisted.spawn.helperprocess import startHelperProcess
from xinetd_twisted.spawn.interfaces import SpawnError
from xinetd_twisted.spawn.orphans import OrphanReaper

_log = Logger(namespace="xinetd_twisted.spawn")

HELPER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper.py")

_BOOTSTRAP = (
    "import sys, _frozen_importlib as b, _frozen_importlib_external as e\n"
    "spec = e.spec_from_file_location('xinetd_twisted_helper', sys.argv[1])\n"
    "helper = b.module_from_spec(spec)\n"
    "spec.loader.exec_module(helper)\n"
    "helper.main(sys.argv[1:])\n"
)


def helperArguments(
    path: str = HELPER_PATH, fd: int = 3, schedSlice: int = 0, daemonPid: int = 0
) -> List[str]:
    """
    The helper's argv after the interpreter: C{-I -S} (no site, no
    environment, nothing on C{sys.path}) and the file at C{path} loaded
    through the import system rather than run as a script, so that it comes
    from its cached bytecode instead of being compiled at each start (which
    leaves about 1.7 MB behind in the helper); its channel is fd C{fd}.

    @param schedSlice: a scheduler slice in microseconds the helper gives
        itself, its sub-helpers and the daemon, process C{daemonPid}
        (L{xinetd_twisted.spawn.schedslice}); 0 for the kernel's default.
    """
    argv = ["-I", "-S", "-c", _BOOTSTRAP, path, str(fd)]
    if schedSlice > 0:
        argv += [str(schedSlice), str(daemonPid)]
    return argv


class HelperProtocol(ProcessProtocol):
    """
    Watches the helper process itself: logs what it writes to stderr and
    tells the launcher when it is gone.
    """

    def __init__(self, launcher: HelperLauncher) -> None:
        self._launcher = launcher

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            _log.warn("spawn helper: {line}", line=line)

    def processEnded(self, reason: Failure) -> None:
        self._launcher.helperEnded(self, reason)


def _credentials() -> tuple:
    return (os.getresuid(), os.getresgid(), sorted(os.getgroups()))


class HelperLauncher:
    """
    Starts the root helper and says when it is ready and when it has ended.

    @ivar startProcess: starts it: C{(reactor, protocol, argv, environment,
        fd to keep) -> transport} (L{startHelperProcess}; tests replace it).

    @ivar transport: the helper process's transport, L{None} when none runs.
    @ivar retired: whether the helper last started has said it exits because
        it was idle (so its end is no loss).
    @ivar schedSlice: the scheduler slice in microseconds each helper started
        gives itself, its sub-helpers and the daemon (0: none; see
        L{helperArguments}).
    """

    def __init__(
        self,
        reactor: Any,
        environment: Dict[str, str],
        reaper: OrphanReaper,
        ended: Callable[[bool], None],
        schedSlice: int = 0,
    ) -> None:
        """
        @param environment: the helper's own environment.
        @param schedSlice: see L{helperArguments}.
        @param ended: called with whether its end was expected (we were
            stopping it, or it L{retired}) when the helper process has
            ended, before L{whenEnded} fires.
        """
        self._reactor = reactor
        self._environment = environment
        self._reaper = reaper
        self._onEnded = ended
        self.schedSlice = schedSlice
        self._protocol: Any = None
        self.transport: Any = None
        self._ready: List[Deferred] = []
        self._ended: List[Deferred] = []
        self._isReady = False
        self._launchedAs: Any = None
        self.retired = False
        self.startProcess: Callable[..., Any] = startHelperProcess

    @property
    def running(self) -> bool:
        """
        Whether a helper process has been started and has not ended.
        """
        return self._protocol is not None

    def launch(self) -> socket.socket:
        """
        Start the helper; return (non-blocking) our end of its socket.  If
        it cannot be started that is logged, and the socket's other end is
        closed: what is sent on it fails as with a helper that died.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proto = HelperProtocol(self)
        argv = [
            sys.executable,
            *helperArguments(
                fd=theirs.fileno(), schedSlice=self.schedSlice, daemonPid=os.getpid()
            ),
        ]
        try:
            transport = self.startProcess(
                self._reactor, proto, argv, self._environment, theirs.fileno()
            )
        except OSError as e:
            _log.error(
                "cannot start the spawn helper: {reason}",
                reason=os.strerror(e.errno or 0),
            )
            transport = None
        finally:
            theirs.close()
        ours.setblocking(False)
        if transport is None:
            return ours
        # If it dies, what it started becomes ours (see orphans).
        self._reaper.becomeSubreaper()
        self._protocol = proto
        self.transport = transport
        self._isReady = False
        self.retired = False
        if self._launchedAs is None:
            self._launchedAs = _credentials()
        return ours

    def canRelaunch(self) -> bool:
        """
        Whether a helper started now would have the credentials of the
        first one: not once the daemon has dropped its privileges (twistd
        C{--uid}), when only the running helper can still start servers
        as other users.
        """
        return self._launchedAs is not None and _credentials() == self._launchedAs

    def retiring(self) -> None:
        """
        The running helper has said it exits because it is idle.
        """
        self.retired = True

    def kill(self) -> None:
        """
        SIGKILL the running helper, if any (its end is then a death).
        """
        if self.transport is not None:
            try:
                self.transport.signalProcess("KILL")
            except (ProcessExitedAlready, OSError):
                pass

    def whenReady(self) -> Deferred:
        """
        A Deferred that fires once the helper has said it is ready.
        """
        if self._isReady:
            return succeed(None)
        d: Deferred = Deferred()
        self._ready.append(d)
        return d

    def ready(self) -> None:
        """
        The helper has said it is ready.
        """
        self._isReady = True
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(None)

    def failReady(self, why: str) -> None:
        """
        The helper's socket is lost: it will never be ready.
        """
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(SpawnError(f"spawn helper: {why}"))

    def whenEnded(self) -> Deferred:
        """
        A Deferred that fires when the running helper process has ended.
        """
        d: Deferred = Deferred()
        self._ended.append(d)
        return d

    def helperEnded(self, proto: HelperProtocol, reason: Failure) -> None:
        """
        The helper process C{proto} watches has ended.
        """
        if proto is not self._protocol:
            return
        stopping = bool(self._ended)
        self._onEnded(stopping or self.retired)
        self._protocol = None
        self.transport = None
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)


__all__ = ["HELPER_PATH", "HelperLauncher", "HelperProtocol", "helperArguments"]
