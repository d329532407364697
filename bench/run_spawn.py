#!/usr/bin/env python3
"""
Performance benchmark: xinetd-twisted against real xinetd, on loopback, by hand.

Both daemons read the same xinetd.conf (only the ports differ), run as root
so that C{user = nobody} works, and are measured in alternation: for each
workload and concurrency, R rounds of N connections, each round running the
daemons in swapped order.  The modes (all but saturation and ceiling run by
default):

  - spawn: spawn hello with 1 and with 1000 services configured;
  - burn: spawn hello while a bounded CPU burner keeps one core busy;
  - inprocess: internal daytime and echo 1 KiB;
  - memory: the idle process tree with 1000 services over 3 users (PSS,
    RSS, processes) and the first connection after an idle wait;
  - startup: exec to every port listening, 1000 services, beside the floor;
  - saturation: rising concurrency until the daemon's own process uses a
    whole core (internal daytime and spawn hello);
  - ceiling: the same with the daemon's process under a CPU quota, so that
    its reactor saturates on a machine that cannot offer it a core's rate
    (see bench/ceiling.py).

It prints the tables, then a Goals section judging each goal of issue 12.

    sudo python3 bench/run_spawn.py                 # every mode but saturation
    sudo python3 bench/run_spawn.py --quick         # the same, short
    sudo python3 bench/run_spawn.py --modes memory --idle-wait 5
    sudo python3 bench/run_spawn.py --saturation --quick
    sudo python3 bench/run_spawn.py --ceiling

Never run in CI: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# Run as a script: make the bench modules importable whatever the cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import ceiling  # noqa: E402
import daemons  # noqa: E402
import goals  # noqa: E402
import startup  # noqa: E402
from benchlib import Round, Workload  # noqa: E402
from daemons import XINETD  # noqa: E402
from phases import (  # noqa: E402
    Bench,
    PhaseFailed,
    Step,
    runPhase,
    timedFetch,
    warmUp,
)

MODES = ("spawn", "burn", "inprocess", "memory", "startup", "saturation", "ceiling")
DEFAULT_MODES = MODES[:-2]
# Connections per saturation run: more than any level reaches in its time.
SATURATION_CAP = 1_000_000


def isReference(name: str) -> bool:
    """
    Whether daemon C{name} is not ours: xinetd, tcpserver or a forkserver.
    """
    return name in ("xinetd", "tcpserver") or name.startswith(daemons.FORKSERVER_PREFIX)


def spawnPlan(
    args: argparse.Namespace, known: Dict[str, Workload], users: Sequence[str]
) -> List[Tuple[str, List[Workload], List[Step]]]:
    """
    The phases of the spawn and burn modes: one per service count
    (C{--services}), the burner in the phase of the smallest.  hello-raw,
    if measured, has phases of its own beside them, so that every phase
    has the service count it is named by.

    @return: for each phase its tag, the services configured (the measured
        ones, then hello services never connected to, their users spread
        over C{users}) and its steps.
    """
    measured = [known[w] for w in args.workloads]
    groups = [
        ("", [w for w in measured if w.name != benchlib.RAW_HELLO]),
        ("-raw", [w for w in measured if w.name == benchlib.RAW_HELLO]),
    ]
    plan = []
    for n in args.services:
        for suffix, group in groups:
            total = max(n, len(group))
            steps = []
            if "spawn" in args.modes:
                variant = goals.spawnVariant(total)
                steps += [
                    Step(w, variant, args.concurrency, args.connections, args.rounds)
                    for w in group
                ]
            if "burn" in args.modes and n == min(args.services) and not suffix:
                burn = Step(
                    known["hello"],
                    goals.burnVariant(total),
                    args.concurrency,
                    args.connections,
                    args.rounds,
                    burn=True,
                )
                steps.append(burn)
            if not steps:
                continue
            configured = list({s.workload.name: s.workload for s in steps}.values())
            idle = benchlib.spread(
                known["hello"], total - len(configured), users, "idle"
            )
            plan.append((f"spawn-{total}{suffix}", [*configured, *idle], steps))
    return plan


def spawnPhases(bench: Bench) -> List[Round]:
    """
    Run the phases of L{spawnPlan}.
    """
    rounds: List[Round] = []
    for tag, services, steps in spawnPlan(bench.args, bench.known, bench.users):
        rounds += runPhase(bench, tag, services, steps)
    return rounds


def inprocessPhase(bench: Bench) -> List[Round]:
    """
    Internal daytime and echo 1 KiB, at the C{--concurrency} values.
    """
    args = bench.args
    steps = [
        Step(
            bench.known[w],
            "",
            args.concurrency,
            args.inprocess_connections,
            args.rounds,
        )
        for w in ("daytime", "echo")
    ]
    return runPhase(bench, "inprocess", [s.workload for s in steps], steps)


def saturationPhase(bench: Bench) -> List[Round]:
    """
    Internal daytime and echo, then spawn hello, at each of
    C{--saturation-levels}, each level run for C{--saturation-seconds} (the
    clock ticks are 10 ms: CPU shares need runs of seconds).  The internal
    services are a phase of their own, where C{--reuseport} adds its daemon.
    """
    args, known = bench.args, bench.known
    levels = args.saturation_levels
    seconds = args.saturation_seconds
    rounds: List[Round] = []
    for tag, names in (
        ("saturation", ("daytime", "echo")),
        ("saturation-spawn", ("hello",)),
    ):
        steps = [
            Step(known[w], "", levels, SATURATION_CAP, 1, timeLimit=seconds)
            for w in names
        ]
        rounds += runPhase(bench, tag, [s.workload for s in steps], steps)
    return rounds


def ceilingPhase(bench: Bench) -> List[Dict]:
    """
    Internal daytime (ours and xinetd) at C{--ceiling-share} of a CPU and
    half of it, then spawn hello (ours only: xinetd's servers would share
    its quota) at C{--ceiling-spawn-share} and half of it, each level of
    C{--saturation-levels} for C{--saturation-seconds}.

    @return: L{ceiling.row}s.
    """
    ours = next((n for n in bench.names if not isReference(n)), None)
    rows: List[Dict] = []
    if ours is None:
        print("  ceiling mode left out: it measures our daemon (--only xinetd)")
        return rows
    try:
        _ceilingRuns(bench, rows, ours)
    except ceiling.QuotaUnavailable as e:
        print(f"  ceiling mode left out: {e}")
    return rows


def _ceilingRuns(bench: Bench, rows: List[Dict], ours: str) -> None:
    args, known = bench.args, bench.known
    for tag, name, share, only in (
        ("ceiling", "daytime", args.ceiling_share, (ours, "xinetd")),
        ("ceiling-spawn", "hello", args.ceiling_spawn_share, (ours,)),
    ):
        w = known[name]
        print(
            f"\n{tag}: {name}, each daemon's process at {share:.0%} of a CPU and half"
        )
        # --helper-idle 0: no helper retires and is started again by the
        # daemon, under its quota, during the runs.
        with bench.running(tag, [w], [w], only, ["--helper-idle", "0"]) as ds:
            warmUp(bench, ds, [w])
            for s in (share, share / 2):
                rows += ceiling.measureUnderQuota(
                    bench.client,
                    ds,
                    w,
                    s,
                    args.saturation_levels,
                    args.saturation_seconds,
                    SATURATION_CAP,
                    args.client_threads,
                )


def memoryMode(bench: Bench) -> goals.MemoryResult:
    """
    The idle footprint with C{--memory-services} over C{--users} users: the
    tree at start, after one connection to a service of each user, and after
    the idle wait; then the first connection after each idle wait.
    """
    args = bench.args
    hello = bench.known["hello"]
    services = benchlib.spread(hello, args.memory_services, bench.users, "m")
    perUser = [next(w for w in services if w.user == u) for u in bench.users]
    exclude = [Path(hello.server or "").name]
    # Our helpers retire after --helper-idle (the sub-helpers, then the
    # root helper one timeout later): a short one keeps the waits short.
    ds = bench.make("memory", services, ["--helper-idle", f"{args.helper_idle:g}"])
    stages: Dict[str, Dict[str, benchlib.TreeMemory]] = {}
    first: Dict[str, List[float]] = {d.name: [] for d in ds}

    def snapshot(stage: str) -> None:
        stages[stage] = {
            d.name: benchlib.treeMemory(d.pid, exclude=exclude) for d in ds
        }

    print(f"\nmemory: {len(services)} services over users {', '.join(bench.users)}")
    try:
        for d in ds:
            d.start()
        for d in ds:
            try:
                d.waitListening()
            except RuntimeError as e:
                raise PhaseFailed(f"{e}\n--- {d.logPath} ---\n{d.log()[-4000:]}") from e
        time.sleep(1.0)
        snapshot("started")
        for d in ds:
            for w in perUser:
                timedFetch(d.ports[w.name])
        time.sleep(0.5)
        snapshot("busy")
        crypto: Dict[str, bool] = {}
        for rep in range(args.idle_repeats):
            print(f"  idle wait {rep + 1}/{args.idle_repeats}: {args.idle_wait:g} s")
            time.sleep(args.idle_wait)
            if rep == 0:
                snapshot("idle")
                for d in ds:
                    pids = benchlib.treePids(d.pid, exclude=exclude)
                    crypto[d.name] = benchlib.mapsMention(pids, "/cryptography/")
            for d in ds if rep % 2 == 0 else list(reversed(ds)):
                first[d.name].append(timedFetch(d.ports[services[0].name]))
    finally:
        for d in ds:
            d.stop()
    return goals.MemoryResult(
        stages, first, crypto, args.idle_wait, len(services), len(bench.users)
    )


def startupMode(bench: Bench) -> Dict[str, List[float]]:
    """
    Exec to every port listening with C{--startup-services}, beside the floor.
    """
    args = bench.args
    services = benchlib.spread(
        bench.known["hello"], args.startup_services, bench.users, "s"
    )
    kinds = {"both": startup.KINDS, "ours": ("ours", "floor"), "xinetd": ("xinetd",)}
    print(f"\nstartup: {len(services)} services, {args.startup_rounds} rounds")
    return startup.measureStartup(
        bench.python,
        bench.tmp,
        services,
        args.startup_rounds,
        args.ours_option,
        kinds[args.only],
    )


def _ints(text: str) -> List[int]:
    return [int(c) for c in text.split(",") if c]


def _forkservers(text: str) -> List[str]:
    """
    The C{--forkservers} items: process counts (as C{int} spells them, so
    that C{01} names the same C{forkserver1}) and L{daemons.FORKSERVER_RELAY},
    each once, in the order given; each item is a daemon's name, and so its
    log's.
    """
    items: List[str] = []
    for item in (c.strip() for c in text.split(",")):
        if not item:
            continue
        if item != daemons.FORKSERVER_RELAY:
            if not (item.isascii() and item.isdigit() and int(item) > 0):
                raise argparse.ArgumentTypeError(
                    f"{item!r}: a process count (1 or more) or"
                    f" {daemons.FORKSERVER_RELAY!r}"
                )
            item = str(int(item))
        if item not in items:
            items.append(item)
    return items


def parseArgs(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=3000, help="per spawn round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=_ints, default=[1, 8], help="e.g. 1,8")
    p.add_argument(
        "--workloads",
        default=None,
        help="spawn mode: comma-separated from hello, hello-raw, cat, echo,"
        " daytime (default hello,hello-raw: hello-raw is left out where it"
        " cannot be built)",
    )
    p.add_argument("--only", choices=("both", "xinetd", "ours"), default="both")
    p.add_argument(
        "--same-session",
        action="store_true",
        help="start the daemons in the bench's own session, the CPU burner's"
        " (the arrangement of the first nine passes), instead of each in a"
        " session of its own, as systemd and a daemonizing start give them",
    )
    p.add_argument(
        "--log",
        action="store_true",
        help="log_type = FILE with log_on_success = PID HOST EXIT DURATION",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="800 connections, 1 round, 2 idle waits, 1 start-up round",
    )
    p.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds per client run"
    )
    p.add_argument(
        "--spawner",
        default="",
        help="comma-separated --spawner values for our daemon, one daemon each"
        " (e.g. helper,plain); default: the plugin's default, one daemon",
    )
    p.add_argument(
        "--services",
        type=_ints,
        default=[1, 1000],
        help="spawn mode: services configured, one phase each (e.g. 1,1000);"
        " the ones not measured are hello services never connected to",
    )
    p.add_argument(
        "--extra-services",
        type=int,
        default=None,
        help="as --services with the measured workloads plus this many",
    )
    p.add_argument(
        "--users",
        type=int,
        default=3,
        help="spread the unmeasured services' user over K system users"
        " (nobody first); the measured hello runs as nobody",
    )
    p.add_argument(
        "--metrics",
        action="store_true",
        help="also run our daemon with --metrics on (daemon ours-metrics)",
    )
    p.add_argument(
        "--reuseport",
        type=int,
        default=0,
        metavar="N",
        help="in the phases of internal services (inprocess, saturation's"
        " daytime and echo) also run N of our daemons sharing the ports with"
        " flags = REUSEPORT (daemon ours-reuseportN)",
    )
    p.add_argument(
        "--no-tcpserver",
        dest="tcpserver",
        action="store_false",
        help="leave out tcpserver (ucspi-tcp), run by default where installed"
        " in the phases of one spawned service, as a reference",
    )
    p.add_argument(
        "--forkservers",
        type=_forkservers,
        default=["1", "2", daemons.FORKSERVER_RELAY],
        metavar="N,...",
        help="in the phases of one spawned service also run bench/forkserver.c"
        " (accept, vfork, exec; nothing else) as references: forkserverN with"
        " N processes accepting for each count N, forkserver-relay (one"
        " process accepting, a second starting) for 'relay'; default"
        " 1,2,relay; empty for none",
    )
    p.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated from {', '.join(MODES)}, or all",
    )
    for mode in MODES:
        p.add_argument(
            f"--{mode}",
            action="store_true",
            help=f"run the {mode} mode (and others named)",
        )
    p.add_argument(
        "--inprocess-connections",
        type=int,
        default=None,
        help="per round of daytime and echo (default 4x --connections)",
    )
    p.add_argument(
        "--burn-bound",
        type=float,
        default=900.0,
        help="seconds after which the CPU burner stops by itself",
    )
    p.add_argument("--memory-services", type=int, default=1000)
    p.add_argument(
        "--helper-idle",
        type=float,
        default=4.0,
        help="memory mode: our daemon's --helper-idle (its default is 10 s)",
    )
    p.add_argument(
        "--idle-wait",
        type=float,
        default=None,
        help="memory mode: seconds idle before each reading and first connection "
        "(default 3 x --helper-idle: the sub-helpers go after one, the root "
        "helper after two)",
    )
    p.add_argument("--idle-repeats", type=int, default=5, help="first connections")
    p.add_argument("--startup-services", type=int, default=1000)
    p.add_argument(
        "--startup-rounds",
        type=int,
        default=None,
        help="default 7, or --rounds if more (1 with --quick): a round of the"
        " three starts takes about a second, and a median of 3 moved by a"
        " third between runs",
    )
    p.add_argument("--saturation-levels", type=_ints, default=[1, 2, 4, 8, 16, 32])
    p.add_argument(
        "--saturation-seconds",
        type=float,
        default=None,
        help="seconds per saturation level and daemon (default 3, --quick 1)",
    )
    p.add_argument(
        "--ceiling-share",
        type=float,
        default=0.5,
        help="ceiling mode: the CPU quota of each daemon's process on daytime"
        " (it runs at half of it too)",
    )
    p.add_argument(
        "--ceiling-spawn-share",
        type=float,
        default=0.1,
        help="ceiling mode: the same on spawn hello (ours only)",
    )
    p.add_argument(
        "--client-threads",
        type=int,
        default=0,
        help="load client threads for the in-process workloads at C>1"
        " (default 0: min(C, CPUs)); spawned workloads and C=1 use one",
    )
    p.add_argument("--python", default="", help="interpreter of our daemon")
    p.add_argument(
        "--ours-option",
        action="append",
        default=[],
        help="one more option for our daemon (repeatable), e.g. --ours-option=--limit=500",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    return normalise(p.parse_args(argv), p)


def normalise(
    args: argparse.Namespace, p: argparse.ArgumentParser
) -> argparse.Namespace:
    """
    Fill in the defaults that depend on other options; check the modes.
    """
    if args.quick:
        args.connections, args.rounds, args.idle_repeats = 800, 1, 2
    if args.idle_wait is None:
        args.idle_wait = 3 * args.helper_idle
    chosen = [m for m in MODES if getattr(args, m)]
    named = [m for m in args.modes.split(",") if m]
    if chosen:
        named = chosen
    elif named == ["all"]:
        named = list(MODES)
    unknown = [m for m in named if m not in MODES]
    if unknown:
        p.error(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    args.modes = named
    args.defaultWorkloads = args.workloads is None
    args.workloads = (
        ["hello", benchlib.RAW_HELLO]
        if args.workloads is None
        else args.workloads.split(",")
    )
    if args.extra_services is not None:
        args.services = [len(args.workloads) + args.extra_services]
    if args.inprocess_connections is None:
        args.inprocess_connections = 4 * args.connections
    if args.saturation_seconds is None:
        args.saturation_seconds = 1.0 if args.quick else 3.0
    if args.startup_rounds is None:
        args.startup_rounds = args.rounds if args.quick else max(args.rounds, 7)
    args.spawner = [s for s in args.spawner.split(",") if s]
    return args


def cannotRun(args: argparse.Namespace, known: Sequence[str]) -> str:
    """
    Why this run cannot go ahead, or an empty string.
    """
    if os.geteuid() != 0:
        return (
            "run_spawn.py must run as root: the services run as user = nobody,\n"
            "which both xinetd and xinetd-twisted can only set up as root."
        )
    if args.only in ("both", "xinetd") and not os.path.exists(XINETD):
        return f"{XINETD} is missing: apt-get install xinetd"
    unknown = [w for w in args.workloads if w not in known]
    if unknown:
        return f"unknown workloads: {unknown}; known: {list(known)}"
    return ""


def runModes(bench: Bench, report: goals.Report) -> None:
    """
    Run the modes asked for, filling C{report}.
    """
    modes = bench.args.modes
    rounds: List[Round] = []
    if "spawn" in modes or "burn" in modes:
        hello = bench.known["hello"].server
        if hello is not None:
            report.spawnFloor = benchlib.spawnFloor(Path(hello))
        raw = bench.known.get(benchlib.RAW_HELLO)
        if raw is not None and raw.server is not None:
            report.rawFloor = benchlib.spawnFloor(Path(raw.server))
        rounds += spawnPhases(bench)
    if "inprocess" in modes:
        rounds += inprocessPhase(bench)
    expected = {w.name: w.expectedBytes for w in bench.known.values()}
    report.rows = benchlib.summarise(rounds, expected)
    if "saturation" in modes:
        report.saturation = benchlib.summarise(saturationPhase(bench), expected)
    if "ceiling" in modes:
        report.ceiling = ceilingPhase(bench)
    if "memory" in modes:
        report.memory = memoryMode(bench)
    if "startup" in modes:
        report.startup = startupMode(bench)
        report.startupServices = bench.args.startup_services


def clientNote(asked: int) -> str:
    """
    How many threads the load client ran, for the report's heading.
    """
    many = f"{asked}" if asked > 0 else f"min(C, {len(os.sched_getaffinity(0))} CPUs)"
    return (
        "load client: 1 thread for spawned workloads and at C=1, "
        f"{many} for in-process ones (client CPU says how many each row ran)"
    )


def printReport(
    bench: Bench,
    report: goals.Report,
    loadBefore: str,
    began: float,
    cpuBefore: Optional[List[int]] = None,
) -> None:
    args = bench.args
    ours = next((n for n in bench.names if not isReference(n)), "ours")
    print()
    if report.rows:
        print(
            f"{args.rounds} rounds x {args.connections} connections (in-process"
            f" {args.inprocess_connections}), log {'FILE' if args.log else 'off'},"
            f" measured hello as user nobody, other services over {len(bench.users)}"
            f" users; {clientNote(args.client_threads)}\n"
        )
        print(benchlib.formatTable(report.rows))
        print()
        print("\n".join(bench.notes))
        if report.spawnFloor is not None:
            print()
            floor = goals.formatFloor(
                report.spawnFloor, report.rows, ours, report.rawFloor
            )
            print("\n".join(floor))
        cpus = len(os.sched_getaffinity(0))
        bound = goals.formatBusyBound(report.rows, ours, cpus)
        if bound:
            print()
            print("\n".join(bound))
        references = goals.formatReferences(report.rows, ours)
        if references:
            print()
            print("\n".join(references))
    if report.saturation:
        print("\n## Saturation\n")
        print(goals.formatSaturation(report.saturation))
    if report.ceiling:
        print("\n## Ceiling under a CPU quota\n")
        print(ceiling.formatCeiling(report.ceiling, goals.SATURATED))
    if report.memory is not None:
        print("\n## Memory\n")
        print(goals.formatMemory(report.memory))
    if report.startup is not None:
        print("\n## Start-up\n")
        print(startup.formatStartup(report.startup, args.startup_services))
    print(f"\n- load average before {loadBefore}, after {daemons.loadavg()}")
    print(f"- the run took {time.monotonic() - began:.0f} s")
    steal = daemons.describeSteal(daemons.stealShare(cpuBefore, daemons.cpuTimes()))
    print(steal)
    print(f"\n## Goals (issue 12; {ours} against xinetd)\n")
    print(goals.formatGoals(goals.evaluate(report, ours)))
    if "NOT a quiet machine" in steal:
        print(f"\n{steal[2:]}")


def main(argv: Sequence[str]) -> int:
    args = parseArgs(argv)
    client, hello = benchlib.build()
    known = benchlib.workloads(hello, benchlib.buildRawHello())
    if args.defaultWorkloads and benchlib.RAW_HELLO not in known:
        print(f"{benchlib.RAW_HELLO} cannot be built here: hello only", file=sys.stderr)
        args.workloads.remove(benchlib.RAW_HELLO)
    problem = cannotRun(args, list(known))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    python = daemons.daemonPython(args.python)
    if not daemons.hasTwisted(python):
        print(f"{python} cannot import twistd: give --python", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="xinetd-bench-"))
    # The daemons and the service users must reach the config and logs.
    tmp.chmod(0o755)
    bench = Bench(args, client, known, tmp, python, benchlib.serviceUsers(args.users))
    print(daemons.machineFacts(python))
    print(f"modes {', '.join(args.modes)}; configs and logs in {tmp}")
    loadBefore, began = daemons.loadavg(), time.monotonic()
    cpuBefore = daemons.cpuTimes()
    report = goals.Report()
    try:
        runModes(bench, report)
    except PhaseFailed as e:
        print(f"\n{e}")
        return 1
    printReport(bench, report, loadBefore, began, cpuBefore)
    rows = report.rows + report.saturation + report.ceiling
    status = 3 if any(r["errors"] or not r["bytesOk"] for r in rows) else 0
    if not args.keep and status == 0:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
