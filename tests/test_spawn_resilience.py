"""
What a service's user can do to the sub-helper that runs as them (stop it,
prlimit it, kill it), and a dead root helper, must not reach other users'
services nor lose track of running servers: tests with the real helpers.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
from typing import Any, Dict, List, Tuple

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessTerminated

from tests.test_spawn_helper import (
    NOBODY,
    PYTHON,
    PYTHON_SUBHELPERS,
    ROOT,
    SpawnerCase,
    _Child,
    _descendants,
    _probeSetup,
)
from xinetd_twisted.spawn.interfaces import ChildSetup, SpawnError, credentialKey
from xinetd_twisted.spawn.setup import DAEMON_RLIMITS

_LIMIT_NAMES = {
    "Max core file size": resource.RLIMIT_CORE,
    "Max processes": resource.RLIMIT_NPROC,
    "Max open files": resource.RLIMIT_NOFILE,
    "Max cpu time": resource.RLIMIT_CPU,
    "Max stack size": resource.RLIMIT_STACK,
}


def _parseLimits(text: bytes) -> Dict[int, Tuple[int, int]]:
    """
    The limits C{/proc/PID/limits} shows, for the resources we check.
    """
    limits = {}
    for line in text.decode().splitlines():
        for name, r in _LIMIT_NAMES.items():
            if line.startswith(name):
                words = line[len(name) :].split()
                soft, hard = (
                    resource.RLIM_INFINITY if w == "unlimited" else int(w)
                    for w in words[:2]
                )
                limits[r] = (soft, hard)
    return limits


def _limitsOf(pid: int) -> Dict[int, Tuple[int, int]]:
    with open(f"/proc/{pid}/limits", "rb") as f:
        return _parseLimits(f.read())


def _fullLimits() -> Tuple[Tuple[int, int, int], ...]:
    """
    The rlimits childSetupFor gives a service that sets none.
    """
    limits = dict(DAEMON_RLIMITS)
    hard = limits[resource.RLIMIT_NOFILE][1]
    limits[resource.RLIMIT_NOFILE] = (hard, hard)
    return tuple((r, s, h) for r, (s, h) in sorted(limits.items()))


def _prlimitAsNobody(pid: int, limits: Dict[int, Tuple[int, int]]) -> None:
    """
    Change process C{pid}'s limits with prlimit(2), as user nobody: what
    any process of a service's user may do to that user's sub-helper.
    """
    assert NOBODY is not None
    calls = "; ".join(f"r.prlimit({pid}, {k}, {v})" for k, v in limits.items())
    subprocess.run(
        [PYTHON, "-I", "-c", f"import resource as r; {calls}"],
        user=NOBODY.pw_uid,
        group=NOBODY.pw_gid,
        extra_groups=[],
        check=True,
        cwd="/",
        timeout=30,
    )


_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
"""SO_SNDBUF beyond net.core.wmem_max (root only; 32 on Linux)."""


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _nobody(*args: str, **kw: Any) -> Dict[str, Any]:
    assert NOBODY is not None
    return dict(uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=(), **kw)


class ResilienceCase(SpawnerCase):
    def setUp(self) -> Any:
        if not ROOT:
            raise self.skipTest("needs root: sub-helpers run as other users")
        return super().setUp()

    def subHelperOf(self, uid: int) -> int:
        [sub] = [p for p in self.subHelpers() if _uidOf(p) == uid]
        return sub

    def stopped(self, pid: int) -> None:
        """
        SIGSTOP C{pid}, continuing it at the end of the test if it lives.
        """
        os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

        self.addCleanup(resume)

    def spawnQuietly(self, setup: ChildSetup) -> defer.Deferred:
        """
        Spawn with a socketpair nobody reads; the Deferred fires with the
        transport or the exception.
        """
        ours, theirs = socket.socketpair()
        try:
            d = self.spawner.spawn(_Child(), setup, theirs.fileno(), ())
        finally:
            theirs.close()
            ours.close()
        return d.addErrback(lambda f: f.value)

    @defer.inlineCallbacks
    def limitsOfAChild(self, setup: ChildSetup) -> Any:
        _t, reason, output, _c = yield self.spawnOne(setup)
        self.assertFalse(isinstance(reason.value, ProcessTerminated), output)
        return _parseLimits(output)


class StuckSubHelperTests(ResilienceCase):
    @defer.inlineCallbacks
    def test_stoppedSubHelperHoldsUpOnlyItsCredentialSet(self):
        """
        With nobody's sub-helper stopped and flooded, another credential
        set's spawns still succeed; nobody's fail (none hangs), only
        nobody's set is reported backed up, and within seconds the stuck
        sub-helper is logged, killed and replaced.
        """
        self.spawner.stuckTimeout = 1.0
        changes: List[Tuple[Any, bool]] = []
        self.spawner.observePressure(lambda key, up: changes.append((key, up)))
        probe = _probeSetup(**_nobody())
        yield self.routed(probe)
        # The 300 spawns below reach the root helper's socket in one burst,
        # faster than it forwards them: room for all of them, so that what
        # is asserted is that it is never held up, not whether it happened
        # to be scheduled during the burst.  (Its sockets to the
        # sub-helpers keep their size: the stopped one's still fills.)
        self.spawner._control.sock.setsockopt(
            socket.SOL_SOCKET, _SO_SNDBUFFORCE, 4 << 20
        )
        sub = self.subHelperOf(NOBODY.pw_uid)
        self.stopped(sub)
        # A new template of the same user goes through the root helper,
        # which forwards into the stopped one; the known one goes straight.
        fresh = ChildSetup("/bin/true", ("true", "fresh"), **_nobody())
        outcomes = [self.spawnQuietly(fresh) for _ in range(300)]
        outcomes += [self.spawnQuietly(probe) for _ in range(300)]
        other = _probeSetup(uid=1, gid=1, supplementaryGroups=())
        started = reactor.seconds()
        _t, reason, output, _c = yield self.spawnOne(other).addTimeout(10, reactor)
        self.assertEqual(_state(sub), "T")  # still stopped meanwhile
        self.assertIn(b'"uid": 1,', output)
        results = yield defer.gatherResults(outcomes).addTimeout(10, reactor)
        self.assertLess(reactor.seconds() - started, 8)
        self.assertEqual({type(r) for r in results}, {SpawnError})
        yield self.waitFor(lambda: _state(sub) in ("gone", "Z"), 5)
        info = yield self.probe(probe)
        self.assertEqual(info["uid"], NOBODY.pw_uid)
        self.assertNotEqual(info["ppid"], sub)
        key = credentialKey(probe)
        self.assertNotIn((None, True), changes)
        self.assertEqual(changes[0], (key, True))
        self.assertIn((key, False), changes)
        lines = [
            e["log_format"].format(**e)
            for e in self.logged
            if "answered nothing" in e.get("log_format", "")
        ]
        self.assertEqual(len(lines), 1)
        self.assertIn(f"uid {NOBODY.pw_uid}, gid {NOBODY.pw_gid}", lines[0])

    @defer.inlineCallbacks
    def test_backedUpCredentialSetFailsFast(self):
        """
        Past maxQueued waiting spawns of a stopped sub-helper, its next
        spawn fails at once; another credential set is not affected.
        """
        self.spawner.maxQueued = 5
        probe = _probeSetup(**_nobody())
        channel = yield self.routed(probe)
        channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.stopped(self.subHelperOf(NOBODY.pw_uid))
        outcomes = [self.spawnQuietly(probe) for _ in range(200)]
        self.assertEqual(len(channel.queue), 5)
        failed = [d.result for d in outcomes if d.called]
        self.assertGreater(len(failed), 100)
        self.assertEqual({type(e) for e in failed}, {SpawnError})
        info = yield self.probe(_probeSetup(uid=1, gid=1, supplementaryGroups=()))
        self.assertEqual(info["uid"], 1)


class RlimitTests(ResilienceCase):
    @defer.inlineCallbacks
    def test_prlimitOfSubHelperSoftLimits(self):
        """
        Soft limits changed on the sub-helper with prlimit(2) do not reach
        its children: each gets exactly its setup's limits.
        """
        setup = ChildSetup(
            "/bin/cat", ("cat", "/proc/self/limits"), rlimits=_fullLimits(), **_nobody()
        )
        yield self.routed(setup)
        sub = self.subHelperOf(NOBODY.pw_uid)
        expected = {
            r: (s, h) for r, s, h in setup.rlimits if r in _LIMIT_NAMES.values()
        }
        changes = {}
        before = _limitsOf(sub)
        for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_CORE):
            soft, hard = before[r]
            changed = 7 if soft != 7 else 8
            if r == resource.RLIMIT_CORE and hard == resource.RLIM_INFINITY:
                changed = 1 << 20
            changes[r] = (changed, hard)
        _prlimitAsNobody(sub, changes)
        self.assertEqual(_limitsOf(sub)[resource.RLIMIT_NOFILE][0], 7)
        limits = yield self.limitsOfAChild(setup)
        self.assertEqual(limits, expected)

    @defer.inlineCallbacks
    def test_prlimitOfSubHelperHardLimits(self):
        """
        Hard limits lowered on the sub-helper (which it cannot raise back)
        reach no child: the spawn that finds them fails, the sub-helper is
        replaced, and children again get exactly their setup's limits.
        """
        setup = ChildSetup(
            "/bin/cat", ("cat", "/proc/self/limits"), rlimits=_fullLimits(), **_nobody()
        )
        yield self.routed(setup)
        sub = self.subHelperOf(NOBODY.pw_uid)
        expected = {
            r: (s, h) for r, s, h in setup.rlimits if r in _LIMIT_NAMES.values()
        }
        _prlimitAsNobody(
            sub,
            {
                resource.RLIMIT_NOFILE: (64, 64),
                resource.RLIMIT_NPROC: (50, 50),
                resource.RLIMIT_CORE: (0, 0),
            },
        )
        failures = 0
        for _ in range(5):
            try:
                limits = yield self.limitsOfAChild(setup)
            except SpawnError:
                failures += 1
                continue
            self.assertEqual(limits, expected)
            break
        else:
            self.fail("no child started")
        self.assertLessEqual(failures, 2)
        self.assertNotIn(sub, self.subHelpers())

    @defer.inlineCallbacks
    def test_failedSpawnGivesTheConnectionBack(self):
        """
        A spawn the sub-helper cannot make (its hard limits lowered) fails
        with the client's connection given back, for a retry.
        """
        setup = ChildSetup("/bin/true", ("true",), rlimits=_fullLimits(), **_nobody())
        yield self.routed(setup)
        _prlimitAsNobody(
            self.subHelperOf(NOBODY.pw_uid), {resource.RLIMIT_CORE: (0, 0)}
        )
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        try:
            d = self.spawner.spawn(_Child(), setup, theirs.fileno(), ())
        finally:
            theirs.close()
        error = yield self.assertFailure(d, SpawnError)
        self.assertGreaterEqual(error.connection, 0)
        os.write(error.connection, b"back")
        os.close(error.connection)
        self.assertEqual(ours.recv(4), b"back")

    @defer.inlineCallbacks
    def test_prlimitOfRootHelper(self):
        """
        Soft limits changed on the root helper do not reach the children it
        starts itself either.
        """
        setup = ChildSetup(
            "/bin/cat", ("cat", "/proc/self/limits"), rlimits=_fullLimits()
        )
        expected = {
            r: (s, h) for r, s, h in setup.rlimits if r in _LIMIT_NAMES.values()
        }
        helper = self.spawner._helperTransport.pid
        for r in (resource.RLIMIT_CORE, resource.RLIMIT_NOFILE):
            soft, hard = resource.prlimit(helper, r)
            resource.prlimit(helper, r, (1 << 20 if soft == 0 else 64, hard))
        limits = yield self.limitsOfAChild(setup)
        self.assertEqual(limits, expected)


class HelperDeathTests(ResilienceCase):
    @defer.inlineCallbacks
    def sleeping(self, setup: ChildSetup) -> Any:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        try:
            transport = yield self.spawner.spawn(child, setup, theirs.fileno(), ())
        finally:
            theirs.close()
        pid = transport.pid

        def kill() -> None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        self.addCleanup(kill)
        return child, pid

    @defer.inlineCallbacks
    def stillFollowed(self, child: _Child, pid: int, signalNumber: int) -> Any:
        """
        C{pid} is still running and counted; C{signalChild} reaches it and
        its end is reported once, with the signal it died of.
        """
        self.assertIn(pid, self.spawner.running)
        self.assertFalse(child.ended.called)
        self.assertNotEqual(_state(pid), "gone")
        self.spawner.signalChild(pid, signalNumber)
        reason = (yield child.ended.addTimeout(10, reactor)).reason
        self.assertEqual(reason.value.signal, signalNumber)
        self.assertEqual(len(child.exited), 1)
        self.assertNotIn(pid, self.spawner.running)
        yield self.waitFor(lambda: _state(pid) == "gone", 5)  # reaped

    def rootHelperKilled(self) -> Any:
        os.kill(self.spawner._helperTransport.pid, signal.SIGKILL)
        return self.waitFor(lambda: self.spawner._helperTransport is None)

    @defer.inlineCallbacks
    def test_subHelperDeath(self):
        """
        A child of a killed sub-helper stays followed: signalChild reaches
        it through the root helper, which adopted it.
        """
        setup = _probeSetup("--sleep", "30", **_nobody())
        yield self.routed(_probeSetup(**_nobody()))
        child, pid = yield self.sleeping(setup)
        sub = self.subHelperOf(NOBODY.pw_uid)
        os.kill(sub, signal.SIGKILL)
        helper = self.spawner._helperTransport.pid
        yield self.waitFor(
            lambda: pid in _descendants(helper) and _state(sub) == "gone"
        )
        yield self.waitFor(lambda: not self.spawner._subs)  # "g" handled
        yield self.stillFollowed(child, pid, signal.SIGTERM)

    @defer.inlineCallbacks
    def test_rootHelperDeath(self):
        """
        A child the killed root helper started stays followed: the daemon
        (a subreaper) adopts it, signals it and reaps it.
        """
        child, pid = yield self.sleeping(_probeSetup("--sleep", "30"))
        yield self.rootHelperKilled()
        self.assertEqual(_ppid(pid), os.getpid())
        yield self.stillFollowed(child, pid, signal.SIGTERM)

    @defer.inlineCallbacks
    def test_rootHelperDeathLeavesSubHelpers(self):
        """
        When the root helper dies, a sub-helper goes on for its children
        (signals, real status), then exits and is reaped; the next spawn
        starts a new helper.
        """
        yield self.routed(_probeSetup(**_nobody()))
        child, pid = yield self.sleeping(_probeSetup("--sleep", "30", **_nobody()))
        sub = self.subHelperOf(NOBODY.pw_uid)
        yield self.rootHelperKilled()
        self.assertEqual(_ppid(pid), sub)
        yield self.stillFollowed(child, pid, signal.SIGTERM)
        yield self.waitFor(lambda: _state(sub) == "gone", 5)
        info = yield self.probe(_probeSetup(**_nobody()))
        self.assertEqual(info["uid"], NOBODY.pw_uid)

    @defer.inlineCallbacks
    def test_rootThenSubHelperDeath(self):
        """
        When the root helper and then the sub-helper die, the sub-helper's
        child becomes the daemon's, which signals and reaps it.
        """
        yield self.routed(_probeSetup(**_nobody()))
        child, pid = yield self.sleeping(_probeSetup("--sleep", "30", **_nobody()))
        sub = self.subHelperOf(NOBODY.pw_uid)
        yield self.rootHelperKilled()
        os.kill(sub, signal.SIGKILL)
        yield self.waitFor(lambda: _state(sub) == "gone")
        yield self.waitFor(lambda: self.spawner.running[pid].adopted)
        self.assertEqual(_ppid(pid), os.getpid())
        yield self.stillFollowed(child, pid, signal.SIGKILL)

    @defer.inlineCallbacks
    def test_childEndsWhileOrphaned(self):
        """
        An orphaned child that ends by itself is reported once, with its
        exit status.
        """
        setup = ChildSetup("/bin/sh", ("sh", "-c", "sleep 1; exit 3"))
        child, pid = yield self.sleeping(setup)
        yield self.rootHelperKilled()
        self.assertIn(pid, self.spawner.running)
        reason = (yield child.ended.addTimeout(10, reactor)).reason
        self.assertEqual(reason.value.exitCode, 3)
        self.assertEqual(len(child.exited), 1)

    @defer.inlineCallbacks
    def test_strayOfADeadHelperIsReaped(self):
        """
        A server's own background process, which a dead root helper leaves
        to the daemon without its knowing, is reaped (no zombie) once it ends.
        """
        self.spawner._reaper.strayScanInterval = 0.1
        setup = ChildSetup("/bin/sh", ("sh", "-c", "sleep 1 >/dev/null & echo $!"))
        _t, _reason, output, _c = yield self.spawnOne(setup)
        stray = int(output)
        self.addCleanup(_killQuietly, stray)
        yield self.rootHelperKilled()
        self.assertEqual(_ppid(stray), os.getpid())
        yield self.waitFor(lambda: _state(stray) == "gone", 10)


def _uidOf(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:  # it has just ended
        return -1


def _killQuietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


class PythonRlimitTests(RlimitTests):
    """
    L{RlimitTests} with the sub-helpers in Python.
    """

    helperEnvironment = PYTHON_SUBHELPERS


class PythonHelperDeathTests(HelperDeathTests):
    """
    L{HelperDeathTests} with the sub-helpers in Python.
    """

    helperEnvironment = PYTHON_SUBHELPERS


class PythonStuckSubHelperTests(StuckSubHelperTests):
    """
    L{StuckSubHelperTests} with the sub-helpers in Python.
    """

    helperEnvironment = PYTHON_SUBHELPERS
