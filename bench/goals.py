"""
The goals of issue 12, judged from one run of bench/run_spawn.py: each goal
becomes one line with the measured ratio or value, the target and whether it
is met.  Pure: it reads the rows and readings the modes produced, so the
tests can check it without a daemon or a timing.
"""

from __future__ import annotations

import statistics
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import attr
import ceiling
from benchlib import TreeMemory, clientCpuCell, rowLabel

MET = "met"
NOT_MET = "NOT met"
NOT_RUN = "not run"

SPAWN_SERVICES = (1, 1000)
SPAWN_CONCURRENCY = (1, 8)
SPAWN_RATIO = 1.3
BURN_RATIO = 1.0
DAYTIME_RATIO = 1.0
ECHO_RATIO = 4.0
PSS_LIMIT_MIB = 35.0
FIRST_CONNECTION_LIMIT_MS = 50.0
STARTUP_LIMIT = 1.5
SATURATED = 0.95


def spawnVariant(services: int) -> str:
    """
    The variant of the spawn rows measured with C{services} configured.
    """
    return f"{services} svc"


def burnVariant(services: int) -> str:
    """
    The variant of the spawn rows measured while the CPU burner ran.
    """
    return f"burn, {services} svc"


@attr.s(frozen=True, auto_attribs=True)
class MemoryResult:
    """
    What the memory mode measured, by daemon name.

    @ivar stages: C{"started"} (every port listening, no connection yet),
        C{"busy"} (after one connection per service user) and C{"idle"}
        (after the idle wait), each daemon's L{TreeMemory}.
    @ivar firstConnectionMs: latencies of the first connection after each
        idle wait.
    @ivar cryptography: whether the tree maps pyOpenSSL's C{cryptography}.
    @ivar idleWait: the seconds of each idle wait.
    @ivar services: how many services were configured.
    @ivar users: over how many service users.
    """

    stages: Mapping[str, Mapping[str, TreeMemory]]
    firstConnectionMs: Mapping[str, Sequence[float]]
    cryptography: Mapping[str, bool]
    idleWait: float
    services: int = 1000
    users: int = 3


@attr.s(auto_attribs=True)
class Report:
    """
    Everything one run measured; a part that did not run stays empty.

    @ivar rows: L{benchlib.summarise} rows of the spawn, burn and in-process
        modes.
    @ivar saturation: L{benchlib.summarise} rows of the saturation mode.
    @ivar ceiling: L{ceiling.row}s of the ceiling mode.
    @ivar startup: L{startup.measureStartup}'s seconds by kind.
    @ivar startupServices: how many services the start-up runs configured.
    @ivar spawnFloor: L{benchlib.spawnFloor}'s microseconds a start of the
        hello program costs this machine alone, if measured.
    @ivar rawFloor: the same for hello-raw (hello with no C library).
    """

    rows: List[Dict] = attr.Factory(list)
    saturation: List[Dict] = attr.Factory(list)
    ceiling: List[Dict] = attr.Factory(list)
    memory: Optional[MemoryResult] = None
    startup: Optional[Mapping[str, Sequence[float]]] = None
    startupServices: int = 1000
    spawnFloor: Optional[float] = None
    rawFloor: Optional[float] = None


@attr.s(frozen=True, auto_attribs=True)
class GoalLine:
    """
    One goal: its name, what was measured, the target and the verdict.
    """

    goal: str
    value: str
    target: str
    status: str


def _find(
    rows: Sequence[Mapping], workload: str, variant: str, conc: int, daemon: str
) -> Optional[Mapping]:
    for r in rows:
        key = (r["workload"], r["variant"], r["concurrency"], r["daemon"])
        if key == (workload, variant, conc, daemon):
            return r
    return None


def _ratioLine(
    rows: Sequence[Mapping],
    goal: str,
    where: tuple,
    ours: str,
    field: str,
    target: float,
    atLeast: bool,
) -> GoalLine:
    """
    A goal on ours' C{field} over xinetd's in the row at C{where}.
    """
    mine, base = (_find(rows, *where, d) for d in (ours, "xinetd"))
    sign = ">=" if atLeast else "<="
    targetText = f"{sign} {target:.1f}x"
    if mine is None or base is None or not base[field]:
        return GoalLine(goal, "-", targetText, NOT_RUN)
    value = mine[field] / base[field]
    if field == "rate":
        detail = f"{mine[field]:.0f} vs {base[field]:.0f} conns/s"
    else:
        detail = f"{mine[field] / 1000:.2f} vs {base[field] / 1000:.2f} ms"
    ok = value >= target if atLeast else value <= target
    return GoalLine(
        goal, f"{value:.2f}x ({detail})", targetText, MET if ok else NOT_MET
    )


