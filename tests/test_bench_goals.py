"""
Tests for bench/goals.py: each goal of issue 12 judged from made-up rows and
readings (never a timing).
"""

from __future__ import annotations

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.benchload import load

benchlib = load("benchlib")
goals = load("goals")


def _row(workload, variant, daemon, conc, rate, p99=3000.0, parentShare=0.0):
    return {
        "workload": workload,
        "variant": variant,
        "daemon": daemon,
        "concurrency": conc,
        "rate": rate,
        "p99us": p99,
        "parentShare": parentShare,
        "helperShare": 0.0,
        "clientCpu": 0.1,
    }


def _byGoal(lines):
    return {g.goal: g for g in lines}


class SpawnGoalsTests(SynchronousTestCase):
    """
    The spawn path: rate ratios, p99 and the CPU burner.
    """

    def test_rate(self) -> None:
        """1.3x xinetd's rate is met, less is not."""
        rows = [
            _row("hello", "1 svc", "xinetd", 1, 1000),
            _row("hello", "1 svc", "ours", 1, 1300),
            _row("hello", "1 svc", "xinetd", 8, 2000),
            _row("hello", "1 svc", "ours", 8, 2500),
        ]
        lines = _byGoal(goals.spawnGoals(rows))
        c1 = lines["spawn hello, 1 svc, C=1: rate"]
        self.assertEqual((c1.status, c1.target), (goals.MET, ">= 1.3x"))
        self.assertTrue(c1.value.startswith("1.30x (1300 vs 1000 conns/s)"))
        self.assertEqual(lines["spawn hello, 1 svc, C=8: rate"].status, goals.NOT_MET)

    def test_p99(self) -> None:
        """p99 no worse than xinetd's: equal is met, higher is not."""
        rows = [
            _row("hello", "1000 svc", "xinetd", 1, 1000, p99=2000),
            _row("hello", "1000 svc", "ours", 1, 1000, p99=2000),
            _row("hello", "1000 svc", "xinetd", 8, 1000, p99=2000),
            _row("hello", "1000 svc", "ours", 8, 1000, p99=2100),
        ]
        lines = _byGoal(goals.spawnGoals(rows))
        self.assertEqual(lines["spawn hello, 1000 svc, C=1: p99"].status, goals.MET)
        c8 = lines["spawn hello, 1000 svc, C=8: p99"]
        self.assertEqual(c8.status, goals.NOT_MET)
        self.assertIn("2.10 vs 2.00 ms", c8.value)

    def test_burner(self) -> None:
        """With the burner the target is 1.0x, on the burn rows only."""
        rows = [
            _row("hello", "burn, 1 svc", "xinetd", 8, 1000),
            _row("hello", "burn, 1 svc", "ours", 8, 1000),
        ]
        line = _byGoal(goals.spawnGoals(rows))["spawn hello, CPU burner, C=8: rate"]
        self.assertEqual(line.status, goals.MET)

    def test_notRun(self) -> None:
        """A goal without both daemons' rows is not run, not failed."""
        rows = [_row("hello", "1 svc", "ours", 1, 5000)]
        lines = goals.spawnGoals(rows)
        self.assertEqual(len(lines), 10)
        self.assertEqual({g.status for g in lines}, {goals.NOT_RUN})

    def test_otherDaemon(self) -> None:
        """The daemon judged can be named (ours-helper and the like)."""
        rows = [
            _row("hello", "1 svc", "xinetd", 1, 1000),
            _row("hello", "1 svc", "ours-helper", 1, 2000),
        ]
        lines = _byGoal(goals.spawnGoals(rows, "ours-helper"))
        self.assertEqual(lines["spawn hello, 1 svc, C=1: rate"].status, goals.MET)


