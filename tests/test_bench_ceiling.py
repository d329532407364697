"""
Tests for bench/ceiling.py: finding the cpu controller, the quota files,
the throttling counters, a thread's CPU time, and where a reactor under a
quota saturates (made-up rows, never a timing); a real quota on a real
process where this process may make one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.benchload import load

ceiling = load("ceiling")
goals = load("goals")

_V1 = """\
12:pids:/
4:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
"""

_V2 = "0::/bench.slice\n"


def _row(workload, daemon, share, conc, rate, reactorShare, throttled=0.9):
    return {
        "workload": workload,
        "daemon": daemon,
        "share": share,
        "concurrency": conc,
        "rate": rate,
        "p99us": 2000.0,
        "reactorShare": reactorShare,
        "throttled": throttled,
        "clientCpu": 0.4,
        "clientThreads": 1,
        "errors": 0,
        "completed": 100,
        "bytesOk": True,
    }


class HierarchyTests(SynchronousTestCase):
    """
    Which cgroup holds this process for the cpu controller.
    """

    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.call, ["rm", "-rf", str(self.root)])

    def _mount(self, name: str) -> Path:
        mount = self.root / name
        mount.mkdir()
        (mount / "cpu.cfs_quota_us").write_text("-1\n")
        return mount

    def test_version1(self) -> None:
        """A v1 cpu line names the controller's mount and the path in it."""
        mount = self._mount("cpu,cpuacct")
        self.assertEqual(
            ceiling.cpuHierarchy(_V1, self.root), (1, mount / "user.slice")
        )

    def test_version1Alias(self) -> None:
        """A joint controller mounted as plain cpu is found there."""
        mount = self._mount("cpu")
        self.assertEqual(
            ceiling.cpuHierarchy(_V1, self.root), (1, mount / "user.slice")
        )

    def test_version2(self) -> None:
        """On the unified hierarchy the cpu controller must be available."""
        (self.root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        self.assertEqual(
            ceiling.cpuHierarchy(_V2, self.root), (2, self.root / "bench.slice")
        )

    def test_none(self) -> None:
        """No cpu controller anywhere: the quota is unavailable."""
        (self.root / "cgroup.controllers").write_text("memory pids\n")
        self.assertRaises(
            ceiling.QuotaUnavailable, ceiling.cpuHierarchy, _V2, self.root
        )
        self.assertRaises(
            ceiling.QuotaUnavailable, ceiling.cpuHierarchy, _V1, self.root
        )


class PlaceTests(SynchronousTestCase):
    """
    Where the quota's cgroup is made, in a tree shaped as cgroupfs.
    """

    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.call, ["rm", "-rf", str(self.root)])
        (self.root / "cgroup.controllers").write_text("cpu memory\n")
        (self.root / "cgroup.subtree_control").write_text("cpu memory\n")
        self.home = self.root / "bench.slice"
        self.home.mkdir()
        (self.home / "cgroup.procs").write_text("1\n")

    def _quota(self):
        quota = ceiling.CpuQuota(0.5, "q", _V2, self.root)
        quota.removeTries = 1
        return quota

    def test_underHome(self) -> None:
        """This process's cgroup already hands cpu down: the quota is made
        under it, with cpu.max."""
        (self.home / "cgroup.subtree_control").write_text("cpu\n")
        quota = self._quota()
        self.assertEqual(quota.path, self.home / "q")
        self.assertEqual((quota.path / "cpu.max").read_text(), "10000 20000")

    def test_underRoot(self) -> None:
        """It does not (it holds processes, so it cannot start to): the
        quota is made under the root, and close moves what is left home."""
        (self.home / "cgroup.subtree_control").write_text("memory\n")
        quota = self._quota()
        self.assertEqual(quota.path, self.root / "q")
        quota.add(42)
        quota.close()
        self.assertEqual((self.home / "cgroup.procs").read_text(), "42")


