"""
Tests for the compiled sub-helper (C{xinetd_twisted/spawn/subhelper.c}),
driven on its two sockets as the root helper and the daemon drive it, with
the wire of L{xinetd_twisted.spawn.wire}: no root needed, it starts its
children with our own credentials.
"""

from __future__ import annotations

import array
import errno
import marshal
import os
import pwd
import resource
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, List, Optional, Set, Tuple

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_spawn_resilience import _prlimitAsNobody
from xinetd_twisted.spawn import helper as helperModule
from xinetd_twisted.spawn import wire
from xinetd_twisted.spawn.helper import SUBHELPER_NAME

PROGRAM = helperModule.SUBHELPER_PATH
SOURCE = os.path.join(os.path.dirname(PROGRAM), "subhelper.c")
SH = "/bin/sh"
_vforkBuild: List[str] = []


def _vforkProgram() -> str:
    """
    The sub-helper built with C{-DSUBHELPER_VFORK}: the way it starts
    servers where it has no raw system calls, built once per test run.

    @raise SkipTest: no C compiler built it.
    """
    if not _vforkBuild:
        # In trial's working directory, where nobody (our children's user
        # as root) may run it.
        directory = tempfile.mkdtemp(prefix="subhelper-vfork-", dir=os.getcwd())
        os.chmod(directory, 0o755)
        target = os.path.join(directory, SUBHELPER_NAME)
        compiler = os.environ.get("CC", "cc")
        try:
            subprocess.run(
                [compiler, "-O2", "-DSUBHELPER_VFORK", "-o", target, SOURCE],
                check=True,
                capture_output=True,
            )
        except (OSError, subprocess.CalledProcessError) as e:
            raise SkipTest(f"no vfork build of {SOURCE}: {e}") from e
        _vforkBuild.append(target)
    return _vforkBuild[0]


def _limits(**changed: Tuple[int, int]) -> list:
    """
    Every resource limit as we have it (so the child inherits them), with
    C{changed} (by C{RLIMIT_*} name) instead.
    """
    limits = wire.allRlimits()
    for name, value in changed.items():
        limits[getattr(resource, name)] = value
    return [(r, s, h) for r, (s, h) in sorted(limits.items())]


def _template(
    argv: Tuple[str, ...],
    executable: str = SH,
    cwd: str = "/",
    rlimits: Any = None,
    **kw: Any,
) -> bytes:
    return wire.encodeTemplate(
        executable,
        argv,
        kw.pop("environment", (("PATH", "/bin:/usr/bin"),)),
        None,
        None,
        None,
        kw.pop("umask", 0o022),
        kw.pop("nice", None),
        tuple(_limits() if rlimits is None else rlimits),
        None,
        cwd,
        kw.pop("newSession", True),
        kw.pop("noNewPrivileges", False),
    )


