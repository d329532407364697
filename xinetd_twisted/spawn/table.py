# -*- test-case-name: tests.test_spawn_table,tests.test_spawn_helper,tests.test_spawn_watchdog -*-
"""
L{ChannelTable}: the daemon's channels to its helpers, which one starts the
children of which template, and what follows when one is lost or
orphaned.  Ending a sub-helper on purpose (idle or stuck) is
L{xinetd_twisted.spawn.subends}'s.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, List, Optional, Tuple

from xinetd_twisted.spawn.channel import Channel, IChannelOwner
from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.interfaces import CredentialKey
from xinetd_twisted.spawn.requests import InFlight

LANE_STALL = 0.005
"""
Seconds a busy lane may go without answering before the next spawn of its
template goes to another lane: a little over a scheduler tick (4 ms at
C{HZ=250}).  A sub-helper that said nothing for that long while spawns
waited on it was kept off a CPU (beside a busy process, or behind its vfork
child's) or is in a slow exec; another lane lets the next spawn start
meanwhile.  One that keeps answering keeps the spawns: at C=8 on 2 cores a
second sub-helper woken for every other connection added nothing to the
rate and doubled the servers' p99 (docs/benchmarks.md, the fourth pass).
"""

LANE_QUEUE = 16
"""
Spawns waiting on one lane (sent, not answered) past which the next goes
to another lane even while it answers: about 4 ms of a sub-helper's work,
the same wait as L{LANE_STALL} allows.
"""


def _nothing(channel: Channel) -> None:
    """L{ChannelTable.onClose} until someone sets it."""


class ChannelTable:
    """
    The channel to the root helper, those straight to its sub-helpers
    (and to the sub-helpers of a dead root helper), and the routes of
    templates to sub-helpers.

    @ivar control: the root helper's channel, L{None} when it is lost.
    @ivar subs: C{{subId: Channel}} of the running root helper's sub-helpers.
    @ivar orphanedSubs: channels of the sub-helpers of a dead root helper.
    @ivar routes: C{{(templateId, lane): Channel}}: the sub-helper that
        starts the template's children of that lane, to send its spawns
        straight to.
    """

    def __init__(
        self,
        reactor: Any,
        inFlight: InFlight,
        children: Children,
        controlLost: Callable[[str], None],
    ) -> None:
        """
        @param controlLost: called with why when the root helper's channel
            is lost.
        """
        self._reactor = reactor
        self._inFlight = inFlight
        self._children = children
        self._controlLost = controlLost
        self.control: Optional[Channel] = None
        self.subs: Dict[int, Channel] = {}
        self.orphanedSubs: List[Channel] = []
        self.routes: Dict[Tuple[int, int], Channel] = {}
        self.onClose: Callable[[Channel], None] = _nothing
        """
        Called with each channel once it is closed (for whatever reason).
        """

    def channels(self) -> List[Channel]:
        """
        Every open channel.
        """
        control = [] if self.control is None else [self.control]
        return control + list(self.subs.values()) + self.orphanedSubs

    def openControl(self, owner: IChannelOwner, sock: socket.socket) -> None:
        """
        Use C{sock} to a new root helper, which knows no route yet.
        """
        self.control = Channel(self._reactor, owner, sock, None)
        self.routes.clear()
        self._reactor.addReader(self.control)

    def sendControl(self, message: bytes) -> None:
        """
        Send C{message} to the root helper, if it is there.
        """
        if self.control is not None:
            self.control.send(message, -1)

    def addSub(
        self,
        owner: IChannelOwner,
        sock: socket.socket,
        subId: int,
        key: Optional[CredentialKey],
        subPid: int,
    ) -> Channel:
        """
        Use C{sock}, straight to sub-helper C{subId}, handed over by the
        root helper; return its channel.
        """
        new = Channel(self._reactor, owner, sock, subId, key, subPid)
        new.progress = self._reactor.seconds()
        self.subs[subId] = new
        self._reactor.addReader(new)
        return new

    def route(self, subId: int, templateId: int, lane: int = 0) -> Optional[Channel]:
        """
        Send the template's spawns of C{lane} straight to sub-helper
        C{subId} from now on; return its channel, L{None} if it cannot take
        them.
        """
        channel = self.subs.get(subId)
        if channel is None or channel.stuck or channel.retired or channel.closed:
            return None
        self.routes[(templateId, lane)] = channel
        return channel

    def pickLane(self, templateId: int, lanes: int) -> Tuple[int, Optional[Channel]]:
        """
        Choose the lane (of C{lanes}) of the next spawn of C{templateId}:
        the first whose sub-helper is idle, or busy but keeping up (it
        answered within L{LANE_STALL} and has fewer than L{LANE_QUEUE}
        spawns waiting); else, while there are lanes left, a new one (its
        first spawns go through the root helper, which starts its
        sub-helper); else the least busy.  With the channel to send it on,
        L{None} for the root helper's.
        """
        routes = self.routes
        best: Tuple[int, Optional[Channel]] = (0, None)
        bestLoad = -1
        for lane in range(lanes):
            channel = routes.get((templateId, lane))
            if channel is None or channel.closed or channel.stuck:
                return lane, None
            load = len(channel.requests) + len(channel.queue)
            if load == 0:
                return lane, channel  # the usual case: no clock read
            if (
                load < LANE_QUEUE
                and self._reactor.seconds() - channel.progress < LANE_STALL
            ):
                return lane, channel
            if bestLoad < 0 or load < bestLoad:
                best, bestLoad = (lane, channel), load
        return best

    def unroute(self, channel: Channel) -> None:
        """
        Forget every route to C{channel}.
        """
        for templateId in [t for t, c in self.routes.items() if c is channel]:
            del self.routes[templateId]

    def close(self, channel: Channel) -> List[int]:
        """
        Close a channel; return the request ids of its unsent spawns.
        """
        if channel.closed:
            return []
        unsent = channel.close()
        self.onClose(channel)
        if channel.subId is not None:
            # A current sub-helper's channel stays in subs until the root
            # helper's "g" says which of its spawns will never start.
            if channel in self.orphanedSubs:
                self.orphanedSubs.remove(channel)
            self.unroute(channel)
        return unsent

    def closeOrphans(self) -> None:
        """
        Close the channels of the sub-helpers of a dead root helper.
        """
        for orphaned in list(self.orphanedSubs):
            self.close(orphaned)

    def closeIdleOrphans(self) -> None:
        """
        Close the channels of orphaned sub-helpers that have nothing left
        to report: they exit (and are reaped by us).
        """
        for channel in list(self.orphanedSubs):
            if channel.busy() or self._children.startedBy(channel):
                continue
            self.close(channel)

    def channelLost(self, channel: Channel, why: str) -> None:
        """
        A channel's socket failed or its peer closed it.
        """
        if channel.closed:
            return
        inFlight = self._inFlight
        if channel.subId is not None:
            # The children it started are reaped by the root helper (or by
            # us, if it has died too); the spawns it may still have started
            # fail on its "g" event, which comes after all it said.  Unsent
            # ones fail now.
            for requestId in self.close(channel):
                inFlight.subHelperDied(requestId)
            if channel.orphaned:  # no "g" will come; EOF was its last word
                for requestId in list(channel.requests):
                    inFlight.subHelperDied(requestId)
            return
        if channel is not self.control:
            return
        self.control = None
        for requestId in self.close(channel):
            inFlight.fail(requestId, f"spawn helper: {why}")
        # Also those it had forwarded: a sub-helper that still starts one
        # reports a child nobody expects, which it then kills.
        inFlight.failSentOn(channel, f"spawn helper: {why}")
        # Its sub-helpers live on for the children they started.
        for sub in list(self.subs.values()):
            if sub.closed:  # dead, and no "g" will come
                for requestId in list(sub.requests):
                    inFlight.subHelperDied(requestId)
                continue
            sub.orphaned = True
            self.unroute(sub)
            self.orphanedSubs.append(sub)
        self.subs = {}
        self._controlLost(why)

    def subGone(self, subId: int, forwarded: List[int]) -> None:
        """
        The root helper reaped sub-helper C{subId}: of the spawns it had
        forwarded to it (C{forwarded}) and of those sent to it, those not
        reported started never will be.
        """
        gone = self.subs.pop(subId, None)
        if gone is not None:
            gone.drain()  # dead: all it said is there
            forwarded = list(forwarded) + list(gone.requests)
        for requestId in forwarded:
            self._inFlight.subHelperDied(requestId)
        if gone is not None:
            self.close(gone)

    def subReaped(self, channel: Channel) -> None:
        """
        An orphaned sub-helper, our child, has been reaped by us: all it
        said is in its socket, and its children are ours now.
        """
        channel.drain()
        for requestId in list(channel.requests):
            self._inFlight.subHelperDied(requestId)
        self.close(channel)
        self._children.adoptFrom(channel)

    def retireControl(self, channel: Channel) -> None:
        """
        The root helper on C{channel} exits because it is idle: forget it
        quietly (nothing is in flight on it); the next spawn starts another.
        """
        if channel is not self.control:
            return
        self.control = None
        for requestId in self.close(channel):
            self._inFlight.fail(requestId, "spawn helper: retired")
        self._inFlight.failSentOn(channel, "spawn helper: retired")


__all__ = ["ChannelTable"]