def formatFloor(
    floorUs: float,
    rows: Sequence[Mapping],
    ours: str = "ours",
    rawFloorUs: Optional[float] = None,
) -> List[str]:
    """
    What the spawn floor means for the 1-service C=1 rows: each daemon's
    time a connection beside it, and the best ratio against xinetd a
    super-server that cost nothing could reach.  With hello-raw's floor
    too, how much of hello's is its C library's start-up, and the same
    lines for the hello-raw rows.
    """
    lines = [
        f"- spawn floor: vfork, exec and wait of the hello program, one at a"
        f" time, nothing else: {floorUs:.0f} us (at most {1e6 / floorUs:.0f}"
        " starts/s on one core)"
    ]
    lines += _floorLines("hello", floorUs, rows, ours)
    if rawFloorUs is not None:
        lines.append(
            f"- hello-raw (hello's line with no C library): {rawFloorUs:.0f} us"
            f" a start, so {floorUs - rawFloorUs:.0f} us of hello's are its C"
            " library's start-up; the spawn goals are judged on hello"
        )
        lines += _floorLines("hello-raw", rawFloorUs, rows, ours)
    return lines


def _floorLines(
    workload: str, floorUs: float, rows: Sequence[Mapping], ours: str
) -> List[str]:
    where = (workload, spawnVariant(1), 1)
    times = {}
    for daemon in ("xinetd", ours):
        row = _find(rows, *where, daemon)
        if row is not None and row["rate"]:
            times[daemon] = 1e6 / row["rate"]
    lines = [
        f"- {workload} [1 svc] C=1, {daemon}: {us:.0f} us a connection,"
        f" {us - floorUs:.0f} us of it beside the floor"
        for daemon, us in times.items()
    ]
    if "xinetd" in times:
        best = "" if workload == "hello" else f" ({workload})"
        lines.append(
            f"- best C=1 spawn ratio against xinetd here{best}, for a"
            f" super-server costing nothing: {times['xinetd'] / floorUs:.2f}x"
        )
    return lines


BUSY_SHARE = 0.9
"""
The share of the machine's CPUs a round must keep busy for its CPU time a
connection to bound the rate (L{formatBusyBound}).
"""


def formatBusyBound(rows: Sequence[Mapping], ours: str, cpus: int) -> List[str]:
    """
    For each spawn row of ours (no burner) that kept L{BUSY_SHARE} of the
    CPUs busy: the machine's CPU a connection less our daemon's and
    helpers' is what the servers as we start them, the kernel and the load
    client cost; with our own part at zero the rate could be at most
    C{cpus} over that, which bounds the ratio against xinetd that any work
    on the daemon can reach.

    @param cpus: the CPUs the bench could use.
    """
    lines = []
    for mine in rows:
        if mine["daemon"] != ours or not mine["workload"].startswith("hello"):
            continue
        machine, share = mine.get("machineUsPerConn"), mine.get("machineShare")
        if "burn" in mine["variant"] or machine is None or share is None:
            continue
        base = _find(
            rows, mine["workload"], mine["variant"], mine["concurrency"], "xinetd"
        )
        rest = machine - mine["daemonUsPerConn"]
        if base is None or not base["rate"] or share < BUSY_SHARE * cpus or rest <= 0:
            continue
        bound = cpus * 1e6 / rest / base["rate"]
        lines.append(
            f"- {rowLabel(mine)} C={mine['concurrency']}: {ours} kept"
            f" {share:.2f} of {cpus} CPUs busy, {machine:.0f} us of CPU a"
            f" connection, {mine['daemonUsPerConn']:.0f} of them its daemon's"
            f" and helpers': with those at zero, at most {bound:.2f}x xinetd"
            f" here ({ours}: {mine['rate'] / base['rate']:.2f}x)"
        )
    return lines


def _forkserverKind(name: str) -> str:
    """What forkserver C{name} does for a connection, in a few words."""
    how = name[len("forkserver") :]
    if how == "-relay":
        return "one process accepts, a second gets it over a socket pair, vforks, execs"
    processes = "1 process" if how == "1" else f"{how} processes"
    return f"{processes} accepting, vfork, exec, nothing else"


