# -*- test-case-name: tests.test_spawn_watchdog -*-
"""
L{StuckWatchdog}: notices a sub-helper that stays silent while spawns wait
on it.
"""

from __future__ import annotations

from typing import Any, Callable

from xinetd_twisted.spawn.channel import Channel


class StuckWatchdog:
    """
    Checks, C{timeout()} seconds after a spawn starts waiting on a
    sub-helper, that it has said something since; calls C{stuck(channel,
    quiet)} when it has not.
    """

    def __init__(
        self,
        reactor: Any,
        timeout: Callable[[], float],
        stuck: Callable[[Channel, float], None],
    ) -> None:
        """
        @param timeout: returns the current stuck timeout (tests lower it).
        """
        self._reactor = reactor
        self._timeout = timeout
        self._stuck = stuck

    def watch(self, channel: Channel) -> None:
        """
        A spawn now waits on C{channel}: watch that its peer answers.
        """
        if channel.subId is None or channel.stuck:
            return
        if channel.watchdog is None:
            channel.watchdog = self._reactor.callLater(
                self._timeout(), self._check, channel
            )

    def _check(self, channel: Channel) -> None:
        channel.watchdog = None
        if channel.closed or channel.stuck or not channel.busy():
            return
        timeout = self._timeout()
        quiet = self._reactor.seconds() - channel.progress
        if quiet < timeout:
            channel.watchdog = self._reactor.callLater(
                timeout - quiet, self._check, channel
            )
            return
        self._stuck(channel, quiet)


__all__ = ["StuckWatchdog"]
