# -*- test-case-name: tests.test_spawn_launcher -*-
"""
Starting the root spawn helper process cheaply, since it is started again
each time a retired one is needed (L{xinetd_twisted.spawn.retirement}).

L{startHelperProcess} uses L{subprocess.Popen}, which on Linux creates the
child with C{vfork} and execs it from C: the daemon's memory is neither
copied nor touched, and descriptors are closed with C{close_range}.
Twisted's C{spawnProcess} either forks the whole daemon and runs Python in
the child to close its descriptors one by one (with C{uid}: tens of
milliseconds with 1000 services), or uses C{posix_spawn}, whose glibc
implementation leaves its internal signals 32 and 33 ignored in the new
program, and ignored stays ignored across the helper's children's exec.
C{_posixsubprocess} skips those signals, which exec then resets.

The child is reaped through Twisted's own reaping (its C{SIGCHLD}
handler calls L{HelperTransport.reapProcess}); its standard output and
error share one pipe, given to the process protocol as C{childFD} 2.
"""

from __future__ import annotations

import os
import signal as _signal
import subprocess
from typing import Any, Dict, List

from twisted.internet import main as _main
from twisted.internet import process as _twistedProcess
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from xinetd_twisted.spawn.status import reasonForStatus


class HelperTransport:
    """
    The running helper process: its pid (L{None} once reaped) and a way to
    signal it, as much of an C{IProcessTransport} as the launcher uses.
    """

    def __init__(self, popen: subprocess.Popen, proto: Any) -> None:
        self._popen = popen
        self._proto = proto
        self.pid: Any = popen.pid

    def signalProcess(self, signalID: Any) -> None:
        """
        Send C{signalID} (C{"KILL"}, C{"TERM"}... or a number); unreaped,
        its pid cannot have been recycled.
        """
        if self.pid is None:
            raise ProcessExitedAlready()
        if isinstance(signalID, str):
            signalID = getattr(_signal, "SIG" + signalID)
        os.kill(self.pid, signalID)

    def reapProcess(self) -> None:
        """
        Reap the helper if it has ended (Twisted calls this on C{SIGCHLD}).
        """
        pid = self.pid
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0  # reaped by someone else
        if done:
            _twistedProcess.unregisterReapProcessHandler(pid, self)
            self.processEnded(status)

    def processEnded(self, status: int) -> None:
        """
        The helper has been reaped with wait status C{status}.
        """
        self.pid = None
        # Popen must not reap it again (nor keep it in subprocess._active).
        self._popen.returncode = status
        self._proto.processEnded(reasonForStatus(status))


@implementer(IReadDescriptor)
class _HelperOutput:
    """
    The read end of the helper's stdout and stderr pipe.
    """

    def __init__(self, reactor: Any, fd: int, proto: Any) -> None:
        self._reactor = reactor
        self._fd = fd
        self._proto = proto

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "SpawnHelperOutput"

    def doRead(self) -> Any:
        try:
            data = os.read(self._fd, 8192)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            return _main.CONNECTION_DONE
        self._proto.childDataReceived(2, data)
        return None

    def connectionLost(self, reason: Any) -> None:
        self._reactor.removeReader(self)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def startHelperProcess(
    reactor: Any,
    proto: Any,
    argv: List[str],
    environment: Dict[str, str],
    keep: int,
) -> HelperTransport:
    """
    Start C{argv} with C{environment}, stdin C{/dev/null}, stdout and
    stderr a pipe whose data C{proto.childDataReceived} gets, descriptor
    C{keep} left open under its own number and every other closed; its end
    is told to C{proto.processEnded}.

    @raise OSError: when it cannot be started.
    """
    readEnd, writeEnd = os.pipe()
    try:
        popen = subprocess.Popen(
            argv,
            executable=argv[0],
            stdin=subprocess.DEVNULL,
            stdout=writeEnd,
            stderr=writeEnd,
            pass_fds=(keep,),
            close_fds=True,
            env=environment,
        )
    except BaseException:
        os.close(readEnd)
        raise
    finally:
        os.close(writeEnd)
    os.set_blocking(readEnd, False)
    output = _HelperOutput(reactor, readEnd, proto)
    reactor.addReader(output)
    transport = HelperTransport(popen, proto)
    # Next turn: registering reaps it at once if it has already ended,
    # which the caller must hear of after it has this transport.
    reactor.callLater(
        0, _twistedProcess.registerReapProcessHandler, popen.pid, transport
    )
    return transport


__all__ = ["HelperTransport", "startHelperProcess"]