def formatReferences(rows: Sequence[Mapping], ours: str) -> List[str]:
    """
    For each row of a forkserver (C{bench/forkserver.c}) with xinetd and
    ours beside it: its rate and p99 against xinetd's, and ours against it.
    How far any fork and exec server gets here is what the spawn goals can
    be read against; the relay is the hop between our daemon and its
    sub-helper with nothing else around it.
    """
    lines = []
    for ref in rows:
        if not ref["daemon"].startswith("forkserver"):
            continue
        where = (ref["workload"], ref["variant"], ref["concurrency"])
        base, mine = _find(rows, *where, "xinetd"), _find(rows, *where, ours)
        if base is None or mine is None or not ref["rate"] or not base["rate"]:
            continue
        lines.append(
            f"- {rowLabel(ref)} C={ref['concurrency']}: {ref['daemon']}"
            f" ({_forkserverKind(ref['daemon'])}) {ref['rate'] / base['rate']:.2f}x"
            f" xinetd's rate, p99 {ref['p99us'] / base['p99us']:.2f}x;"
            f" {ours} {mine['rate'] / ref['rate']:.2f}x its rate"
        )
    return lines


def spawnGoals(rows: Sequence[Mapping], ours: str = "ours") -> List[GoalLine]:
    """
    Spawn path, C{user = nobody}: the rate at C=1 and C=8 with 1 and 1000
    services, p99 no worse than xinetd's, and the rate with a CPU burner.
    """
    lines = []
    for n in SPAWN_SERVICES:
        for c in SPAWN_CONCURRENCY:
            where = ("hello", spawnVariant(n), c)
            name = f"spawn hello, {n} svc, C={c}"
            lines.append(
                _ratioLine(
                    rows, f"{name}: rate", where, ours, "rate", SPAWN_RATIO, True
                )
            )
            lines.append(
                _ratioLine(rows, f"{name}: p99", where, ours, "p99us", 1.0, False)
            )
    for c in SPAWN_CONCURRENCY:
        where = ("hello", burnVariant(1), c)
        name = f"spawn hello, CPU burner, C={c}: rate"
        lines.append(_ratioLine(rows, name, where, ours, "rate", BURN_RATIO, True))
    return lines


def inprocessGoals(rows: Sequence[Mapping], ours: str = "ours") -> List[GoalLine]:
    """
    Internal daytime at least 1.0x at C=1 and C=8; echo at least 4x at each
    concurrency measured (C=8 at least).
    """
    lines = []
    for c in SPAWN_CONCURRENCY:
        where = ("daytime", "", c)
        name = f"internal daytime, C={c}: rate"
        lines.append(_ratioLine(rows, name, where, ours, "rate", DAYTIME_RATIO, True))
    echoes = sorted(
        {r["concurrency"] for r in rows if r["workload"] == "echo" and not r["variant"]}
        | {8}
    )
    for c in echoes:
        name = f"internal echo 1 KiB, C={c}: rate"
        where = ("echo", "", c)
        lines.append(_ratioLine(rows, name, where, ours, "rate", ECHO_RATIO, True))
    return lines


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def memoryGoals(memory: Optional[MemoryResult], ours: str = "ours") -> List[GoalLine]:
    """
    Footprint: idle tree PSS, pyOpenSSL not imported, sub-helpers gone when
    idle, and the first connection after idle.
    """
    services, users = (memory.services, memory.users) if memory else (1000, 3)
    names = [
        f"idle tree PSS, {services} svc, {users} users",
        "pyOpenSSL not imported (no TLS service)",
        "sub-helpers start on use, exit when idle",
        "first connection after idle (median)",
    ]
    targets = [
        f"<= {PSS_LIMIT_MIB:.0f} MiB",
        "no cryptography mapped",
        "idle processes <= at start",
        f"< {FIRST_CONNECTION_LIMIT_MS:.0f} ms",
    ]
    if memory is None or ours not in memory.stages.get("idle", {}):
        return [
            GoalLine(n, "-", t, NOT_RUN) for n, t in zip(names, targets, strict=True)
        ]
    idle = memory.stages["idle"]
    mine, base = idle[ours], idle.get("xinetd")
    beside = f"; xinetd {_mib(base.pssKiB)}" if base else ""
    pss = GoalLine(
        names[0],
        f"{_mib(mine.pssKiB)} (RSS {_mib(mine.rssKiB)}, {mine.processes} processes"
        f"{beside})",
        targets[0],
        MET if mine.pssKiB <= PSS_LIMIT_MIB * 1024 else NOT_MET,
    )
    mapped = memory.cryptography.get(ours, False)
    tls = GoalLine(
        names[1],
        "cryptography mapped" if mapped else "not mapped",
        targets[1],
        NOT_MET if mapped else MET,
    )
    counts = [memory.stages[s][ours].processes for s in ("started", "busy", "idle")]
    helpers = GoalLine(
        names[2],
        f"processes {counts[0]} at start, {counts[1]} after one connection per"
        f" user, {counts[2]} after {memory.idleWait:g} s idle",
        targets[2],
        MET if counts[2] <= counts[0] else NOT_MET,
    )
    lines = [pss, tls, helpers]
    first = memory.firstConnectionMs.get(ours, ())
    if not first:
        lines.append(GoalLine(names[3], "-", targets[3], NOT_RUN))
        return lines
    median = statistics.median(first)
    xinetdFirst = memory.firstConnectionMs.get("xinetd", ())
    beside = f"; xinetd {statistics.median(xinetdFirst):.1f} ms" if xinetdFirst else ""
    lines.append(
        GoalLine(
            names[3],
            f"{median:.1f} ms (runs {', '.join(f'{x:.1f}' for x in first)}{beside})",
            targets[3],
            MET if median < FIRST_CONNECTION_LIMIT_MS else NOT_MET,
        )
    )
    return lines


