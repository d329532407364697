# -*- test-case-name: tests.test_spawn_helper,tests.test_spawn_resilience -*-
"""
The children the helpers started and not yet reaped: their transports
(L{HelperProcess}) and L{Children}, which reports each one's end once, also
when its helper died and the daemon adopted it.
"""

from __future__ import annotations

import signal as _signal
from typing import Any, Callable, Dict, List, Optional

from twisted.internet.address import _ProcessAddress
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.interfaces import ChildSetup, ISpawner
from xinetd_twisted.spawn.orphans import OrphanReaper
from xinetd_twisted.spawn.status import reasonForStatus

_log = Logger(namespace="xinetd_twisted.spawn")


@implementer(IProcessTransport)
class HelperProcess:
    """
    The transport of one child started by the helper.

    The child has no pipes to the daemon (its fds 0-2 are the client's
    socket), so the stream methods do nothing.

    @ivar pid: the child's pid, L{None} once it has been reaped.
    @ivar setup: the L{ChildSetup} it was started with.
    @ivar proto: its process protocol, L{None} once told it ended.
    @ivar channel: the channel of the helper that started it (its parent).
    @ivar adopted: whether the daemon is its parent now (its helper died)
        and reaps and signals it itself.
    """

    def __init__(
        self,
        spawner: ISpawner,
        pid: int,
        proto: Any,
        setup: ChildSetup,
        channel: Channel,
    ) -> None:
        self.pid: Optional[int] = pid
        self.setup = setup
        self.proto = proto
        self.channel = channel
        self.adopted = False
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


class Children:
    """
    The running children by pid, each reported ended once: by its helper,
    or, when that died, by the daemon that adopted it (L{OrphanReaper}).

    @ivar running: C{{pid: HelperProcess}} of the children not reaped yet.
    """

    def __init__(self, spawner: ISpawner, reaper: OrphanReaper) -> None:
        """
        @param spawner: what the children's transports signal them through.
        """
        self._spawner = spawner
        self._reaper = reaper
        self.running: Dict[int, HelperProcess] = {}

    def started(
        self, pid: int, proto: Any, setup: ChildSetup, channel: Channel
    ) -> HelperProcess:
        """
        Follow a child C{channel}'s peer started; return its transport.
        """
        process = HelperProcess(self._spawner, pid, proto, setup, channel)
        self.running[pid] = process
        return process

    def executable(self, pid: int) -> str:
        """
        The program a running child was started with (C{"?"} if unknown).
        """
        process = self.running.get(pid)
        return process.setup.executable if process else "?"

    def startedBy(self, channel: Channel) -> bool:
        """
        Whether a running child was started by C{channel}'s peer.
        """
        return any(p.channel is channel for p in self.running.values())

    def helperParented(self) -> bool:
        """
        Whether a running child's parent is a helper of the running root
        helper (not the daemon, which adopted it, nor a sub-helper of a
        dead root helper).
        """
        return any(not (p.adopted or p.channel.orphaned) for p in self.running.values())

    def signal(self, pid: int, signal: int, control: Optional[Channel]) -> None:
        """
        Signal a running child through whoever is its parent now.
        """
        process = self.running.get(pid)
        if process is None:
            return
        if process.adopted:  # ours: its helper died
            self._reaper.signal(pid, signal)
            return
        message = _wire.signalMessage(pid, signal)
        channel = process.channel
        if not channel.closed:
            channel.send(message, -1)
        if (channel.closed or channel.stuck) and control is not None:
            # Its sub-helper has died (or is being killed): the root
            # helper has adopted it.
            control.send(message, -1)

    def adoptOrphans(
        self, orphanedSubs: List[Channel], subReaped: Callable[[Channel], None]
    ) -> None:
        """
        Follow, as their parent, the children of the dead root helper (and
        the orphans it had adopted); sub-helpers go on reporting theirs,
        and C{subReaped(channel)} is called when one of them is reaped.
        """
        followed = 0
        for process in list(self.running.values()):
            if process.channel.subId is not None and not process.channel.closed:
                continue  # its sub-helper lives on
            if self._adopt(process):
                followed += 1
        for channel in orphanedSubs:
            if channel.subPid is not None:
                self._reaper.adopt(
                    channel.subPid, _subReapedCallback(subReaped, channel)
                )
        _log.error(
            "spawn helper ended; {count} server(s) it started are followed"
            " by the daemon, {subs} sub-helper(s) go on for theirs",
            count=followed,
            subs=len(orphanedSubs),
        )
        self._reaper.reapStrays()

    def adoptFrom(self, channel: Channel) -> None:
        """
        Follow as their parent the children of C{channel}'s dead peer.
        """
        for process in list(self.running.values()):
            if process.channel is channel and not process.adopted:
                self._adopt(process)

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
        self.ended(pid, Failure(ProcessTerminated(status=None)))
        return False

    def _adoptedEnded(self, pid: int, status: int) -> None:
        if status < 0:
            self.ended(pid, Failure(ProcessTerminated(status=None)))
        else:
            self.ended(pid, reasonForStatus(status))

    def ended(self, pid: int, reason: Failure) -> None:
        """
        Report a child ended (once: later reports of C{pid} are ignored).
        """
        ended = self.running.pop(pid, None)
        if ended is None:
            return
        ended.pid = None
        # The protocol and its transport point at each other: part them, so
        # that a connection's objects go by reference counting and none are
        # left for the cyclic collector (whose full passes over the daemon's
        # heap are the slowest pauses on the spawn path).
        proto, ended.proto = ended.proto, None
        proto.processExited(reason)
        proto.processEnded(reason)

    def stop(self) -> None:
        """
        Stop following: children left running go to init, not to us.
        """
        self._reaper.stop()
        self.running.clear()  # left running: no processEnded will come


def _subReapedCallback(
    subReaped: Callable[[Channel], None], channel: Channel
) -> Callable[[int], None]:
    return lambda status: subReaped(channel)


__all__ = ["Children", "HelperProcess"]