class InprocessGoalsTests(SynchronousTestCase):
    """
    Internal daytime and echo.
    """

    def test_targets(self) -> None:
        """Daytime needs 1.0x, echo 4x; echo is judged at each C measured."""
        rows = [
            _row("daytime", "", "xinetd", 1, 1000),
            _row("daytime", "", "ours", 1, 1000),
            _row("echo", "", "xinetd", 1, 1000),
            _row("echo", "", "ours", 1, 3900),
            _row("echo", "", "xinetd", 8, 1000),
            _row("echo", "", "ours", 8, 4000),
        ]
        lines = _byGoal(goals.inprocessGoals(rows))
        self.assertEqual(lines["internal daytime, C=1: rate"].status, goals.MET)
        self.assertEqual(lines["internal daytime, C=8: rate"].status, goals.NOT_RUN)
        self.assertEqual(lines["internal echo 1 KiB, C=1: rate"].status, goals.NOT_MET)
        self.assertEqual(lines["internal echo 1 KiB, C=8: rate"].status, goals.MET)

    def test_echoAlwaysAtEight(self) -> None:
        """Echo at C=8 is a goal even when it was not measured."""
        lines = _byGoal(goals.inprocessGoals([]))
        self.assertEqual(lines["internal echo 1 KiB, C=8: rate"].status, goals.NOT_RUN)


def _memory(idleProcesses=3, pss=30 * 1024, crypto=False, first=(10.0, 60.0, 20.0)):
    T = benchlib.TreeMemory
    return goals.MemoryResult(
        stages={
            "started": {"xinetd": T(1, 2000, 4000), "ours": T(3, 40000, 60000)},
            "busy": {"xinetd": T(1, 2000, 4000), "ours": T(6, 60000, 90000)},
            "idle": {"xinetd": T(1, 2000, 4000), "ours": T(idleProcesses, pss, 50000)},
        },
        firstConnectionMs={"xinetd": [1.0, 2.0], "ours": list(first)},
        cryptography={"xinetd": False, "ours": crypto},
        idleWait=15.0,
    )


class MemoryGoalsTests(SynchronousTestCase):
    """
    The footprint goals.
    """

    def test_met(self) -> None:
        """Under 35 MiB, no cryptography, helpers gone, first connection fast."""
        lines = goals.memoryGoals(_memory())
        self.assertEqual([g.status for g in lines], [goals.MET] * 4)
        self.assertIn(
            "30.0 MiB (RSS 48.8 MiB, 3 processes; xinetd 2.0 MiB)", lines[0].value
        )
        self.assertIn(
            "3 at start, 6 after one connection per user, 3 after 15 s", lines[2].value
        )
        self.assertTrue(lines[3].value.startswith("20.0 ms"))
        self.assertIn("xinetd 1.5 ms", lines[3].value)

    def test_notMet(self) -> None:
        """Too much PSS, cryptography mapped, helpers left, slow first connection."""
        lines = goals.memoryGoals(
            _memory(idleProcesses=4, pss=36 * 1024, crypto=True, first=(60.0,))
        )
        self.assertEqual([g.status for g in lines], [goals.NOT_MET] * 4)

    def test_countsNamed(self) -> None:
        """The goal names the service and user counts measured."""
        memory = attr.evolve(_memory(), services=200, users=2)
        self.assertEqual(
            goals.memoryGoals(memory)[0].goal, "idle tree PSS, 200 svc, 2 users"
        )
        line = goals.startupGoal({"ours": [0.3], "floor": [0.2]}, 200)
        self.assertEqual(line.goal, "start-up, 200 svc, ours / floor")

    def test_notRun(self) -> None:
        """Without the memory mode, the four goals are not run."""
        lines = goals.memoryGoals(None)
        self.assertEqual([g.status for g in lines], [goals.NOT_RUN] * 4)


class StartupGoalTests(SynchronousTestCase):
    """
    Start-up against the floor.
    """

    def test_ratioOfMedians(self) -> None:
        """The ratio is of the medians, ours over the floor."""
        line = goals.startupGoal(
            {"xinetd": [0.05], "ours": [0.3, 0.9, 0.29], "floor": [0.2, 0.2, 0.9]}
        )
        self.assertEqual(line.status, goals.MET)
        self.assertTrue(
            line.value.startswith("1.50x (ours 300 ms, floor 200 ms, xinetd 50 ms)")
        )

    def test_notMet(self) -> None:
        """Above 1.5x is not met; no data is not run."""
        self.assertEqual(
            goals.startupGoal({"ours": [0.31], "floor": [0.2]}).status, goals.NOT_MET
        )
        self.assertEqual(goals.startupGoal(None).status, goals.NOT_RUN)


