"""
Pieces of the hand-run benchmarks that do not need a daemon: building the C
helpers, writing the shared xinetd.conf, choosing service users, reading
/proc (CPU, memory, listening ports), running the load client and a bounded
CPU burner, and summarising rounds.  Kept apart from L{run_spawn} so the
tests can check them without root, a daemon or a timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import attr

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
HELLO_LINE = b"hello from a spawned server\n"
RAW_HELLO = "hello-raw"
"""The workload of bench/rawhello.c: hello's line, no C library."""
RAW_FLAGS = ["-static", "-nostdlib", "-fno-stack-protector"]


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
    @ivar user: the C{user} of a spawned service, or L{None} for the
        default of L{renderConfig}.
    """

    name: str
    server: Optional[str]
    payload: int
    expectedBytes: Optional[int]
    attributes: Tuple[Tuple[str, str], ...] = ()
    user: Optional[str] = None


def workloads(hello: Path, rawHello: Optional[Path] = None) -> Dict[str, Workload]:
    """
    The workloads of performance.md this bench knows, by name.

    @param hello: the compiled hello program.
    @param rawHello: the compiled hello-raw program (hello with no C
        library), if this machine could build it: workload C{hello-raw}.
    """
    known = {
        "hello": Workload("hello", str(hello), 0, len(HELLO_LINE)),
        "cat": Workload("cat", "/bin/cat", 1024, 1024),
        # Internal services: xinetd answers echo by forking itself, daytime
        # in-process.  Usable once the daemon implements builtins.
        "echo": Workload("echo", None, 1024, 1024, (("type", "INTERNAL UNLISTED"),)),
        "daytime": Workload("daytime", None, 0, None, (("type", "INTERNAL UNLISTED"),)),
    }
    if rawHello is not None:
        known[RAW_HELLO] = Workload(RAW_HELLO, str(rawHello), 0, len(HELLO_LINE))
    return known


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


CLIENT_FLAGS = ["-pthread"]
"""The load client's compiler flags (its C{-t} runs threads)."""


def spawnFloor(program: Path, count: int = 2000, out: Path = OUT) -> Optional[float]:
    """
    Microseconds this machine takes to vfork, exec and reap C{program}, one
    start at a time with nothing around it (C{bench/spawnfloor.c}): the
    floor under any super-server's spawned connection.  L{None} if it
    cannot be measured.
    """
    try:
        floor = compileIfStale(BENCH / "spawnfloor.c", out / "spawnfloor", [])
    except RuntimeError:
        return None
    result = subprocess.run(
        [str(floor), str(program), str(count)], capture_output=True, text=True
    )
    if result.returncode != 0:
        return None
    return float(json.loads(result.stdout)["per_spawn_us"])


def buildRawHello(out: Path = OUT) -> Optional[Path]:
    """
    Build hello-raw (C{bench/rawhello.c}) into C{out}, or L{None} where it
    cannot be (a CPU it has no system calls for, no static linking).
    """
    try:
        raw = compileIfStale(BENCH / "rawhello.c", out / RAW_HELLO, RAW_FLAGS)
    except RuntimeError:
        return None
    check = subprocess.run([str(raw)], capture_output=True)
    return raw if check.returncode == 0 and check.stdout == HELLO_LINE else None


def build(out: Path = OUT) -> Tuple[Path, Path]:
    """
    Build the load client and the hello program into C{out}.

    @return: C{(loadclient, hello)} paths.
    """
    client = compileIfStale(BENCH / "loadclient.c", out / "loadclient", CLIENT_FLAGS)
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
            attrs += [("user", w.user or user), ("server", w.server)]
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


PREFERRED_USERS = ("nobody", "daemon", "bin", "sys")


def serviceUsers(count: int, passwd: Path = Path("/etc/passwd")) -> List[str]:
    """
    C{count} existing users for the spawned services, C{nobody} first, then
    C{daemon}, C{bin}, C{sys} and any other non-root account of C{passwd}.

    @raise ValueError: C{passwd} has fewer such users.
    """
    names = [
        line.split(":")[0]
        for line in passwd.read_text().splitlines()
        if line.count(":") >= 3 and line.split(":")[2] != "0"
    ]
    ordered = [u for u in PREFERRED_USERS if u in names]
    ordered += [u for u in names if u not in ordered]
    if count > len(ordered):
        raise ValueError(f"{passwd} has only {len(ordered)} non-root users")
    return ordered[:count]


def spread(
    template: Workload, count: int, users: Sequence[str], prefix: str
) -> List[Workload]:
    """
    C{count} copies of C{template} named C{prefix0}, C{prefix1}, ..., their
    C{user} taken from C{users} in turn (so C{users[0]} runs the first).
    """
    return [
        attr.evolve(template, name=f"{prefix}{i}", user=users[i % len(users)])
        for i in range(count)
    ]