def startupGoal(
    startup: Optional[Mapping[str, Sequence[float]]], services: int = 1000
) -> GoalLine:
    """
    Start-up with 1000 services at most 1.5x the floor of Python importing
    Twisted's reactor and twistd.

    @param services: how many services the runs configured.
    """
    name = f"start-up, {services} svc, ours / floor"
    target = f"<= {STARTUP_LIMIT:.1f}x"
    if not startup or not startup.get("ours") or not startup.get("floor"):
        return GoalLine(name, "-", target, NOT_RUN)
    med = {k: statistics.median(v) for k, v in startup.items() if v}
    value = med["ours"] / med["floor"]
    detail = f"ours {med['ours'] * 1000:.0f} ms, floor {med['floor'] * 1000:.0f} ms"
    if "xinetd" in med:
        detail += f", xinetd {med['xinetd'] * 1000:.0f} ms"
    status = MET if value <= STARTUP_LIMIT else NOT_MET
    return GoalLine(name, f"{value:.2f}x ({detail})", target, status)


def saturationPoint(
    rows: Sequence[Mapping], workload: str, daemon: str, threshold: float = SATURATED
) -> Optional[Mapping]:
    """
    The row of the lowest concurrency at which C{daemon}'s own process used
    at least C{threshold} of one core on C{workload}, or L{None}.
    """
    mine = sorted(
        (r for r in rows if (r["workload"], r["daemon"]) == (workload, daemon)),
        key=lambda r: r["concurrency"],
    )
    return next((r for r in mine if r["parentShare"] >= threshold), None)


def describeSaturation(rows: Sequence[Mapping], workload: str, daemon: str) -> str:
    """
    Where C{daemon}'s process saturates on C{workload}, or its busiest row.
    """
    mine = [r for r in rows if (r["workload"], r["daemon"]) == (workload, daemon)]
    if not mine:
        return "not measured"
    fastest = max(mine, key=lambda r: r["rate"])
    peak = f"peak {fastest['rate']:.0f} conns/s at C={fastest['concurrency']}"
    point = saturationPoint(rows, workload, daemon)
    if point is not None:
        return (
            f"C={point['concurrency']}, {point['rate']:.0f} conns/s"
            f" (parent {point['parentShare'] * 100:.0f}%); {peak}"
        )
    top = max(mine, key=lambda r: r["parentShare"])
    return (
        f"not reached (at most {top['parentShare'] * 100:.0f}% at"
        f" C={top['concurrency']}); {peak}"
    )


