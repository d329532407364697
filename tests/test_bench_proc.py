"""
Tests for the parts of bench/benchlib.py the modes of bench/run_spawn.py
added: service users, per-service users in the config, distinct ports,
reading a process tree's memory and the listening ports from a /proc-shaped
directory, the CPU burner, and rows told apart by variant.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.benchload import load

benchlib = load("benchlib")

_HELLO = benchlib.Workload("hello", "/srv/hello", 0, 28)

_PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
games:x:5:60:games:/usr/games:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""


class UsersTests(SynchronousTestCase):
    """
    Choosing the service users and spreading services over them.
    """

    def setUp(self) -> None:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d)
        self.passwd = d / "passwd"
        self.passwd.write_text(_PASSWD)

    def test_preferredFirst(self) -> None:
        """nobody comes first, then daemon and bin, then other non-root users."""
        self.assertEqual(
            benchlib.serviceUsers(4, self.passwd), ["nobody", "daemon", "bin", "games"]
        )

    def test_tooFew(self) -> None:
        """Asking for more users than the file has (root excluded) is an error."""
        self.assertRaises(ValueError, benchlib.serviceUsers, 5, self.passwd)

    def test_spread(self) -> None:
        """Copies are numbered and take the users in turn."""
        copies = benchlib.spread(_HELLO, 4, ["nobody", "daemon", "bin"], "s")
        self.assertEqual(
            [(w.name, w.user) for w in copies],
            [("s0", "nobody"), ("s1", "daemon"), ("s2", "bin"), ("s3", "nobody")],
        )
        self.assertEqual({w.server for w in copies}, {"/srv/hello"})

    def test_configUsers(self) -> None:
        """Each spawned service's user line is its own user, else the default."""
        services = [_HELLO, *benchlib.spread(_HELLO, 2, ["daemon", "bin"], "s")]
        ports = {"hello": 1, "s0": 2, "s1": 3}
        text = benchlib.renderConfig(services, ports)
        blocks = text.split("service ")[1:]
        users = [
            line.split("= ")[1]
            for block in blocks
            for line in block.splitlines()
            if line.startswith("\tuser")
        ]
        self.assertEqual(users, ["nobody", "daemon", "bin"])


class PortsTests(SynchronousTestCase):
    """
    Free ports and the ports listening now.
    """

    def test_distinct(self) -> None:
        """Ports asked for at once never repeat and stay below the ephemeral range."""
        ports = benchlib.freePorts(50)
        self.assertEqual(len(set(ports)), 50)
        self.assertTrue(all(10000 <= p < benchlib.ephemeralLow() for p in ports))

    def _usedAndFree(self) -> tuple:
        """
        A socket bound to some port p, p + 1 being free (checked by binding).
        """
        for _ in range(100):
            used = socket.socket()
            used.bind(("127.0.0.1", 0))
            port = used.getsockname()[1]
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 1))
                except OSError:
                    used.close()
                    continue
            return used, port
        raise self.skipTest("no two adjacent free ports")

    def test_skipsUsed(self) -> None:
        """A port in use is skipped; none free in the range is an error."""
        used, port = self._usedAndFree()
        with used:
            ports = benchlib.freePorts(1, port, port + 2, start=port)
            self.assertRaises(RuntimeError, benchlib.freePorts, 1, port, port + 1)
        self.assertEqual(ports, [port + 1])

    def test_listeningPorts(self) -> None:
        """Only sockets in state LISTEN (0A) count; the port is hexadecimal."""
        proc = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, proc)
        (proc / "net").mkdir()
        (proc / "net" / "tcp").write_text(
            "  sl  local_address rem_address   st tx_queue\n"
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
            "   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000\n"
            "   2: 00000000:0016 00000000:0000 0A 00000000:00000000\n"
        )
        self.assertEqual(benchlib.listeningPorts(proc), frozenset({8080, 22}))


