# -*- test-case-name: tests.test_spawn_retirement,tests.test_spawn_watchdog -*-
"""
L{SubHelperEnds}: the ends the daemon gives a sub-helper on purpose, the
idle one retired and the stuck one killed, apart from the L{ChannelTable}
that keeps the channels and routes (and the ends that come to them).
"""

from __future__ import annotations

import signal as _signal

from twisted.logger import Logger

from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.orphans import OrphanReaper
from xinetd_twisted.spawn.requests import InFlight
from xinetd_twisted.spawn.table import ChannelTable

_log = Logger(namespace="xinetd_twisted.spawn")


class SubHelperEnds:
    """
    Owns the daemon's decisions to end a sub-helper: whether one is idle
    (L{idle}) and retiring it (L{retire}), for L{IdleRetirement}; killing
    one found stuck (L{stuck}), for L{StuckWatchdog}.  Neither is on the
    spawn path.
    """

    def __init__(
        self,
        table: ChannelTable,
        inFlight: InFlight,
        children: Children,
        reaper: OrphanReaper,
    ) -> None:
        self._table = table
        self._inFlight = inFlight
        self._children = children
        self._reaper = reaper

    def idle(self, channel: Channel) -> bool:
        """
        Whether sub-helper C{channel} has nothing in flight: no spawn waits
        on it, none on the root helper that it would be forwarded to, and
        no child it started is still followed.
        """
        return not (
            channel.busy()
            or self._children.startedBy(channel)
            or self._inFlight.awaitedOn(self._table.control, channel.key)
        )

    def retire(self, channel: Channel) -> None:
        """
        End idle sub-helper C{channel}: its spawns go through the root
        helper again, which, told before any of them, starts another.

        The root helper kills it (it is idle: nothing is lost) and reports
        its C{"g"} once reaped, which L{ChannelTable.subGone} takes as any
        other; its channel stays open until then for whatever it said last.
        """
        control = self._table.control
        if control is None or channel.subId is None:
            return
        channel.retired = True
        self._table.unroute(channel)
        control.send(_wire.killSubMessage(channel.subId), -1)

    def stuck(self, channel: Channel, quiet: float) -> None:
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
        self._kill(channel)

    def stuckAccepting(self, channel: Channel, quiet: float) -> None:
        """
        Kill a sub-helper that accepts on a service's socket (see
        L{xinetd_twisted.spawn.delegation}) and has said nothing for
        C{quiet} seconds while clients waited there: the daemon accepts
        them again once it has ended.
        """
        channel.stuck = True
        _log.error(
            "{helper} answered nothing for {quiet:.1f} s with clients waiting"
            " on a socket it accepts on: killing it; the daemon accepts them"
            " and the next spawn starts another",
            helper=channel.describe(),
            quiet=quiet,
            uid=(channel.key or (None,))[0],
        )
        self._kill(channel)

    def _kill(self, channel: Channel) -> None:
        self._table.unroute(channel)
        for requestId in channel.dropQueue():
            self._inFlight.subHelperDied(requestId)
        control = self._table.control
        if not channel.orphaned and control is not None:
            control.send(_wire.killSubMessage(channel.subId or 0), -1)
        elif channel.subPid is not None:
            self._reaper.signal(channel.subPid, _signal.SIGKILL)


__all__ = ["SubHelperEnds"]