def ceilingGoals(
    rows: Sequence[Mapping],
    ours: str = "ours",
    quotaRows: Sequence[Mapping] = (),
) -> List[GoalLine]:
    """
    Where the ceiling is: the rate at which our reactor thread saturates,
    for internal daytime and for spawn hello; xinetd's beside.  Found on a
    whole core (the saturation mode's C{rows}), or under a CPU quota (the
    ceiling mode's C{quotaRows}, every quota measured saturated).
    """
    lines = []
    for workload in ("daytime", "hello"):
        name = f"ceiling, {workload}: reactor at {SATURATED * 100:.0f}% of its CPU"
        target = "found"
        whole = [r for r in rows if r["workload"] == workload]
        quota = [r for r in quotaRows if r["workload"] == workload]
        if not whole and not quota:
            lines.append(GoalLine(name, "-", target, NOT_RUN))
            continue
        parts = []
        found = False
        if whole:
            parts.append(
                f"a core: {describeSaturation(rows, workload, ours)}; xinetd "
                f"{describeSaturation(rows, workload, 'xinetd')}"
            )
            found = saturationPoint(rows, workload, ours) is not None
        shares = {r["share"] for r in quota if r["daemon"] == ours}
        if shares:
            parts.append(
                "under a quota: "
                + ceiling.describe(quotaRows, workload, ours, SATURATED)
            )
            found = found or all(
                ceiling.ceilingPoint(quotaRows, workload, ours, s, SATURATED)
                is not None
                for s in shares
            )
            if any(r["daemon"] == "xinetd" for r in quota):
                parts.append(
                    "xinetd "
                    + ceiling.describe(quotaRows, workload, "xinetd", SATURATED)
                )
        lines.append(
            GoalLine(name, " / ".join(parts), target, MET if found else NOT_MET)
        )
    return lines


def evaluate(report: Report, ours: str = "ours") -> List[GoalLine]:
    """
    Every goal of issue 12, in the issue's order.
    """
    parts: List[Callable[[], List[GoalLine]]] = [
        lambda: spawnGoals(report.rows, ours),
        lambda: inprocessGoals(report.rows, ours),
        lambda: memoryGoals(report.memory, ours),
        lambda: [startupGoal(report.startup, report.startupServices)],
        lambda: ceilingGoals(report.saturation, ours, report.ceiling),
    ]
    return [line for part in parts for line in part()]


def formatGoals(lines: Sequence[GoalLine]) -> str:
    """
    The Goals section: a Markdown table and a count of goals met.
    """
    out = ["| goal | measured | target | verdict |", "|---|---|---|---|"]
    out += [f"| {g.goal} | {g.value} | {g.target} | {g.status} |" for g in lines]
    judged = [g for g in lines if g.status != NOT_RUN]
    met = sum(g.status == MET for g in judged)
    out += ["", f"{met} of {len(judged)} goals measured are met ({len(lines)} goals)."]
    return "\n".join(out)


def formatSaturation(rows: Sequence[Mapping]) -> str:
    """
    The saturation rows with the daemon process's and its helpers' shares of
    one core, then where each daemon's process saturates.
    """
    out = [
        "| workload | daemon | C | conns/s | p99 ms | parent CPU | helpers CPU "
        "| client CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['workload']} | {r['daemon']} | {r['concurrency']} "
            f"| {r['rate']:.0f} | {r['p99us'] / 1000:.2f} "
            f"| {r['parentShare'] * 100:.0f}% | {r['helperShare'] * 100:.0f}% "
            f"| {clientCpuCell(r)} |"
        )
    out.append("")
    pairs = dict.fromkeys((r["workload"], r["daemon"]) for r in rows)
    for workload, daemon in pairs:
        where = describeSaturation(rows, workload, daemon)
        out.append(
            f"- {workload}, {daemon}: parent at {SATURATED * 100:.0f}% of a core: {where}"
        )
    return "\n".join(out)


def formatMemory(memory: MemoryResult) -> str:
    """
    The memory mode's readings by stage and daemon, then the first
    connections after idle.
    """
    out = [
        "| stage | daemon | processes | PSS MiB | RSS MiB |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "started": "started, no connection",
        "busy": "after one connection per user",
        "idle": f"after {memory.idleWait:g} s idle",
    }
    for stage, byDaemon in memory.stages.items():
        for daemon, m in byDaemon.items():
            out.append(
                f"| {labels.get(stage, stage)} | {daemon} | {m.processes} "
                f"| {m.pssKiB / 1024:.1f} | {m.rssKiB / 1024:.1f} |"
            )
    out.append("")
    for daemon, runs in memory.firstConnectionMs.items():
        if runs:
            out.append(
                f"- {daemon}: first connection after {memory.idleWait:g} s idle,"
                f" median {statistics.median(runs):.1f} ms (runs "
                + ", ".join(f"{x:.1f}" for x in runs)
                + ")"
            )
    for daemon, mapped in memory.cryptography.items():
        out.append(f"- {daemon}: cryptography {'mapped' if mapped else 'not mapped'}")
    return "\n".join(out)