class TreeMemoryTests(SynchronousTestCase):
    """
    A daemon's process tree and its memory, from a fake /proc.
    """

    def setUp(self) -> None:
        self.proc = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.proc)

    def _process(self, pid: int, ppid: int, comm: str, pss: int, rss: int) -> None:
        d = self.proc / str(pid)
        d.mkdir()
        rest = ["S", str(ppid)] + ["0"] * 50
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")
        (d / "smaps_rollup").write_text(
            f"0-1 [rollup]\nRss:\t{rss} kB\nPss:\t{pss} kB\n"
        )
        (d / "status").write_text(f"Name:\t{comm}\nVmRSS:\t{rss} kB\n")
        (d / "maps").write_text(f"7f00-7f01 r-xp 0 00:00 0 /lib/{comm}.so\n")

    def _tree(self) -> None:
        self._process(10, 1, "python3", 20000, 30000)
        self._process(11, 10, "python3", 5000, 25000)  # the helper
        self._process(12, 11, "python3", 3000, 24000)  # a sub-helper
        self._process(13, 12, "hello", 100, 500)  # a spawned server
        self._process(20, 1, "other (x)", 9999, 9999)

    def test_parseComm(self) -> None:
        """The command name is between the first '(' and the last ')'."""
        self.assertEqual(benchlib.parseComm("7 (a (b) c) S 1 2"), "a (b) c")

    def test_treePids(self) -> None:
        """The tree is the root and its descendants, less the excluded names."""
        self._tree()
        self.assertEqual(
            sorted(benchlib.treePids(10, self.proc, ["hello"])), [10, 11, 12]
        )
        self.assertEqual(sorted(benchlib.treePids(10, self.proc)), [10, 11, 12, 13])

    def test_treeMemory(self) -> None:
        """PSS and RSS are summed over the tree, without the spawned servers."""
        self._tree()
        self.assertEqual(
            benchlib.treeMemory(10, self.proc, ["hello"]),
            benchlib.TreeMemory(3, 28000, 79000),
        )

    def test_excludeTruncated(self) -> None:
        """A long server name is matched as the kernel truncates it (15 bytes)."""
        self._process(10, 1, "python3", 1, 1)
        self._process(11, 10, "a-very-long-ser", 1, 1)
        self.assertEqual(
            benchlib.treePids(10, self.proc, ["a-very-long-server-name"]), [10]
        )

    def test_mapsMention(self) -> None:
        """A library is seen when one process of the tree maps it."""
        self._tree()
        self.assertTrue(benchlib.mapsMention([10, 13], "/hello.so", self.proc))
        self.assertFalse(benchlib.mapsMention([10, 11, 99], "/hello.so", self.proc))


class BurnerTests(SynchronousTestCase):
    """
    The CPU burner is bounded and killed by its pid.
    """

    def test_bounded(self) -> None:
        """The burner's loop carries its own end time."""
        argv = benchlib.burnerArgv(12.5, "/usr/bin/python3")
        self.assertEqual(argv[:2], ["/usr/bin/python3", "-c"])
        self.assertIn("time.monotonic() + 12.5", argv[2])
        compile(argv[2], "burner", "exec")

    def test_killed(self) -> None:
        """Leaving the block kills and reaps the process it started."""
        with benchlib.burner(60, ["sleep", "60"]) as process:
            self.assertIsNone(process.poll())
        self.assertEqual(process.returncode, -signal.SIGKILL)
        self.assertRaises(ProcessLookupError, os.kill, process.pid, 0)

    def test_killedOnError(self) -> None:
        """An error in the block still kills the burner."""
        pids = []
        with self.assertRaises(ZeroDivisionError):
            with benchlib.burner(60, ["sleep", "60"]) as process:
                pids.append(process.pid)
                raise ZeroDivisionError("in the block")
        self.assertRaises(ProcessLookupError, os.kill, pids[0], 0)


def _result(rate: float, seconds: float) -> dict:
    return {
        "rate": rate,
        "completed": 100,
        "bytes_read": 2800,
        "errors": 0,
        "p50_us": 1000,
        "p99_us": 3000,
        "client_cpu_share": 0.1,
        "seconds": seconds,
    }


