"""
Pieces of the hand-run benchmarks that do not need a daemon: building the C
helpers, writing the shared xinetd.conf, reading /proc, running the load
client and summarising rounds.  Kept apart from L{run_spawn} so the tests can
check them without root, a daemon or a timing.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attr

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
HELLO_LINE = b"hello from a spawned server\n"


@attr.s(frozen=True, auto_attribs=True)
class Workload:
    """
    One service both daemons run, and what a client sends it.

    @ivar name: the service name in the config (and in the results table).
    @ivar server: the program to spawn, or L{None} for an internal service.
    @ivar payload: bytes the client sends before half-closing.
    @ivar expectedBytes: bytes a correct reply has, per connection, or
        L{None} when it varies (daytime).
    @ivar attributes: extra C{(attribute, value)} lines for the service.
    """

    name: str
    server: Optional[str]
    payload: int
    expectedBytes: Optional[int]
    attributes: Tuple[Tuple[str, str], ...] = ()


def workloads(hello: Path) -> Dict[str, Workload]:
    """
    The workloads of performance.md this bench knows, by name.

    @param hello: the compiled hello program.
    """
    return {
        "hello": Workload("hello", str(hello), 0, len(HELLO_LINE)),
        "cat": Workload("cat", "/bin/cat", 1024, 1024),
        # Internal services: xinetd answers echo by forking itself, daytime
        # in-process.  Usable once the daemon implements builtins.
        "echo": Workload("echo", None, 1024, 1024, (("type", "INTERNAL UNLISTED"),)),
        "daytime": Workload("daytime", None, 0, None, (("type", "INTERNAL UNLISTED"),)),
    }


def compileIfStale(source: Path, target: Path, flags: Sequence[str]) -> Path:
    """
    Compile C{source} into C{target} with C{cc} unless C{target} is newer.

    @param flags: extra compiler flags; if they include C{-static} and the
        static link fails, retry without it (static is only for speed).
    """
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["cc", "-O2", "-Wall", *flags, "-o", str(target), str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 and "-static" in flags:
        cmd.remove("-static")
        result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return target


def build(out: Path = OUT) -> Tuple[Path, Path]:
    """
    Build the load client and the hello program into C{out}.

    @return: C{(loadclient, hello)} paths.
    """
    client = compileIfStale(BENCH / "loadclient.c", out / "loadclient", [])
    hello = compileIfStale(BENCH / "hello.c", out / "hello", ["-static"])
    return client, hello


def renderConfig(
    services: Iterable[Workload],
    ports: Mapping[str, int],
    serviceLog: Optional[Path] = None,
    user: str = "nobody",
) -> str:
    """
    The xinetd.conf text both daemons read; only C{ports} differ between them.

    C{cps = 0 0} turns xinetd's always-on default limiter (50 connections per
    second) off: with a rate of 0 the window test never holds.

    @param ports: service name to port.
    @param serviceLog: with a path, FILE logging of PID HOST EXIT DURATION on
        success; without, no C{log_type} at all, which means no service
        logging in xinetd.
    """
    lines: List[str] = []
    if serviceLog is not None:
        lines += [
            "defaults",
            "{",
            f"\tlog_type\t= FILE {serviceLog}",
            "\tlog_on_success\t= PID HOST EXIT DURATION",
            "}",
            "",
        ]
    for w in services:
        attrs: List[Tuple[str, str]] = [("type", "UNLISTED")]
        attrs += [
            ("socket_type", "stream"),
            ("protocol", "tcp"),
            ("wait", "no"),
        ]
        if w.server is not None:
            attrs += [("user", user), ("server", w.server)]
        attrs += [
            ("bind", "127.0.0.1"),
            ("port", str(ports[w.name])),
            ("instances", "UNLIMITED"),
            ("per_source", "UNLIMITED"),
            ("cps", "0 0"),
        ]
        overrides = dict(w.attributes)
        attrs = [(k, overrides.pop(k, v)) for k, v in attrs] + list(overrides.items())
        lines.append(f"service {w.name}")
        lines.append("{")
        lines += [f"\t{k:<12}= {v}" for k, v in attrs]
        lines += ["}", ""]
    return "\n".join(lines)


def freePort() -> int:
    """
    A loopback TCP port nobody listens on right now (racy, good enough here).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parseStat(text: str) -> Tuple[int, int, int]:
    """
    From the text of /proc/PID/stat, C{(ppid, utime + stime, starttime)}.

    The command name may hold spaces and parentheses, so fields are counted
    from the last C{)}.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state) of proc(5).
    ppid = int(fields[1])
    cpu = int(fields[11]) + int(fields[12])
    start = int(fields[19])
    return ppid, cpu, start


def processTree(root: int, proc: Path = Path("/proc")) -> Dict[Tuple[int, int], int]:
    """
    CPU ticks of C{root} and every descendant alive now.

    @return: C{(pid, starttime)} to utime+stime ticks; the key tells a pid
        apart from a later process that reuses it.
    """
    stats: Dict[int, Tuple[int, int, int]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parseStat((Path(entry.path) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    children: Dict[int, List[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree: Dict[Tuple[int, int], int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid not in stats:
            continue
        _, cpu, start = stats[pid]
        tree[(pid, start)] = cpu
        todo.extend(children.get(pid, ()))
    return tree


def longLivedCpu(
    before: Mapping[Tuple[int, int], int], after: Mapping[Tuple[int, int], int]
) -> int:
    """
    CPU ticks spent between two L{processTree} snapshots by the processes
    present in both: the daemon and any helper it keeps, not the per-connection
    children (whose time the kernel adds to the parent's cutime, not counted).
    """
    return sum(after[k] - before[k] for k in after.keys() & before.keys())


def rssKiB(pids: Iterable[int], proc: Path = Path("/proc")) -> int:
    """
    Sum of VmRSS over C{pids}, in KiB (0 for a pid that is gone).
    """
    total = 0
    for pid in pids:
        try:
            text = (proc / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def pssKiB(pids: Iterable[int], proc: Path = Path("/proc")) -> int:
    """
    Sum of the proportional set size over C{pids}, in KiB: unlike RSS it does
    not count twice the pages a forked helper shares with its parent.
    """
    total = 0
    for pid in pids:
        try:
            text = (proc / str(pid) / "smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def runClient(
    client: Path,
    port: int,
    concurrency: int,
    connections: int,
    timeLimit: float,
    payload: int = 0,
    connTimeout: float = 10.0,
) -> Dict[str, float]:
    """
    Run the load client once against 127.0.0.1:C{port}; its JSON result.
    """
    argv = [
        str(client),
        "127.0.0.1",
        str(port),
        str(concurrency),
        str(connections),
        str(timeLimit),
        str(payload),
        str(connTimeout),
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeLimit + connTimeout + 10,
        check=True,
    )
    parsed: Dict[str, float] = json.loads(result.stdout)
    return parsed


@attr.s(frozen=True, auto_attribs=True)
class Round:
    """
    One load-client run against one daemon, with the daemon's CPU.

    @ivar result: the load client's JSON fields.
    @ivar daemonCpuSeconds: CPU of the daemon's long-lived processes.
    @ivar parentCpuSeconds: the part of it spent by the daemon process itself
        (the rest is its helpers').
    """

    workload: str
    daemon: str
    concurrency: int
    result: Mapping[str, float]
    daemonCpuSeconds: float
    parentCpuSeconds: float = 0.0


def summarise(
    rounds: Sequence[Round], expected: Mapping[str, Optional[int]]
) -> List[Dict]:
    """
    Medians per (workload, daemon, concurrency), in first-seen order.

    @param expected: workload name to expected bytes per connection; a row
        whose clients read anything else is flagged C{bytesOk=False}.
    """
    groups: Dict[Tuple[str, str, int], List[Round]] = {}
    for r in rounds:
        groups.setdefault((r.workload, r.daemon, r.concurrency), []).append(r)
    rows = []
    for (workload, daemon, conc), rs in groups.items():
        rates = [r.result["rate"] for r in rs]
        completed = sum(r.result["completed"] for r in rs)
        cpu = sum(r.daemonCpuSeconds for r in rs)
        parentCpu = sum(r.parentCpuSeconds for r in rs)
        readBytes = sum(r.result["bytes_read"] for r in rs)
        perConnection = expected[workload]
        rows.append(
            {
                "workload": workload,
                "daemon": daemon,
                "concurrency": conc,
                "rate": statistics.median(rates),
                "rateMin": min(rates),
                "rateMax": max(rates),
                "p50us": statistics.median(r.result["p50_us"] for r in rs),
                "p99us": statistics.median(r.result["p99_us"] for r in rs),
                "clientCpu": statistics.median(
                    r.result["client_cpu_share"] for r in rs
                ),
                "daemonUsPerConn": cpu * 1e6 / completed if completed else 0.0,
                "parentUsPerConn": parentCpu * 1e6 / completed if completed else 0.0,
                "errors": sum(r.result["errors"] for r in rs),
                "completed": completed,
                "bytesOk": perConnection is None
                or readBytes == completed * perConnection,
            }
        )
    return rows


def formatTable(rows: Sequence[Mapping], baseline: str = "xinetd") -> str:
    """
    A Markdown table of L{summarise} rows, then the ratio of each other
    daemon's median rate to C{baseline}'s at the same workload and concurrency.
    """
    out = [
        "| workload | daemon | C | conns/s (median) | min-max | p50 ms | p99 ms "
        "| daemon CPU us/conn (parent) | client CPU | errors | replies ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['workload']} | {r['daemon']} | {r['concurrency']} "
            f"| {r['rate']:.0f} | {r['rateMin']:.0f}-{r['rateMax']:.0f} "
            f"| {r['p50us'] / 1000:.2f} | {r['p99us'] / 1000:.2f} "
            f"| {r['daemonUsPerConn']:.0f} ({r['parentUsPerConn']:.0f}) "
            f"| {r['clientCpu'] * 100:.0f}% "
            f"| {r['errors']:.0f} | {'yes' if r['bytesOk'] else 'NO'} |"
        )
    base = {
        (r["workload"], r["concurrency"]): r["rate"]
        for r in rows
        if r["daemon"] == baseline
    }
    ratios = []
    for r in rows:
        key = (r["workload"], r["concurrency"])
        if r["daemon"] != baseline and base.get(key):
            ratios.append(
                f"- {r['workload']}, C={r['concurrency']}: {r['daemon']}/{baseline}"
                f" = {r['rate'] / base[key]:.2f}x"
            )
    if ratios:
        out += ["", *ratios]
    return "\n".join(out)