class SaturationTests(SynchronousTestCase):
    """
    Where the daemon's process saturates a core.
    """

    def _rows(self):
        return [
            _row("daytime", "", "ours", 4, 9000, parentShare=0.7),
            _row("daytime", "", "ours", 1, 5000, parentShare=0.5),
            _row("daytime", "", "ours", 16, 11000, parentShare=0.99),
            _row("daytime", "", "ours", 8, 10000, parentShare=0.96),
            _row("daytime", "", "xinetd", 8, 20000, parentShare=0.6),
        ]

    def test_lowestConcurrency(self) -> None:
        """The point is the lowest concurrency at 95% or more."""
        point = goals.saturationPoint(self._rows(), "daytime", "ours")
        self.assertEqual(point["concurrency"], 8)
        self.assertIsNone(goals.saturationPoint(self._rows(), "daytime", "xinetd"))

    def test_ceilingGoals(self) -> None:
        """Found for ours is met (xinetd beside); no hello rows is not run."""
        daytime, hello = goals.ceilingGoals(self._rows())
        self.assertEqual(daytime.status, goals.MET)
        self.assertIn(
            "C=8, 10000 conns/s (parent 96%); peak 11000 conns/s at C=16", daytime.value
        )
        self.assertIn("xinetd not reached (at most 60% at C=8)", daytime.value)
        self.assertEqual(hello.status, goals.NOT_RUN)

    def test_format(self) -> None:
        """The saturation table has the shares and one line per daemon."""
        text = goals.formatSaturation(self._rows())
        self.assertIn("| daytime | ours | 16 | 11000 | 3.00 | 99% | 0% | 10% |", text)
        self.assertIn("- daytime, xinetd: parent at 95% of a core: not reached", text)


class EvaluateTests(SynchronousTestCase):
    """
    The whole Goals section.
    """

    def test_everyGoal(self) -> None:
        """An empty report lists every goal, each not run."""
        lines = goals.evaluate(goals.Report())
        self.assertEqual(len(lines), 10 + 3 + 4 + 1 + 2)
        self.assertEqual({g.status for g in lines}, {goals.NOT_RUN})

    def test_format(self) -> None:
        """The table ends with how many measured goals are met."""
        report = goals.Report(memory=_memory())
        text = goals.formatGoals(goals.evaluate(report))
        self.assertIn("| first connection after idle (median) | 20.0 ms", text)
        self.assertTrue(text.endswith("4 of 4 goals measured are met (20 goals)."))

    def test_formatMemory(self) -> None:
        """The memory table has one line per stage and daemon."""
        text = goals.formatMemory(_memory())
        self.assertIn(
            "| after one connection per user | ours | 6 | 58.6 | 87.9 |", text
        )
        self.assertIn("- ours: first connection after 15 s idle, median 20.0 ms", text)


def _busy(row, machineUs, share, daemonUs):
    return dict(
        row, machineUsPerConn=machineUs, machineShare=share, daemonUsPerConn=daemonUs
    )


