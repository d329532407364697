"""
Tests for L{xinetd_twisted.spawn.table.ChannelTable.pickLane}: which of a
credential set's sub-helpers (lanes) takes the next spawn.
"""

from __future__ import annotations

import socket
from typing import Any, Optional, Tuple

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.table import LANE_QUEUE, LANE_STALL, ChannelTable

KEY = (65534, 65534, ())
TEMPLATE = 7


class PickLaneTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.table = ChannelTable(self.clock, None, None, lambda why: None)  # type: ignore[arg-type]

    def lane(self, lane: int, waiting: int = 0, silentFor: float = 0.0) -> Channel:
        """
        A routed sub-helper channel for C{lane} with C{waiting} spawns not
        answered, the last answer C{silentFor} seconds ago.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        subId = 10 + lane
        channel = Channel(self.clock, None, ours, subId, KEY, 1000 + subId)  # type: ignore[arg-type]
        channel.requests.update(range(waiting))
        channel.progress = self.clock.seconds() - silentFor
        self.table.subs[subId] = channel
        self.table.routes[(TEMPLATE, lane)] = channel
        return channel

    def pick(self, lanes: int = 2) -> Tuple[int, Optional[Any]]:
        return self.table.pickLane(TEMPLATE, lanes)

    def test_noLaneYet(self) -> None:
        """With no sub-helper yet, the first lane starts through the root helper."""
        self.assertEqual(self.pick(), (0, None))

    def test_idle(self) -> None:
        """An idle first lane takes the spawn."""
        first = self.lane(0)
        self.lane(1)
        self.assertEqual(self.pick(), (0, first))

    def test_busyKeepingUp(self) -> None:
        """
        A busy lane that answered within LANE_STALL keeps the spawns: no
        second lane is started, an idle second one is not used.
        """
        first = self.lane(0, waiting=3, silentFor=LANE_STALL / 2)
        self.assertEqual(self.pick(), (0, first))
        self.lane(1)
        self.assertEqual(self.pick(), (0, first))

    def test_stalled(self) -> None:
        """
        A busy lane silent for LANE_STALL passes the next spawn on: to a new
        lane while there are lanes left, else to an idle one.
        """
        self.lane(0, waiting=1, silentFor=LANE_STALL)
        self.assertEqual(self.pick(), (1, None))
        second = self.lane(1)
        self.assertEqual(self.pick(), (1, second))

    def test_stalledOnceTheClockMoves(self) -> None:
        """The same busy lane is stalled once LANE_STALL passes without an answer."""
        first = self.lane(0, waiting=1)
        self.assertEqual(self.pick(), (0, first))
        self.clock.advance(LANE_STALL)
        self.assertEqual(self.pick(), (1, None))

    def test_queueBound(self) -> None:
        """A lane with LANE_QUEUE spawns waiting passes the next on, answering or not."""
        self.lane(0, waiting=LANE_QUEUE)
        self.assertEqual(self.pick(), (1, None))
        first = self.table.routes[(TEMPLATE, 0)]
        first.requests.discard(0)
        self.assertEqual(self.pick(), (0, first))

    def test_allBehind(self) -> None:
        """With every lane behind and none left to start, the least busy takes it."""
        self.lane(0, waiting=5, silentFor=LANE_STALL)
        second = self.lane(1, waiting=2, silentFor=LANE_STALL)
        self.assertEqual(self.pick(), (1, second))

    def test_oneLane(self) -> None:
        """With one lane allowed, a stalled one still takes the spawn."""
        first = self.lane(0, waiting=1, silentFor=LANE_STALL * 10)
        self.assertEqual(self.pick(lanes=1), (0, first))
