# -*- test-case-name: tests.test_spawn_helper,tests.test_spawn_rootretirement -*-
"""
L{RootHelper}: the life of a L{HelperSpawner}'s root helper as the daemon
sees it, apart from the spawns it carries: starting it (with a fresh
channel and no template), stopping it with every channel, and what
follows when its channel is lost or its process ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from xinetd_twisted.spawn.interfaces import ChildSetup, SpawnError
from xinetd_twisted.spawn.launcher import HelperLauncher
from xinetd_twisted.spawn.retirement import RootRetirement

if TYPE_CHECKING:
    from xinetd_twisted.spawn.helperspawner import HelperSpawner

_log = Logger(namespace="xinetd_twisted.spawn")


class RootHelper:
    """
    Owns the starts and ends of the root helper and of its channel; the
    spawner calls it only when there is no root helper to spawn through
    (and on L{HelperSpawner.start} and L{HelperSpawner.stop}), never per
    spawn.  It works on the spawner's parts, read when called.

    @ivar launcher: the root helper's process (L{HelperLauncher}).
    """

    def __init__(
        self,
        spawner: HelperSpawner,
        reactor: Any,
        helperEnvironment: Optional[Dict[str, str]],
        schedSlice: int,
    ) -> None:
        """
        See L{HelperSpawner.__init__} for the parameters.
        """
        self._spawner = spawner
        self.launcher = HelperLauncher(
            reactor,
            dict(helperEnvironment or {}),
            spawner._reaper,
            self.ended,
            schedSlice,
        )

    def retirement(self, reactor: Any) -> RootRetirement:
        """
        The root helper's retirement once idle, on the spawner's timeouts;
        the spawns held meanwhile are then spawned again.
        """
        spawner = self._spawner
        return RootRetirement(
            reactor,
            lambda: spawner.idleTimeout,
            lambda: spawner.stuckTimeout,
            spawner._table,
            spawner._children,
            self.launcher,
            spawner.spawn,
        )

    def start(self) -> Deferred:
        """
        Start the helper unless it runs; fires once it has said it is ready.
        """
        spawner = self._spawner
        if spawner._table.control is None:
            self.launch()
        return spawner._launcher.whenReady()

    def stop(self) -> Deferred:
        """
        Close the channels; the helpers exit and leave running children
        alone.  Fires when the helper process has ended.
        """
        spawner = self._spawner
        table = spawner._table
        spawner._children.stop()
        spawner._delegations.stop()
        spawner._rootRetirement.stop("spawner stopped")
        spawner._retirement.stop()
        table.closeOrphans()
        if not spawner._launcher.running:
            return succeed(None)
        d = spawner._launcher.whenEnded()
        control = table.control
        if control is not None:
            table.channelLost(control, "spawner stopped")
        table.closeOrphans()
        return d

    def launch(self) -> None:
        """
        Start a root helper, which knows no template yet, and open its
        channel.
        """
        spawner = self._spawner
        sock = spawner._launcher.launch()
        spawner._templates.reset()
        spawner._table.openControl(spawner._events, sock)

    def relaunch(self) -> None:
        """
        Start a root helper for a spawn: the first one, or another after
        one has died (which is logged) or retired.
        """
        if not self.launcher.retired:
            _log.info("starting the spawn helper")
        self.launch()

    def hold(
        self,
        processProtocol: Any,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> Deferred:
        """
        Keep a spawn until the root helper asked to exit has answered (see
        L{RootRetirement.hold}); fail it if L{HelperSpawner.maxQueued}
        wait already.
        """
        spawner = self._spawner
        if len(spawner._rootRetirement.held) >= spawner.maxQueued:
            return fail(SpawnError("the spawn helper is backed up"))
        return spawner._rootRetirement.hold(
            processProtocol, setup, socketFD, extraEnvironment
        )

    def controlLost(self, why: str) -> None:
        """
        The root helper's channel is lost: whoever waits for it to be
        ready is told C{why}, the spawns held for it are sent on.
        """
        self._spawner._launcher.failReady(why)
        self._spawner._rootRetirement.controlLost()

    def ended(self, stopping: bool) -> None:
        """
        The root helper's process has ended (C{stopping}: because the
        spawner stops): its channel is lost; unless stopping, the
        sub-helpers and children it leaves are ours.
        """
        spawner = self._spawner
        table = spawner._table
        control = table.control
        if control is not None:
            table.channelLost(control, "spawn helper ended")
        if not stopping:
            # Reaped: what it started is ours now (we are a subreaper).
            spawner._children.adoptOrphans(table.orphanedSubs, table.subReaped)
            table.closeIdleOrphans()


__all__ = ["RootHelper"]
