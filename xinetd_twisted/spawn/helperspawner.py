# -*- test-case-name: tests.test_spawn_helper -*-
"""
L{HelperSpawner}: the fast, faithful L{ISpawner}, talking to the spawn helper
(L{xinetd_twisted.spawn.helper}) over a C{SOCK_SEQPACKET} socketpair.

Per connection the reactor encodes one small message, sends it with the
connection's fd attached and closes its own copy; the helper forks, sets the
child up as xinetd does and reports back.  Reaping, exit statuses and exec
failures arrive as batched events on the same socket.

Each sub-helper (one per credential set and lane: a credential set whose
sub-helpers have all fallen behind, silent for
L{xinetd_twisted.spawn.table.LANE_STALL} or with
L{xinetd_twisted.spawn.table.LANE_QUEUE} spawns waiting, gets another, up
to L{HelperSpawner.lanes}) has its own channel, queue and back-pressure: a sub-helper that its user
stopped or slowed only holds up the services of that credential set.  What a user can do to their own
sub-helper, and what follows:

  - it backs up: the L{PressureObserver} is told C{(credentialKey, True)}
    for that channel only (C{None} is the root helper's channel, shared by
    all), and past L{HelperSpawner.maxQueued} waiting spawns a spawn fails
    at once with L{SpawnError};
  - it stops answering: after L{HelperSpawner.stuckTimeout} seconds of
    silence with spawns outstanding it is logged, killed by the root helper
    (the daemon may no longer be root) and its waiting spawns fail with
    L{SpawnError}; the next spawn starts another;
  - it dies (or the root helper does): the servers it started stay in
    C{running}, still get signals and are reported once, with their real
    status, when they end.  See L{xinetd_twisted.spawn.orphans}.

A sub-helper starts with the first spawn of its credential set and is
retired when idle (L{HelperSpawner.idleTimeout}, see
L{xinetd_twisted.spawn.retirement}); the next spawn of that set starts
another through the root helper, as the first one did.  The root helper
too is retired once it has no sub-helper, no child and nothing to do for
as long; the next spawn starts another (the daemon stays root, or was
never; one that has dropped its privileges keeps it).
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from zope.interface import implementer

from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.children import Children, HelperProcess
from xinetd_twisted.spawn.delegation import (
    Accepted,
    Accepting,
    Delegation,
    Delegations,
    HandBack,
)
from xinetd_twisted.spawn.events import HelperEvents
from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    ISpawner,
    PressureObserver,
    SpawnError,
)
from xinetd_twisted.spawn.launcher import HELPER_PATH
from xinetd_twisted.spawn.orphans import OrphanReaper
from xinetd_twisted.spawn.requests import InFlight
from xinetd_twisted.spawn.retirement import IdleRetirement
from xinetd_twisted.spawn.roothelper import RootHelper
from xinetd_twisted.spawn.subends import SubHelperEnds
from xinetd_twisted.spawn.table import ChannelTable
from xinetd_twisted.spawn.templates import Templates
from xinetd_twisted.spawn.watchdog import StuckWatchdog

_log = Logger(namespace="xinetd_twisted.spawn")

IDLE_TIMEOUT = 10.0
"""
Seconds a helper with nothing in flight lives on (L{HelperSpawner}'s
default C{idleTimeout}): starting another sub-helper costs the next spawn
of its credential set a few milliseconds, another root helper some 20 ms
more.
"""


MAX_LANES = 4
"""
Most sub-helpers one credential set gets by default.
"""


def defaultLanes(cpus: Optional[int] = None) -> int:
    """
    Sub-helpers per credential set: one per CPU (each has only so many
    children setting up at once, see L{xinetd_twisted.spawn.helper}), at
    most L{MAX_LANES}.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    return max(1, min(MAX_LANES, cpus))


