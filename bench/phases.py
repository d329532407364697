"""
The machinery of bench/run_spawn.py's modes: a phase starts a set of
daemons on one configuration (the same text, own ports), checks and warms
them, runs its steps (workloads at concurrencies, in alternated rounds,
maybe beside the CPU burner) and stops them by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import attr
import benchlib
import daemons
from benchlib import HELLO_LINE, Round, Workload
from daemons import Daemon

TICK = os.sysconf("SC_CLK_TCK")


class PhaseFailed(Exception):
    """
    A daemon did not start or did not answer as it should.
    """


@attr.s(frozen=True, auto_attribs=True)
class Step:
    """
    One measurement in a phase: a workload at some concurrencies.

    @ivar burn: run the CPU burner meanwhile.
    @ivar timeLimit: seconds per client run, if not the run's C{--time-limit}
        (a step bounded by time rather than by C{connections}).
    """

    workload: Workload
    variant: str
    concurrencies: Sequence[int]
    connections: int
    rounds: int
    burn: bool = False
    timeLimit: Optional[float] = None


@attr.s(auto_attribs=True)
class Bench:
    """
    One run's settings, tools and what it gathered so far.

    @ivar notes: lines about each phase's daemons (memory before and after).
    """

    args: argparse.Namespace
    client: Path
    known: Dict[str, Workload]
    tmp: Path
    python: str
    users: List[str]
    notes: List[str] = attr.Factory(list)

    @property
    def names(self) -> List[str]:
        return daemons.daemonNames(
            self.args.only,
            self.args.spawner,
            self.args.metrics,
            self.args.tcpserver,
            self.args.reuseport,
            self.args.forkservers,
        )

    def make(
        self, tag: str, services: Sequence[Workload], oursOptions: Sequence[str] = ()
    ) -> List[Daemon]:
        """
        The daemons of one phase (same config text, own ports); not started.

        @param oursOptions: options for our daemon in this phase only, after
            C{--ours-option}'s.
        """
        return daemons.makeDaemons(
            self.names,
            self.tmp,
            services,
            tag,
            self.python,
            self.args.log,
            [*self.args.ours_option, *oursOptions],
            not self.args.same_session,
        )

    @contextlib.contextmanager
    def running(
        self,
        tag: str,
        services: Sequence[Workload],
        check: Sequence[Workload],
        only: Optional[Sequence[str]] = None,
        oursOptions: Sequence[str] = (),
    ) -> Iterator[List[Daemon]]:
        """
        Start one phase's daemons, check that each serves C{check}, stop them
        by pid on the way out.

        @param only: start only the daemons of these names.
        @param oursOptions: see L{make}.
        @raise PhaseFailed: a daemon did not start or serve.
        """
        started = [
            d
            for d in self.make(tag, services, oursOptions)
            if only is None or d.name in only
        ]
        try:
            for d in started:
                d.start()
                try:
                    for w in check:
                        d.waitReady(w.name, probeReply(w), 120.0)
                except RuntimeError as e:
                    raise PhaseFailed(
                        f"{d.name} failed to start: {e}\n--- {d.logPath} ---\n"
                        + d.log()[-4000:]
                    ) from e
            yield started
        finally:
            for d in started:
                d.stop()


def probeReply(workload: Workload) -> bytes:
    """
    What a daemon serving C{workload} answers the readiness probe, which
    sends nothing: hello's line from a spawned workload without a payload;
    anything (C{b""}) from cat, which has nothing to echo, and from the
    internal services.
    """
    if workload.server is not None and not workload.payload:
        return HELLO_LINE
    return b""


def measure(
    client: Path,
    ds: Sequence[Daemon],
    step: Step,
    timeLimit: float,
    clientThreads: int = 0,
) -> List[Round]:
    """
    Alternate the daemons over the rounds of C{step} at each concurrency.

    @param clientThreads: the load client's threads for the in-process
        workloads at C>1 (0: one per CPU), see L{benchlib.clientThreads}.
    """
    results = []
    w = step.workload
    timeLimit = step.timeLimit or timeLimit
    for level, conc in enumerate(step.concurrencies):
        threads = benchlib.clientThreads(w, conc, clientThreads)
        for r in range(step.rounds):
            # Flip the order every round and every concurrency, so that a
            # step of one round per concurrency alternates too.
            for d in ds if (level + r) % 2 == 0 else list(reversed(ds)):
                before = treeOf(d)
                machineBefore = daemons.cpuTimes()
                res = benchlib.runWorkload(
                    client,
                    d.ports[w.name],
                    w,
                    conc,
                    step.connections,
                    timeLimit,
                    threads,
                )
                busy = daemons.busyTicks(machineBefore, daemons.cpuTimes())
                after = treeOf(d)
                cpu = benchlib.longLivedCpu(before, after) / TICK
                parent = benchlib.longLivedCpu(
                    {k: v for k, v in before.items() if k[0] in d.pids}, after
                )
                results.append(
                    Round(
                        w.name,
                        d.name,
                        conc,
                        res,
                        cpu,
                        parent / TICK,
                        step.variant,
                        None if busy is None else busy / TICK,
                    )
                )
                print(
                    f"  {w.name:8} {step.variant:14} {d.name:7} C={conc:<3} "
                    f"round {r + 1}: {res['rate']:7.0f} conns/s  errors "
                    f"{res['errors']:.0f}  daemon CPU "
                    f"{cpu * 1e6 / max(res['completed'], 1):.0f} us/conn  client "
                    f"{res['client_cpu_share'] * 100:.0f}% x{threads}",
                    flush=True,
                )
    return results


def treeOf(d: Daemon) -> Dict:
    """
    L{benchlib.processTree} of every process C{d} is (several for a
    L{daemons.DaemonGroup}), in one mapping.
    """
    tree: Dict = {}
    for pid in d.pids:
        tree.update(benchlib.processTree(pid))
    return tree


def treeNote(label: str, d: Daemon, exclude: Sequence[str]) -> str:
    ms = [benchlib.treeMemory(pid, exclude=exclude) for pid in d.pids]
    processes = sum(m.processes for m in ms)
    rss = sum(m.rssKiB for m in ms) / 1024
    pss = sum(m.pssKiB for m in ms) / 1024
    return f"{label} {processes} process(es), RSS {rss:.1f} MiB, PSS {pss:.1f} MiB"


def runPhase(
    bench: Bench, tag: str, services: Sequence[Workload], steps: Sequence[Step]
) -> List[Round]:
    """
    Start a set of daemons on C{services}, warm them up, run C{steps}.
    """
    measured = list({s.workload.name: s.workload for s in steps}.values())
    exclude = [Path(bench.known["hello"].server or "").name]
    rounds: List[Round] = []
    print(f"\n{tag}: {len(services)} services configured", flush=True)
    with bench.running(tag, services, measured) as ds:
        time.sleep(0.5)
        idle = {d.name: treeNote("idle", d, exclude) for d in ds}
        warmUp(bench, ds, measured)
        args = bench.args
        for step in steps:
            if not step.burn:
                rounds += measure(
                    bench.client, ds, step, args.time_limit, args.client_threads
                )
                continue
            with benchlib.burner(args.burn_bound) as burning:
                print(f"  CPU burner running (pid {burning.pid})")
                rounds += measure(
                    bench.client, ds, step, args.time_limit, args.client_threads
                )
                if burning.poll() is not None:
                    print("  WARNING: the CPU burner ended before its rounds did")
        for d in ds:
            after = treeNote("after the runs", d, exclude)
            bench.notes.append(f"- {d.name} [{tag}]: {idle[d.name]}; {after}")
    return rounds


def warmUp(bench: Bench, ds: Sequence[Daemon], measured: Sequence[Workload]) -> None:
    """
    Page cache, allocator, and the helpers started on first use.
    """
    for d in ds:
        for w in measured:
            benchlib.runWorkload(bench.client, d.ports[w.name], w, 4, 300, 20.0)


def timedFetch(port: int) -> float:
    """
    Milliseconds of one connection, connect to EOF; it must read hello.

    @raise PhaseFailed: the reply was not the hello line.
    """
    started = time.perf_counter()
    reply = daemons.fetchOnce(port, timeout=10.0)
    elapsed = (time.perf_counter() - started) * 1000
    if reply != HELLO_LINE:
        raise PhaseFailed(f"port {port} answered {reply[:80]!r}")
    return elapsed
