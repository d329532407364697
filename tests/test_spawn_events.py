"""
Tests for L{xinetd_twisted.spawn.events.HelperEvents}.
"""

from __future__ import annotations

import socket
from typing import Any, List, Optional, Tuple

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.events import HelperEvents
from xinetd_twisted.spawn.table import ChannelTable

KEY = (65534, 65534, ())


class PressureTests(SynchronousTestCase):
    """
    The lanes of a credential set share its back-pressure.
    """

    def setUp(self) -> None:
        reactor = MemoryReactorClock()
        self.table = ChannelTable(reactor, None, None, lambda why: None)  # type: ignore[arg-type]
        self.events = HelperEvents(
            None, self.table, None, None, None, _Watchdog(), None, None, None
        )  # type: ignore[arg-type]
        self.changes: List[Tuple[Optional[Any], bool]] = []
        self.events.pressure = lambda key, backedUp: self.changes.append(
            (key, backedUp)
        )
        self.lanes = [self.channel(reactor, subId) for subId in (1, 2)]

    def channel(self, reactor: Any, subId: int) -> Channel:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        channel = Channel(reactor, self.events, ours, subId, KEY, 1000 + subId)
        self.table.subs[subId] = channel
        return channel

    def test_caughtUpWhenEveryLaneHas(self) -> None:
        """A set backed up on two lanes has caught up only when both have."""
        first, second = self.lanes
        first.queue.append((b"", -1, 0))
        self.events.queueChanged(first, True)
        second.queue.append((b"", -1, 0))
        self.events.queueChanged(second, True)
        first.queue.clear()
        self.events.queueChanged(first, False)
        self.assertEqual(self.changes, [(KEY, True), (KEY, True)])
        second.queue.clear()
        self.events.queueChanged(second, False)
        self.assertEqual(self.changes[-1], (KEY, False))


class _Watchdog:
    def watch(self, channel: Channel) -> None:
        pass