class BusyBoundTests(SynchronousTestCase):
    """
    What a saturated machine's CPU a connection leaves our daemon.
    """

    def test_bound(self) -> None:
        """
        Our machine CPU a connection, less our daemon's and helpers', bounds
        the rate with our own part at zero; said against xinetd's rate.
        """
        rows = [
            _busy(_row("hello", "1 svc", "xinetd", 8, 2500), 800.0, 2.0, 80.0),
            _busy(_row("hello", "1 svc", "ours", 8, 2700), 740.0, 2.0, 100.0),
        ]
        self.assertEqual(
            goals.formatBusyBound(rows, "ours", 2),
            [
                "- hello [1 svc] C=8: ours kept 2.00 of 2 CPUs busy, 740 us of"
                " CPU a connection, 100 of them its daemon's and helpers': with"
                " those at zero, at most 1.25x xinetd here (ours: 1.08x)"
            ],
        )

    def test_notSaturated(self) -> None:
        """
        A round that left CPUs idle, one beside the burner, one that could
        not read the machine's CPU, one without xinetd's row, and in-process
        rows bound nothing.
        """
        rows = [
            _busy(_row("hello", "1 svc", "xinetd", 1, 1200), 900.0, 1.2, 100.0),
            _busy(_row("hello", "1 svc", "ours", 1, 1300), 900.0, 1.2, 200.0),
            _busy(_row("hello", "burn, 1 svc", "xinetd", 8, 1800), 1100.0, 2.0, 80.0),
            _busy(_row("hello", "burn, 1 svc", "ours", 8, 1500), 1100.0, 2.0, 80.0),
            _busy(_row("hello-raw", "1 svc", "xinetd", 8, 5000), 300.0, 2.0, 80.0),
            _busy(_row("hello-raw", "1 svc", "ours", 8, 8000), None, None, 80.0),
            _busy(_row("hello", "1000 svc", "ours", 8, 2000), 900.0, 2.0, 80.0),
            _busy(_row("daytime", "", "xinetd", 8, 50000), 40.0, 2.0, 20.0),
            _busy(_row("daytime", "", "ours", 8, 50000), 40.0, 2.0, 20.0),
        ]
        self.assertEqual(goals.formatBusyBound(rows, "ours", 2), [])

    def test_share(self) -> None:
        """Nine tenths of the CPUs busy are enough."""
        rows = [
            _busy(_row("hello-raw", "1 svc", "xinetd", 8, 5000), 400.0, 1.9, 80.0),
            _busy(_row("hello-raw", "1 svc", "ours", 8, 8000), 250.0, 1.8, 50.0),
            _busy(_row("hello", "1 svc", "xinetd", 8, 5000), 400.0, 1.9, 80.0),
            _busy(_row("hello", "1 svc", "ours", 8, 8000), 250.0, 1.79, 50.0),
        ]
        (line,) = goals.formatBusyBound(rows, "ours", 2)
        self.assertIn("kept 1.80 of 2 CPUs busy", line)
        self.assertIn(
            f"at most {2e6 / 200 / 5000:.2f}x xinetd here (ours: 1.60x)", line
        )


class FloorTests(SynchronousTestCase):
    """
    The spawn floor beside the 1-service C=1 rows.
    """

    def test_lines(self) -> None:
        """
        The floor, each daemon's time a connection and what it leaves, and
        the best ratio a super-server costing nothing could reach.
        """
        rows = [
            _row("hello", "1 svc", "xinetd", 1, 1000),
            _row("hello", "1 svc", "ours", 1, 1250),
            _row("hello", "1 svc", "ours", 8, 9999),
        ]
        self.assertEqual(
            goals.formatFloor(500.0, rows),
            [
                "- spawn floor: vfork, exec and wait of the hello program, one at"
                " a time, nothing else: 500 us (at most 2000 starts/s on one core)",
                "- hello [1 svc] C=1, xinetd: 1000 us a connection, 500 us of it"
                " beside the floor",
                "- hello [1 svc] C=1, ours: 800 us a connection, 300 us of it"
                " beside the floor",
                "- best C=1 spawn ratio against xinetd here, for a super-server"
                " costing nothing: 2.00x",
            ],
        )

    def test_floorOnly(self) -> None:
        """Without the C=1 rows only the floor is said."""
        self.assertEqual(len(goals.formatFloor(400.0, [])), 1)

    def test_rawFloor(self) -> None:
        """
        With hello-raw's floor, the part of hello's that is its C library's
        start-up, and hello-raw's rows against their own floor.
        """
        rows = [
            _row("hello", "1 svc", "xinetd", 1, 1000),
            _row("hello-raw", "1 svc", "xinetd", 1, 2500),
            _row("hello-raw", "1 svc", "ours", 1, 4000),
        ]
        self.assertEqual(
            goals.formatFloor(500.0, rows, rawFloorUs=50.0)[3:],
            [
                "- hello-raw (hello's line with no C library): 50 us a start, so"
                " 450 us of hello's are its C library's start-up; the spawn"
                " goals are judged on hello",
                "- hello-raw [1 svc] C=1, xinetd: 400 us a connection, 350 us of"
                " it beside the floor",
                "- hello-raw [1 svc] C=1, ours: 250 us a connection, 200 us of it"
                " beside the floor",
                "- best C=1 spawn ratio against xinetd here (hello-raw), for a"
                " super-server costing nothing: 8.00x",
            ],
        )

    def test_rawDoesNotJudge(self) -> None:
        """
        The spawn goals read the hello rows only: hello-raw rows that would
        meet them leave them not run.
        """
        rows = [
            _row("hello-raw", "1 svc", "xinetd", 1, 1000),
            _row("hello-raw", "1 svc", "ours", 1, 4000),
        ]
        lines = goals.spawnGoals(rows)
        self.assertEqual({line.status for line in lines}, {goals.NOT_RUN})