class CountersTests(SynchronousTestCase):
    """
    What is written and read.
    """

    def test_settings(self) -> None:
        """A share becomes a quota of the period in each version's files."""
        self.assertEqual(
            ceiling.quotaSettings(1, 0.25, 20000),
            {"cpu.cfs_period_us": "20000", "cpu.cfs_quota_us": "5000"},
        )
        self.assertEqual(
            ceiling.quotaSettings(2, 0.05, 20000), {"cpu.max": "1000 20000"}
        )

    def test_tooSmall(self) -> None:
        """Under the 1 ms cgroup v1 takes at least, the share is refused."""
        self.assertRaises(ceiling.QuotaUnavailable, ceiling.quotaSettings, 1, 0.01)

    def test_throttled(self) -> None:
        """The share of periods throttled between two readings."""
        before = ceiling.parseCpuStat(
            "nr_periods 10\nnr_throttled 2\nthrottled_time 5\n"
        )
        after = ceiling.parseCpuStat(
            "nr_periods 110\nnr_throttled 77\nthrottled_time 9\n"
        )
        self.assertEqual(before["nr_throttled"], 2)
        self.assertAlmostEqual(ceiling.throttledShare(before, after), 0.75)
        self.assertEqual(ceiling.throttledShare(after, after), 0.0)

    def test_threadCpu(self) -> None:
        """The main thread's first schedstat field, in nanoseconds."""
        proc = Path(tempfile.mkdtemp())
        self.addCleanup(subprocess.call, ["rm", "-rf", str(proc)])
        task = proc / "42" / "task" / "42"
        task.mkdir(parents=True)
        (task / "schedstat").write_text("123456789 555 7\n")
        self.assertEqual(ceiling.threadCpuNs(42, proc), 123456789)

    def test_ownThread(self) -> None:
        """This process's own reading grows while it works (over a few
        scheduler ticks: a running thread's sum is brought up to date at
        ticks and switches)."""
        before = ceiling.threadCpuNs(os.getpid())
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        self.assertGreater(ceiling.threadCpuNs(os.getpid()), before)

    def test_row(self) -> None:
        """A round's row has the reactor's share of wall time and the bytes check."""
        result = {
            "rate": 1000.0,
            "p99_us": 900,
            "seconds": 2.0,
            "completed": 2000,
            "errors": 0,
            "bytes_read": 2000 * 28,
            "client_cpu_share": 0.3,
            "threads": 1,
        }
        r = ceiling.CeilingRound("hello", "ours", 0.1, 8, result, 0.19, 0.97)
        row = ceiling.row(r, 28)
        self.assertAlmostEqual(row["reactorShare"], 0.095)
        self.assertTrue(row["bytesOk"])
        self.assertFalse(ceiling.row(r, 27)["bytesOk"])
        self.assertTrue(ceiling.saturated(row, 0.95))
        self.assertFalse(ceiling.saturated(row, 0.96))


