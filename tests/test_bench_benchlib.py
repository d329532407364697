"""
Tests for bench/benchlib.py and bench/loadclient.c: the benchmark's tools,
never its timings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence, cast

from twisted.internet import protocol
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

_BENCH = Path(__file__).resolve().parent.parent / "bench"
_spec = importlib.util.spec_from_file_location("benchlib", _BENCH / "benchlib.py")
assert _spec is not None and _spec.loader is not None
benchlib = importlib.util.module_from_spec(_spec)
sys.modules["benchlib"] = benchlib
_spec.loader.exec_module(benchlib)

# Typed loosely: mypy sees zope interfaces' methods as unbound functions.
reactor = cast(Any, _reactor)

_HELLO = benchlib.Workload("hello", "/srv/hello", 0, 28)
_ECHO = benchlib.Workload("echo", None, 1024, 1024, (("type", "INTERNAL UNLISTED"),))


def _result(rate: float, completed: int, bytesRead: int, errors: int = 0) -> dict:
    return {
        "rate": rate,
        "completed": completed,
        "bytes_read": bytesRead,
        "errors": errors,
        "p50_us": 1000,
        "p99_us": 3000,
        "client_cpu_share": 0.1,
    }


class RenderConfigTests(SynchronousTestCase):
    """
    L{benchlib.renderConfig} writes the config both daemons share.
    """

    def test_spawnedService(self) -> None:
        """A spawned service has the user, server, port and no limiter."""
        text = benchlib.renderConfig([_HELLO], {"hello": 4242})
        self.assertIn("service hello\n{\n", text)
        for line in (
            "type        = UNLISTED",
            "wait        = no",
            "user        = nobody",
            "server      = /srv/hello",
            "port        = 4242",
            "bind        = 127.0.0.1",
            "cps         = 0 0",
            "instances   = UNLIMITED",
            "per_source  = UNLIMITED",
        ):
            self.assertIn("\t" + line + "\n", text)

    def test_noLogging(self) -> None:
        """Without a service log there is no log_type, so xinetd logs nothing."""
        text = benchlib.renderConfig([_HELLO], {"hello": 1})
        self.assertNotIn("log_type", text)
        self.assertNotIn("log_on_success", text)

    def test_fileLogging(self) -> None:
        """With a service log, defaults set FILE logging of PID HOST EXIT DURATION."""
        text = benchlib.renderConfig([_HELLO], {"hello": 1}, Path("/tmp/s.log"))
        self.assertIn("\tlog_type\t= FILE /tmp/s.log\n", text)
        self.assertIn("\tlog_on_success\t= PID HOST EXIT DURATION\n", text)

    def test_internalService(self) -> None:
        """An internal service overrides type in place and has no user or server."""
        text = benchlib.renderConfig([_ECHO], {"echo": 7007})
        self.assertIn("\ttype        = INTERNAL UNLISTED\n", text)
        self.assertEqual(text.count("type"), 2)  # type and socket_type
        self.assertNotIn("server", text)
        self.assertNotIn("user", text)


class ProcTests(SynchronousTestCase):
    """
    Reading CPU and RSS from a /proc-shaped directory.
    """

    def setUp(self) -> None:
        self.proc = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.proc)

    def _stat(self, pid: int, ppid: int, utime: int, stime: int, start: int) -> None:
        rest = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)]
        rest += ["0"] * 6 + [str(start)] + ["0"] * 30
        d = self.proc / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_text(f"{pid} (odd) name) " + " ".join(rest) + "\n")

    def test_parseStat(self) -> None:
        """Fields are counted after the last ')' of the command name."""
        self._stat(10, 1, 7, 5, 999)
        text = (self.proc / "10" / "stat").read_text()
        self.assertEqual(benchlib.parseStat(text), (1, 12, 999))

    def test_processTree(self) -> None:
        """The tree holds the root and its descendants, not other processes."""
        self._stat(10, 1, 1, 1, 100)
        self._stat(11, 10, 2, 2, 101)
        self._stat(12, 11, 3, 3, 102)
        self._stat(20, 1, 9, 9, 103)
        tree = benchlib.processTree(10, self.proc)
        self.assertEqual(tree, {(10, 100): 2, (11, 101): 4, (12, 102): 6})

    def test_longLivedCpu(self) -> None:
        """Only processes present in both snapshots count; a reused pid does not."""
        before = {(10, 100): 50, (11, 101): 10, (12, 102): 3}
        after = {(10, 100): 80, (11, 101): 15, (12, 200): 40, (13, 201): 7}
        self.assertEqual(benchlib.longLivedCpu(before, after), 35)

    def test_rss(self) -> None:
        """RSS sums VmRSS over the pids and skips pids that are gone."""
        for pid, kib in ((10, 3000), (11, 500)):
            (self.proc / str(pid)).mkdir()
            (self.proc / str(pid) / "status").write_text(
                f"Name:\tx\nVmRSS:\t    {kib} kB\nThreads:\t1\n"
            )
        self.assertEqual(benchlib.rssKiB([10, 11, 99], self.proc), 3500)

    def test_pss(self) -> None:
        """PSS sums the Pss line of smaps_rollup and skips pids that are gone."""
        for pid, kib in ((10, 1700), (11, 300)):
            (self.proc / str(pid)).mkdir()
            (self.proc / str(pid) / "smaps_rollup").write_text(
                f"00400000-7fff [rollup]\nRss:\t{kib * 2} kB\nPss:\t{kib} kB\n"
            )
        self.assertEqual(benchlib.pssKiB([10, 11, 99], self.proc), 2000)


class SummaryTests(SynchronousTestCase):
    """
    Rounds become one row per daemon and concurrency, with ratios.
    """

    def _rounds(self):
        R = benchlib.Round
        return [
            R("hello", "xinetd", 8, _result(1000, 100, 2800), 0.01, 0.004),
            R("hello", "ours", 8, _result(1100, 100, 2800), 0.02),
            R("hello", "xinetd", 8, _result(3000, 100, 2800), 0.01),
            R("hello", "ours", 8, _result(1500, 100, 2800), 0.02),
            R("hello", "xinetd", 8, _result(2000, 100, 2800), 0.01),
            R("hello", "ours", 8, _result(1200, 100, 2790, errors=1), 0.02),
        ]

    def test_medians(self) -> None:
        """The rate is the median of the rounds; CPU is per completed connection."""
        rows = benchlib.summarise(self._rounds(), {"hello": 28})
        xinetd, ours = rows
        self.assertEqual((xinetd["daemon"], xinetd["rate"]), ("xinetd", 2000))
        self.assertEqual((xinetd["rateMin"], xinetd["rateMax"]), (1000, 3000))
        self.assertAlmostEqual(xinetd["daemonUsPerConn"], 100.0)
        self.assertAlmostEqual(xinetd["parentUsPerConn"], 4e-3 * 1e6 / 300)
        self.assertEqual(ours["rate"], 1200)

    def test_machine(self) -> None:
        """
        The machine's CPU a connection over the rounds, and the median
        number of CPUs it kept busy; unknown if any round could not say.
        """
        R = benchlib.Round

        def result(seconds):
            return dict(_result(1000, 1000, 28000), seconds=seconds)

        rounds = [
            R("hello", "xinetd", 8, result(1.0), 0.1, machineCpuSeconds=1.9),
            R("hello", "xinetd", 8, result(2.0), 0.1, machineCpuSeconds=3.0),
            R("hello", "xinetd", 8, result(1.0), 0.1, machineCpuSeconds=2.0),
            R("hello", "ours", 8, result(1.0), 0.1, machineCpuSeconds=2.0),
            R("hello", "ours", 8, result(1.0), 0.1),
        ]
        xinetd, ours = benchlib.summarise(rounds, {"hello": 28})
        self.assertAlmostEqual(xinetd["machineUsPerConn"], 6.9e6 / 3000)
        self.assertAlmostEqual(xinetd["machineShare"], 1.9)
        self.assertEqual((ours["machineUsPerConn"], ours["machineShare"]), (None, None))

    def test_bytesChecked(self) -> None:
        """A daemon whose replies miss bytes is flagged, the other is not."""
        xinetd, ours = benchlib.summarise(self._rounds(), {"hello": 28})
        self.assertTrue(xinetd["bytesOk"])
        self.assertFalse(ours["bytesOk"])
        self.assertEqual(ours["errors"], 1)

    def test_ratio(self) -> None:
        """The table ends with each daemon's median rate over xinetd's."""
        rows = benchlib.summarise(self._rounds(), {"hello": 28})
        table = benchlib.formatTable(rows)
        self.assertIn("| hello | ours | 8 | 1200 | 1100-1500 |", table)
        self.assertTrue(table.endswith("- hello, C=8: ours/xinetd = 0.60x"))

    def test_clientThreads(self) -> None:
        """A row says how many client threads its rounds ran, when several."""
        R = benchlib.Round
        threaded = dict(_result(9000, 100, 102400), threads=2, client_cpu_share=1.2)
        rows = benchlib.summarise(
            [
                R("echo", "xinetd", 8, threaded, 0.01),
                R("echo", "ours", 8, _result(9000, 100, 102400), 0.01),
            ],
            {"echo": 1024},
        )
        self.assertEqual([r["clientThreads"] for r in rows], [2, 1])
        table = benchlib.formatTable(rows)
        self.assertIn("| 120% (2 threads) |", table)
        self.assertIn("| 10% |", table)


class ClientThreadsTests(SynchronousTestCase):
    """
    L{benchlib.clientThreads}: how many threads the load client runs.
    """

    def test_inProcess(self) -> None:
        """An in-process workload at C>1 gets one thread per CPU, at most C."""
        self.assertEqual(benchlib.clientThreads(_ECHO, 8, cpus=2), 2)
        self.assertEqual(benchlib.clientThreads(_ECHO, 2, cpus=4), 2)

    def test_asked(self) -> None:
        """A number asked for replaces the CPUs, still at most C."""
        self.assertEqual(benchlib.clientThreads(_ECHO, 8, 3, cpus=2), 3)
        self.assertEqual(benchlib.clientThreads(_ECHO, 2, 3, cpus=2), 2)

    def test_single(self) -> None:
        """A spawned workload, and any at C=1, gets one thread."""
        self.assertEqual(benchlib.clientThreads(_HELLO, 8, 4, cpus=4), 1)
        self.assertEqual(benchlib.clientThreads(_ECHO, 1, 4, cpus=4), 1)


class ClientResetsTests(SynchronousTestCase):
    """
    L{benchlib.clientResets}: which workloads' connections the client ends
    with a RST.
    """

    def test_payload(self) -> None:
        """A workload with a payload is reset once it has come back."""
        self.assertTrue(benchlib.clientResets(_ECHO))

    def test_serverClosesFirst(self) -> None:
        """A workload without one is read to the server's EOF."""
        self.assertFalse(benchlib.clientResets(_HELLO))