def ephemeralLow(proc: Path = Path("/proc")) -> int:
    """
    The lowest port of the kernel's ephemeral range (32768 when unknown).
    """
    try:
        text = (proc / "sys" / "net" / "ipv4" / "ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def freePorts(
    count: int,
    low: int = 10000,
    high: Optional[int] = None,
    start: Optional[int] = None,
) -> List[int]:
    """
    C{count} distinct loopback TCP ports nobody uses now, from C{low} up to
    (not including) C{high}, the start of the ephemeral range by default.

    Below that range no program asking the kernel for any port (bind to port
    0, or a client's source port) is given one of them in the moment between
    this choice and the daemon's bind: on a machine where others run tests
    and benchmarks, nobody else's client reaches our services.  All are held
    bound at once, so none repeats; the search starts at a random port
    (C{start}) so two runs rarely try the same ones.

    @raise RuntimeError: fewer than C{count} ports are free in the range.
    """
    high = ephemeralLow() if high is None else high
    span = high - low
    first = random.randrange(span) if start is None else start - low
    held: List[socket.socket] = []
    try:
        for i in range(span):
            if len(held) == count:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", low + (first + i) % span))
            except OSError:
                s.close()
                continue
            held.append(s)
        if len(held) < count:
            raise RuntimeError(f"only {len(held)} free ports in {low}-{high - 1}")
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def freePort() -> int:
    """
    A loopback TCP port nobody listens on right now (racy, good enough here).
    """
    return freePorts(1)[0]


