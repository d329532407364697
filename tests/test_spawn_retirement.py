"""
Tests for the retirement of idle sub-helpers (L{xinetd_twisted.spawn.retirement}):
with a fake clock and the test playing the helpers, when a sub-helper is
retired and what happens to the spawns around it; then with the real helper
processes, that a retired sub-helper is gone and the next spawn of its
credentials starts another.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, List

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessTerminated
from twisted.logger import LogLevel

from tests.fakehelper import NOBODY, OTHER, FakeHelperCase, messages
from tests.test_spawn_helper import (
    NOBODY as NOBODY_USER,
)
from tests.test_spawn_helper import (
    ROOT,
    SpawnerCase,
    _Child,
    _probeSetup,
)
from xinetd_twisted.spawn.helperspawner import IDLE_TIMEOUT, HelperSpawner
from xinetd_twisted.spawn.interfaces import ChildSetup

# Same credentials as NOBODY, another template.
NOBODY_TOO = ChildSetup(
    "/bin/false", ("false",), uid=65534, gid=65534, supplementaryGroups=()
)


class RetirementTests(FakeHelperCase):
    """
    When the daemon retires a sub-helper, and how spawns of its
    credentials go on.
    """

    spawnerArguments = {"idleTimeout": 2.0}  # below stuckTimeout

    def kills(self) -> List[tuple]:
        """
        The C{"X"} messages the root helper has been sent since last asked.
        """
        return [m for m in messages(self.helper) if m[0] == "X"]

    def problems(self) -> List[dict]:
        """
        Log events at warning level or above.
        """
        worse = (LogLevel.warn, LogLevel.error, LogLevel.critical)
        return [e for e in self.logged if e.get("log_level") in worse]

    def idleSub(self, subId: int = 1) -> socket.socket:
        """
        A sub-helper for L{NOBODY} that started one child, now ended.
        """
        sub = self.routedSub(NOBODY, subId)
        self.tellSub(sub, subId, [("e", 2000 + subId, 0)])
        return sub

    def test_default(self) -> None:
        """
        By default a sub-helper is retired after L{IDLE_TIMEOUT} seconds.
        """
        self.assertEqual(HelperSpawner(self.reactor).idleTimeout, IDLE_TIMEOUT)

    def test_idleSubHelperIsRetired(self) -> None:
        """
        A sub-helper with nothing in flight that stays silent for the idle
        timeout is killed through the root helper, and its templates are
        no longer sent to it.
        """
        self.idleSub()
        self.reactor.advance(1.9)
        self.assertEqual(self.kills(), [])
        self.reactor.advance(0.2)
        self.assertEqual(self.kills(), [("X", 1)])
        self.assertEqual(self.spawner._routes, {})
        self.reactor.advance(60)
        self.assertEqual(self.kills(), [])  # once

    def test_silenceCountsFromItsLastWord(self) -> None:
        """
        The idle timeout runs from the last thing the sub-helper said
        (here its child's exit), not from when it started.
        """
        sub = self.routedSub(NOBODY, 1)
        self.reactor.advance(1.5)
        self.tellSub(sub, 1, [("e", 2001, 0)])
        self.reactor.advance(1.9)
        self.assertEqual(self.kills(), [])
        self.reactor.advance(0.2)
        self.assertEqual(self.kills(), [("X", 1)])

    def test_runningChildKeepsItsSubHelper(self) -> None:
        """
        A sub-helper whose child still runs is not retired, however long;
        it is once the child has ended and the timeout has passed.
        """
        sub = self.routedSub(NOBODY, 1)
        self.reactor.advance(30)
        self.assertEqual(self.kills(), [])
        self.tellSub(sub, 1, [("e", 2001, 0)])
        self.reactor.advance(2.1)
        self.assertEqual(self.kills(), [("X", 1)])

    def test_spawnWaitingOnItKeepsIt(self) -> None:
        """
        A sub-helper that has not answered a spawn sent to it is not
        retired.
        """
        sub = self.idleSub()
        d = self.spawn(NOBODY)
        [request] = [m for m in messages(sub) if m[0] == "S"]
        self.reactor.advance(3)
        self.assertEqual(self.kills(), [])
        self.tellSub(sub, 1, [("s", request[1], 2002), ("e", 2002, 0)])
        self.successResultOf(d)
        self.reactor.advance(1.9)
        self.assertEqual(self.kills(), [])
        self.reactor.advance(0.2)
        self.assertEqual(self.kills(), [("X", 1)])

    def test_spawnOnTheRootHelperKeepsIt(self) -> None:
        """
        A spawn of the same credentials sent to the root helper (a new
        template, which it will forward to this sub-helper) keeps it.
        """
        sub = self.idleSub()
        d = self.spawn(NOBODY_TOO)
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        self.reactor.advance(3)
        self.assertEqual(self.kills(), [])
        self.tell([("c", 1, request[2], False, 1001)])
        self.tellSub(sub, 1, [("s", request[1], 2002), ("e", 2002, 0)])
        self.successResultOf(d)
        self.reactor.advance(2.1)
        self.assertEqual(self.kills(), [("X", 1)])

    def test_otherCredentialsDoNotKeepIt(self) -> None:
        """
        A spawn of another credential set waiting on the root helper does
        not keep the sub-helper.
        """
        self.idleSub()
        d = self.spawn(OTHER)
        self.reactor.advance(2.1)
        self.assertEqual(self.kills(), [("X", 1)])
        self.assertNoResult(d)
        d.addErrback(lambda _: None)  # fails when the spawner stops

    def test_spawnDuringRetirementGoesThroughTheRootHelper(self) -> None:
        """
        A spawn after the retirement is sent to the root helper after the
        kill (so it starts another sub-helper), not to the retired one; it
        starts there, and the retired one's end fails nothing and logs
        nothing.
        """
        sub = self.idleSub()
        self.reactor.advance(2.1)
        d = self.spawn(NOBODY)
        sent = messages(self.helper)
        self.assertEqual([m[0] for m in sent], ["X", "S"])
        self.assertEqual(messages(sub), [])
        new = self.handOver(2, sent[1])
        self.tellSub(new, 2, [("s", sent[1][1], 3000)])
        self.successResultOf(d)
        self.tell([("g", [1], 1)])  # forwarded: the first spawn, answered
        self.assertEqual(sorted(self.spawner._subs), [2])
        self.assertEqual(list(self.spawner._routes.values()), [self.spawner._subs[2]])
        self.assertEqual(self.problems(), [])
        self.assertEqual(self.changes, [])
        # The direct path resumes, registering the template with the new one.
        self.spawn(NOBODY).addErrback(lambda _: None)
        self.assertEqual([m[0] for m in messages(new)], ["T", "S"])
        self.assertEqual(messages(self.helper), [])

    def test_goneBeforeTheNextSubHelperStarts(self) -> None:
        """
        The retired sub-helper's C{"g"} may come before the root helper
        hands over the next one: the spawn waiting on the root helper does
        not fail, and starts on the new one.
        """
        sub = self.idleSub()
        self.reactor.advance(2.1)
        d = self.spawn(NOBODY)
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        sub.close()  # killed: the daemon sees its socket close, then "g"
        self.spawner._subs[1].doRead()
        self.tell([("g", [], 1)])
        self.assertNoResult(d)
        new = self.handOver(2, request)
        self.tellSub(new, 2, [("s", request[1], 3000)])
        self.successResultOf(d)
        self.assertEqual(self.problems(), [])

    def test_lateRouteToARetiredSubHelperIsRefused(self) -> None:
        """
        A template the root helper says is now the retired sub-helper's is
        not routed to it: its spawns keep going through the root helper.
        """
        self.idleSub()
        self.reactor.advance(2.1)
        d = self.spawn(NOBODY_TOO)
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        self.tell([("c", 1, request[2], False, 1001)])
        self.assertEqual(self.spawner._routes, {})
        d.addErrback(lambda _: None)  # fails when the spawner stops

    def test_stuckSubHelperIsNotRetiredToo(self) -> None:
        """
        A sub-helper killed as stuck is not also retired.
        """
        sub = self.idleSub()
        d = self.spawn(NOBODY)
        self.assertEqual(len([m for m in messages(sub) if m[0] == "S"]), 1)
        self.reactor.advance(60)
        self.assertEqual(self.kills(), [("X", 1)])  # the watchdog's
        self.tell([("g", [], 1)])
        self.failureResultOf(d)

    def test_zeroNeverRetires(self) -> None:
        """
        An idle timeout of 0 keeps sub-helpers.
        """
        self.spawner.idleTimeout = 0
        self.idleSub()
        self.reactor.advance(3600)
        self.assertEqual(self.kills(), [])

    def test_stopCancelsTheChecks(self) -> None:
        """
        Stopping the spawner leaves no retirement check pending.
        """
        self.idleSub()
        self.spawner.stop()
        self.assertEqual([c for c in self.reactor.getDelayedCalls() if c.active()], [])


class RealRetirementTests(SpawnerCase):
    """
    The real helpers: a retired sub-helper is gone, and the next spawn of
    its credentials starts another.
    """

    def setUp(self) -> Any:
        if not ROOT:
            raise self.skipTest("needs root: sub-helpers run as other users")
        d = SpawnerCase.setUp(self)
        self.spawner.idleTimeout = 0.2
        self.creds = dict(
            uid=NOBODY_USER.pw_uid, gid=NOBODY_USER.pw_gid, supplementaryGroups=()
        )
        return d

    def whenGone(self, subId: int) -> defer.Deferred:
        """
        A Deferred that fires once the root helper has reported sub-helper
        C{subId} gone (and the daemon has handled it).
        """
        table = self.spawner._table
        original = table.subGone
        d: defer.Deferred = defer.Deferred()

        def subGone(gone: int, forwarded: List[int]) -> None:
            original(gone, forwarded)
            if gone == subId and not d.called:
                d.callback(None)

        self.patch(table, "subGone", subGone)
        return d.addTimeout(30, reactor)

    @defer.inlineCallbacks
    def test_retiredSubHelperExitsAndIsReplaced(self):
        """
        An idle sub-helper is retired: its process is gone; the next spawn
        of its credentials runs as they say, from a new sub-helper.
        """
        setup = _probeSetup(**self.creds)
        channel = yield self.routed(setup)
        first = channel.subPid
        self.assertTrue(os.path.exists(f"/proc/{first}"))
        yield self.whenGone(channel.subId)
        self.assertFalse(os.path.exists(f"/proc/{first}"))
        self.assertEqual(self.subHelpers(), [])
        self.spawner.idleTimeout = 30  # the next one stays while we look
        info = yield self.probe(setup)
        self.assertEqual(
            (info["uid"], info["gid"]), (self.creds["uid"], self.creds["gid"])
        )
        [second] = self.subHelpers()
        self.assertNotEqual(second, first)
        self.assertEqual(info["ppid"], second)
        self.assertEqual(
            [e for e in self.logged if e.get("log_level") == LogLevel.error], []
        )

    @defer.inlineCallbacks
    def test_runningChildKeepsItsSubHelper(self):
        """
        A sub-helper whose child runs is kept past the idle timeout (the
        check finds it busy twice); once the child has ended it is retired.
        """
        retirement = self.spawner._retirement
        original = retirement._idle
        checks: List[bool] = []
        busyTwice: defer.Deferred = defer.Deferred()

        def idle(channel: Any) -> bool:
            result = original(channel)
            checks.append(result)
            if checks.count(False) == 2 and not busyTwice.called:
                busyTwice.callback(None)
            return result

        self.patch(retirement, "_idle", idle)
        setup = _probeSetup("--sleep", "30", **self.creds)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        transport = yield self.spawner.spawn(child, setup, theirs.fileno(), ())
        theirs.close()
        channel = transport.channel
        gone = self.whenGone(channel.subId)
        yield busyTwice.addTimeout(30, reactor)
        self.assertTrue(os.path.exists(f"/proc/{channel.subPid}"))
        self.assertFalse(gone.called)
        transport.signalProcess("KILL")
        reason = (yield child.ended).reason
        self.assertIsInstance(reason.value, ProcessTerminated)
        self.assertEqual(reason.value.signal, signal.SIGKILL)
        yield gone
        self.assertFalse(os.path.exists(f"/proc/{channel.subPid}"))

    @defer.inlineCallbacks
    def test_spawnRightAfterRetirement(self):
        """
        A spawn made in the same turn as the retirement (the kill still on
        its way to the root helper) does not fail: it starts on a new
        sub-helper, and the old one's end is quiet.
        """
        setup = _probeSetup(**self.creds)
        channel = yield self.routed(setup)
        retirement = self.spawner._retirement
        original = retirement._retire
        spawned: List[defer.Deferred] = []

        def retire(retiring: Any) -> None:
            original(retiring)
            spawned.append(self.probe(setup))

        self.patch(retirement, "_retire", retire)
        yield self.whenGone(channel.subId)
        info = yield spawned[0]
        self.assertEqual(info["uid"], self.creds["uid"])
        self.assertNotEqual(info["ppid"], channel.subPid)
        self.assertEqual(
            [e for e in self.logged if e.get("log_level") == LogLevel.error], []
        )
