"""
Tests for L{HelperSpawner}'s per-credential back-pressure and stuck
sub-helper detection, with a fake clock and the test itself playing the
helpers on the other ends of the real sockets.
"""

from __future__ import annotations

import marshal
import socket

from tests.fakehelper import NOBODY, OTHER, FakeHelperCase
from tests.fakehelper import messages as _messages
from xinetd_twisted.spawn import wire
from xinetd_twisted.spawn.interfaces import SpawnError, credentialKey


class WatchdogTests(FakeHelperCase):
    def test_silentSubHelperIsKilledAfterStuckTimeout(self) -> None:
        """
        A sub-helper silent for stuckTimeout seconds with a spawn waiting
        is logged once and killed through the root helper; the spawn fails.
        """
        sub = self.routedSub(NOBODY, 1)
        d = self.spawn(NOBODY)
        self.reactor.advance(self.spawner.stuckTimeout - 0.1)
        self.assertEqual([m for m in _messages(self.helper) if m[0] == "X"], [])
        self.reactor.advance(0.2)
        self.assertEqual([m for m in _messages(self.helper) if m[0] == "X"], [("X", 1)])
        lines = [
            e for e in self.logged if "answered nothing" in e.get("log_format", "")
        ]
        self.assertEqual(len(lines), 1)
        self.assertNoResult(d)
        [request] = [m for m in _messages(sub) if m[0] == "S"]
        self.tell([("g", [], 1)])  # killed and reaped
        self.failureResultOf(d, SpawnError)
        self.reactor.advance(60)
        self.assertEqual(_messages(self.helper), [])  # no second kill
        self.assertEqual(request[0], "S")

    def test_answeringSubHelperIsNotKilled(self) -> None:
        """
        A sub-helper that keeps answering is never declared stuck, however
        long spawns keep it busy.
        """
        sub = self.routedSub(NOBODY, 1)
        channel = self.spawner._subs[1]
        for i in range(10):
            d = self.spawn(NOBODY)
            self.reactor.advance(self.spawner.stuckTimeout * 0.8)
            [request] = [m for m in _messages(sub) if m[0] == "S"]
            sub.sendmsg([marshal.dumps([("s", request[1], 3000 + i)])])
            channel.doRead()
            self.successResultOf(d)
        self.assertEqual([m for m in _messages(self.helper) if m[0] == "X"], [])

    def test_pressureIsPerCredentialSet(self) -> None:
        """
        A sub-helper's full socket reports its own credential set backed up
        (not None, not another set's), fails spawns past maxQueued, and
        reports it caught up once the queue drains.
        """
        sub = self.routedSub(NOBODY, 1)
        self.routedSub(OTHER, 2)
        channel = self.spawner._subs[1]
        channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.spawner.maxQueued = 3
        results = [self.spawn(NOBODY) for _ in range(200)]
        for d in results[4:]:  # past the socket's and the queue's room
            if d.called:
                self.failureResultOf(d, SpawnError)
        self.assertEqual(self.changes, [(credentialKey(NOBODY), True)])
        self.assertEqual(len(channel.queue), 3)
        self.assertTrue(results[-1].called)
        self.assertNoResult(results[0])
        other = self.spawn(OTHER)  # unaffected
        self.assertEqual(len(self.spawner._subs[2].queue), 0)
        self.assertNoResult(other)
        _messages(sub)
        channel.doWrite()
        self.assertEqual(
            self.changes,
            [(credentialKey(NOBODY), True), (credentialKey(NOBODY), False)],
        )
        self.assertFalse(self.spawner.isBackedUp())

    def test_forwardedSpawnsAreTheSubHelpersToAnswer(self) -> None:
        """
        Spawns sent through the root helper before the sub-helper's socket
        arrived are watched on that sub-helper.
        """
        first = self.spawn(NOBODY)
        second = self.spawn(NOBODY)
        requests = [m for m in _messages(self.helper) if m[0] == "S"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(ours.close)
        self.tell([("c", 5, requests[0][2], True, 1005)], (theirs.fileno(),))
        theirs.close()
        self.assertEqual(self.spawner._subs[5].requests, {r[1] for r in requests})
        self.reactor.advance(self.spawner.stuckTimeout + 0.1)
        self.assertEqual([m for m in _messages(self.helper) if m[0] == "X"], [("X", 5)])
        self.tell([("g", [requests[0][1]], 5)])
        self.failureResultOf(first, SpawnError)
        self.failureResultOf(second, SpawnError)

    def test_wireKillMessage(self) -> None:
        """The kill request names the sub-helper by its id."""
        self.assertEqual(wire.decode(wire.killSubMessage(3)), ("X", 3))
