"""
The ceiling mode of bench/run_spawn.py: where a daemon's reactor thread
saturates, found on a machine too small to offer it that rate.

On 2 CPUs the load client and the kernel's loopback work need a core before
either daemon's reactor reaches two thirds of one (the saturation mode's
finding).  Here the daemon's own process runs under a CPU quota (a cgroup
of its own, C{cpu.max} or C{cpu.cfs_quota_us}), a share of a core the
machine can offer, and the concurrency rises until its reactor thread uses
all of that share.  The rate there, over the share, is the rate one whole
core would take; each quota is run at two shares (C{q} and C{q/2}), so the
run itself shows whether the rate scales with the CPU given.

Only the daemon's process is put under the quota, once it has warmed up:
the helpers it started meanwhile stay outside (a process moved into a
cgroup leaves its descendants where they are), and so do the servers they
start.  xinetd's forked servers would be its own children, under its
quota: xinetd is measured on internal daytime only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import attr
import benchlib
from daemons import Daemon

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 20_000
"""
The quota's period: short, so that a throttled daemon is stopped for at
most some milliseconds at a time (a connection waits in the backlog
meanwhile), long enough that a 5% share is the 1 ms cgroup v1 allows at
least.
"""
MIN_QUOTA_US = 1000


class QuotaUnavailable(Exception):
    """
    This machine (or this process) cannot set a CPU quota.
    """


def cpuHierarchy(selfCgroup: str, root: Path = CGROUP_ROOT) -> Tuple[int, Path]:
    """
    The cgroup version that has the cpu controller here and the directory of
    the cgroup this process is in, from the text of C{/proc/self/cgroup}.

    @raise QuotaUnavailable: no cpu controller is mounted.
    """
    unified: Optional[str] = None
    for line in selfCgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ident, controllers, path = parts
        if ident == "0" and controllers == "":
            unified = path
            continue
        if "cpu" in controllers.split(","):
            for mount in (root / controllers, root / "cpu"):
                if (mount / "cpu.cfs_quota_us").exists():
                    return 1, mount / path.lstrip("/")
    if unified is not None:
        base = root / unified.lstrip("/")
        if "cpu" in _words(root / "cgroup.controllers"):
            return 2, base
    raise QuotaUnavailable("no cgroup cpu controller is mounted")


def _words(path: Path) -> List[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def quotaSettings(
    version: int, share: float, period: int = PERIOD_US
) -> Dict[str, str]:
    """
    The files to write, and what, for C{share} of one CPU.
    """
    quota = round(share * period)
    if quota < MIN_QUOTA_US:
        raise QuotaUnavailable(
            f"a {share:.0%} share of a {period} us period is under {MIN_QUOTA_US} us"
        )
    if version == 1:
        return {"cpu.cfs_period_us": str(period), "cpu.cfs_quota_us": str(quota)}
    return {"cpu.max": f"{quota} {period}"}


def parseCpuStat(text: str) -> Dict[str, int]:
    """
    The counters of a cgroup's C{cpu.stat}.
    """
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def throttledShare(before: Mapping[str, int], after: Mapping[str, int]) -> float:
    """
    The share of quota periods, between two C{cpu.stat} readings, in which
    the cgroup ran out of its quota.
    """
    periods = after.get("nr_periods", 0) - before.get("nr_periods", 0)
    throttled = after.get("nr_throttled", 0) - before.get("nr_throttled", 0)
    return throttled / periods if periods > 0 else 0.0


def threadCpuNs(pid: int, proc: Path = Path("/proc")) -> int:
    """
    Nanoseconds on a CPU of C{pid}'s main thread (the reactor's), from its
    C{schedstat}; finer than the clock ticks of C{stat}.
    """
    return int(
        (proc / str(pid) / "task" / str(pid) / "schedstat").read_text().split()[0]
    )


class CpuQuota:
    """
    A cgroup of its own with C{share} of one CPU, removed on L{close}.

    With cgroup v1 it is made under the cgroup this process is in.  With
    v2, where a cgroup that holds processes (this one) cannot hand the cpu
    controller to new children, it is made under this process's cgroup if
    that already hands it down, else under the root of the hierarchy
    (exempt from that rule; systemd enables cpu there).
    """

    def __init__(
        self,
        share: float,
        name: str,
        selfCgroup: Optional[str] = None,
        root: Path = CGROUP_ROOT,
    ) -> None:
        if selfCgroup is None:
            selfCgroup = Path("/proc/self/cgroup").read_text()
        self.share = share
        self.version, self._home = cpuHierarchy(selfCgroup, root)
        settings = quotaSettings(self.version, share)
        parent = self._home
        if self.version == 2 and "cpu" not in _words(parent / "cgroup.subtree_control"):
            parent = root
        self.path = parent / name
        try:
            if self.version == 2:
                control = parent / "cgroup.subtree_control"
                if "cpu" not in _words(control):
                    control.write_text("+cpu")
            self.path.mkdir()
            for file, value in settings.items():
                (self.path / file).write_text(value)
        except OSError as e:
            self.close()
            raise QuotaUnavailable(f"cannot set a quota in {self.path}: {e}") from e

    removeTries = 50
    """
    Tries at removing the cgroup (a process moved out may still be leaving
    it), 20 ms apart.
    """

    def add(self, pid: int) -> None:
        """
        Put process C{pid} (all its threads, none of its children) under the
        quota.
        """
        (self.path / "cgroup.procs").write_text(str(pid))

    def stat(self) -> Dict[str, int]:
        return parseCpuStat((self.path / "cpu.stat").read_text())

    def close(self) -> None:
        """
        Move whatever is left back where this process is, remove the cgroup.
        """
        if not self.path.is_dir():
            return
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                (self._home / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # it has exited
        for _ in range(self.removeTries):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


@attr.s(frozen=True, auto_attribs=True)
class CeilingRound:
    """
    One load-client run against a daemon under a quota.

    @ivar reactorSeconds: CPU of the daemon's main thread during the run.
    @ivar throttled: the share of quota periods it ran out of its quota.
    """

    workload: str
    daemon: str
    share: float
    concurrency: int
    result: Mapping[str, float]
    reactorSeconds: float
    throttled: float


def row(r: CeilingRound, expectedBytes: Optional[int]) -> Dict:
    """
    The report's row of one round.
    """
    seconds = r.result.get("seconds", 0.0)
    completed = r.result["completed"]
    return {
        "workload": r.workload,
        "daemon": r.daemon,
        "share": r.share,
        "concurrency": r.concurrency,
        "rate": r.result["rate"],
        "p99us": r.result["p99_us"],
        "reactorShare": r.reactorSeconds / seconds if seconds else 0.0,
        "throttled": r.throttled,
        "clientCpu": r.result["client_cpu_share"],
        "clientThreads": int(r.result.get("threads", 1)),
        "errors": r.result["errors"],
        "completed": completed,
        "bytesOk": expectedBytes is None
        or r.result["bytes_read"] == completed * expectedBytes,
    }


def measureUnderQuota(
    client: Path,
    ds: Sequence[Daemon],
    workload: benchlib.Workload,
    share: float,
    levels: Sequence[int],
    seconds: float,
    connections: int,
    clientThreads: int = 0,
) -> List[Dict]:
    """
    Put each daemon's process under a quota of C{share} of a CPU and run
    C{workload} at each of C{levels} for C{seconds}, alternating the
    daemons; take the quotas away again.

    @return: the L{row} of each run.
    """
    quotas: Dict[str, CpuQuota] = {}
    rows = []
    try:
        for d in ds:
            quotas[d.name] = CpuQuota(share, f"xinetd-bench-{os.getpid()}-{d.name}")
            quotas[d.name].add(d.pid)
        for level, conc in enumerate(levels):
            threads = benchlib.clientThreads(workload, conc, clientThreads)
            for d in ds if level % 2 == 0 else list(reversed(ds)):
                quota = quotas[d.name]
                cpuBefore, statBefore = threadCpuNs(d.pid), quota.stat()
                res = benchlib.runWorkload(
                    client,
                    d.ports[workload.name],
                    workload,
                    conc,
                    connections,
                    seconds,
                    threads,
                )
                cpu = (threadCpuNs(d.pid) - cpuBefore) / 1e9
                r = CeilingRound(
                    workload.name,
                    d.name,
                    share,
                    conc,
                    res,
                    cpu,
                    throttledShare(statBefore, quota.stat()),
                )
                shown = row(r, workload.expectedBytes)
                rows.append(shown)
                print(
                    f"  {workload.name:8} quota {share:4.0%} {d.name:7} C={conc:<3}"
                    f" {res['rate']:7.0f} conns/s  errors {res['errors']:.0f}"
                    f"  reactor {shown['reactorShare'] * 100:.0f}% of a core,"
                    f" throttled in {r.throttled * 100:.0f}% of periods",
                    flush=True,
                )
    finally:
        for quota in quotas.values():
            quota.close()
    return rows


def saturated(r: Mapping, threshold: float) -> bool:
    """
    Whether the reactor thread of a row used C{threshold} of its quota.
    """
    return r["reactorShare"] >= threshold * r["share"]


def _at(
    rows: Sequence[Mapping], workload: str, daemon: str, share: float
) -> List[Mapping]:
    """
    The rows of C{daemon} on C{workload} at quota C{share}.
    """
    key = (workload, daemon, share)
    return [r for r in rows if (r["workload"], r["daemon"], r["share"]) == key]


def ceilingPoint(
    rows: Sequence[Mapping], workload: str, daemon: str, share: float, threshold: float
) -> Optional[Mapping]:
    """
    The lowest concurrency at which C{daemon}'s reactor used C{threshold}
    of its quota of C{share}, or L{None}.
    """
    mine = sorted(_at(rows, workload, daemon, share), key=lambda r: r["concurrency"])
    return next((r for r in mine if saturated(r, threshold)), None)


def perCore(
    rows: Sequence[Mapping], workload: str, daemon: str, share: float, threshold: float
) -> Optional[float]:
    """
    The best rate of the saturated rows at quota C{share}, over the share:
    what one whole core would take.  L{None} if no row saturated.
    """
    rates = [
        r["rate"] for r in _at(rows, workload, daemon, share) if saturated(r, threshold)
    ]
    return max(rates) / share if rates else None


def describe(
    rows: Sequence[Mapping], workload: str, daemon: str, threshold: float
) -> str:
    """
    Where C{daemon}'s reactor saturated on C{workload} at each quota, and
    the rate a core would take.
    """
    shares = sorted(
        {r["share"] for r in rows if (r["workload"], r["daemon"]) == (workload, daemon)}
    )
    if not shares:
        return "not measured"
    parts = []
    for share in shares:
        point = ceilingPoint(rows, workload, daemon, share, threshold)
        if point is None:
            top = max(
                _at(rows, workload, daemon, share), key=lambda r: r["reactorShare"]
            )
            parts.append(
                f"{share:.0%} quota: not reached (at most"
                f" {top['reactorShare'] / share * 100:.0f}% of it)"
            )
            continue
        core = perCore(rows, workload, daemon, share, threshold)
        parts.append(
            f"{share:.0%} quota: C={point['concurrency']}, {point['rate']:.0f}"
            f" conns/s, so {core:.0f}/s a core"
        )
    return "; ".join(parts)


def formatCeiling(rows: Sequence[Mapping], threshold: float) -> str:
    """
    The ceiling rows, then where each daemon's reactor saturated.
    """
    out = [
        "| workload | daemon | quota | C | conns/s | p99 ms | reactor CPU "
        "| of quota | throttled periods | client CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['workload']} | {r['daemon']} | {r['share']:.0%} | {r['concurrency']}"
            f" | {r['rate']:.0f} | {r['p99us'] / 1000:.2f}"
            f" | {r['reactorShare'] * 100:.1f}% | {r['reactorShare'] / r['share'] * 100:.0f}%"
            f" | {r['throttled'] * 100:.0f}% | {benchlib.clientCpuCell(r)} |"
        )
    out.append("")
    for workload, daemon in dict.fromkeys((r["workload"], r["daemon"]) for r in rows):
        out.append(
            f"- {workload}, {daemon}: reactor at {threshold * 100:.0f}% of its quota:"
            f" {describe(rows, workload, daemon, threshold)}"
        )
    return "\n".join(out)
