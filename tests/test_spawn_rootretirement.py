"""
Tests for the retirement of the idle root helper
(L{xinetd_twisted.spawn.retirement.RootRetirement}): with a fake clock and
the test playing the helpers, when the daemon asks it to exit, what happens
to the spawns made meanwhile and how its end is told from a death; then
with the real helper, that its process is gone and the next spawn is
served by a new one, and that one with a stray child stays.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, List

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone
from twisted.logger import LogLevel
from twisted.python.failure import Failure

from tests.fakehelper import NOBODY, FakeHelperCase, FakeProtocol, messages
from tests.test_spawn_helper import (
    PYTHON,
    SpawnerCase,
    _Child,
    _children,
    _probeSetup,
)
from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.interfaces import ChildSetup, SpawnError

# Started by the root helper itself (no credentials to take).
PLAIN = ChildSetup("/bin/true", ("true",))
OTHER_PLAIN = ChildSetup("/bin/false", ("false",))


class RootRetirementTests(FakeHelperCase):
    """
    When the daemon asks the root helper to exit, and how spawns go on.
    """

    spawnerArguments = {"idleTimeout": 2.0}  # below stuckTimeout

    def asked(self) -> List[tuple]:
        """
        The C{"Q"} messages the root helper has been sent since last asked.
        """
        return [m for m in messages(self.helper) if m[0] == "Q"]

    def errors(self) -> List[dict]:
        """
        Log events at error level or above.
        """
        worse = (LogLevel.error, LogLevel.critical)
        return [e for e in self.logged if e.get("log_level") in worse]

    def newHelper(self) -> None:
        """
        Play the helper the daemon has just started: take its end, say
        ready.
        """
        helper = self.reactor.helperEnd
        assert helper is not None and helper is not self.helper
        self.helper = helper
        self.addCleanup(helper.close)
        self.tell([("r", 2)])

    def askedToExit(self) -> None:
        """
        Let the root helper, ready and idle, be asked to exit.
        """
        self.reactor.advance(2.1)
        self.assertEqual(self.asked(), [("Q",)])

    def test_wire(self) -> None:
        """
        The request is C{("Q",)}.
        """
        self.assertEqual(_wire.decode(_wire.retireMessage()), ("Q",))

    def test_idleRootHelperIsAsked(self) -> None:
        """
        A root helper with nothing to do is asked to exit after the idle
        timeout, once.
        """
        self.reactor.advance(1.9)
        self.assertEqual(self.asked(), [])
        self.reactor.advance(0.2)
        self.assertEqual(self.asked(), [("Q",)])
        self.reactor.advance(60)
        self.assertEqual(self.asked(), [])

    def test_zeroNeverAsks(self) -> None:
        """
        With an idle timeout of 0 the root helper stays.
        """
        self.spawner.idleTimeout = 0
        self.reactor.advance(60)
        self.assertEqual(self.asked(), [])

    def test_droppedPrivilegesKeepIt(self) -> None:
        """
        A daemon that could not start the same helper again (it dropped
        its privileges) keeps it.
        """
        self.patch(self.spawner._launcher, "canRelaunch", lambda: False)
        self.reactor.advance(60)
        self.assertEqual(self.asked(), [])

    def test_runningChildKeepsIt(self) -> None:
        """
        A server the root helper started and that still runs keeps it;
        once it has ended, the timeout runs from then.
        """
        d = self.spawn(PLAIN)
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        self.tell([("s", request[1], 3001)])
        self.successResultOf(d)
        self.reactor.advance(30)
        self.assertEqual(self.asked(), [])
        self.tell([("e", 3001, 0)])
        self.reactor.advance(1.9)
        self.assertEqual(self.asked(), [])
        self.reactor.advance(2.1)
        self.assertEqual(self.asked(), [("Q",)])

    def test_subHelperKeepsIt(self) -> None:
        """
        While a sub-helper lives (until its C{"g"}) the root helper is
        not asked; after, it is once idle for the timeout.
        """
        sub = self.routedSub(NOBODY, 1)
        self.tellSub(sub, 1, [("e", 2001, 0)])
        self.reactor.advance(2.1)  # the sub-helper is retired
        self.assertEqual([m[0] for m in messages(self.helper)], ["X"])
        self.reactor.advance(30)
        self.assertEqual(self.asked(), [])
        self.tell([("g", [], 1)])
        self.reactor.advance(1.9)
        self.assertEqual(self.asked(), [])
        self.reactor.advance(2.1)
        self.assertEqual(self.asked(), [("Q",)])

    def test_exitsQuietly(self) -> None:
        """
        A helper that answers C{"q"} is forgotten; its end is not an
        error, and no other is started until a spawn needs one.
        """
        self.askedToExit()
        self.tell([("q",)])
        self.assertIsNone(self.spawner._control)
        self.spawner._launcher.helperEnded(
            self.reactor.helperProtocol, Failure(ProcessDone(0))
        )
        self.assertFalse(self.spawner._launcher.running)
        self.assertEqual(self.reactor.launched, 1)
        self.assertEqual(self.errors(), [])
        self.assertEqual(self.successResultOf(self.spawner.stop()), None)

    def test_diedIsStillAnError(self) -> None:
        """
        A helper that ends without having said C{"q"} died: that is
        logged as an error, as before.
        """
        self.helper.close()
        self.spawner._control.doRead()
        self.spawner._launcher.helperEnded(
            self.reactor.helperProtocol, Failure(ProcessDone(0))
        )
        self.assertIn(
            "spawn helper ended", str([e.get("log_format") for e in self.errors()])
        )

    def test_nextSpawnStartsAnother(self) -> None:
        """
        After its retirement the next spawn starts a new helper, with the
        template registered again, and is served by it.
        """
        d = self.spawn(PLAIN)
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        self.tell([("s", request[1], 3001), ("e", 3001, 0)])
        self.successResultOf(d)
        self.reactor.advance(2.1)
        self.assertEqual(self.asked(), [("Q",)])
        self.tell([("q",)])
        d = self.spawn(PLAIN)
        self.assertEqual(self.reactor.launched, 2)
        self.newHelper()
        sent = messages(self.helper)
        self.assertEqual([m[0] for m in sent], ["T", "S"])
        self.assertEqual(sent[1][2], sent[0][1])
        self.tell([("s", sent[1][1], 3002)])
        self.assertEqual(self.successResultOf(d).pid, 3002)
        self.assertEqual(self.errors(), [])
        infos = [e for e in self.logged if "starting the spawn" in str(e)]
        self.assertEqual(infos, [])  # a retirement is not worth a line

    def test_spawnsWhileAskedAreHeldInOrder(self) -> None:
        """
        Spawns made while the answer is awaited are not sent to the old
        helper; when it has said C{"q"} they all go, in order, to a new
        one.
        """
        self.askedToExit()
        first, second = self.spawn(PLAIN), self.spawn(OTHER_PLAIN)
        self.assertEqual(messages(self.helper), [])
        self.assertNoResult(first)
        self.assertTrue(self.spawner.isBackedUp())
        self.tell([("q",)])
        self.newHelper()
        sent = [m for m in messages(self.helper) if m[0] == "S"]
        self.assertEqual(len(sent), 2)
        templates = self.spawner._templates.ids
        self.assertEqual(
            [m[2] for m in sent], [templates[PLAIN], templates[OTHER_PLAIN]]
        )
        self.tell([("s", sent[0][1], 3001), ("s", sent[1][1], 3002)])
        self.assertEqual(self.successResultOf(first).pid, 3001)
        self.assertEqual(self.successResultOf(second).pid, 3002)
        self.assertFalse(self.spawner.isBackedUp())
        self.assertEqual(self.errors(), [])

    def test_heldDescriptorIsSent(self) -> None:
        """
        A held spawn's connection reaches the new helper although the
        caller closed its own copy.
        """
        self.askedToExit()
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        d = self.spawner.spawn(FakeProtocol(), PLAIN, b.fileno(), ())
        d.addErrback(lambda _: None)  # failed when the spawner stops
        b.close()
        self.tell([("q",)])
        self.newHelper()
        anc: list = []
        while not anc:
            _data, anc, _f, _a = self.helper.recvmsg(65536, 1024, socket.MSG_DONTWAIT)
        fd = int.from_bytes(anc[0][2][:4], sys.byteorder)
        with socket.socket(fileno=fd) as received:
            received.send(b"hi")
        self.assertEqual(a.recv(2), b"hi")

    def test_refusedKeepsItAndSendsTheHeld(self) -> None:
        """
        A helper that answers C{"n"} (it has children the daemon does not
        know of) stays: the held spawns go to it, and it is asked again
        after another idle timeout.
        """
        self.askedToExit()
        d = self.spawn(PLAIN)
        self.tell([("n",)])
        sent = [m for m in messages(self.helper) if m[0] == "S"]
        self.assertEqual(len(sent), 1)
        self.assertEqual(self.reactor.launched, 1)
        self.tell([("s", sent[0][1], 3001), ("e", 3001, 0)])
        self.successResultOf(d)
        self.reactor.advance(1.9)
        self.assertEqual(self.asked(), [])
        self.reactor.advance(2.2)
        self.assertEqual(self.asked(), [("Q",)])
        self.assertEqual(self.errors(), [])

    def test_diesWhileAsked(self) -> None:
        """
        A helper that dies before answering died (an error is logged);
        the held spawns go to a new one.
        """
        self.askedToExit()
        d = self.spawn(PLAIN)
        self.helper.close()
        self.spawner._control.doRead()
        self.assertEqual(self.reactor.launched, 2)
        self.assertTrue(self.errors())
        self.newHelper()
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        self.tell([("s", request[1], 3001)])
        self.assertEqual(self.successResultOf(d).pid, 3001)

    def test_noAnswerKillsIt(self) -> None:
        """
        A helper that does not answer within the stuck timeout is killed
        (an error is logged); its death then sends the held spawns on.
        """
        self.askedToExit()
        d = self.spawn(PLAIN)
        self.reactor.advance(self.spawner.stuckTimeout - 0.1)
        self.assertEqual(self.reactor.helperTransport.signals, [])
        self.reactor.advance(0.2)
        self.assertEqual(self.reactor.helperTransport.signals, ["KILL"])
        self.assertTrue(self.errors())
        self.helper.close()
        self.spawner._control.doRead()
        self.newHelper()
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        self.tell([("s", request[1], 3001)])
        self.successResultOf(d)

    def test_answerCancelsTheKill(self) -> None:
        """
        A helper that answers in time is not killed.
        """
        self.askedToExit()
        self.tell([("n",)])
        self.reactor.advance(self.spawner.stuckTimeout + 0.1)
        self.assertEqual(self.reactor.helperTransport.signals, [])

    def test_heldAreBackPressured(self) -> None:
        """
        Past L{HelperSpawner.maxQueued} held spawns, a spawn fails at once.
        """
        self.spawner.maxQueued = 2
        self.askedToExit()
        held = [self.spawn(PLAIN), self.spawn(PLAIN)]
        self.failureOf(self.spawn(PLAIN), SpawnError)
        for d in held:
            d.addErrback(lambda _: None)  # failed when the spawner stops

    def test_stopFailsTheHeld(self) -> None:
        """
        Stopping while the answer is awaited fails the held spawns, and no
        helper is started for them.
        """
        self.askedToExit()
        d = self.spawn(PLAIN)
        self.spawner.stop()
        failure = self.failureOf(d, SpawnError)
        self.assertIn("stopped", str(failure.value))
        self.assertEqual(self.reactor.launched, 1)

    def failureOf(self, d: defer.Deferred, kind: Any) -> Failure:
        return self.failureResultOf(d, kind)


class RealRootRetirementTests(SpawnerCase):
    """
    With the real helper: an idle root helper exits and the next spawn
    starts another; one with a stray child of its own stays.
    """

    def setUp(self) -> Any:
        d = SpawnerCase.setUp(self)
        self.spawner.idleTimeout = 0.2
        return d

    def whenAnswered(self) -> defer.Deferred:
        """
        A Deferred that fires with whether the root helper said it exits,
        once it has answered C{"Q"}.
        """
        retirement = self.spawner._rootRetirement
        original = retirement.answered
        d: defer.Deferred = defer.Deferred()

        def answered(control: Any, exits: bool) -> None:
            original(control, exits)
            if not d.called:
                d.callback(exits)

        self.patch(retirement, "answered", answered)
        return d.addTimeout(30, reactor)

    @defer.inlineCallbacks
    def whenEnded(self) -> Any:
        for _ in range(3000):
            if not self.spawner._launcher.running:
                return
            yield deferLater(0.01)
        self.fail("the root helper did not end")

    @defer.inlineCallbacks
    def test_retiredAndReplaced(self):
        """
        The idle root helper exits; the next spawn is served by another.
        """
        info = yield self.probe(_probeSetup())
        first = info["ppid"]
        answered = yield self.whenAnswered()
        self.assertTrue(answered)
        yield self.whenEnded()
        self.assertFalse(os.path.exists(f"/proc/{first}"))
        self.spawner.idleTimeout = 30
        info = yield self.probe(_probeSetup())
        self.assertNotEqual(info["ppid"], first)
        self.assertEqual(info["ppid"], self.spawner._helperTransport.pid)
        self.assertEqual(
            [e for e in self.logged if e.get("log_level") == LogLevel.error], []
        )

    @defer.inlineCallbacks
    def test_stopWhileANewOneStarts(self):
        """
        Stopping right after a spawn has started a new helper (the old one
        retired) ends it, fails that spawn, and leaves no helper behind.
        """
        yield self.probe(_probeSetup())
        self.assertTrue((yield self.whenAnswered()))
        yield self.whenEnded()
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        d = self.spawner.spawn(_Child(), _probeSetup(), theirs.fileno(), ())
        theirs.close()
        pid = self.spawner._helperTransport.pid
        yield self.spawner.stop()
        yield self.assertFailure(d, SpawnError)
        self.assertFalse(os.path.exists(f"/proc/{pid}"))

    @defer.inlineCallbacks
    def test_strayKeepsIt(self):
        """
        A server's background process, orphaned to the root helper (a
        subreaper) and unknown to the daemon, keeps it: it answers
        C{"n"}.
        """
        script = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n"
        setup = ChildSetup(PYTHON, (PYTHON, "-c", script))
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        answered = self.whenAnswered()
        _t, reason, _out, _c = yield self.spawnOne(setup)
        helperPid = self.spawner._helperTransport.pid
        strays = _children(helperPid)
        self.assertEqual(len(strays), 1)
        self.addCleanup(_kill, strays[0])
        exits = yield answered
        self.assertFalse(exits)
        self.assertTrue(os.path.exists(f"/proc/{helperPid}"))
        self.assertIs(self.spawner._control.retired, False)


def deferLater(delay: float) -> defer.Deferred:
    from twisted.internet.task import deferLater as later

    return later(reactor, delay, lambda: None)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass
