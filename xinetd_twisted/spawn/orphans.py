# -*- test-case-name: tests.test_spawn_helper -*-
"""
The daemon's side of "a spawn helper died but its children did not".

The daemon makes itself a child subreaper (C{prctl(PR_SET_CHILD_SUBREAPER)})
while it uses the helper.  When the root helper dies, the servers it started
(and the orphans it had adopted, and its sub-helpers) become the daemon's
children; when a sub-helper dies after that, its children do too.  An
L{OrphanReaper} then follows each such pid through Twisted's own reaping
(L{twisted.internet.process.registerReapProcessHandler}: the reactor calls
C{reapProcess} on every C{SIGCHLD}, and only for pids registered there, so
these pids must be registered, and only once they are really ours, or
Twisted logs a failed C{waitpid}).

Why a subreaper rather than pidfds: a pidfd says when a process has ended,
but only its parent can learn how (the exit status for the EXIT line), and
the parent of an orphan is whoever adopts it: C{init} unless the daemon is a
subreaper.  And an unreaped child's pid cannot be recycled, so signalling a
child the daemon has adopted (and not yet reaped) is as safe as a pidfd.
What neither gives: a daemon that is no longer root cannot signal children
running as other users once no helper is left to do it for it.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Dict, List

from twisted.internet import process as _twistedProcess
from twisted.logger import Logger

_log = Logger(namespace="xinetd_twisted.spawn")

PR_SET_CHILD_SUBREAPER = 36


def setChildSubreaper(on: bool) -> bool:
    """
    Make this process a child subreaper (or stop being one); L{False} when
    the platform cannot.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def isOurChild(pid: int) -> bool:
    """
    Whether C{pid} is an unreaped child of this process (which it stays
    until we reap it, so its pid cannot be recycled meanwhile).
    """
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return False
    return True


def ourChildren() -> List[int]:
    """
    The pids of this process's children (running or zombie).
    """
    pids: List[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # pragma: no cover - no /proc
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
        except (OSError, ValueError):
            pass
    return pids


class _Adopted:
    """
    The reap handler Twisted calls for one adopted pid.

    @ivar ended: called with the wait status once the pid is reaped.
    """

    def __init__(self, reaper: OrphanReaper, pid: int, ended: Callable[[int], None]):
        self.pid = pid
        self._reaper = reaper
        self.ended = ended

    def reapProcess(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, -1  # reaped by someone else: unknown
        if pid:
            _twistedProcess.unregisterReapProcessHandler(self.pid, self)
            self.processEnded(status)

    def processEnded(self, status: int) -> None:
        self._reaper.reaped(self, status)


class OrphanReaper:
    """
    Reaps the children the daemon adopted as a subreaper, reporting each
    one's real wait status once.

    @cvar strayScanInterval: seconds between looks for strays: descendants
        of a dead helper that became ours without our knowing (a server's
        own background process), which nobody else would reap.
    @ivar adopted: C{{pid: handler}} of the pids followed now.
    """

    strayScanInterval = 30.0

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.adopted: Dict[int, _Adopted] = {}
        self._scan: Any = None
        self._subreaper = False

    def becomeSubreaper(self) -> None:
        """
        Make the daemon the adopter of its helpers' orphans (idempotent).
        """
        if not self._subreaper:
            self._subreaper = setChildSubreaper(True)

    def adopt(self, pid: int, ended: Callable[[int], None]) -> bool:
        """
        Follow C{pid}, a child of ours now; C{ended(status)} is called once
        it has been reaped (at once if it already has ended).

        @return: L{False} when C{pid} is not (or no longer) our child.
        """
        if pid in self.adopted:
            return True
        if pid in _twistedProcess.reapProcessHandlers or not isOurChild(pid):
            return False
        handler = _Adopted(self, pid, ended)
        self.adopted[pid] = handler
        _twistedProcess.registerReapProcessHandler(pid, handler)
        return True

    def signal(self, pid: int, signalNumber: int) -> bool:
        """
        Send a signal to an adopted, unreaped child; L{False} if it is not
        one or we may not (a daemon that is no longer root).
        """
        if pid not in self.adopted:
            return False
        try:
            os.kill(pid, signalNumber)
        except OSError as e:
            _log.warn(
                "cannot signal orphaned server {pid}: {reason}",
                pid=pid,
                reason=os.strerror(e.errno or 0),
            )
            return False
        return True

    def reaped(self, handler: _Adopted, status: int) -> None:
        """
        The pid C{handler} follows has been reaped with C{status}.
        """
        if self.adopted.get(handler.pid) is handler:
            del self.adopted[handler.pid]
        # Whatever this one left running (a sub-helper's children) may be
        # ours now: the caller's callback adopts the ones it knows.
        handler.ended(status)
        self.reapStrays()

    def reapStrays(self) -> int:
        """
        Reap, status unreported, children of ours that nobody follows (a
        server's own background process left by a dead helper): they would
        stay zombies.  Look again later while any is left, or any adopted
        child could leave more.

        @return: how many strays still run.
        """
        running = 0
        for pid in ourChildren():
            if pid in self.adopted or pid in _twistedProcess.reapProcessHandlers:
                continue
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if not done:
                running += 1
        if (running or self.adopted) and self._scan is None:
            self._scan = self._reactor.callLater(self.strayScanInterval, self._periodic)
        return running

    def _periodic(self) -> None:
        self._scan = None
        self.reapStrays()

    def stop(self) -> None:
        """
        Stop adopting and following: children left running are left alone.
        """
        if self._subreaper:
            setChildSubreaper(False)
            self._subreaper = False
        for pid, handler in list(self.adopted.items()):
            _twistedProcess.unregisterReapProcessHandler(pid, handler)
        self.adopted.clear()
        if self._scan is not None and self._scan.active():
            self._scan.cancel()
        self._scan = None


__all__ = ["OrphanReaper", "isOurChild", "ourChildren", "setChildSubreaper"]
