"""
Tests for L{xinetd_twisted.spawn.channel.Channel}'s reading.
"""

from __future__ import annotations

import marshal
import socket
from typing import List, Tuple

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn.channel import Channel


class _Owner:
    def __init__(self) -> None:
        self.events: List[tuple] = []
        self.lost: List[str] = []

    def eventReceived(self, channel: Channel, event: tuple, fds: List[int]) -> None:
        self.events.append(event)

    def channelLost(self, channel: Channel, why: str) -> None:
        self.lost.append(why)
        channel.close()

    def queueChanged(self, channel: Channel, backedUp: bool) -> None:
        pass

    def waitingOn(self, channel: Channel) -> None:
        pass


class ReadTests(SynchronousTestCase):
    """
    A read batch takes every waiting message and stops when none waits.
    """

    def setUp(self) -> None:
        self.helper, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(self.helper.close)
        self.owner = _Owner()
        self.channel = Channel(MemoryReactorClock(), self.owner, ours, None)  # type: ignore[arg-type]
        self.addCleanup(self.channel.close)

    def send(self, *events: Tuple[object, ...]) -> None:
        self.helper.send(marshal.dumps(events))

    def test_batch(self) -> None:
        """
        Messages waiting together are all handled by one read, which then
        says nothing more waits; a later one is handled by the next read.
        """
        self.send(("s", 1, 100))
        self.send(("e", 100, 0))
        self.assertFalse(self.channel.readEvents())
        self.assertEqual(self.owner.events, [("s", 1, 100), ("e", 100, 0)])
        self.send(("e", 101, 0))
        self.assertFalse(self.channel.readEvents())
        self.assertEqual(self.owner.events[-1], ("e", 101, 0))
        self.assertEqual(self.owner.lost, [])

    def test_closedAfterMessage(self) -> None:
        """
        A helper that sends its last message and closes its end is seen
        gone in the same read.
        """
        self.send(("e", 100, 0))
        self.helper.close()
        self.assertFalse(self.channel.readEvents())
        self.assertEqual(self.owner.events, [("e", 100, 0)])
        self.assertEqual(self.owner.lost, ["the helper closed its socket"])

    def test_nothingWaiting(self) -> None:
        """
        A read with nothing waiting handles nothing and loses nothing.
        """
        self.assertFalse(self.channel.readEvents())
        self.assertEqual((self.owner.events, self.owner.lost), ([], []))
