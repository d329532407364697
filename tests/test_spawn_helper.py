"""
Tests for L{xinetd_twisted.spawn.helperspawner.HelperSpawner} through the
real spawn helper, with socketpairs standing in for connections and
L{tests.probe} as the server program.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.daemon import readNow
from xinetd_twisted.spawn import helper as helperModule
from xinetd_twisted.spawn.helper import SUBHELPER_NAME
from xinetd_twisted.spawn.helperspawner import MAX_LANES, HelperSpawner, defaultLanes
from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    ISpawner,
    SpawnError,
    credentialKey,
)
from xinetd_twisted.spawn.table import LANE_STALL

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
# The children may run as nobody, who cannot read a python under /root.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
ROOT = os.getuid() == 0
NOBODY = pwd.getpwnam("nobody") if ROOT else None


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # it has just ended
        return b""


def _isHelper(pid: int, helperPid: int) -> bool:
    """
    Whether C{pid} is a helper process: forked from the root helper
    C{helperPid} (the same command line), or the compiled sub-helper it
    became.
    """
    line = _cmdline(pid)
    program = os.path.basename(line.split(b"\0", 1)[0])
    return line == _cmdline(helperPid) or program == SUBHELPER_NAME.encode()


def _children(pid: int) -> List[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _subHelpers(helperPid: int) -> List[int]:
    """
    The sub-helpers of the root helper C{helperPid}: the helper processes
    among its own children.  Not among all its descendants: a server that
    a compiled sub-helper started with clone(CLONE_VM) shows the
    sub-helper's command line until it has exec'd, and the spawn is
    reported started before that.
    """
    return [p for p in _children(helperPid) if _isHelper(p, helperPid)]


def _heldObjects(pid: int) -> Set[str]:
    """
    The sockets and pipes (C{"socket:[inode]"}) process C{pid} holds.
    """
    held = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith(("socket:", "pipe:")):
            held.add(target)
    return held


def _descendants(pid: int, state: str = "") -> List[int]:
    """
    Pids below C{pid} (in C{state}, a /proc state letter, if given).
    """
    found, todo = [], [pid]
    for _ in range(10000):
        if not todo:
            break
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:  # it has just ended
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/stat") as f:
                    kidState = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            todo.append(kid)
            if not state or kidState == state:
                found.append(kid)
    return found


_GLIBC_RESERVED = frozenset({32, 33})


class _Child(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred = defer.Deferred()
        self.connected = 0
        self.exited: List[Any] = []

    def makeConnection(self, transport: Any) -> None:
        self.connected += 1
        self.transport = transport

    def processExited(self, reason: Any) -> None:
        self.exited.append(reason)

    def processEnded(self, reason: Any) -> None:
        self.reason = reason
        self.ended.callback(self)


PYTHON_SUBHELPERS = {"XINETD_TWISTED_PYTHON_SUBHELPERS": "1"}
"""The helper environment that keeps the sub-helpers in Python."""

COMPILED = os.access(helperModule.SUBHELPER_PATH, os.X_OK)
"""Whether the compiled sub-helper is built (C{make test} builds it)."""


def _probeSetup(*args: str, **kw: Any) -> ChildSetup:
    kw.setdefault("environment", (("PATH", "/bin"),))
    return ChildSetup(PYTHON, (PYTHON, PROBE) + args, **kw)


class SpawnerCase(TestCase):
    """
    A real L{HelperSpawner} on the real reactor, and ways to drive it.

    @cvar lanes: sub-helpers per credential set: one, unless a test is about
        several.
    @cvar helperEnvironment: the helper's environment (L{PYTHON_SUBHELPERS}
        for the Python sub-helpers where the compiled one is built).
    """

    lanes = 1
    helperEnvironment: Optional[Dict[str, str]] = None

    def setUp(self) -> Any:
        self.spawner = HelperSpawner(
            reactor, lanes=self.lanes, helperEnvironment=self.helperEnvironment
        )
        self.addCleanup(self.spawner.stop)
        self.logged: List[dict] = []
        globalLogPublisher.addObserver(self.logged.append)  # type: ignore[arg-type]
        self.addCleanup(
            globalLogPublisher.removeObserver,
            self.logged.append,  # type: ignore[arg-type]
        )
        return self.spawner.start()

    @defer.inlineCallbacks
    def spawnOne(
        self, setup: ChildSetup, extra: Tuple[Tuple[str, str], ...] = ()
    ) -> Any:
        ours, theirs = socket.socketpair()
        child = _Child()
        try:
            try:
                transport = yield self.spawner.spawn(
                    child, setup, theirs.fileno(), extra
                )
            finally:
                theirs.close()
            reason = (yield child.ended).reason
            return transport, reason, readNow(ours), child
        finally:
            ours.close()

    @defer.inlineCallbacks
    def probe(self, setup: ChildSetup, extra: Tuple[Tuple[str, str], ...] = ()) -> Any:
        _t, reason, output, _c = yield self.spawnOne(setup, extra)
        self.assertIsInstance(reason.value, ProcessDone, output)
        return json.loads(output)

    @defer.inlineCallbacks
    def routed(self, setup: ChildSetup) -> Any:
        """
        Spawn C{setup} once, then wait until the daemon has been handed the
        channel to the sub-helper that starts its children.
        """
        yield self.spawnOne(setup)
        templateId = self.spawner._templates.ids[setup]
        for _ in range(200):
            if templateId in self.spawner._routes:
                return self.spawner._routes[templateId]
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail("no route to a sub-helper")

    def subHelpers(self) -> List[int]:
        helperPid = self.spawner._helperTransport.pid
        return _subHelpers(helperPid)

    @defer.inlineCallbacks
    def sleeper(self, setup: ChildSetup) -> Any:
        """
        Start C{setup} (a child that sleeps), signal it with SIGTERM and
        return the exception it ended with.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        try:
            transport = yield self.spawner.spawn(child, setup, theirs.fileno(), ())
        finally:
            theirs.close()
        transport.signalProcess("TERM")
        return (yield child.ended).reason.value

    def floodWhileStopped(self, pid: int, setup: ChildSetup) -> Tuple[list, bool]:
        """
        Stop the helper process C{pid}, spawn until the spawner says it is
        backed up (at most 300), let the helper go on; return the children
        and whether it was backed up.
        """
        os.kill(pid, signal.SIGSTOP)
        children: list = []
        try:
            for _ in range(300):
                if self.spawner.isBackedUp() and len(children) > 20:
                    break
                ours, theirs = socket.socketpair()
                child = _Child()
                children.append(child)
                self.spawner.spawn(child, setup, theirs.fileno(), ())
                theirs.close()
                ours.close()
            return children, self.spawner.isBackedUp()
        finally:
            os.kill(pid, signal.SIGCONT)

    @defer.inlineCallbacks
    def waitFor(self, predicate: Any, timeout: float = 10.0) -> Any:
        """
        Poll C{predicate} until it is true, failing after C{timeout} seconds.
        """
        deadline = reactor.seconds() + timeout
        while not predicate():
            if reactor.seconds() > deadline:
                self.fail(f"not true after {timeout} s: {predicate}")
            yield deferLater(reactor, 0.02, lambda: None)