def _ignoredSignals() -> int:
    """
    The signals this process ignores (C{SigIgn} of /proc/self/status).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


class SubHelperCase(SynchronousTestCase):
    """
    The compiled sub-helper on two socketpairs: C{root} (what the root
    helper forwards) and C{daemon} (requests in, every event out).
    """

    def program(self) -> str:
        """
        The build under test: the installed one, which on x86-64 and arm64
        starts servers with clone.
        """
        if not os.access(PROGRAM, os.X_OK):
            raise SkipTest(f"{SUBHELPER_NAME} is not built (make test builds it)")
        return PROGRAM

    cpus: Optional[Set[int]] = None
    """
    The CPUs the sub-helper may run on, if not all of ours: it has one
    slot per CPU for children setting up.
    """

    def setUp(self) -> None:
        program = self.program()
        self.root, rootEnd = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.daemon, daemonEnd = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET
        )
        for s in (self.root, self.daemon):
            s.settimeout(10)
            self.addCleanup(s.close)
        # As root, run it as the root helper does: as a service's user.
        user = {}
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            user = dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
        cpus = self.cpus
        self.process = subprocess.Popen(
            [program, str(rootEnd.fileno()), str(daemonEnd.fileno())],
            pass_fds=(rootEnd.fileno(), daemonEnd.fileno()),
            stdin=subprocess.DEVNULL,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
            **user,  # type: ignore[call-overload]
        )
        self.addCleanup(self._stop)
        rootEnd.close()
        daemonEnd.close()
        self.pending: List[tuple] = []
        self.fds: List[int] = []

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for fd in self.fds:
            os.close(fd)

    def register(self, tid: int, blob: bytes, on: Any = None) -> None:
        for message in wire.templateMessages(tid, blob):
            (on or self.daemon).send(message)

    def connect(self, rid: int, tid: int, extra: tuple = ()) -> socket.socket:
        """
        Send spawn C{rid} of template C{tid} with one end of a new
        connection; return the other end.
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        message = wire.spawnMessage(rid, tid, extra)
        rights = [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))
        ]
        self.daemon.sendmsg([message], rights)
        theirs.close()
        return ours

    def event(self, kind: str) -> tuple:
        """
        The next event of C{kind} (reading messages as needed); the
        descriptors messages carry go to C{self.fds}.
        """
        deadline = time.monotonic() + 10
        while True:
            for i, e in enumerate(self.pending):
                if e[0] == kind:
                    return self.pending.pop(i)  # type: ignore[no-any-return]
            self.assertLess(time.monotonic(), deadline, f"no {kind!r} event")
            data, anc, _f, _a = self.daemon.recvmsg(
                wire.MAX_MESSAGE, socket.CMSG_SPACE(64 * 4)
            )
            self.assertTrue(data, "the sub-helper closed its socket")
            for level, typ, payload in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    self.fds.extend(array.array("i", payload[: len(payload) // 4 * 4]))
            self.pending.extend(wire.decode(data))

    def runCommand(self, argv: Tuple[str, ...], extra: tuple = (), **kw: Any) -> tuple:
        """
        Start C{argv} (a shell command line) on a connection; its output
        and its C{"e"} event.
        """
        self.register(7, _template(argv, **kw))
        ours = self.connect(1, 7, extra)
        started = self.event("s")
        self.assertEqual(started[1], 1)
        ended = self.event("e")
        self.assertEqual(ended[1], started[2])
        ours.settimeout(10)
        output = b""
        while chunk := ours.recv(4096):
            output += chunk
        return output, ended


class SpawnTests(SubHelperCase):
    def test_startsAndReaps(self) -> None:
        """
        A spawn is reported started (C{"s"} with its pid) and, once reaped,
        ended with its raw wait status; its stdio is the connection, its
        environment the template's and the request's.
        """
        output, ended = self.runCommand(
            (SH, "-c", 'echo "$GREETING $REMOTE_HOST"; exit 3'),
            extra=(("REMOTE_HOST", "127.0.0.1"),),
            environment=(("GREETING", "hello"),),
        )
        self.assertEqual(output, b"hello 127.0.0.1\n")
        self.assertTrue(os.WIFEXITED(ended[2]))
        self.assertEqual(os.WEXITSTATUS(ended[2]), 3)

    def test_childSettings(self) -> None:
        """
        The child gets the template's working directory, umask, session, an
        empty signal mask and default dispositions, and no descriptor but
        its stdio.
        """
        script = (
            "pwd; umask; "
            "grep -E '^Sig(Blk|Ign)' /proc/self/status; "
            "ls /proc/self/fd | wc -l; "
            "test $(cut -d' ' -f6 /proc/self/stat) = $$ && echo leader"
        )
        output, _ = self.runCommand((SH, "-c", script), cwd="/tmp", umask=0o027)
        lines = output.decode().split("\n")
        self.assertEqual(lines[0], "/tmp")
        self.assertEqual(lines[1], "0027")
        self.assertEqual(lines[2], "SigBlk:\t0000000000000000")
        # No disposition of ours (Python ignores SIGPIPE and SIGXFSZ); what
        # this test's own parent ignored (here, possibly glibc's signal 32,
        # which nothing can reset) passes through, as it would with
        # _posixsubprocess.
        ignored = int(lines[3].split()[1], 16)
        inherited = _ignoredSignals() & ~(
            1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)
        )
        self.assertEqual(ignored & ~inherited, 0, lines[3])
        self.assertFalse(ignored & (1 << (signal.SIGPIPE - 1)), lines[3])
        # 0, 1, 2 and the one ls opens to list them.
        self.assertEqual(lines[4].strip(), "4")
        self.assertEqual(lines[5], "leader")

    def test_limitsOfTheTemplate(self) -> None:
        """
        A template whose limits are not the sub-helper's own has the child
        set them; nice is applied.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        if hard == 0:
            raise SkipTest("RLIMIT_CORE's hard limit is 0: nothing to set")
        lowered = 0 if soft != 0 else 4096
        output, _ = self.runCommand(
            (
                SH,
                "-c",
                "grep 'core file' /proc/self/limits; cut -d' ' -f19 /proc/self/stat",
            ),
            rlimits=_limits(RLIMIT_CORE=(lowered, hard)),
            nice=5,
        )
        limits, niceness = output.decode().splitlines()
        self.assertEqual(limits.split()[4], str(lowered))
        self.assertEqual(int(niceness), os.getpriority(os.PRIO_PROCESS, 0) + 5)

    def test_largeRequestId(self) -> None:
        """
        Request ids beyond 32 bits (marshal's long form) come back as sent.
        """
        self.register(7, _template((SH, "-c", "true")))
        rid = 2**40 + 5
        self.connect(rid, 7)
        self.assertEqual(self.event("s")[1], rid)

    def test_templateInParts(self) -> None:
        """
        A template larger than one message arrives in parts, from either
        socket.
        """
        big = "x" * (wire.TEMPLATE_PART * 2)
        output, _ = self.runCommand(
            (SH, "-c", "echo ${#BIG}"), environment=(("BIG", big),)
        )
        self.assertEqual(output, f"{len(big)}\n".encode())
        self.register(8, _template((SH, "-c", "echo root")), on=self.root)
        ours = self.connect(2, 8)
        self.event("s")
        ours.settimeout(10)
        self.assertEqual(ours.recv(100), b"root\n")

    def test_burst(self) -> None:
        """
        Spawns sent back to back, each with its own extra environment, all
        start, each child with its own connection and environment, and
        all are reaped: none reads what the next request left in the
        sub-helper's memory.
        """
        self.register(7, _template((SH, "-c", 'echo "$N"; exit $N')))
        count = 20
        conns = [self.connect(rid, 7, (("N", str(rid)),)) for rid in range(count)]
        pids = {}
        for _ in range(count):
            started = self.event("s")
            pids[started[2]] = started[1]
        for rid, ours in enumerate(conns):
            ours.settimeout(10)
            output = b""
            while chunk := ours.recv(100):
                output += chunk
            self.assertEqual(output, f"{rid}\n".encode())
        for _ in range(count):
            ended = self.event("e")
            self.assertEqual(os.WEXITSTATUS(ended[2]), pids.pop(ended[1]))
        self.assertEqual(pids, {})

    def test_burstReplaced(self) -> None:
        """
        A template replaced between spawns sent back to back: the children
        started before have the old one, those after the new one (the old
        one is freed only once no child is still setting up from it).
        """
        self.register(7, _template((SH, "-c", "echo old")))
        before = [self.connect(rid, 7) for rid in range(8)]
        self.register(7, _template((SH, "-c", "echo new")))
        after = [self.connect(rid, 7) for rid in range(8, 16)]
        for _ in range(16):
            self.event("s")
        for conns, expected in ((before, b"old\n"), (after, b"new\n")):
            for ours in conns:
                ours.settimeout(10)
                output = b""
                while chunk := ours.recv(100):
                    output += chunk
                self.assertEqual(output, expected)

    def test_signal(self) -> None:
        """C{"K"} signals a child the sub-helper started."""
        self.register(7, _template((SH, "-c", "exec sleep 30")))
        self.connect(1, 7)
        pid = self.event("s")[2]
        self.daemon.send(wire.signalMessage(pid, int(signal.SIGTERM)))
        ended = self.event("e")
        self.assertEqual(ended[1], pid)
        self.assertEqual(os.WTERMSIG(ended[2]), signal.SIGTERM)


class FailureTests(SubHelperCase):
    def test_unknownTemplate(self) -> None:
        """
        A spawn of a template it does not know fails with EINVAL and gives
        the connection back.
        """
        ours = self.connect(9, 99)
        failed = self.event("f")
        self.assertEqual(failed, ("f", 9, errno.EINVAL, None, True))
        [back] = self.fds
        os.write(back, b"still there")
        self.assertEqual(ours.recv(100), b"still there")

    def test_execFails(self) -> None:
        """
        A program that cannot be executed is reported (C{"x"}, stage
        C{"exec"}, its errno) and ends with status 127.
        """
        self.register(7, _template(("nothing",), executable="/nonexistent/program"))
        self.connect(1, 7)
        pid = self.event("s")[2]
        self.assertEqual(self.event("x"), ("x", pid, errno.ENOENT, "exec"))
        self.assertEqual(self.event("e"), ("e", pid, 127 << 8))

    def test_setupFails(self) -> None:
        """A working directory that does not exist fails in C{"setup"}."""
        self.register(7, _template((SH, "-c", "true"), cwd="/nonexistent"))
        self.connect(1, 7)
        pid = self.event("s")[2]
        self.assertEqual(self.event("x"), ("x", pid, errno.ENOENT, "setup"))

    def test_garbageIsIgnored(self) -> None:
        """
        Messages it cannot decode, or of a kind it does not take, are
        dropped; the next spawn works.
        """
        self.daemon.send(b"\xff\x00garbage")
        self.daemon.send(marshal.dumps(("S", "not an id", 1, [], 0)))
        self.daemon.send(marshal.dumps(("Q",)))
        self.daemon.send(marshal.dumps(("T", 1, b"not a template", True, 0)))
        output, _ = self.runCommand((SH, "-c", "echo ok"))
        self.assertEqual(output, b"ok\n")

    def test_exitsWhenTheDaemonCloses(self) -> None:
        """
        The daemon's socket closing ends it; the root helper's closing does
        not.
        """
        self.root.close()
        output, _ = self.runCommand((SH, "-c", "echo ok"))
        self.assertEqual(output, b"ok\n")
        self.daemon.close()
        self.assertEqual(self.process.wait(10), 0)

    def test_loweredHardLimitEndsIt(self) -> None:
        """
        A hard limit lowered under the sub-helper (prlimit(2) by the
        service's user) fails the next spawn with C{"rlimits"}, giving the
        connection back, and the sub-helper exits so that a fresh one
        starts.
        """
        self.register(7, _template((SH, "-c", "true")))
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        if hard == 0:
            raise SkipTest("RLIMIT_CORE's hard limit is already 0")
        if os.getuid() == 0:  # what the service's user may do to it
            _prlimitAsNobody(self.process.pid, {resource.RLIMIT_CORE: (0, 0)})
        else:
            resource.prlimit(self.process.pid, resource.RLIMIT_CORE, (0, 0))
        self.connect(1, 7)
        self.assertEqual(self.event("f"), ("f", 1, errno.EPERM, "rlimits", True))
        self.assertEqual(self.process.wait(10), 0)


class ListenTests(SubHelperCase):
    """
    C{"L"}: a listening socket handed over, on which the sub-helper
    accepts and starts each connection's server itself.
    """

    def listen(
        self, lid: int, tid: int, family: int = socket.AF_INET, host: str = "127.0.0.1"
    ) -> socket.socket:
        """
        Hand a new listening socket on C{host} to the sub-helper as
        listener C{lid} of template C{tid}; return our copy.
        """
        try:
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.bind((host, 0))
        except OSError as e:
            raise SkipTest(f"no {host}: {e}") from e
        self.addCleanup(listener.close)
        listener.listen(64)
        listener.setblocking(False)
        rights = [
            (
                socket.SOL_SOCKET,
                socket.SCM_RIGHTS,
                array.array("i", [listener.fileno()]),
            )
        ]
        self.daemon.sendmsg([wire.listenMessage(lid, tid)], rights)
        return listener

    def client(self, listener: socket.socket) -> socket.socket:
        address = listener.getsockname()
        sock = socket.socket(listener.family, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.settimeout(10)
        sock.connect(address)
        return sock

    def readAll(self, sock: socket.socket) -> bytes:
        output = b""
        while chunk := sock.recv(4096):
            output += chunk
        return output

    def test_acceptsAndStarts(self) -> None:
        """
        It answers C{"l"}, then starts a server for each client with
        REMOTE_HOST set, reports C{"a"} with its pid and the client's host
        and port, and reaps it as any other.
        """
        self.register(7, _template((SH, "-c", 'echo "from $REMOTE_HOST"; exit 4')))
        listener = self.listen(3, 7)
        self.assertEqual(self.event("l"), ("l", 3))
        sock = self.client(listener)
        kind, lid, pid, host, port = self.event("a")
        self.assertEqual(
            (kind, lid, host, port), ("a", 3, "127.0.0.1", sock.getsockname()[1])
        )
        self.assertEqual(self.readAll(sock), b"from 127.0.0.1\n")
        ended = self.event("e")
        self.assertEqual(ended[1], pid)
        self.assertEqual(os.WEXITSTATUS(ended[2]), 4)

    def test_ipv6(self) -> None:
        """An IPv6 client's host is written as Python writes it."""
        if not socket.has_ipv6:
            raise SkipTest("no IPv6")
        self.register(7, _template((SH, "-c", 'echo "$REMOTE_HOST"')))
        listener = self.listen(3, 7, socket.AF_INET6, "::1")
        self.event("l")
        sock = self.client(listener)
        self.assertEqual(self.event("a")[3], "::1")
        self.assertEqual(self.readAll(sock), b"::1\n")

    def test_burst(self) -> None:
        """Twenty clients at once each get a server and an C{"a"}."""
        self.register(7, _template((SH, "-c", "echo $REMOTE_HOST")))
        listener = self.listen(3, 7)
        self.event("l")
        socks = [self.client(listener) for _ in range(20)]
        ports = {self.event("a")[4] for _ in socks}
        self.assertEqual(ports, {s.getsockname()[1] for s in socks})
        for sock in socks:
            self.assertEqual(self.readAll(sock), b"127.0.0.1\n")

    def test_unknownTemplate(self) -> None:
        """A socket for a template it does not know is refused: C{"u"}."""
        self.listen(3, 99)
        self.assertEqual(self.event("u"), ("u", 3))

    def test_unlisten(self) -> None:
        """
        C{"U"} is answered C{"u"}; the next client waits for us, unserved.
        """
        self.register(7, _template((SH, "-c", "echo no")))
        listener = self.listen(3, 7)
        self.event("l")
        self.daemon.send(wire.unlistenMessage(3))
        self.assertEqual(self.event("u"), ("u", 3))
        sock = self.client(listener)
        listener.settimeout(10)
        conn, address = listener.accept()
        conn.close()
        self.assertEqual(address, sock.getsockname())
        # One not handed over is answered too.
        self.daemon.send(wire.unlistenMessage(8))
        self.assertEqual(self.event("u"), ("u", 8))

    def test_execFails(self) -> None:
        """A server that cannot exec is reported as a spawned one is."""
        self.register(7, _template(("nothing",), executable="/nonexistent/program"))
        listener = self.listen(3, 7)
        self.event("l")
        self.client(listener)
        pid = self.event("a")[2]
        self.assertEqual(self.event("x"), ("x", pid, errno.ENOENT, "exec"))
        self.assertEqual(self.event("e"), ("e", pid, 127 << 8))

    def test_loweredHardLimitHandsBack(self) -> None:
        """
        A connection it cannot start (its limits were lowered beyond
        repair) comes back to the daemon in C{"h"}, and it exits.
        """
        self.register(7, _template((SH, "-c", "true")))
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        if hard == 0:
            raise SkipTest("RLIMIT_CORE's hard limit is already 0")
        listener = self.listen(3, 7)
        self.event("l")
        if os.getuid() == 0:
            _prlimitAsNobody(self.process.pid, {resource.RLIMIT_CORE: (0, 0)})
        else:
            resource.prlimit(self.process.pid, resource.RLIMIT_CORE, (0, 0))
        sock = self.client(listener)
        self.assertEqual(self.event("h"), ("h", 3))
        [back] = self.fds
        os.write(back, b"still there")
        self.assertEqual(sock.recv(100), b"still there")
        self.assertEqual(self.process.wait(10), 0)


class OneSlotSpawnTests(SpawnTests):
    """
    The spawn tests with the sub-helper on one CPU, so with one slot: each
    spawn sent while a child is still setting up waits for its exec.
    """

    cpus = {min(os.sched_getaffinity(0))}


class VforkBuildMixin:
    """
    The same tests against the vfork build (L{_vforkProgram}).
    """

    def program(self) -> str:
        return _vforkProgram()


class VforkSpawnTests(VforkBuildMixin, SpawnTests):
    pass


class VforkFailureTests(VforkBuildMixin, FailureTests):
    pass


class VforkListenTests(VforkBuildMixin, ListenTests):
    pass
