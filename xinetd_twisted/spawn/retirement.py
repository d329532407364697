# -*- test-case-name: tests.test_spawn_retirement -*-
"""
L{IdleRetirement}: sub-helpers that have been idle for a while are retired,
so that a credential set nobody connects to costs no process.

The daemon decides, because it alone knows everything in flight: a
sub-helper is idle when no spawn waits on it (neither on its own channel
nor on the root helper's, which would forward it there), no child it
started is still followed, and it has said nothing for the idle timeout.
The decision and what it takes to carry it out are the L{ChannelTable}'s
(L{ChannelTable.idle}, L{ChannelTable.retire}); this part only keeps the
clock: one timer per sub-helper, re-armed while it is busy.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from xinetd_twisted.spawn.channel import Channel


class IdleRetirement:
    """
    Checks each watched sub-helper's channel C{timeout()} seconds after it
    last said something (L{Channel.progress}: a spawn answered, a child
    reaped) and calls C{retire(channel)} once C{idle(channel)} holds then.

    A timeout of 0 (or less) never retires.
    """

    def __init__(
        self,
        reactor: Any,
        timeout: Callable[[], float],
        idle: Callable[[Channel], bool],
        retire: Callable[[Channel], None],
    ) -> None:
        """
        @param reactor: provides C{IReactorTime}.
        @param timeout: returns the current idle timeout in seconds.
        @param idle: whether nothing is in flight on the channel's peer.
        @param retire: ends the channel's peer.
        """
        self._reactor = reactor
        self._timeout = timeout
        self._idle = idle
        self._retire = retire
        self._checks: Dict[Channel, Any] = {}

    def watch(self, channel: Channel) -> None:
        """
        Retire C{channel}'s sub-helper once it has been idle long enough.
        """
        timeout = self._timeout()
        if timeout > 0 and channel not in self._checks:
            self._checks[channel] = self._reactor.callLater(
                timeout, self._check, channel
            )

    def _check(self, channel: Channel) -> None:
        del self._checks[channel]
        if channel.closed or channel.stuck or channel.orphaned or channel.retired:
            return  # someone else ends it, or has
        timeout = self._timeout()
        if timeout <= 0:
            return
        quiet = self._reactor.seconds() - channel.progress
        if quiet < timeout:
            delay = timeout - quiet
        elif not self._idle(channel):
            delay = timeout  # busy: look again; what it says meanwhile counts
        else:
            self._retire(channel)
            return
        self._checks[channel] = self._reactor.callLater(delay, self._check, channel)

    def stop(self) -> None:
        """
        Cancel every pending check.
        """
        checks, self._checks = self._checks, {}
        for call in checks.values():
            if call.active():
                call.cancel()


__all__ = ["IdleRetirement"]