class VariantTests(SynchronousTestCase):
    """
    Rows of one workload told apart by variant, with CPU shares.
    """

    def _rows(self):
        R = benchlib.Round
        rounds = [
            R("hello", "xinetd", 8, _result(1000, 2.0), 1.0, 1.0, "1 svc"),
            R("hello", "ours", 8, _result(1500, 2.0), 1.5, 0.5, "1 svc"),
            R("hello", "xinetd", 8, _result(800, 2.0), 1.0, 1.0, "1000 svc"),
            R("hello", "ours", 8, _result(1600, 2.0), 1.0, 0.5, "1000 svc"),
        ]
        return benchlib.summarise(rounds, {"hello": 28})

    def test_apart(self) -> None:
        """Each variant has its own rows and its own ratio."""
        rows = self._rows()
        self.assertEqual(
            [(r["variant"], r["daemon"], r["rate"]) for r in rows],
            [
                ("1 svc", "xinetd", 1000),
                ("1 svc", "ours", 1500),
                ("1000 svc", "xinetd", 800),
                ("1000 svc", "ours", 1600),
            ],
        )
        table = benchlib.formatTable(rows)
        self.assertIn("| hello [1000 svc] | ours | 8 | 1600 |", table)
        self.assertIn("- hello [1 svc], C=8: ours/xinetd = 1.50x", table)
        self.assertIn("- hello [1000 svc], C=8: ours/xinetd = 2.00x", table)

    def test_shares(self) -> None:
        """The parent's and helpers' CPU over the run's wall time."""
        ours = self._rows()[1]
        self.assertAlmostEqual(ours["parentShare"], 0.25)
        self.assertAlmostEqual(ours["helperShare"], 0.5)


class StealTests(SynchronousTestCase):
    """
    The hypervisor's steal time over a run, from two readings of a
    /proc/stat-shaped file, and the report's line on it.
    """

    def setUp(self) -> None:
        self.daemons = load("daemons")
        self.stat = Path(self.mktemp())

    def reading(self, cpu: str) -> object:
        self.stat.write_text(f"{cpu}\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 5\n")
        return self.daemons.cpuTimes(self.stat)

    def test_share(self) -> None:
        """
        Steal's share of every field up to steal (guest time is already in
        user time), between the readings.
        """
        before = self.reading("cpu  100 0 50 800 0 0 10 40 30 0")
        after = self.reading("cpu  200 0 100 1500 0 0 10 140 90 0")
        self.assertEqual(before, [100, 0, 50, 800, 0, 0, 10, 40, 30, 0])
        self.assertAlmostEqual(self.daemons.stealShare(before, after), 100 / 950)

    def test_unknown(self) -> None:
        """
        An unreadable or short reading, or no time passed, gives no share.
        """
        self.assertIsNone(self.daemons.cpuTimes(Path(self.mktemp())))
        short = self.reading("cpu  1 2 3 4")
        same = self.reading("cpu  1 2 3 4 5 6 7 8")
        self.assertIsNone(self.daemons.stealShare(short, short))
        self.assertIsNone(self.daemons.stealShare(same, same))
        self.assertIsNone(self.daemons.stealShare(None, same))

    def test_busy(self) -> None:
        """
        The ticks spent in user, nice, system, irq and softirq time between
        the readings: not idle, I/O wait or steal.
        """
        before = self.reading("cpu  100 1 50 800 7 2 10 40 30 0")
        after = self.reading("cpu  200 3 100 1500 9 4 13 140 90 0")
        self.assertEqual(self.daemons.busyTicks(before, after), 100 + 2 + 50 + 2 + 3)
        self.assertIsNone(self.daemons.busyTicks(None, after))
        self.assertIsNone(self.daemons.busyTicks(self.reading("cpu  1 2 3 4"), after))

    def test_describe(self) -> None:
        """
        Below the quiet bound the line states the share; above it, it says
        the machine was not quiet.
        """
        describe = self.daemons.describeSteal
        self.assertEqual(
            [describe(0.005), describe(0.2), describe(None)],
            [
                "- hypervisor steal: 0.5% of the CPU time during the run",
                "- hypervisor steal: 20.0% of the CPU time during the run (NOT a"
                " quiet machine: more than 2%; idle CPUs wake late, and the ratios"
                " near their goals are not judged fairly)",
                "- hypervisor steal: unknown",
            ],
        )