class HelperSpawnerTests(SpawnerCase):
    @defer.inlineCallbacks
    def test_firstSpawnOfACredentialSetGivesEOF(self):
        """
        The first child of a new credential set (which starts a sub-helper)
        leaves no copy of the connection behind: the peer sees EOF as soon
        as the child exits.
        """
        if not ROOT:
            raise SkipTest("needs root to run children as nobody")
        setup = ChildSetup(
            "/bin/sh",
            ("sh", "-c", "echo hi"),
            uid=NOBODY.pw_uid,
            gid=NOBODY.pw_gid,
            supplementaryGroups=(),
        )
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        try:
            yield self.spawner.spawn(child, setup, theirs.fileno(), ())
        finally:
            theirs.close()
        yield child.ended
        ours.settimeout(5)
        received = b""
        while True:
            data = ours.recv(100)
            if not data:
                break
            received += data
        self.assertEqual(received, b"hi\n")

    @defer.inlineCallbacks
    def test_protocolErrorIsLoggedNotFatal(self):
        """
        A process protocol raising in processEnded is logged; the helper
        keeps running and spawning.
        """

        class Raising(_Child):
            def processEnded(self, reason: Any) -> None:
                _Child.processEnded(self, reason)
                raise RuntimeError("a bug in the protocol")

        helperPid = self.spawner._helperTransport.pid
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = Raising()
        yield self.spawner.spawn(
            child, ChildSetup("/bin/true", ("true",)), theirs.fileno(), ()
        )
        theirs.close()
        yield child.ended  # fired just before the raise
        yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        info = yield self.probe(_probeSetup())
        self.assertEqual(info["ppid"], helperPid)

    def test_interface(self) -> None:
        """HelperSpawner provides ISpawner."""
        verifyObject(ISpawner, self.spawner)

    @defer.inlineCallbacks
    def test_stdioIsTheSocketAndNothingElseIsOpen(self):
        """The child gets the socket on 0, 1 and 2, blocking, and no other fd."""
        info = yield self.probe(_probeSetup())
        self.assertEqual(info["fds"], [0, 1, 2])
        for fd in "012":
            self.assertEqual(info["stdio"][fd]["type"], "SOCK_STREAM")
            self.assertEqual(info["stdio"][fd]["family"], "AF_UNIX")
            self.assertFalse(info["stdio"][fd]["nonblocking"])

    @defer.inlineCallbacks
    def test_argvAndExactEnvironment(self):
        """argv is passed as is and the environment is the setup's plus the extra."""
        setup = _probeSetup("a b", "", environment=(("A", "1"), ("B", "x=y")))
        info = yield self.probe(setup, (("REMOTE_HOST", "::ffff:127.0.0.1"),))
        self.assertEqual(info["argv"], [PROBE, "a b", ""])
        self.assertEqual(
            info["env"], {"A": "1", "B": "x=y", "REMOTE_HOST": "::ffff:127.0.0.1"}
        )

    @defer.inlineCallbacks
    def test_sessionCwdUmaskSignals(self):
        """The child leads a new session in /, with the umask and an empty mask."""
        info = yield self.probe(_probeSetup(umask=0o027))
        self.assertEqual((info["sid"], info["pgid"]), (info["pid"], info["pid"]))
        self.assertEqual((info["cwd"], info["root"], info["umask"]), ("/", "/", 0o027))
        self.assertEqual(info["sigBlk"], [])
        # Python itself ignores SIGPIPE and SIGXFSZ at start-up; nothing else.
        # (32 and 33 are glibc's own: no libc call can change them, and a
        # test runner started through posix_spawn, as trial -j does, may
        # pass them on ignored.)
        self.assertEqual(sorted(set(info["sigIgn"]) - {13, 25} - _GLIBC_RESERVED), [])

    @defer.inlineCallbacks
    def test_noIgnoredSignalsAtExec(self):
        """A non-Python child starts with no ignored signal (SIGPIPE reset too)."""
        # Not the shell's own status: dash blocks every signal around its
        # forks, and grep could read it at that moment.
        setup = ChildSetup("/bin/sh", ("sh", "-c", "exec grep Sig /proc/self/status"))
        _t, reason, output, _c = yield self.spawnOne(setup)
        ignored = int(output.split(b"SigIgn:\t")[1].split(b"\n")[0], 16)
        reserved = sum(1 << (n - 1) for n in _GLIBC_RESERVED)
        self.assertEqual(ignored & ~reserved, 0)
        self.assertIn(b"SigBlk:\t0000000000000000", output)

    @defer.inlineCallbacks
    def test_niceAndRlimits(self):
        """nice and rlimits are applied in the child."""
        setup = _probeSetup(
            nice=4,
            rlimits=((resource.RLIMIT_NOFILE, 77, 77), (resource.RLIMIT_CPU, 30, 30)),
        )
        info = yield self.probe(setup)
        self.assertEqual(info["nice"], os.getpriority(os.PRIO_PROCESS, 0) + 4)
        self.assertEqual(info["rlimits"]["NOFILE"], [77, 77])
        self.assertEqual(info["rlimits"]["CPU"], [30, 30])
        self.assertEqual(info["fds"], [0, 1, 2])

    @defer.inlineCallbacks
    def test_defaultNofileIsHardLimit(self):
        """Without rlimits the child's NOFILE soft limit equals the hard one."""
        info = yield self.probe(_probeSetup())
        soft, hard = info["rlimits"]["NOFILE"]
        self.assertEqual(soft, hard)
        self.assertEqual(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    @defer.inlineCallbacks
    def test_credentials(self):
        """uid, gid and an empty group list are set exactly."""
        if not ROOT:
            raise self.skipTest("needs root")
        setup = _probeSetup(
            uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=()
        )
        info = yield self.probe(setup)
        self.assertEqual((info["uid"], info["euid"]), (NOBODY.pw_uid, NOBODY.pw_uid))
        self.assertEqual((info["gid"], info["egid"]), (NOBODY.pw_gid, NOBODY.pw_gid))
        self.assertEqual(info["groups"], [])

    @defer.inlineCallbacks
    def test_supplementaryGroupsExact(self):
        """groups = yes: exactly the given supplementary groups."""
        if not ROOT:
            raise self.skipTest("needs root")
        setup = _probeSetup(
            uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=(4, 24)
        )
        info = yield self.probe(setup)
        self.assertEqual(info["groups"], [4, 24])

    @defer.inlineCallbacks
    def test_credentialsOnSlowPath(self):
        """Credentials are also exact when nice forces the Python child path."""
        if not ROOT:
            raise self.skipTest("needs root")
        setup = _probeSetup(
            uid=NOBODY.pw_uid,
            gid=NOBODY.pw_gid,
            supplementaryGroups=(4,),
            nice=1,
            umask=0o007,
        )
        info = yield self.probe(setup)
        self.assertEqual(
            (info["uid"], info["gid"], info["groups"]),
            (NOBODY.pw_uid, NOBODY.pw_gid, [4]),
        )
        self.assertEqual(
            (info["umask"], info["fds"], info["sid"]), (0o007, [0, 1, 2], info["pid"])
        )

    @defer.inlineCallbacks
    def test_chroot(self):
        """chroot: the program runs inside the new root, with cwd /."""
        if not ROOT:
            raise self.skipTest("needs root")
        jail = tempfile.mkdtemp()
        os.chmod(jail, 0o755)
        self.addCleanup(shutil.rmtree, jail)
        sh = os.path.realpath("/bin/sh")
        libs = subprocess.run(
            ["ldd", sh], capture_output=True, text=True
        ).stdout.split()
        for path in [sh] + [w for w in libs if w.startswith("/")]:
            target = jail + (os.path.dirname(path) if path != sh else "/bin")
            os.makedirs(target, exist_ok=True)
            shutil.copy(path, target)
        open(os.path.join(jail, "marker"), "w").close()
        setup = ChildSetup(
            "/bin/" + os.path.basename(sh),
            ("sh", "-c", '[ -e /marker ] && echo "inside $(pwd)"'),
            chroot=jail,
            uid=NOBODY.pw_uid,
            gid=NOBODY.pw_gid,
            supplementaryGroups=(),
        )
        _t, reason, output, _c = yield self.spawnOne(setup)
        self.assertEqual(output, b"inside /\n")

    @defer.inlineCallbacks
    def test_execFailure(self):
        """A program that cannot be executed ends with 127 and is logged."""
        variants: List[dict] = [{}, {"nice": 1}]  # fork_exec and Python child
        if ROOT:  # and through a sub-helper
            variants.append({"uid": NOBODY.pw_uid, "gid": NOBODY.pw_gid})
        for kw in variants + variants:  # again: straight to a sub-helper
            setup = ChildSetup("/nonexistent/prog", ("prog",), **kw)
            _t, reason, output, _c = yield self.spawnOne(setup)
            self.assertIsInstance(reason.value, ProcessTerminated)
            self.assertEqual(reason.value.exitCode, 127)
            messages = [
                e.get("log_format", "").format(**e)
                for e in self.logged
                if "executable" in e
            ]
            self.assertIn(
                "execv( /nonexistent/prog ) failed: No such file or directory", messages
            )
            del self.logged[:]

    @defer.inlineCallbacks
    def test_exitCodeAndSignal(self):
        """Exit codes and deaths by signal are reported like Twisted's own."""
        _t, reason, output, child = yield self.spawnOne(_probeSetup("--exit", "3"))
        self.assertEqual((reason.value.exitCode, reason.value.signal), (3, None))
        self.assertEqual(len(child.exited), 1)
        setup = ChildSetup("/bin/sh", ("sh", "-c", "kill -9 $$"))
        _t, reason, output, child = yield self.spawnOne(setup)
        self.assertEqual((reason.value.exitCode, reason.value.signal), (None, 9))

    @defer.inlineCallbacks
    def test_transportAndSignalChild(self):
        """The transport has the pid; signalProcess reaches the running child."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        transport = yield self.spawner.spawn(
            child, _probeSetup("--sleep", "30"), theirs.fileno(), ()
        )
        theirs.close()
        verifyObject(IProcessTransport, transport)
        self.assertIs(child.transport, transport)
        self.assertEqual(child.connected, 1)
        self.assertGreater(transport.pid, 0)
        transport.signalProcess("TERM")
        reason = (yield child.ended).reason
        self.assertEqual(reason.value.signal, signal.SIGTERM)
        self.assertIsNone(transport.pid)
        self.spawner.signalChild(12345678, signal.SIGTERM)  # unknown: ignored

    @defer.inlineCallbacks
    def test_signalChildTakesSignalsMembers(self):
        """signalChild accepts a signal.Signals member, as the server passes."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        transport = yield self.spawner.spawn(
            child, _probeSetup("--sleep", "30"), theirs.fileno(), ()
        )
        theirs.close()
        self.spawner.signalChild(transport.pid, signal.SIGKILL)
        reason = (yield child.ended).reason
        self.assertEqual(reason.value.signal, signal.SIGKILL)

    @defer.inlineCallbacks
    def test_helperDeathAndRestart(self):
        """
        A killed helper's running child stays followed (signalled, reported
        once with its real status) and the next spawn restarts the helper.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        transport = yield self.spawner.spawn(
            child, _probeSetup("--sleep", "30"), theirs.fileno(), ()
        )
        theirs.close()
        pid = transport.pid
        os.kill(self.spawner._helperTransport.pid, signal.SIGKILL)
        yield self.waitFor(lambda: self.spawner._helperTransport is None)
        self.assertIn(pid, self.spawner.running)
        self.assertFalse(child.ended.called)
        self.spawner.signalChild(pid, signal.SIGTERM)
        reason = (yield child.ended.addTimeout(10, reactor)).reason
        self.assertEqual(reason.value.signal, signal.SIGTERM)
        self.assertEqual(len(child.exited), 1)
        info = yield self.probe(_probeSetup())
        self.assertEqual(info["fds"], [0, 1, 2])
        self.assertEqual(info["ppid"], self.spawner._helperTransport.pid)

    @defer.inlineCallbacks
    def test_subHelperDeath(self):
        """A killed sub-helper's running child is still reported; the next spawn works."""
        if not ROOT:
            raise self.skipTest("needs root")
        creds = dict(uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=())
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        child = _Child()
        setup = _probeSetup("--sleep", "30", **creds)
        transport = yield self.spawner.spawn(child, setup, theirs.fileno(), ())
        theirs.close()
        orphan = transport.pid
        helperPid = self.spawner._helperTransport.pid
        subs = _subHelpers(helperPid)
        self.assertEqual(len(subs), 1)
        os.kill(subs[0], signal.SIGKILL)
        for _ in range(200):  # until the orphan is the helper's own child
            if orphan in _descendants(helperPid) and subs[0] not in _descendants(
                helperPid
            ):
                break
            yield deferLater(reactor, 0.01, lambda: None)
        os.kill(orphan, signal.SIGKILL)
        reason = (yield child.ended).reason
        self.assertEqual(reason.value.signal, signal.SIGKILL)
        info = yield self.probe(_probeSetup(**creds))
        self.assertEqual(info["uid"], NOBODY.pw_uid)

    @defer.inlineCallbacks
    def test_subHelperDeathFailsUnstartedSpawns(self):
        """Spawns a killed sub-helper had not started fail with SpawnError."""
        if not ROOT:
            raise self.skipTest("needs root")
        creds = dict(uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=())
        yield self.probe(_probeSetup(**creds))  # the sub-helper now exists
        helperPid = self.spawner._helperTransport.pid
        [sub] = _subHelpers(helperPid)
        os.kill(sub, signal.SIGSTOP)
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        d = self.spawner.spawn(_Child(), _probeSetup(**creds), theirs.fileno(), ())
        theirs.close()
        # Let the root helper forward the request into the stopped
        # sub-helper's queue (nothing observable says when it has).
        yield deferLater(reactor, 0.2, lambda: None)
        os.kill(sub, signal.SIGKILL)
        yield self.assertFailure(d, SpawnError)
        self.assertTrue(
            any("sub-helper died" in e.get("log_format", "") for e in self.logged)
        )

    @defer.inlineCallbacks
    def test_credentialedSpawnsBypassTheRootHelper(self):
        """
        Once a template's sub-helper is known, its spawns, their exit
        reports and signals need no help from the (here stopped) root helper.
        """
        if not ROOT:
            raise self.skipTest("needs root")
        creds = dict(uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=())
        probe = _probeSetup(**creds)
        sleeper = _probeSetup("--sleep", "30", **creds)
        channel = yield self.routed(probe)
        yield self.sleeper(sleeper)  # through the root helper, once
        self.assertIs(
            self.spawner._routes[self.spawner._templates.ids[sleeper]], channel
        )
        helperPid = self.spawner._helperTransport.pid
        os.kill(helperPid, signal.SIGSTOP)
        self.addCleanup(os.kill, helperPid, signal.SIGCONT)
        info = yield self.probe(probe)
        self.assertEqual((info["uid"], info["groups"]), (NOBODY.pw_uid, []))
        ended = yield self.sleeper(sleeper)
        self.assertEqual(ended.signal, signal.SIGTERM)

    @defer.inlineCallbacks
    def test_subHelpersShareNoDescriptor(self):
        """
        A sub-helper holds no socket or pipe of the root helper (its channel
        to the daemon, its stdio) nor of another sub-helper: /dev/null as
        stdio, its two sockets, and its exec-error socketpair and wake-up
        pipe (Python) or its SIGCHLD signalfd (compiled).
        """
        if not ROOT:
            raise self.skipTest("needs root")
        for uid in (NOBODY.pw_uid, 1):
            setup = _probeSetup(uid=uid, gid=uid, supplementaryGroups=())
            yield self.routed(setup)
            yield self.probe(setup)
        subs = self.subHelpers()
        self.assertEqual(len(subs), 2)
        root = _heldObjects(self.spawner._helperTransport.pid)
        a, b = (_heldObjects(sub) for sub in subs)
        self.assertEqual(a & root, set())
        self.assertEqual(b & root, set())
        self.assertEqual(a & b, set())
        for sub in subs:
            held = [
                os.readlink(f"/proc/{sub}/fd/{fd}")
                for fd in sorted(os.listdir(f"/proc/{sub}/fd"), key=int)
            ]
            self.assertEqual(held[:3], [os.devnull] * 3, held)
            if _cmdline(sub) == _cmdline(self.spawner._helperTransport.pid):
                self.assertEqual(sum(h.startswith("socket:") for h in held), 4, held)
                self.assertEqual(len(held), 9, held)
            else:
                self.assertEqual(sum(h.startswith("socket:") for h in held), 2, held)
                self.assertIn("anon_inode:[signalfd]", held, held)
                self.assertEqual(len(held), 6, held)

    @defer.inlineCallbacks
    def test_stopClosesEveryChannel(self):
        """stop() closes the channels to sub-helpers too; they exit."""
        if not ROOT:
            raise self.skipTest("needs root")
        yield self.spawner.stop()
        before = sorted(os.listdir("/proc/self/fd"))
        yield self.spawner.start()
        yield self.routed(_probeSetup(uid=NOBODY.pw_uid, gid=NOBODY.pw_gid))
        [sub] = self.subHelpers()
        yield self.spawner.stop()
        self.assertEqual(sorted(os.listdir("/proc/self/fd")), before)
        for _ in range(200):
            if not os.path.exists(f"/proc/{sub}"):
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(os.path.exists(f"/proc/{sub}"))

    @defer.inlineCallbacks
    def test_subHelperBackPressure(self):
        """
        While a sub-helper is stopped its spawns queue and its credential
        set (only) is reported backed up, then all run.
        """
        if not ROOT:
            raise self.skipTest("needs root")
        changes: List[Tuple[Any, bool]] = []
        self.spawner.observePressure(
            lambda key, backedUp: changes.append((key, backedUp))
        )
        setup = ChildSetup("/bin/true", ("true",), uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
        channel = yield self.routed(setup)
        channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        [sub] = self.subHelpers()
        children, backedUp = self.floodWhileStopped(sub, setup)
        self.assertTrue(backedUp)
        results = []
        for child in children:
            results.append((yield child.ended).reason)
        self.assertEqual(
            [type(r.value) for r in results], [ProcessDone] * len(children)
        )
        key = credentialKey(setup)
        self.assertEqual(changes, [(key, True), (key, False)])
        self.assertFalse(self.spawner.isBackedUp())

    @defer.inlineCallbacks
    def test_backPressure(self):
        """While the root helper is stopped, spawns queue, all sets are reported backed up, then all run."""
        changes: List[Tuple[Any, bool]] = []
        self.spawner.observePressure(
            lambda key, backedUp: changes.append((key, backedUp))
        )
        self.spawner._control.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        setup = ChildSetup("/bin/true", ("true",))
        children, backedUp = self.floodWhileStopped(
            self.spawner._helperTransport.pid, setup
        )
        results = []
        self.assertTrue(backedUp)
        for child in children:
            results.append((yield child.ended).reason)
        self.assertEqual(
            [type(r.value) for r in results], [ProcessDone] * len(children)
        )
        # The root helper's channel is shared by all: key None.
        self.assertEqual(changes, [(None, True), (None, False)])
        self.assertFalse(self.spawner.isBackedUp())

    @defer.inlineCallbacks
    def test_queueBound(self):
        """Past maxQueued a spawn fails with SpawnError instead of queueing."""
        self.spawner.maxQueued = 0
        self.spawner._control.queue.append((b"", -1, 0))  # pretend the helper is behind
        try:
            d = self.spawner.spawn(_Child(), _probeSetup(), 0, ())
            yield self.assertFailure(d, SpawnError)
        finally:
            self.spawner._control.queue.clear()

    @defer.inlineCallbacks
    def test_noLeaksNoZombies(self):
        """Many spawns leave no fd open in the daemon and no zombie in the helper."""
        setup = ChildSetup("/bin/true", ("true",), uid=NOBODY.pw_uid if ROOT else None)
        yield self.spawnOne(setup)
        before = sorted(os.listdir("/proc/self/fd"))
        for _ in range(5):
            yield defer.gatherResults([self.spawnOne(setup) for _ in range(20)])
        self.assertEqual(sorted(os.listdir("/proc/self/fd")), before)
        helperPid = self.spawner._helperTransport.pid
        # Left: only sub-helpers, no zombie anywhere below the helper.
        self.assertEqual(_descendants(helperPid, "Z"), [])
        for pid in _descendants(helperPid):
            self.assertTrue(_isHelper(pid, helperPid), _cmdline(pid))


class PythonSubHelperSpawnerTests(HelperSpawnerTests):
    """
    L{HelperSpawnerTests} with the sub-helpers in Python, as where no C
    compiler built the compiled one.
    """

    helperEnvironment = PYTHON_SUBHELPERS


class CompiledSubHelperTests(SpawnerCase):
    """
    A sub-helper is the compiled program where it is built.
    """

    def setUp(self) -> Any:
        if not ROOT:
            raise SkipTest("needs root: sub-helpers run as nobody")
        return super().setUp()

    @defer.inlineCallbacks
    def subProgram(self) -> Any:
        """
        Start a child as nobody; the name of its sub-helper's executable.
        """
        creds = dict(uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=())
        info = yield self.probe(_probeSetup(**creds))
        self.assertEqual(info["uid"], NOBODY.pw_uid)
        [sub] = self.subHelpers()
        return os.path.basename(os.readlink(f"/proc/{sub}/exe"))

    @defer.inlineCallbacks
    def test_program(self):
        """Where it is built, a sub-helper runs the compiled program."""
        if not COMPILED:
            raise SkipTest(f"{SUBHELPER_NAME} is not built (make test builds it)")
        self.assertEqual((yield self.subProgram()), SUBHELPER_NAME)


class PythonSubHelperTests(CompiledSubHelperTests):
    """
    XINETD_TWISTED_PYTHON_SUBHELPERS in the helper's environment keeps the
    sub-helpers in Python.
    """

    helperEnvironment = PYTHON_SUBHELPERS

    @defer.inlineCallbacks
    def test_program(self):
        """The sub-helper is the root helper's Python, forked."""
        python = os.readlink(f"/proc/{self.spawner._helperTransport.pid}/exe")
        self.assertEqual((yield self.subProgram()), os.path.basename(python))


class LaneTests(SpawnerCase):
    """
    A credential set whose sub-helper is busy gets another (a lane), up to
    L{HelperSpawner.lanes}; one that keeps up keeps one.
    """

    lanes = 2

    def setUp(self) -> Any:
        if not ROOT:
            raise SkipTest("needs root: sub-helpers run as nobody")
        return super().setUp()

    def nobodySubHelpers(self) -> List[int]:
        return [
            p
            for p in self.subHelpers()
            if os.stat(f"/proc/{p}").st_uid == NOBODY.pw_uid
        ]

    @defer.inlineCallbacks
    def test_oneLaneWhileItKeepsUp(self):
        """Spawns one after the other all go to one sub-helper."""
        setup = _probeSetup(
            uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=()
        )
        yield self.routed(setup)
        for _ in range(5):
            yield self.probe(setup)
        self.assertEqual(len(self.nobodySubHelpers()), 1)

    @defer.inlineCallbacks
    def test_busyLaneOpensAnother(self):
        """
        Once the first sub-helper has not answered a spawn for LANE_STALL,
        the next goes to a second one of the same credentials; both
        children run.
        """
        setup = _probeSetup(
            uid=NOBODY.pw_uid, gid=NOBODY.pw_gid, supplementaryGroups=()
        )
        yield self.routed(setup)
        [first] = self.nobodySubHelpers()
        os.kill(first, signal.SIGSTOP)
        self.addCleanup(self._continue, first)
        held = self.spawnOne(setup)  # waits on the stopped sub-helper
        yield deferLater(reactor, LANE_STALL * 2, lambda: None)
        info = yield self.probe(setup)
        self.assertEqual(info["uid"], NOBODY.pw_uid)
        subs = self.nobodySubHelpers()
        self.assertEqual(len(subs), 2, subs)
        os.kill(first, signal.SIGCONT)
        _t, reason, output, _c = yield held
        self.assertIsInstance(reason.value, ProcessDone, output)
        self.assertEqual(json.loads(output)["uid"], NOBODY.pw_uid)

    @staticmethod
    def _continue(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class DefaultLanesTests(SynchronousTestCase):
    def test_onePerCpu(self) -> None:
        """One lane per CPU, at least one, at most MAX_LANES."""
        self.assertEqual(
            [defaultLanes(n) for n in (0, 1, 2, 3, 16)], [1, 1, 2, 3, MAX_LANES]
        )