@implementer(IHalfCloseableProtocol)
class _Echo(protocol.Protocol):
    """
    Echoes, closes once the client has half-closed (after what it wrote is
    sent), and records how each connection ended in C{factory.ends}; fires
    C{factory.ended} with them once C{factory.expected} have.
    """

    def dataReceived(self, data: bytes) -> None:
        cast(Any, self.transport).write(data)

    def readConnectionLost(self) -> None:
        cast(Any, self.transport).loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        factory = cast(Any, self.factory)
        factory.ends.append(reason.type)
        if len(factory.ends) == factory.expected:
            factory.ended.callback(factory.ends)


class _Line(protocol.Protocol):
    def connectionMade(self) -> None:
        transport = cast(Any, self.transport)
        transport.write(b"hello\n")
        transport.loseConnection()


class LoadClientTests(TestCase):
    """
    The compiled load client against a Twisted server on loopback.
    """

    def setUp(self) -> None:
        if shutil.which("cc") is None:
            raise self.skipTest("no C compiler")
        out = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, out)
        self.client = benchlib.compileIfStale(
            _BENCH / "loadclient.c", out / "loadclient", benchlib.CLIENT_FLAGS
        )

    def _load(self, port: int, *args: str, options: Sequence[str] = ()) -> Deferred:
        d = getProcessOutputAndValue(
            str(self.client),
            [*options, "127.0.0.1", str(port), *args],
            env=os.environ,
        )

        def parsed(result):
            out, err, code = result
            self.assertEqual((code, err), (0, b""))
            return json.loads(out)

        return d.addCallback(parsed)

    def test_counts(self) -> Deferred:
        """Every connection completes and every reply byte is counted."""
        factory = protocol.ServerFactory.forProtocol(_Line)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        d = self._load(port.getHost().port, "4", "50", "20")

        def check(r):
            self.assertEqual(
                (r["completed"], r["errors"], r["bytes_read"]), (50, 0, 300)
            )
            self.assertLessEqual(r["p50_us"], r["p99_us"])
            self.assertGreater(r["rate"], 0)

        return d.addCallback(check)

    def test_threads(self) -> Deferred:
        """
        With C{-t} the threads share the connections, and their counts,
        bytes and latencies are merged.
        """
        factory = protocol.ServerFactory.forProtocol(_Line)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        d = self._load(port.getHost().port, "4", "51", "20", options=["-t", "3"])

        def check(r):
            self.assertEqual(
                (r["completed"], r["started"], r["errors"], r["bytes_read"]),
                (51, 51, 0, 306),
            )
            self.assertEqual(r["threads"], 3)
            self.assertLessEqual(r["p50_us"], r["p99_us"])
            self.assertGreater(r["rate"], 0)

        return d.addCallback(check)

    def test_threadsAtMostConcurrency(self) -> None:
        """No more threads run than connections are in flight."""
        port = benchlib.freePort()
        r = benchlib.runClient(self.client, port, 2, 6, 5.0, threads=8)
        self.assertEqual((r["threads"], r["refused"], r["started"]), (2, 6, 6))

    def test_oneThreadByDefault(self) -> None:
        """Without C{-t} the client runs one thread."""
        port = benchlib.freePort()
        r = benchlib.runClient(self.client, port, 2, 4, 5.0)
        self.assertEqual((r["threads"], r["refused"]), (1, 4))

    def _echoServer(self, expected: int) -> Any:
        factory = protocol.ServerFactory.forProtocol(_Echo)
        factory.ends, factory.expected, factory.ended = [], expected, Deferred()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    def test_halfCloses(self) -> Deferred:
        """
        Without C{-r} the client half-closes after its payload and reads to
        EOF: the server sees a clean end.
        """
        factory, port = self._echoServer(12)
        d = self._load(port, "3", "12", "20", "100")

        def check(r):
            self.assertEqual((r["completed"], r["bytes_read"]), (12, 1200))
            self.assertFalse(r["reset_after_reply"])
            return factory.ended.addCallback(self.assertEqual, [ConnectionDone] * 12)

        return d.addCallback(check)

    def test_resetAfterReply(self) -> Deferred:
        """
        With C{-r} the client never half-closes: once its payload has come
        back it resets the connection, across the threads too.
        """
        factory, port = self._echoServer(12)
        d = self._load(port, "3", "12", "20", "100", options=["-t", "2", "-r"])

        def check(r):
            self.assertEqual(
                (r["completed"], r["errors"], r["bytes_read"]), (12, 0, 1200)
            )
            self.assertTrue(r["reset_after_reply"])
            return factory.ended.addCallback(self.assertEqual, [ConnectionLost] * 12)

        return d.addCallback(check)

    def test_resetByRunClient(self) -> None:
        """L{benchlib.runClient} passes C{resetAfterReply} on as C{-r}."""
        port = benchlib.freePort()
        r = benchlib.runClient(self.client, port, 2, 4, 5.0, 10, resetAfterReply=True)
        self.assertEqual((r["reset_after_reply"], r["refused"]), (True, 4))

    def test_resetNeedsPayload(self) -> None:
        """C{-r} without a payload to wait for is refused."""
        result = subprocess.run(
            [str(self.client), "-r", "127.0.0.1", "9", "1", "1", "1"],
            capture_output=True,
        )
        self.assertEqual(
            (result.returncode, result.stderr), (2, b"loadclient: bad arguments\n")
        )

    def test_refused(self) -> Deferred:
        """Connections to a closed port are counted as refused errors."""
        port = benchlib.freePort()
        d = self._load(port, "2", "10", "20")

        def check(r):
            self.assertEqual((r["completed"], r["refused"], r["errors"]), (0, 10, 10))

        return d.addCallback(check)


