"""
Tests for bench/run_spawn.py's options and plan and bench/daemons.py's
configs: what would run, never a daemon or a timing; and bench/forkserver.c
built and serving one connection.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.benchload import load

benchlib = load("benchlib")
daemons = load("daemons")
run_spawn = load("run_spawn")

_USERS = ["nobody", "daemon", "bin"]


class ParseArgsTests(SynchronousTestCase):
    """
    The command line of bench/run_spawn.py.
    """

    def test_defaults(self) -> None:
        """Every mode but saturation and ceiling, hello at C=1,8 with 1 and
        1000 services."""
        args = run_spawn.parseArgs([])
        self.assertEqual(
            args.modes, ["spawn", "burn", "inprocess", "memory", "startup"]
        )
        self.assertEqual((args.concurrency, args.services), ([1, 8], [1, 1000]))
        self.assertEqual(args.workloads, ["hello", "hello-raw"])
        self.assertTrue(args.defaultWorkloads)
        self.assertEqual((args.users, args.idle_wait, args.idle_repeats), (3, 12.0, 5))
        self.assertEqual(args.helper_idle, 4.0)
        self.assertEqual(args.inprocess_connections, 4 * args.connections)
        self.assertEqual(args.startup_rounds, 7)
        self.assertEqual(run_spawn.parseArgs(["--rounds", "9"]).startup_rounds, 9)
        self.assertEqual(run_spawn.parseArgs(["--quick"]).startup_rounds, 1)
        self.assertEqual(args.saturation_seconds, 3.0)
        self.assertEqual((args.ceiling_share, args.ceiling_spawn_share), (0.5, 0.1))
        self.assertEqual(args.client_threads, 0)
        self.assertTrue(args.tcpserver)
        self.assertFalse(run_spawn.parseArgs(["--no-tcpserver"]).tcpserver)

    def test_idleWaitFollowsHelperIdle(self) -> None:
        """
        The idle wait defaults to three of our helpers' idle timeouts (the
        root helper retires one timeout after its sub-helpers); given, it is
        kept.
        """
        self.assertEqual(run_spawn.parseArgs(["--helper-idle", "2"]).idle_wait, 6.0)
        args = run_spawn.parseArgs(["--helper-idle", "2", "--idle-wait", "1"])
        self.assertEqual(args.idle_wait, 1.0)

    def test_modeFlags(self) -> None:
        """Mode flags choose exactly the modes named, over --modes."""
        args = run_spawn.parseArgs(["--memory", "--saturation", "--modes", "spawn"])
        self.assertEqual(args.modes, ["memory", "saturation"])

    def test_modesList(self) -> None:
        """--modes takes a list, or all."""
        self.assertEqual(
            run_spawn.parseArgs(["--modes", "burn,startup"]).modes, ["burn", "startup"]
        )
        self.assertEqual(
            run_spawn.parseArgs(["--modes", "all"]).modes, list(run_spawn.MODES)
        )
        self.assertIn("ceiling", run_spawn.MODES)
        self.assertEqual(run_spawn.parseArgs(["--ceiling"]).modes, ["ceiling"])

    def test_unknownMode(self) -> None:
        """An unknown mode is a usage error."""
        self.patch(run_spawn.argparse.ArgumentParser, "_print_message", lambda *a: None)
        self.assertRaises(SystemExit, run_spawn.parseArgs, ["--modes", "spawn,fast"])

    def test_quick(self) -> None:
        """--quick shortens rounds, connections, idle waits and saturation levels."""
        args = run_spawn.parseArgs(["--quick", "--idle-wait", "2"])
        self.assertEqual(
            (args.connections, args.rounds, args.idle_repeats), (800, 1, 2)
        )
        self.assertEqual((args.idle_wait, args.saturation_seconds), (2.0, 1.0))
        self.assertEqual(args.inprocess_connections, 3200)

    def test_extraServices(self) -> None:
        """The old --extra-services K means one phase of the workloads plus K."""
        args = run_spawn.parseArgs(
            ["--workloads", "hello,cat", "--extra-services", "10"]
        )
        self.assertEqual(args.services, [12])
        self.assertFalse(args.defaultWorkloads)

    def test_forkserversDefault(self) -> None:
        """By default the forkservers of 1 and 2 processes and the relay run."""
        self.assertEqual(run_spawn.parseArgs([]).forkservers, ["1", "2", "relay"])

    def test_forkserversNone(self) -> None:
        """An empty --forkservers runs none."""
        self.assertEqual(run_spawn.parseArgs(["--forkservers", ""]).forkservers, [])

    def test_forkserversList(self) -> None:
        """
        --forkservers takes counts and relay, each once, a count as int
        spells it.
        """
        args = run_spawn.parseArgs(["--forkservers", "1,relay"])
        self.assertEqual(args.forkservers, ["1", "relay"])
        args = run_spawn.parseArgs(["--forkservers", "04,relay,4,relay"])
        self.assertEqual(args.forkservers, ["4", "relay"])

    def test_forkserversBad(self) -> None:
        """A count below 1 or a word but relay is a usage error saying why."""
        for bad in ("0", "x", "1,-2", "\u00b2"):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            self.assertRaises(SystemExit, run_spawn.parseArgs, ["--forkservers", bad])
            self.assertIn("argument --forkservers:", stderr.getvalue())
            self.assertIn("a process count (1 or more) or 'relay'", stderr.getvalue())

    def test_isReference(self) -> None:
        """xinetd, tcpserver and the forkservers are not ours."""
        for name in ("xinetd", "tcpserver", "forkserver1", "forkserver-relay"):
            self.assertTrue(run_spawn.isReference(name), name)
        for name in ("ours", "ours-metrics", "ours-helper", "ours-reuseport2"):
            self.assertFalse(run_spawn.isReference(name), name)

    def test_oursOptions(self) -> None:
        """--ours-option repeats; --spawner and --concurrency are lists."""
        args = run_spawn.parseArgs(
            [
                "--ours-option=--limit=5",
                "--ours-option=--strict",
                "--spawner",
                "helper,plain",
                "--concurrency",
                "2,4,16",
            ]
        )
        self.assertEqual(args.ours_option, ["--limit=5", "--strict"])
        self.assertEqual(args.spawner, ["helper", "plain"])
        self.assertEqual(args.concurrency, [2, 4, 16])


class CeilingPhaseTests(SynchronousTestCase):
    """
    The ceiling mode's phase without a daemon of ours.
    """

    def test_onlyXinetd(self) -> None:
        """With --only xinetd it says why it is left out and starts nothing."""
        args = run_spawn.parseArgs(["--ceiling", "--only", "xinetd"])
        known = benchlib.workloads(Path("/srv/hello"))
        bench = run_spawn.Bench(args, Path("lc"), known, Path("/nonexistent"), "", [])
        self.patch(bench, "running", None)  # calling it would fail the test
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(run_spawn.ceilingPhase(bench), [])
        self.assertIn("ceiling mode left out", out.getvalue())


class SpawnPlanTests(SynchronousTestCase):
    """
    The phases the spawn and burn modes run.
    """

    def setUp(self) -> None:
        self.known = benchlib.workloads(Path("/srv/hello"), Path("/srv/hello-raw"))

    def test_default(self) -> None:
        """
        One phase per service count, the burner in the smallest one; hello-raw
        has phases of its own with the same service counts.
        """
        plan = run_spawn.spawnPlan(run_spawn.parseArgs([]), self.known, _USERS)
        self.assertEqual(
            [tag for tag, _, _ in plan],
            ["spawn-1", "spawn-1-raw", "spawn-1000", "spawn-1000-raw"],
        )
        (_, small, smallSteps), (_, raw, rawSteps), (_, big, bigSteps), _ = plan
        self.assertEqual([w.name for w in small], ["hello"])
        self.assertEqual(
            [(s.variant, s.burn) for s in smallSteps],
            [("1 svc", False), ("burn, 1 svc", True)],
        )
        self.assertEqual([w.name for w in raw], ["hello-raw"])
        self.assertEqual(
            [(s.workload.name, s.variant, s.burn) for s in rawSteps],
            [("hello-raw", "1 svc", False)],
        )
        self.assertEqual([(s.variant, s.burn) for s in bigSteps], [("1000 svc", False)])
        self.assertEqual(len(big), 1000)
        self.assertEqual(len({w.name for w in big}), 1000)

    def test_users(self) -> None:
        """The measured hello runs as nobody; the idle services take the users in turn."""
        plan = run_spawn.spawnPlan(run_spawn.parseArgs([]), self.known, _USERS)
        for _, services, _ in plan[2:]:
            self.assertIsNone(services[0].user)
            self.assertEqual(
                [w.user for w in services[1:5]], ["nobody", "daemon", "bin", "nobody"]
            )
        self.assertEqual([s[1][0].name for s in plan[2:]], ["hello", "hello-raw"])

    def test_rawBurnsNothing(self) -> None:
        """--burn with hello-raw asked for still burns beside hello only."""
        args = run_spawn.parseArgs(["--burn", "--workloads", "hello-raw"])
        plan = run_spawn.spawnPlan(args, self.known, _USERS)
        self.assertEqual([tag for tag, _, _ in plan], ["spawn-1"])
        self.assertEqual([s.workload.name for s in plan[0][2]], ["hello"])

    def test_burnOnly(self) -> None:
        """--burn alone runs one phase with the burner step only."""
        plan = run_spawn.spawnPlan(run_spawn.parseArgs(["--burn"]), self.known, _USERS)
        self.assertEqual(len(plan), 1)
        self.assertEqual([s.burn for s in plan[0][2]], [True])

    def test_noSpawnModes(self) -> None:
        """Without spawn or burn there is no spawn phase."""
        plan = run_spawn.spawnPlan(
            run_spawn.parseArgs(["--memory"]), self.known, _USERS
        )
        self.assertEqual(plan, [])


class MakeDaemonsTests(SynchronousTestCase):
    """
    Both daemons read the same config text; only the ports differ.
    """

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        hello = benchlib.workloads(Path("/srv/hello"))["hello"]
        self.services = [hello, *benchlib.spread(hello, 5, _USERS, "idle")]

    def test_sameText(self) -> None:
        """The configs are equal once the port numbers are taken out."""
        names = daemons.daemonNames("both")
        ds = daemons.makeDaemons(names, self.tmp, self.services, "t", "/py")
        self.assertEqual([d.name for d in ds], ["xinetd", "ours"])
        texts = [(self.tmp / f"t-{d.name}.conf").read_text() for d in ds]
        strip = [re.sub(r"port        = \d+", "port", t) for t in texts]
        self.assertEqual(strip[0], strip[1])
        self.assertEqual(texts[0].count("service "), 6)
        ports = [p for d in ds for p in d.ports.values()]
        self.assertEqual(len(set(ports)), 12)

    def test_argv(self) -> None:
        """Ours runs under twistd with its options; xinetd in the foreground."""
        names = daemons.daemonNames("both", ["plain"], metrics=False)
        ds = daemons.makeDaemons(
            names, self.tmp, self.services, "t", "/py", oursOptions=["--limit=9"]
        )
        xinetd, ours = ds
        self.assertEqual(xinetd.argv[:3], [daemons.XINETD, "-dontfork", "-stayalive"])
        self.assertEqual(ours.name, "ours-plain")
        self.assertEqual(ours.argv[:2], ["/py", "-c"])
        self.assertEqual(
            ours.argv[3:],
            [
                "-n",
                "--pidfile=",
                "xinetd",
                "--config",
                str(self.tmp / "t-ours-plain.conf"),
                "--limit=9",
                "--spawner",
                "plain",
            ],
        )
        self.assertTrue(ours.env["PYTHONPATH"].startswith(str(benchlib.REPO)))

    def test_sessions(self) -> None:
        """
        Every daemon, each member of a group too, gets a session of its own
        unless asked not to, and the process really starts as its leader.
        """
        known = benchlib.workloads(Path("/srv/hello"))
        names = daemons.daemonNames("both", [], False, True, reuseport=2)
        one = [known["hello"]]
        internal = [known["daytime"]]
        for newSession in (True, False):
            ds = [
                *daemons.makeDaemons(
                    names, self.tmp, one, "a", "/py", False, (), newSession
                ),
                *daemons.makeDaemons(
                    names, self.tmp, internal, "b", "/py", False, (), newSession
                ),
            ]
            members = [m for d in ds for m in getattr(d, "members", [d])]
            self.assertEqual(
                {m.name.split(".")[0] for m in members},
                {"xinetd", "ours", "tcpserver", "ours-reuseport2"},
            )
            self.assertEqual({m.newSession for m in members}, {newSession})
        self.assertFalse(run_spawn.parseArgs([]).same_session)
        self.assertTrue(run_spawn.parseArgs(["--same-session"]).same_session)
        for newSession in (True, False):
            d = daemons.Daemon(
                "sleeper",
                ["sleep", "30"],
                {},
                self.tmp / "s.log",
                newSession=newSession,
            )
            d.start()
            self.addCleanup(d.stop)
            self.assertEqual(os.getsid(d.pid) == d.pid, newSession)
            d.stop()

    def test_only(self) -> None:
        """--only keeps the daemons whose name starts with it."""
        self.assertEqual(
            daemons.daemonNames("ours", [], True), ["ours", "ours-metrics"]
        )
        self.assertEqual(daemons.daemonNames("xinetd", ["helper"]), ["xinetd"])

    def test_reuseportName(self) -> None:
        """--reuseport N adds ours-reuseportN after our other daemons."""
        self.assertEqual(
            daemons.daemonNames("both", [], True, True, reuseport=2),
            ["xinetd", "ours", "ours-metrics", "ours-reuseport2", "tcpserver"],
        )
        self.assertEqual(daemons.daemonNames("both", reuseport=1), ["xinetd", "ours"])

    def test_reuseportGroup(self) -> None:
        """
        In a phase of internal services ours-reuseportN is N of our daemons
        on one config, the others' text with C{flags = REUSEPORT} on every
        service, sharing one set of ports; in a phase that spawns it is left
        out.
        """
        known = benchlib.workloads(Path("/srv/hello"))
        internal = [known["daytime"], known["echo"]]
        names = daemons.daemonNames("both", reuseport=3)
        xinetd, ours, group = daemons.makeDaemons(names, self.tmp, internal, "t", "/py")
        self.assertEqual(group.name, "ours-reuseport3")
        self.assertEqual(len(group.members), 3)
        self.assertEqual(
            {m.argv[-1] for m in group.members},
            {str(self.tmp / "t-ours-reuseport3.conf")},
        )
        self.assertTrue(all(m.ports == group.ports for m in group.members))
        self.assertEqual(len({*group.ports.values(), *ours.ports.values()}), 4)
        text = (self.tmp / "t-ours-reuseport3.conf").read_text()
        self.assertEqual(text.count("flags       = REUSEPORT"), 2)
        plain = (self.tmp / "t-ours.conf").read_text()
        strip = [re.sub(r"port        = \d+", "port", t) for t in (plain, text)]
        self.assertEqual(strip[1].replace("\tflags       = REUSEPORT\n", ""), strip[0])
        spawning = daemons.makeDaemons(names, self.tmp, self.services, "s", "/py")
        self.assertEqual([d.name for d in spawning], ["xinetd", "ours"])

    def test_tcpserverName(self) -> None:
        """tcpserver comes last, asked for and with both daemons compared."""
        self.assertEqual(
            daemons.daemonNames("both", [], False, True),
            ["xinetd", "ours", "tcpserver"],
        )
        self.assertEqual(daemons.daemonNames("ours", [], False, True), ["ours"])
        self.assertEqual(daemons.daemonNames("both"), ["xinetd", "ours"])

    def test_tcpserver(self) -> None:
        """
        tcpserver serves the one spawned service of a phase as its user,
        without lookups, on its own port.
        """
        self.patch(daemons, "TCPSERVER", sys.executable)
        import pwd

        nobody = pwd.getpwnam("nobody")
        hello = self.services[0]
        names = daemons.daemonNames("both", [], False, True)
        ds = daemons.makeDaemons(names, self.tmp, [hello], "t", "/py")
        self.assertEqual([d.name for d in ds], ["xinetd", "ours", "tcpserver"])
        tcpserver = ds[2]
        port = tcpserver.ports["hello"]
        self.assertEqual(
            tcpserver.argv,
            [
                sys.executable,
                *("-R", "-H", "-l0", "-c", "10000", "-b", "64"),
                *("-u", str(nobody.pw_uid), "-g", str(nobody.pw_gid)),
                *("127.0.0.1", str(port), "/srv/hello"),
            ],
        )
        self.assertEqual(len({d.ports["hello"] for d in ds}), 3)

    def test_tcpserverLeftOut(self) -> None:
        """
        With several services, an internal one, or no tcpserver installed,
        there is no tcpserver daemon.
        """
        names = daemons.daemonNames("both", [], False, True)
        echo = benchlib.workloads(Path("/srv/hello"))["echo"]
        self.patch(daemons, "TCPSERVER", sys.executable)
        for services in (self.services, [echo]):
            ds = daemons.makeDaemons(names, self.tmp, services, "t", "/py")
            self.assertEqual([d.name for d in ds], ["xinetd", "ours"])
        self.patch(daemons, "TCPSERVER", str(self.tmp / "missing"))
        ds = daemons.makeDaemons(names, self.tmp, self.services[:1], "t", "/py")
        self.assertEqual([d.name for d in ds], ["xinetd", "ours"])


class _CompileSpy:
    """
    Stands for L{benchlib.compileIfStale}: records each build asked for and
    answers the target without running a compiler, or raises C{error}.
    """

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[Path, Path, list[str]]] = []
        self.error = error

    def __call__(self, source: Path, target: Path, flags) -> Path:
        self.calls.append((source, target, list(flags)))
        if self.error is not None:
            raise self.error
        return target


class ForkserverDaemonsTests(SynchronousTestCase):
    """
    The forkservers of bench/forkserver.c: named after tcpserver, made like
    it for a phase of one spawned service.
    """

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.known = benchlib.workloads(Path("/srv/hello"))
        self.compile = _CompileSpy()
        self.patch(benchlib, "compileIfStale", self.compile)
        self.names = daemons.daemonNames(
            "both", [], False, False, forkservers=["1", "relay"]
        )

    def test_names(self) -> None:
        """
        The forkservers come after tcpserver, in the order asked, and only
        with both daemons compared.
        """
        forkservers = ["1", "2", "relay"]
        self.assertEqual(
            daemons.daemonNames("both", [], False, True, forkservers=forkservers),
            [
                "xinetd",
                "ours",
                "tcpserver",
                "forkserver1",
                "forkserver2",
                "forkserver-relay",
            ],
        )
        for only in ("ours", "xinetd"):
            self.assertEqual(
                daemons.daemonNames(only, [], False, True, forkservers=forkservers),
                [only],
            )
        self.assertEqual(
            daemons.daemonNames("both", [], False, True),
            ["xinetd", "ours", "tcpserver"],
        )

    def test_argv(self) -> None:
        """
        Each forkserver serves the one spawned service as its user on its
        own port, in a session of its own: N processes with -p N, the relay
        with -r; the program is built into bench/out.
        """
        import pwd

        nobody = pwd.getpwnam("nobody")
        ids = ["-u", str(nobody.pw_uid), "-g", str(nobody.pw_gid)]
        program = str(benchlib.OUT / "forkserver")
        ds = daemons.makeDaemons(
            self.names, self.tmp, [self.known["hello"]], "t", "/py"
        )
        self.assertEqual(
            [d.name for d in ds], ["xinetd", "ours", "forkserver1", "forkserver-relay"]
        )
        one, relay = ds[2:]
        self.assertEqual(
            one.argv,
            [program, "-p", "1", *ids, "127.0.0.1", str(one.ports["hello"])]
            + ["/srv/hello"],
        )
        self.assertEqual(
            relay.argv,
            [program, "-r", *ids, "127.0.0.1", str(relay.ports["hello"])]
            + ["/srv/hello"],
        )
        self.assertEqual(len({d.ports["hello"] for d in ds}), 4)
        self.assertEqual({d.newSession for d in ds}, {True})
        self.assertEqual(one.logPath, self.tmp / "t-forkserver1.log")
        self.assertEqual(
            self.compile.calls[0],
            (benchlib.BENCH / "forkserver.c", benchlib.OUT / "forkserver", []),
        )

    def test_out(self) -> None:
        """forkserverArgv builds the program into the directory it is given."""
        argv = daemons.forkserverArgv(
            self.known["hello"], 4321, "forkserver2", self.tmp
        )
        self.assertEqual(argv[:3], [str(self.tmp / "forkserver"), "-p", "2"])
        self.assertEqual(argv[-3:], ["127.0.0.1", "4321", "/srv/hello"])
        self.assertEqual(
            self.compile.calls,
            [(benchlib.BENCH / "forkserver.c", self.tmp / "forkserver", [])],
        )

    def test_leftOut(self) -> None:
        """
        With several services or an internal one there is no forkserver,
        and nothing is built.
        """
        hello = self.known["hello"]
        several = [hello, *benchlib.spread(hello, 2, _USERS, "idle")]
        for services in (several, [self.known["echo"]], [self.known["daytime"]]):
            ds = daemons.makeDaemons(self.names, self.tmp, services, "t", "/py")
            self.assertEqual([d.name for d in ds], ["xinetd", "ours"])
        self.assertEqual(self.compile.calls, [])

    def test_notBuilt(self) -> None:
        """If the program cannot be built there is no forkserver."""
        self.patch(benchlib, "compileIfStale", _CompileSpy(RuntimeError("no cc")))
        ds = daemons.makeDaemons(
            self.names, self.tmp, [self.known["hello"]], "t", "/py"
        )
        self.assertEqual([d.name for d in ds], ["xinetd", "ours"])


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ForkserverProgramTests(SynchronousTestCase):
    """
    bench/forkserver.c built with cc and run: each connection gets the
    program's output, then EOF; SIGTERM stops it.
    """

    def setUp(self) -> None:
        if shutil.which("cc") is None:
            raise SkipTest("no cc on PATH to build bench/forkserver.c")
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.program = benchlib.compileIfStale(
            benchlib.BENCH / "forkserver.c", self.tmp / "forkserver", []
        )
        self.script = self.tmp / "hi"
        self.script.write_text("#!/bin/sh\necho hi\n")
        self.script.chmod(0o755)

    def _start(self, *mode: str) -> tuple[subprocess.Popen, int]:
        port = _freePort()
        process = subprocess.Popen(
            [str(self.program), *mode, "127.0.0.1", str(port), str(self.script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(self._reap, process)
        return process, port

    def _reap(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.kill()
        process.wait(5)
        assert process.stderr is not None
        process.stderr.close()

    def _fetch(self, process: subprocess.Popen, port: int) -> bytes:
        """
        Connect as soon as the port listens (within 5 s) and read to EOF.
        """
        deadline = time.monotonic() + 5.0
        while True:
            self.assertIsNone(process.poll(), "forkserver exited")
            try:
                connection = socket.create_connection(("127.0.0.1", port), 5.0)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    self.fail(f"forkserver not listening on {port}")
                time.sleep(0.05)
                continue
            break
        with connection:
            chunks = []
            while data := connection.recv(4096):
                chunks.append(data)
        return b"".join(chunks)

    def _stop(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(5), 0)

    def test_processes(self) -> None:
        """With -p 1 one process accepts and starts the program."""
        process, port = self._start("-p", "1")
        self.assertEqual(self._fetch(process, port), b"hi\n")
        self._stop(process)

    def test_relay(self) -> None:
        """
        With -r the connection goes over the socket pair to the second
        process, which starts the program; SIGTERM stops both.
        """
        process, port = self._start("-r")
        self.assertEqual(self._fetch(process, port), b"hi\n")
        self.assertEqual(self._fetch(process, port), b"hi\n")
        self._stop(process)


class FormatStartupTests(SynchronousTestCase):
    """
    The start-up summary, with every kind or some.
    """

    def setUp(self) -> None:
        self.startup = load("startup")

    def test_all(self) -> None:
        """Medians of each kind, then the ratios to xinetd and to the floor."""
        text = self.startup.formatStartup(
            {"xinetd": [0.04, 0.05, 0.06], "ours": [0.5, 0.4, 0.9], "floor": [0.2] * 3},
            1000,
        )
        self.assertIn("1000 services, 3 rounds, medians:", text)
        self.assertIn("- ours: 500 ms (runs: 500, 400, 900)", text)
        self.assertIn("- ours / xinetd = 10.0x", text)
        self.assertTrue(text.endswith("= 2.50x"))

    def test_someKinds(self) -> None:
        """Without xinetd (--only ours) there is no ratio to it."""
        text = self.startup.formatStartup({"ours": [0.5], "floor": [0.25]}, 10)
        self.assertNotIn("xinetd", text)
        self.assertIn("= 2.00x", text)


class ProbeReplyTests(SynchronousTestCase):
    """
    L{phases.probeReply}: what the readiness probe waits for.
    """

    def test_each(self) -> None:
        """
        Hello's line from hello; anything from cat (the probe sends it
        nothing to echo) and from the internal services.
        """
        phases = load("phases")
        known = benchlib.workloads(Path("/srv/hello"))
        self.assertEqual(
            {name: phases.probeReply(w) for name, w in known.items()},
            {"hello": benchlib.HELLO_LINE, "cat": b"", "echo": b"", "daytime": b""},
        )


class _FakeDaemon:
    def __init__(self, name: str, pid: int, port: int, pids=None) -> None:
        self.name, self.pid, self.ports = name, pid, {"hello": port, "echo": port}
        self.pids = pids or [pid]


class MeasureTests(SynchronousTestCase):
    """
    L{phases.measure} alternates the daemons and labels its rounds.
    """

    def setUp(self) -> None:
        self.phases = load("phases")
        self.calls = []
        self.threads = []
        self.resets = []

        def runClient(
            client,
            port,
            conc,
            connections,
            timeLimit,
            payload,
            threads=1,
            resetAfterReply=False,
        ):
            self.calls.append((port, conc, timeLimit))
            self.threads.append(threads)
            self.resets.append(resetAfterReply)
            return {"rate": 1.0, "completed": 1, "errors": 0, "client_cpu_share": 0.5}

        self.patch(self.phases.benchlib, "runClient", runClient)
        self.patch(self.phases.benchlib, "processTree", lambda pid: {(pid, 1): 0})
        self.patch(sys, "stdout", io.StringIO())  # its progress lines
        self.daemons = [_FakeDaemon("xinetd", 10, 1), _FakeDaemon("ours", 20, 2)]
        self.hello = benchlib.workloads(Path("/srv/hello"))["hello"]

    def test_rounds(self) -> None:
        """Each round flips the order of the daemons."""
        step = self.phases.Step(self.hello, "1 svc", [8], 100, 3)
        rounds = self.phases.measure(Path("lc"), self.daemons, step, 60.0)
        self.assertEqual([c[0] for c in self.calls], [1, 2, 2, 1, 1, 2])
        self.assertEqual({(r.variant, r.concurrency) for r in rounds}, {("1 svc", 8)})

    def test_clientThreads(self) -> None:
        """
        In-process workloads run the client with threads at C>1, as asked
        or one per CPU; spawned ones with one.
        """
        echo = benchlib.workloads(Path("/srv/hello"))["echo"]
        self.phases.measure(
            Path("lc"), self.daemons, self.phases.Step(echo, "", [1, 8], 10, 1), 60.0, 3
        )
        self.phases.measure(
            Path("lc"),
            self.daemons,
            self.phases.Step(self.hello, "", [8], 10, 1),
            60.0,
            3,
        )
        self.assertEqual(self.threads, [1, 1, 3, 3, 1, 1])
        self.threads.clear()
        self.phases.measure(
            Path("lc"), self.daemons, self.phases.Step(echo, "", [8], 10, 1), 60.0
        )
        cpus = len(os.sched_getaffinity(0))
        self.assertEqual(self.threads, [min(8, cpus)] * 2)

    def test_resetAfterReply(self) -> None:
        """
        Echo's connections end with a RST once the payload is back; hello's
        are read to the server's EOF.
        """
        echo = benchlib.workloads(Path("/srv/hello"))["echo"]
        for w in (echo, self.hello):
            self.phases.measure(
                Path("lc"), self.daemons, self.phases.Step(w, "", [8], 10, 1), 60.0
            )
        self.assertEqual(self.resets, [True, True, False, False])

    def test_groupCpu(self) -> None:
        """
        A daemon of several processes is measured over all their trees, and
        its parent CPU is that of each member's own process.
        """
        ticks = {10: [0, 5], 20: [0, 3], 21: [0, 4]}
        children = {10: [0, 1], 20: [0, 1], 21: [0, 1]}

        def tree(pid):
            return {(pid, 1): ticks[pid].pop(0), (pid + 100, 1): children[pid].pop(0)}

        self.patch(self.phases.benchlib, "processTree", tree)
        group = _FakeDaemon("ours-reuseport2", 20, 2, pids=[20, 21])
        step = self.phases.Step(self.hello, "", [8], 100, 1)
        xinetd, ours = self.phases.measure(
            Path("lc"), [self.daemons[0], group], step, 60.0
        )
        tick = self.phases.TICK
        self.assertEqual(ours.daemon, "ours-reuseport2")
        self.assertEqual(
            (round(ours.daemonCpuSeconds * tick), round(ours.parentCpuSeconds * tick)),
            (9, 7),
        )
        self.assertEqual(
            (
                round(xinetd.daemonCpuSeconds * tick),
                round(xinetd.parentCpuSeconds * tick),
            ),
            (6, 5),
        )

    def test_levels(self) -> None:
        """With one round per concurrency the order flips between them."""
        step = self.phases.Step(self.hello, "", [1, 2, 4], 100, 1, timeLimit=3.0)
        self.phases.measure(Path("lc"), self.daemons, step, 60.0)
        self.assertEqual(
            self.calls,
            [
                (1, 1, 3.0),
                (2, 1, 3.0),
                (2, 2, 3.0),
                (1, 2, 3.0),
                (1, 4, 3.0),
                (2, 4, 3.0),
            ],
        )