@implementer(ISpawner)
class HelperSpawner:
    """
    Spawns through a helper process started (as root) by L{start}, and
    through the per-credential sub-helpers it creates, each reached on its
    own channel once the helper has handed it over.

    Made of: the root helper's life (L{RootHelper}, its process
    L{HelperLauncher}), the channels and routes (L{ChannelTable}), the
    templates (L{Templates}), the spawns in flight (L{InFlight}), the
    running children (L{Children}), the stuck sub-helper watchdog
    (L{StuckWatchdog}), the idle helpers' retirement (L{IdleRetirement}
    for sub-helpers, L{RootRetirement} for the root helper), the ends of
    both (L{SubHelperEnds}) and what each helper event means to them
    (L{HelperEvents}).

    @cvar stuckTimeout: seconds a sub-helper may stay silent while spawns
        wait on it before it is declared stuck, killed and replaced.
    @ivar idleTimeout: seconds a sub-helper with nothing in flight (no
        spawn waiting, no child still followed) may stay silent before it
        is retired, and the root helper once it has no sub-helper and no
        child either; 0 keeps them until the spawner stops.
    @cvar givesConnectionBack: a helper that cannot start a child sends
        its connection back (see L{ISpawner.givesConnectionBack}).
    @ivar maxQueued: how many messages may wait on one channel for its
        peer to read before L{spawn} fails with L{SpawnError}.
    @ivar lanes: how many sub-helpers one credential set may have; another
        is started only when all it has have fallen behind
        (L{ChannelTable.pickLane}).
    @ivar running: C{{pid: HelperProcess}} of the children not reaped yet.
    @ivar delegating: whether services may hand their sockets to the
        compiled sub-helpers (L{delegate}; see
        L{xinetd_twisted.spawn.delegation}).
    """

    stuckTimeout = 5.0
    givesConnectionBack = True
    delegating = True

    def __init__(
        self,
        reactor: Any = None,
        maxQueued: int = 64,
        helperEnvironment: Optional[Dict[str, str]] = None,
        idleTimeout: float = IDLE_TIMEOUT,
        lanes: Optional[int] = None,
        schedSlice: int = 0,
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess}, C{IReactorFDSet} and
            C{IReactorTime}.
        @param helperEnvironment: the helper's own environment (children
            never see it); only tests and benchmarks need to set it.
        @param idleTimeout: see L{idleTimeout}.
        @param lanes: see L{lanes}; by default one per CPU, at most
            L{MAX_LANES}.
        @param schedSlice: a scheduler slice in microseconds for the daemon
            and the helpers, not for the servers (0: the kernel's default;
            see L{xinetd_twisted.spawn.schedslice}).
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.maxQueued = maxQueued
        self.idleTimeout = idleTimeout
        self.lanes = lanes if lanes is not None else defaultLanes()
        self._ids = itertools.count(1)  # template and request ids
        self._reaper = OrphanReaper(reactor)
        self._root = RootHelper(self, reactor, helperEnvironment, schedSlice)
        self._launcher = self._root.launcher
        self._inFlight = InFlight()
        self._children = Children(self, self._reaper)
        self.running = self._children.running
        self._templates = Templates(self._ids)
        self._table = ChannelTable(
            reactor,
            self._inFlight,
            self._children,
            self._root.controlLost,
        )
        ends = SubHelperEnds(self._table, self._inFlight, self._children, self._reaper)
        self._ends = ends
        self._delegations = Delegations(
            reactor,
            self._templates,
            self._children,
            lambda: self.stuckTimeout,
            ends.stuckAccepting,
            self._routedTo,
        )
        self._table.onClose = self._delegations.channelLost
        self._retirement = IdleRetirement(
            reactor, lambda: self.idleTimeout, ends.idle, self._retire
        )
        self._rootRetirement = self._root.retirement(reactor)
        self._events = HelperEvents(
            self._launcher,
            self._table,
            self._templates,
            self._inFlight,
            self._children,
            StuckWatchdog(reactor, lambda: self.stuckTimeout, ends.stuck),
            self._retirement,
            self._rootRetirement,
            self._delegations,
        )

    # --- ISpawner -----------------------------------------------------

    def start(self) -> Deferred:
        """
        Start the helper unless it runs; fires once it has said it is ready.
        """
        return self._root.start()

    def stop(self) -> Deferred:
        """
        Close the channels; the helpers exit and leave running children
        alone.  Fires when the helper process has ended.
        """
        return self._root.stop()

    def spawn(
        self,
        processProtocol: Any,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> Deferred:
        """
        See L{ISpawner.spawn}.  Starts another helper if it has died or
        retired.
        """
        table = self._table
        control = table.control
        if control is None:
            self._root.relaunch()
        elif control.retired:  # asked to exit: wait for its answer
            return self._root.hold(processProtocol, setup, socketFD, extraEnvironment)
        templateId = self._templates.ids.get(setup)
        if templateId is None:
            assert table.control is not None
            templateId = self._templates.register(setup, table.control)
        lane, channel = table.pickLane(templateId, self.lanes)
        if channel is not None:
            sent = self._spawnOn(
                channel,
                templateId,
                setup,
                processProtocol,
                socketFD,
                extraEnvironment,
                lane,
            )
            if sent is not None:
                return sent
            # That sub-helper has gone: the root helper starts another.
        control = table.control
        if control is None:
            return fail(SpawnError("spawn helper: control socket lost"))
        sent = self._spawnOn(
            control,
            templateId,
            setup,
            processProtocol,
            socketFD,
            extraEnvironment,
            lane,
        )
        if sent is None:
            return fail(SpawnError("spawn helper: control socket lost"))
        return sent

    def _spawnOn(
        self,
        channel: Channel,
        templateId: int,
        setup: ChildSetup,
        processProtocol: Any,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
        lane: int,
    ) -> Optional[Deferred]:
        """
        Send a start request on C{channel} and expect its answer: the
        Deferred of L{spawn} (failed with L{SpawnError} when too many
        messages wait on it), L{None} if the channel is lost.
        """
        if len(channel.queue) >= self.maxQueued:
            return fail(SpawnError(f"{channel.describe()} is backed up"))
        requestId = self._sendSpawn(
            channel, templateId, setup, socketFD, extraEnvironment, lane
        )
        if not requestId:
            return None
        return self._inFlight.expect(
            requestId, processProtocol, setup, channel, templateId, lane
        )

    def delegate(
        self,
        sock: socket.socket,
        setup: ChildSetup,
        accepted: Accepted,
        handBack: HandBack,
        accepting: Accepting,
    ) -> Delegation:
        """
        Hand listening socket C{sock} of a plain service (see
        L{xinetd_twisted.spawn.delegation}) to the sub-helpers that start
        C{setup}'s servers, now and whenever one starts: each then accepts
        and starts servers itself, and L{accepted} follows each one.  The
        caller goes on accepting until C{accepting(True)}.
        """
        return self._delegations.add(sock, setup, accepted, handBack, accepting)

    def _routedTo(self, templateId: int) -> List[Channel]:
        """
        The channels of the sub-helpers that start C{templateId}'s
        servers, by lane.
        """
        routes = self._table.routes
        return [c for (t, _lane), c in sorted(routes.items()) if t == templateId]

    def _retire(self, channel: Channel) -> None:
        """
        Retire idle sub-helper C{channel} once it has given back the
        sockets it accepts on (so every server it starts is reported); if
        one started meanwhile, it is not idle any more: it takes them again
        and is looked at later.
        """

        def then() -> None:
            if channel.closed:
                return
            if self._ends.idle(channel):
                self._ends.retire(channel)
                return
            for templateId in list(channel.templates):
                self._delegations.offer(channel, templateId)
            self._retirement.watch(channel)

        self._delegations.release(channel, then)

    def observePressure(self, observer: Optional[PressureObserver]) -> None:
        """
        See L{ISpawner.observePressure}.
        """
        self._events.pressure = observer

    def signalChild(self, pid: int, signal: int) -> None:
        """
        See L{ISpawner.signalChild}.
        """
        # int(): a signal.Signals member does not marshal.
        self._children.signal(pid, int(signal), self._table.control)

    def isBackedUp(self) -> bool:
        """
        Whether messages are waiting on any channel for a helper to catch up.
        """
        return bool(self._rootRetirement.held) or any(
            channel.queue for channel in self._table.channels()
        )

    # --- the parts at work ----------------------------------------------

    def _sendSpawn(
        self,
        channel: Channel,
        templateId: int,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
        lane: int = 0,
    ) -> int:
        """
        Send a start request on C{channel} (registering the template with a
        sub-helper first); return its request id, 0 if the channel is lost.
        """
        if channel.subId is not None and templateId not in channel.templates:
            if not self._templates.registerOn(channel, templateId, setup):
                return 0
        requestId = next(self._ids)
        message = _wire.spawnMessage(requestId, templateId, extraEnvironment, lane)
        if not channel.send(message, socketFD, requestId):
            return 0
        return requestId

    # --- for tests and benchmarks -----------------------------------------

    @property
    def _helperTransport(self) -> Any:
        return self._launcher.transport

    @property
    def _control(self) -> Optional[Channel]:
        return self._table.control

    @property
    def _subs(self) -> Dict[int, Channel]:
        return self._table.subs

    @property
    def _routes(self) -> Dict[int, Channel]:
        """
        The routes of the first lane, by template id.
        """
        return {t: c for (t, lane), c in self._table.routes.items() if lane == 0}


__all__ = ["HelperSpawner", "HelperProcess", "HELPER_PATH"]