class _BuildsC(SynchronousTestCase):
    """
    Builds bench C programs into a fresh directory, C{self.out}; skips
    without a C compiler.
    """

    def setUp(self) -> None:
        if shutil.which("cc") is None:
            raise self.skipTest("no C compiler")
        self.out = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.out)


class SpawnFloorTests(_BuildsC):
    """
    bench/spawnfloor.c, compiled and run for real.
    """

    def test_measures(self) -> None:
        """A program that exits 0 gives a positive time a start."""
        floor = benchlib.spawnFloor(Path("/bin/true"), 20, self.out)
        self.assertIsInstance(floor, float)
        self.assertGreater(floor, 0)

    def test_failingProgram(self) -> None:
        """A program that fails, or is missing, gives no floor."""
        self.assertIsNone(benchlib.spawnFloor(Path("/bin/false"), 5, self.out))
        self.assertIsNone(benchlib.spawnFloor(self.out / "missing", 5, self.out))


class RawHelloTests(_BuildsC):
    """
    bench/rawhello.c: hello's line with no C library.
    """

    def test_writesHelloLine(self) -> None:
        """
        Built where the machine can, it writes hello's line and exits 0, and
        is the hello-raw workload.
        """
        raw = benchlib.buildRawHello(self.out)
        if raw is None:
            raise self.skipTest(f"hello-raw cannot be built on {os.uname().machine}")
        result = subprocess.run([str(raw)], capture_output=True)
        self.assertEqual((result.returncode, result.stdout), (0, benchlib.HELLO_LINE))
        known = benchlib.workloads(Path("/srv/hello"), raw)
        self.assertEqual(known[benchlib.RAW_HELLO].server, str(raw))
        self.assertEqual(
            known[benchlib.RAW_HELLO].expectedBytes, len(benchlib.HELLO_LINE)
        )

    def test_closedOutput(self) -> None:
        """A write that fails makes it exit 1."""
        raw = benchlib.buildRawHello(self.out)
        if raw is None:
            raise self.skipTest(f"hello-raw cannot be built on {os.uname().machine}")
        result = subprocess.run(f"{raw} >&-", shell=True)
        self.assertEqual(result.returncode, 1)

    def test_notKnownWithout(self) -> None:
        """Without a built hello-raw there is no such workload."""
        self.assertNotIn(benchlib.RAW_HELLO, benchlib.workloads(Path("/srv/hello")))