class FormatReferencesTests(SynchronousTestCase):
    """
    The forkservers beside xinetd and ours.
    """

    def test_lines(self) -> None:
        """
        Each forkserver's rate and p99 against xinetd's, and ours against
        its rate, with what it does for a connection.
        """
        rows = [
            _row("hello", "1 svc", "xinetd", 1, 1000, p99=3000.0),
            _row("hello", "1 svc", "ours", 1, 1500),
            _row("hello", "1 svc", "tcpserver", 1, 1800),
            _row("hello", "1 svc", "forkserver1", 1, 2000, p99=1500.0),
            _row("hello", "1 svc", "forkserver2", 1, 2500, p99=1200.0),
            _row("hello", "1 svc", "forkserver-relay", 1, 1875, p99=2400.0),
        ]
        self.assertEqual(
            goals.formatReferences(rows, "ours"),
            [
                "- hello [1 svc] C=1: forkserver1 (1 process accepting, vfork,"
                " exec, nothing else) 2.00x xinetd's rate, p99 0.50x; ours"
                " 0.75x its rate",
                "- hello [1 svc] C=1: forkserver2 (2 processes accepting, vfork,"
                " exec, nothing else) 2.50x xinetd's rate, p99 0.40x; ours"
                " 0.60x its rate",
                "- hello [1 svc] C=1: forkserver-relay (one process accepts, a"
                " second gets it over a socket pair, vforks, execs) 1.88x"
                " xinetd's rate, p99 0.80x; ours 0.80x its rate",
            ],
        )

    def test_oursNamed(self) -> None:
        """Ours is the daemon named, at the forkserver's own concurrency."""
        rows = [
            _row("hello", "1 svc", "xinetd", 8, 1000),
            _row("hello", "1 svc", "ours", 8, 9999),
            _row("hello", "1 svc", "ours-helper", 8, 3000),
            _row("hello", "1 svc", "ours-helper", 1, 7777),
            _row("hello", "1 svc", "forkserver1", 8, 2000),
        ]
        (line,) = goals.formatReferences(rows, "ours-helper")
        self.assertTrue(line.startswith("- hello [1 svc] C=8: forkserver1 "))
        self.assertTrue(line.endswith("; ours-helper 1.50x its rate"))

    def test_nothingBeside(self) -> None:
        """
        A forkserver row without xinetd's or ours beside it (same workload,
        variant and concurrency), or with no rate, says nothing.
        """
        rows = [
            _row("hello", "1 svc", "forkserver1", 1, 2000),
            _row("hello", "1 svc", "ours", 1, 1500),
            _row("hello", "1 svc", "xinetd", 8, 1000),
            _row("hello", "burn, 1 svc", "xinetd", 1, 1000),
            _row("hello", "burn, 1 svc", "forkserver2", 1, 2000),
            _row("hello-raw", "1 svc", "xinetd", 1, 1000),
            _row("hello-raw", "1 svc", "ours", 1, 1000),
            _row("hello-raw", "1 svc", "forkserver-relay", 1, 0),
            _row("hello", "1000 svc", "xinetd", 1, 0),
            _row("hello", "1000 svc", "ours", 1, 1000),
            _row("hello", "1000 svc", "forkserver1", 1, 1000),
        ]
        self.assertEqual(goals.formatReferences(rows, "ours"), [])

    def test_notForkservers(self) -> None:
        """xinetd, tcpserver and ours rows alone give no line."""
        rows = [
            _row("hello", "1 svc", "xinetd", 1, 1000),
            _row("hello", "1 svc", "ours", 1, 1500),
            _row("hello", "1 svc", "tcpserver", 1, 1800),
        ]
        self.assertEqual(goals.formatReferences(rows, "ours"), [])
