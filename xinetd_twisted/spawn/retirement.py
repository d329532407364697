# -*- test-case-name: tests.test_spawn_retirement -*-
"""
L{IdleRetirement}: sub-helpers that have been idle for a while are retired,
so that a credential set nobody connects to costs no process; and
L{RootRetirement}: so is the root helper once it has none left, so that an
idle daemon costs no helper at all.

The daemon decides, because it alone knows everything in flight: a
sub-helper is idle when no spawn waits on it (neither on its own channel
nor on the root helper's, which would forward it there), no child it
started is still followed, and it has said nothing for the idle timeout.
The decision and what it takes to carry it out are those of L{SubHelperEnds}
(L{SubHelperEnds.idle}, L{SubHelperEnds.retire}); this part only keeps the
clock: one timer per sub-helper, re-armed while it is busy.

The root helper is idle when it has no sub-helper left (all retired, their
C{"g"} seen), no child of its own still followed, no spawn waiting on it,
and has said nothing for the same timeout.  Only the helper knows whether
it has adopted strays (a server's own background process, orphaned), so
the daemon asks it (C{"Q"}) and sends it nothing more until it answers:
it exits (C{"q"}) only when it has no child at all.  Spawns made meanwhile
are held, in order, then sent as any other: to a new helper that the first
of them starts (the daemon stays root, or never was, so the new one is
what the old one was), or to the old one if it stays (C{"n"}).  One that
dies without answering died: that is logged as an error, as always.
A daemon that has dropped its privileges keeps its root helper.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Tuple

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.interfaces import SpawnError
from xinetd_twisted.spawn.launcher import HelperLauncher
from xinetd_twisted.spawn.table import ChannelTable

_log = Logger(namespace="xinetd_twisted.spawn")


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


_Held = Tuple[Any, Any, int, Tuple[Tuple[str, str], ...], Deferred]


class RootRetirement:
    """
    Asks the root helper to exit once it has been idle for C{timeout()}
    seconds, and holds the spawns made until it has answered.

    @ivar held: the spawns waiting for the answer, in order:
        C{(proto, setup, fd, extraEnvironment, Deferred)}, the fd ours.
    """

    def __init__(
        self,
        reactor: Any,
        timeout: Callable[[], float],
        answerTimeout: Callable[[], float],
        table: ChannelTable,
        children: Children,
        launcher: HelperLauncher,
        respawn: Callable[..., Deferred],
    ) -> None:
        """
        @param answerTimeout: seconds the helper has to answer C{"Q"}
            before it is found stuck and killed.
        @param respawn: C{respawn(proto, setup, fd, extraEnvironment)}
            spawns a held spawn as any other.
        """
        self._reactor = reactor
        self._answerTimeout = answerTimeout
        self._table = table
        self._children = children
        self._launcher = launcher
        self._respawn = respawn
        self._clock = IdleRetirement(reactor, timeout, self.idle, self.ask)
        self._asked: Any = None
        self._deadline: Any = None
        self.held: List[_Held] = []

    def watch(self, control: Channel) -> None:
        """
        The root helper on C{control} is ready: retire it once idle.
        """
        if control is self._table.control:
            self._clock.watch(control)

    def idle(self, control: Channel) -> bool:
        """
        Whether the root helper on C{control} has nothing in flight that
        the daemon knows of, and another can replace it.
        """
        return (
            control is self._table.control
            and not (control.busy() or self._table.subs)
            and not self._children.helperParented()
            and self._launcher.canRelaunch()
        )

    def ask(self, control: Channel) -> None:
        """
        Ask the idle root helper to exit; hold the spawns until it answers.
        """
        control.retired = True
        self._asked = control
        control.send(_wire.retireMessage(), -1)
        self._deadline = self._reactor.callLater(
            self._answerTimeout(), self._noAnswer, control
        )

    def hold(
        self,
        proto: Any,
        setup: Any,
        fd: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> Deferred:
        """
        Keep a spawn (and a copy of its fd) until the helper has answered.
        """
        d: Deferred = Deferred()
        self.held.append((proto, setup, os.dup(fd), extraEnvironment, d))
        return d

    def answered(self, control: Channel, exits: bool) -> None:
        """
        The root helper on C{control} answered C{"Q"}: it C{exits} (C{"q"})
        or stays (C{"n"}: it has children the daemon does not follow).
        """
        if control is not self._asked:
            return
        self._forget()
        if exits:
            self._launcher.retiring()
            self._table.retireControl(control)
        else:
            control.retired = False
            self._clock.watch(control)
        self._release()

    def controlLost(self) -> None:
        """
        The root helper's channel is lost (it died): send the held spawns
        on, which starts another.
        """
        if self._asked is not None:
            _log.error(
                "the spawn helper died while asked to exit (idle); {count}"
                " spawn(s) held meanwhile go to another",
                count=len(self.held),
            )
            self._forget()
            self._release()

    def _noAnswer(self, control: Channel) -> None:
        self._deadline = None
        _log.error(
            "{helper} did not answer for {timeout:.1f} s: killing it; the"
            " next spawn starts another",
            helper=control.describe(),
            timeout=self._answerTimeout(),
        )
        self._launcher.kill()

    def _forget(self) -> None:
        self._asked = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _release(self) -> None:
        held, self.held = self.held, []
        for proto, setup, fd, extraEnvironment, d in held:
            try:
                maybeDeferred(
                    self._respawn, proto, setup, fd, extraEnvironment
                ).chainDeferred(d)
            finally:
                os.close(fd)

    def stop(self, why: str) -> None:
        """
        Stop retiring; fail the held spawns with C{why}.
        """
        self._clock.stop()
        self._forget()
        held, self.held = self.held, []
        for _proto, _setup, fd, _env, d in held:
            os.close(fd)
            d.errback(SpawnError(f"spawn helper: {why}"))


__all__ = ["IdleRetirement", "RootRetirement"]