class WhereTests(SynchronousTestCase):
    """
    Where a reactor under a quota saturates, and what a core would take.
    """

    def _rows(self):
        return [
            _row("daytime", "ours", 0.5, 1, 12000, 0.40),
            _row("daytime", "ours", 0.5, 4, 20000, 0.49),
            _row("daytime", "ours", 0.5, 8, 22000, 0.50),
            _row("daytime", "ours", 0.25, 1, 8000, 0.25),
            _row("daytime", "ours", 0.25, 8, 10000, 0.25),
            _row("daytime", "xinetd", 0.5, 8, 20000, 0.30),
            _row("hello", "ours", 0.1, 8, 1500, 0.10),
            _row("hello", "ours", 0.05, 8, 700, 0.03),
        ]

    def test_point(self) -> None:
        """The lowest concurrency at 95% of the quota."""
        point = ceiling.ceilingPoint(self._rows(), "daytime", "ours", 0.5, 0.95)
        self.assertEqual(point["concurrency"], 4)
        self.assertIsNone(
            ceiling.ceilingPoint(self._rows(), "daytime", "xinetd", 0.5, 0.95)
        )

    def test_perCore(self) -> None:
        """The best saturated rate over the share."""
        self.assertEqual(
            ceiling.perCore(self._rows(), "daytime", "ours", 0.5, 0.95), 44000
        )
        self.assertEqual(
            ceiling.perCore(self._rows(), "daytime", "ours", 0.25, 0.95), 40000
        )
        self.assertIsNone(ceiling.perCore(self._rows(), "hello", "ours", 0.05, 0.95))

    def test_describe(self) -> None:
        """Each quota: where it saturated and a core's rate, or how close it came."""
        self.assertEqual(
            ceiling.describe(self._rows(), "daytime", "ours", 0.95),
            "25% quota: C=1, 8000 conns/s, so 40000/s a core;"
            " 50% quota: C=4, 20000 conns/s, so 44000/s a core",
        )
        self.assertEqual(
            ceiling.describe(self._rows(), "hello", "ours", 0.95),
            "5% quota: not reached (at most 60% of it);"
            " 10% quota: C=8, 1500 conns/s, so 15000/s a core",
        )
        self.assertEqual(ceiling.describe([], "hello", "ours", 0.95), "not measured")

    def test_format(self) -> None:
        """The table has the share of the quota used and the throttling."""
        text = ceiling.formatCeiling(self._rows(), 0.95)
        self.assertIn(
            "| daytime | ours | 50% | 4 | 20000 | 2.00 | 49.0% | 98% | 90% | 40% |",
            text,
        )
        self.assertIn(
            "- daytime, xinetd: reactor at 95% of its quota: 50% quota: not reached",
            text,
        )

    def test_goals(self) -> None:
        """Found when every quota of ours saturated; xinetd beside."""
        rows = self._rows()
        daytime, hello = goals.ceilingGoals([], "ours", rows)
        self.assertEqual(daytime.status, goals.MET)
        self.assertIn("under a quota: 25% quota: C=1", daytime.value)
        self.assertIn("xinetd 50% quota: not reached", daytime.value)
        self.assertEqual(hello.status, goals.NOT_MET)
        fixed = [r for r in rows if r["share"] != 0.05]
        self.assertEqual(goals.ceilingGoals([], "ours", fixed)[1].status, goals.MET)
        self.assertEqual(goals.ceilingGoals([], "ours", [])[0].status, goals.NOT_RUN)


class RealQuotaTests(SynchronousTestCase):
    """
    A quota on a real process, where this process may make one.
    """

    def test_quota(self) -> None:
        """The process is under the quota, its CPU is held to it, and close
        puts it back and removes the cgroup."""
        try:
            quota = ceiling.CpuQuota(0.1, f"xinetd-test-{os.getpid()}")
        except (ceiling.QuotaUnavailable, OSError) as e:
            raise self.skipTest(f"no CPU quota here: {e}") from e
        self.addCleanup(quota.close)
        spin = subprocess.Popen(
            [sys.executable, "-c", "import sys\nsys.stdin.read(1)\nwhile True: pass"],
            stdin=subprocess.PIPE,
        )
        self.addCleanup(spin.wait)
        self.addCleanup(spin.kill)
        quota.add(spin.pid)
        self.assertIn(str(spin.pid), (quota.path / "cgroup.procs").read_text().split())
        before = quota.stat()
        assert spin.stdin is not None
        spin.stdin.write(b"x")
        spin.stdin.flush()
        # Spin until the quota has throttled it: bounded by its own count.
        for _ in range(200):
            if quota.stat().get("nr_throttled", 0) > before.get("nr_throttled", 0):
                break
            os.sched_yield()
            subprocess.call(["sleep", "0.01"])
        self.assertGreater(quota.stat()["nr_throttled"], before.get("nr_throttled", 0))
        quota.close()
        self.assertFalse(quota.path.exists())
        self.assertIsNone(spin.poll())
