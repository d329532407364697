"""
Micro-benchmark of the spawners: N children of a trivial program, each with
a socketpair end as fds 0-2 and (when root) uid/gid nobody, CONCURRENCY in
flight.  Reports the daemon's (reactor's) CPU per spawn, the helper's CPU
per spawn and spawns per second.  Run by hand:

    python bench/spawn_micro.py [--n 2000] [--concurrency 8] [--program /bin/true]
        [--no-rlimits]

Each child's setup carries every resource limit, as childSetupFor gives a
service that sets none (the daemon's own, RLIMIT_NOFILE soft = hard), unless
--no-rlimits.

Modes: helper (fork_exec, no Python in the child), helper-osfork (os.fork +
Python child setup, the path used for nice/rlimits/chroot), reactor
(ReactorSpawner: reactor.spawnProcess with uid/gid -> Twisted's fork path).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, protocol, reactor  # noqa: E402

from xinetd_twisted.spawn.helperspawner import HelperSpawner  # noqa: E402
from xinetd_twisted.spawn.interfaces import ChildSetup  # noqa: E402
from xinetd_twisted.spawn.reactorspawner import ReactorSpawner  # noqa: E402


class _Ended(protocol.ProcessProtocol):
    def __init__(self, done):
        self.done = done

    def processEnded(self, reason):
        self.done()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _procCPU(pid: int) -> float:
    """
    CPU of the helper and its sub-helpers (children with its command line),
    not of the spawned programs.
    """
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    total = 0.0
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(k) for k in f.read().split()]
    for p in [pid] + kids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if p != pid and f.read() != cmdline:
                    continue
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _daemonRlimits() -> tuple:
    """
    The rlimits childSetupFor gives a service that sets none.
    """
    limits = {}
    for name in sorted(dir(resource)):
        if name.startswith("RLIMIT_"):
            r = getattr(resource, name)
            limits.setdefault(r, resource.getrlimit(r))
    hard = limits[resource.RLIMIT_NOFILE][1]
    limits[resource.RLIMIT_NOFILE] = (hard, hard)
    return tuple((r, s, h) for r, (s, h) in sorted(limits.items()))


def runOne(spawner, setup, n: int, concurrency: int, helperPid):
    finished: defer.Deferred = defer.Deferred()
    state = {"started": 0, "ended": 0}

    def one():
        a, b = socket.socketpair()
        state["started"] += 1

        def done():
            state["ended"] += 1
            if state["started"] < n:
                one()
            elif state["ended"] == n:
                finished.callback(None)

        d = spawner.spawn(
            _Ended(done), setup, b.fileno(), (("REMOTE_HOST", "127.0.0.1"),)
        )
        b.close()
        a.close()
        d.addErrback(lambda f: print(f.getErrorMessage()))

    c0, h0, t0 = _cpu(), _procCPU(helperPid) if helperPid else 0.0, time.monotonic()
    for _ in range(min(concurrency, n)):
        one()

    def report(_):
        wall = time.monotonic() - t0
        cpu = _cpu() - c0
        helper = (_procCPU(helperPid) - h0) if helperPid else 0.0
        return (cpu / n * 1e6, helper / n * 1e6, n / wall)

    return finished.addCallback(report)


@defer.inlineCallbacks
def main(args):
    root = os.getuid() == 0
    creds = {"uid": 65534, "gid": 65534, "supplementaryGroups": ()} if root else {}
    setup = ChildSetup(
        args.program,
        (os.path.basename(args.program), "hello"),
        (("PATH", "/usr/bin:/bin"),),
        rlimits=() if args.no_rlimits else _daemonRlimits(),
        **creds,
    )
    modes = args.modes.split(",")
    for mode in modes:
        if mode == "reactor":
            spawner = ReactorSpawner(reactor, lenient=True)
            helperPid = None
        else:
            env = (
                {"XINETD_TWISTED_HELPER_NO_FORK_EXEC": "1"}
                if mode == "helper-osfork"
                else {}
            )
            spawner = HelperSpawner(reactor, helperEnvironment=env)
        yield spawner.start()
        if mode != "reactor":
            helperPid = spawner._helperTransport.pid
        yield runOne(
            spawner, setup, min(200, args.n), args.concurrency, helperPid
        )  # warm
        results = []
        for _ in range(args.repeat):
            results.append(
                (yield runOne(spawner, setup, args.n, args.concurrency, helperPid))
            )
        results.sort(key=lambda r: r[2])
        reactorUs, helperUs, rate = results[len(results) // 2]
        print(
            f"{mode:14s} c={args.concurrency} n={args.n}: reactor {reactorUs:7.1f} us/spawn,"
            f" helper {helperUs:6.1f} us/spawn, {rate:7.0f} spawns/s (median of {args.repeat})"
        )
        yield spawner.stop()
    reactor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--program", default="/bin/true")
    parser.add_argument("--modes", default="helper,helper-osfork,reactor")
    parser.add_argument("--no-rlimits", action="store_true")
    args = parser.parse_args()
    reactor.callWhenRunning(main, args)
    reactor.run()  # type: ignore[misc]
