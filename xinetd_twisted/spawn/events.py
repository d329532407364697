# -*- test-case-name: tests.test_spawn_helper,tests.test_spawn_watchdog -*-
"""
L{HelperEvents}: what the daemon does with each event a helper reports (see
the wire format in L{xinetd_twisted.spawn.helper}).
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import socket
from typing import List, Optional

from twisted.logger import Logger
from zope.interface import implementer

from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel, IChannelOwner
from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.delegation import Delegations
from xinetd_twisted.spawn.interfaces import (
    PressureObserver,
    SpawnError,
    credentialKey,
)
from xinetd_twisted.spawn.launcher import HelperLauncher
from xinetd_twisted.spawn.requests import InFlight
from xinetd_twisted.spawn.retirement import IdleRetirement, RootRetirement
from xinetd_twisted.spawn.status import reasonForStatus
from xinetd_twisted.spawn.table import ChannelTable
from xinetd_twisted.spawn.templates import Templates
from xinetd_twisted.spawn.watchdog import StuckWatchdog

_log = Logger(namespace="xinetd_twisted.spawn")


def _nothing() -> None:
    """What follows an orphaned sub-helper's giving back its sockets."""


@implementer(IChannelOwner)
class HelperEvents:
    """
    The owner of every channel: hands each helper event to the part it
    concerns, and tells the watchdog and the pressure observer.

    @ivar pressure: the L{PressureObserver}: told C{(key, True)} when
        messages start to queue on the channel of credential set C{key}
        (C{None}: the root helper's, shared by all) and C{(key, False)}
        when that queue has drained (or the channel is gone).
    """

    def __init__(
        self,
        launcher: HelperLauncher,
        table: ChannelTable,
        templates: Templates,
        inFlight: InFlight,
        children: Children,
        watchdog: StuckWatchdog,
        retirement: IdleRetirement,
        rootRetirement: RootRetirement,
        delegations: Delegations,
    ) -> None:
        self._launcher = launcher
        self._table = table
        self._templates = templates
        self._inFlight = inFlight
        self._children = children
        self.waitingOn = watchdog.watch
        self._retirement = retirement
        self._rootRetirement = rootRetirement
        self._delegations = delegations
        self.pressure: Optional[PressureObserver] = None

    def queueChanged(self, channel: Channel, backedUp: bool) -> None:
        """
        See L{IChannelOwner.queueChanged}.
        """
        if self.pressure is None:
            return
        if not backedUp and channel.key is not None:
            # The lanes of a credential set share its back-pressure: it has
            # caught up when none of them has messages waiting.
            for other in self._table.channels():
                if other is not channel and other.key == channel.key and other.queue:
                    return
        self.pressure(channel.key, backedUp)

    def channelLost(self, channel: Channel, why: str) -> None:
        """
        See L{IChannelOwner.channelLost}.
        """
        wasControl = channel is self._table.control
        self._table.channelLost(channel, why)
        if wasControl:
            # Orphaned sub-helpers only see their children out: they give
            # back their sockets, and a new root helper's sub-helpers take
            # them.
            for orphan in self._table.orphanedSubs:
                self._delegations.release(orphan, _nothing)

    def eventReceived(self, channel: Channel, event: tuple, fds: List[int]) -> None:
        """
        See L{IChannelOwner.eventReceived}.
        """
        kind = event[0]
        if kind == "s":
            _, requestId, pid = event
            request = self._inFlight.take(requestId)
            if request is None:  # failed meanwhile: nobody follows it
                channel.send(_wire.signalMessage(pid, int(_signal.SIGKILL)), -1)
                return
            process = self._children.started(pid, request.proto, request.setup, channel)
            request.proto.makeConnection(process)
            request.deferred.callback(process)
        elif kind == "e":
            _, pid, status = event
            self._children.ended(pid, reasonForStatus(status))
        elif kind == "a":  # the other event of every handed-over connection
            self._delegations.accepted(channel, event)
        elif kind == "x":
            self._execFailed(event)
        elif kind == "f":
            self._spawnFailed(channel, event, fds)
        elif kind == "c":
            self._route(event, fds)
        elif kind == "g":
            _, forwarded, subId = event
            self._table.subGone(subId, forwarded)
        elif kind == "r":
            self._rootRetirement.watch(channel)
            self._launcher.ready()  # last: what it fires may stop us
        elif kind == "l":
            self._delegations.listening(channel, event[1])
        elif kind == "u":
            self._delegations.unlistened(channel, event[1])
        elif kind == "h":
            self._delegations.handedBack(event[1], fds)
        elif kind == "q" or kind == "n":
            self._rootRetirement.answered(channel, kind == "q")
        if channel.orphaned:
            self._table.closeIdleOrphans()

    def _execFailed(self, event: tuple) -> None:
        _, pid, code, stage = event
        path = self._children.executable(pid)
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

    def _spawnFailed(self, channel: Channel, event: tuple, fds: List[int]) -> None:
        requestId, code = event[1], event[2]
        connection = -1
        if len(event) > 4 and event[4] and fds:
            connection = fds.pop(0)  # the client's, given back for a retry
        request = self._inFlight.take(requestId)
        if request is None:
            if connection >= 0:
                os.close(connection)
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
        error = SpawnError(why, code)
        error.connection = connection
        request.deferred.errback(error)

    def _route(self, event: tuple, fds: List[int]) -> None:
        """
        Send the template's next spawns straight to the sub-helper that
        starts its children.
        """
        _, subId, templateId, hasFd, subPid = event[:5]
        lane = event[5] if len(event) > 5 else 0
        setup = self._templates.setupOf(templateId)
        table = self._table
        if hasFd:
            if not fds or setup is None:
                # Truncated (we are out of descriptors): we would never
                # hear from it; have it replaced.
                _log.error("spawn helper: no socket for sub-helper {pid}", pid=subPid)
                table.sendControl(_wire.killSubMessage(subId))
                return
            sock = socket.socket(fileno=fds.pop(0))
            sock.setblocking(False)
            new = table.addSub(self, sock, subId, credentialKey(setup), subPid)
            self._retirement.watch(new)
        channel = table.route(subId, templateId, lane)
        if channel is not None:
            # The root helper forwards this template's spawns to it: it is
            # the one that must answer them.
            self._inFlight.forwarded(templateId, lane, table.control, channel)
            self._delegations.offer(channel, templateId)


__all__ = ["HelperEvents"]