def listeningPorts(proc: Path = Path("/proc")) -> frozenset:
    """
    The TCP ports something listens on, read from C{proc/net/tcp}: a check
    that makes no connection (a connection to a spawning service would
    start a server and, in ours, a sub-helper).
    """
    ports = set()
    for line in (proc / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return frozenset(ports)


def parseComm(text: str) -> str:
    """
    The command name (truncated by the kernel to 15 bytes) in the text of
    /proc/PID/stat.
    """
    return text[text.index("(") + 1 : text.rindex(")")]


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


def _scanStats(proc: Path) -> Dict[int, str]:
    """
    The text of /proc/PID/stat of every process alive now, by pid.
    """
    stats: Dict[int, str] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = (Path(entry.path) / "stat").read_text()
        except OSError:
            continue  # exited while we looked
    return stats


def _descendants(root: int, stats: Mapping[int, str]) -> List[int]:
    """
    C{root} and its descendants among C{stats} (by the ppid of each).
    """
    children: Dict[int, List[int]] = {}
    for pid, text in stats.items():
        try:
            children.setdefault(parseStat(text)[0], []).append(pid)
        except (ValueError, IndexError):
            continue
    tree = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            tree.append(pid)
            todo.extend(children.get(pid, ()))
    return tree


def processTree(root: int, proc: Path = Path("/proc")) -> Dict[Tuple[int, int], int]:
    """
    CPU ticks of C{root} and every descendant alive now.

    @return: C{(pid, starttime)} to utime+stime ticks; the key tells a pid
        apart from a later process that reuses it.
    """
    stats = _scanStats(proc)
    tree: Dict[Tuple[int, int], int] = {}
    for pid in _descendants(root, stats):
        _, cpu, start = parseStat(stats[pid])
        tree[(pid, start)] = cpu
    return tree


@attr.s(frozen=True, auto_attribs=True)
class TreeMemory:
    """
    The memory of a daemon's process tree at one moment.

    @ivar processes: how many processes the tree has.
    @ivar pssKiB: sum of their proportional set sizes.
    @ivar rssKiB: sum of their resident set sizes (shared pages counted
        once per process).
    """

    processes: int
    pssKiB: int
    rssKiB: int


def treePids(
    root: int, proc: Path = Path("/proc"), exclude: Iterable[str] = ()
) -> List[int]:
    """
    C{root} and its descendants, without the processes whose command name
    is in C{exclude} (the short-lived spawned servers).
    """
    stats = _scanStats(proc)
    skip = {name[:15] for name in exclude}
    return [p for p in _descendants(root, stats) if parseComm(stats[p]) not in skip]


def treeMemory(
    root: int, proc: Path = Path("/proc"), exclude: Iterable[str] = ()
) -> TreeMemory:
    """
    The L{TreeMemory} of C{root}'s tree, without the processes named in
    C{exclude} (see L{treePids}).
    """
    pids = treePids(root, proc, exclude)
    return TreeMemory(len(pids), pssKiB(pids, proc), rssKiB(pids, proc))


def mapsMention(pids: Iterable[int], needle: str, proc: Path = Path("/proc")) -> bool:
    """
    Whether any of C{pids} maps a file whose path holds C{needle}: how to
    tell that a library (pyOpenSSL's C{cryptography}) was imported.
    """
    for pid in pids:
        try:
            text = (proc / str(pid) / "maps").read_text()
        except OSError:
            continue
        if needle in text:
            return True
    return False


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
    threads: int = 1,
    resetAfterReply: bool = False,
) -> Dict[str, float]:
    """
    Run the load client once against 127.0.0.1:C{port}; its JSON result.

    @param threads: client threads sharing the concurrency (C{-t}).
    @param resetAfterReply: end each connection with a RST once the payload
        has come back, without half-closing (C{-r}); see L{clientResets}.
    """
    argv = [
        str(client),
        *(["-t", str(threads)] if threads > 1 else []),
        *(["-r"] if resetAfterReply else []),
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


def runWorkload(
    client: Path,
    port: int,
    workload: Workload,
    concurrency: int,
    connections: int,
    timeLimit: float,
    threads: int = 1,
) -> Dict[str, float]:
    """
    L{runClient} with C{workload}'s payload, ending its connections as
    L{clientResets} says.
    """
    return runClient(
        client,
        port,
        concurrency,
        connections,
        timeLimit,
        workload.payload,
        threads=threads,
        resetAfterReply=clientResets(workload),
    )


def clientThreads(
    workload: Workload, concurrency: int, asked: int = 0, cpus: Optional[int] = None
) -> int:
    """
    How many threads the load client runs: one for a spawned workload or at
    C=1 (there the servers' start, not the client, sets the pace), else for
    an in-process one C{asked}, or by default one per CPU, so that a single
    client core does not cap a daemon that answers on the reactor; never
    more than C{concurrency}.

    @param cpus: the CPUs we may run on (default: our affinity).
    """
    if workload.server is not None or concurrency <= 1:
        return 1
    if asked <= 0:
        asked = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return max(1, min(asked, concurrency))


def clientResets(workload: Workload) -> bool:
    """
    Whether the load client ends C{workload}'s connections with a RST once
    the payload has come back, rather than half-closing and reading to EOF:
    for every workload with a payload.

    A client that half-closes sends the first FIN and so keeps each
    connection's TIME_WAIT, keyed by its local port.  From 127.0.0.1 to one
    server port the ephemeral range (28,232 ports by default) lasts a minute
    at 470 connections a second; past it every connect() hunts for a port
    whose TIME_WAIT may be reused, and the client's cost a connection
    doubles.  Internal echo at C=8 read 12,500-13,000 connections a second
    for a run started straight after another against the same port, and
    30,000-33,000 for one started after a pause, from the same daemon.  With
    the RST neither side keeps a TIME_WAIT and consecutive runs read
    26,000-30,000; xinetd's forked echo read the same either way
    (4,800-5,200).  Where the server closes first (hello, daytime) its side
    keeps the TIME_WAIT and the client's ports are free again at once.
    """
    return workload.payload > 0


def clientCpuCell(row: Mapping) -> str:
    """
    A L{summarise} row's client CPU (share of one core), with its client
    threads when there were several.
    """
    cell = f"{row['clientCpu'] * 100:.0f}%"
    threads = row.get("clientThreads", 1)
    return f"{cell} ({threads} threads)" if threads > 1 else cell


def burnerArgv(seconds: float, python: str = sys.executable) -> List[str]:
    """
    The command of a CPU burner: a busy loop of one Python process that
    ends by itself after C{seconds}, whatever happens to its starter.
    """
    loop = (
        "import time\n"
        f"end = time.monotonic() + {float(seconds)!r}\n"
        "while time.monotonic() < end:\n"
        "    pass\n"
    )
    return [python, "-c", loop]


@contextlib.contextmanager
def burner(
    seconds: float, argv: Optional[List[str]] = None
) -> Iterator[subprocess.Popen]:
    """
    Keep one core busy while the block runs: start L{burnerArgv}'s loop (not
    pinned to any core), give its process, SIGKILL it by its pid on the way
    out.

    @param seconds: the hard bound: the loop ends by itself after it.
    """
    process = subprocess.Popen(argv or burnerArgv(seconds), stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


@attr.s(frozen=True, auto_attribs=True)
class Round:
    """
    One load-client run against one daemon, with the daemon's CPU.

    @ivar result: the load client's JSON fields.
    @ivar daemonCpuSeconds: CPU of the daemon's long-lived processes.
    @ivar parentCpuSeconds: the part of it spent by the daemon process itself
        (the rest is its helpers').
    @ivar variant: what else differs between rows of one workload (services
        configured, a CPU burner running); empty for none.
    """

    workload: str
    daemon: str
    concurrency: int
    result: Mapping[str, float]
    daemonCpuSeconds: float
    parentCpuSeconds: float = 0.0
    variant: str = ""
    machineCpuSeconds: Optional[float] = None


def _share(cpuSeconds: float, result: Mapping[str, float]) -> float:
    """
    C{cpuSeconds} over the wall time of the client run (0 if unknown).
    """
    seconds = result.get("seconds", 0.0)
    return cpuSeconds / seconds if seconds else 0.0


def _machinePerConnection(rounds: Sequence[Round]) -> Optional[float]:
    """
    Microseconds of the whole machine's CPU a connection took over
    C{rounds}, or L{None} if a round could not say.
    """
    if any(r.machineCpuSeconds is None for r in rounds):
        return None
    completed = sum(r.result["completed"] for r in rounds)
    busy = sum(r.machineCpuSeconds or 0.0 for r in rounds)
    return busy * 1e6 / completed if completed else None


def _machineShare(rounds: Sequence[Round]) -> Optional[float]:
    """
    The median number of CPUs the machine kept busy during C{rounds}, or
    L{None} if a round could not say.
    """
    if any(r.machineCpuSeconds is None for r in rounds):
        return None
    return statistics.median(
        _share(r.machineCpuSeconds or 0.0, r.result) for r in rounds
    )


def summarise(
    rounds: Sequence[Round], expected: Mapping[str, Optional[int]]
) -> List[Dict]:
    """
    Medians per (workload, variant, daemon, concurrency), in first-seen order.

    @param expected: workload name to expected bytes per connection; a row
        whose clients read anything else is flagged C{bytesOk=False}.
    @return: one dict per row; C{parentShare} and C{helperShare} are the
        median shares of one core the daemon process and its long-lived
        helpers used over each run's wall time; C{machineUsPerConn} the
        whole machine's CPU a connection and C{machineShare} the median
        number of CPUs it kept busy (both L{None} where unknown).
    """
    groups: Dict[Tuple[str, str, str, int], List[Round]] = {}
    for r in rounds:
        key = (r.workload, r.variant, r.daemon, r.concurrency)
        groups.setdefault(key, []).append(r)
    rows = []
    for (workload, variant, daemon, conc), rs in groups.items():
        rates = [r.result["rate"] for r in rs]
        completed = sum(r.result["completed"] for r in rs)
        cpu = sum(r.daemonCpuSeconds for r in rs)
        parentCpu = sum(r.parentCpuSeconds for r in rs)
        readBytes = sum(r.result["bytes_read"] for r in rs)
        perConnection = expected[workload]
        rows.append(
            {
                "workload": workload,
                "variant": variant,
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
                "clientThreads": max(int(r.result.get("threads", 1)) for r in rs),
                "daemonUsPerConn": cpu * 1e6 / completed if completed else 0.0,
                "parentUsPerConn": parentCpu * 1e6 / completed if completed else 0.0,
                "parentShare": statistics.median(
                    _share(r.parentCpuSeconds, r.result) for r in rs
                ),
                "helperShare": statistics.median(
                    _share(r.daemonCpuSeconds - r.parentCpuSeconds, r.result)
                    for r in rs
                ),
                "machineUsPerConn": _machinePerConnection(rs),
                "machineShare": _machineShare(rs),
                "errors": sum(r.result["errors"] for r in rs),
                "completed": completed,
                "bytesOk": perConnection is None
                or readBytes == completed * perConnection,
            }
        )
    return rows


def rowLabel(row: Mapping) -> str:
    """
    The workload of a L{summarise} row, with its variant if it has one.
    """
    return (
        f"{row['workload']} [{row['variant']}]"
        if row.get("variant")
        else row["workload"]
    )


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
            f"| {rowLabel(r)} | {r['daemon']} | {r['concurrency']} "
            f"| {r['rate']:.0f} | {r['rateMin']:.0f}-{r['rateMax']:.0f} "
            f"| {r['p50us'] / 1000:.2f} | {r['p99us'] / 1000:.2f} "
            f"| {r['daemonUsPerConn']:.0f} ({r['parentUsPerConn']:.0f}) "
            f"| {clientCpuCell(r)} "
            f"| {r['errors']:.0f} | {'yes' if r['bytesOk'] else 'NO'} |"
        )
    base = {
        (rowLabel(r), r["concurrency"]): r["rate"]
        for r in rows
        if r["daemon"] == baseline
    }
    ratios = []
    for r in rows:
        key = (rowLabel(r), r["concurrency"])
        if r["daemon"] != baseline and base.get(key):
            ratios.append(
                f"- {key[0]}, C={r['concurrency']}: {r['daemon']}/{baseline}"
                f" = {r['rate'] / base[key]:.2f}x"
            )
    if ratios:
        out += ["", *ratios]
    return "\n".join(out)