class XinetdConfigTests(SynchronousTestCase):
    """
    Real xinetd reads the rendered config and does not throttle it.
    """

    def test_cpsDisabled(self) -> None:
        """300 quick connections all succeed: cps = 0 0 really disables cps."""
        if os.getuid() != 0:
            raise self.skipTest("user = nobody needs root")
        if not os.path.exists("/usr/sbin/xinetd") or shutil.which("cc") is None:
            raise self.skipTest("needs /usr/sbin/xinetd and cc")
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        tmp.chmod(0o755)
        client = benchlib.compileIfStale(
            _BENCH / "loadclient.c", tmp / "loadclient", benchlib.CLIENT_FLAGS
        )
        hello = benchlib.compileIfStale(_BENCH / "hello.c", tmp / "hello", [])
        port = benchlib.freePort()
        cfg = tmp / "xinetd.conf"
        work = benchlib.Workload("hello", str(hello), 0, 28)
        cfg.write_text(benchlib.renderConfig([work], {"hello": port}))
        xinetd = subprocess.Popen(
            ["/usr/sbin/xinetd", "-dontfork", "-stayalive", "-f", str(cfg)]
            + ["-filelog", str(tmp / "log")]
        )

        def stop() -> None:
            os.kill(xinetd.pid, signal.SIGTERM)
            xinetd.wait(10)

        self.addCleanup(stop)
        # Retry the first connection until xinetd listens (bounded).
        for _ in range(100):
            r = benchlib.runClient(client, port, 1, 1, 5.0)
            if r["completed"] == 1:
                break
            time.sleep(0.05)  # an external daemon starting: no clock to fake
        r = benchlib.runClient(client, port, 8, 300, 30.0)
        self.assertEqual((r["completed"], r["errors"]), (300, 0))
        self.assertEqual(r["bytes_read"], 300 * len(benchlib.HELLO_LINE))
