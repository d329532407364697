#!/usr/bin/env python3
"""
Spawn benchmark: xinetd-twisted against real xinetd, on loopback, by hand.

Both daemons read the same xinetd.conf (only the ports differ), run as root
so that C{user = nobody} works, and are measured in alternation: for each
workload and concurrency, R rounds of N connections, each round running the
daemons in swapped order.  Prints a Markdown table of medians, the ratio
ours/xinetd, the daemons' CPU per connection (parent and long-lived helpers,
the parent's share in parentheses; never the spawned children) and their
idle memory.

    sudo python3 bench/run_spawn.py                 # hello + cat, C = 1 and 8
    sudo python3 bench/run_spawn.py --only xinetd --quick
    sudo python3 bench/run_spawn.py --log --workloads hello

Never run in CI: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import attr

# Run as a script: make benchlib importable whatever the cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import REPO, Round, Workload  # noqa: E402

XINETD = "/usr/sbin/xinetd"
TICK = os.sysconf("SC_CLK_TCK")


class Daemon:
    """
    One super-server process started by this script, and only that one.

    @ivar name: C{"xinetd"} or C{"ours"}.
    @ivar ports: service name to the port this daemon's config uses.
    """

    def __init__(
        self,
        name: str,
        argv: List[str],
        ports: Dict[str, int],
        logPath: Path,
        cwd: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ports = ports
        self.logPath = logPath
        self.cwd = cwd
        self.env = env
        self.process: Optional[subprocess.Popen] = None
        self.idleRssKiB = 0
        self.idlePssKiB = 0
        self.idleProcesses = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """
        Start the daemon in the foreground, its output into its log file.
        """
        log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def waitReady(self, service: str, expected: bytes, timeout: float = 30.0) -> None:
        """
        Wait until C{service} answers one connection with C{expected} bytes
        (or anything, when C{expected} is empty).

        @raise RuntimeError: the daemon exited or never answered in time.
        """
        deadline = time.monotonic() + timeout
        lastError = "no attempt"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode}"
                )
            try:
                reply = fetchOnce(self.ports[service])
                if not expected or reply == expected:
                    return
                lastError = f"unexpected reply {reply[:80]!r}"
                print(f"  {self.name}: {service}: {lastError}; retrying")
            except ConnectionRefusedError as e:
                lastError = str(e)  # not listening yet: the normal case
            except OSError as e:
                # Accepted but no EOF in time, or reset: worth seeing, since
                # each such attempt is one more connection in the logs.
                lastError = str(e)
                print(f"  {self.name}: {service}: {lastError}; retrying")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not serving {service}: {lastError}")

    def stop(self) -> None:
        """
        SIGTERM the daemon by its pid; SIGKILL if it lingers.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        try:
            return self.logPath.read_text(errors="replace")
        except OSError:
            return ""


def fetchOnce(port: int, timeout: float = 2.0) -> bytes:
    """
    Connect to 127.0.0.1:C{port} and read until EOF (bounded in bytes and time).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.shutdown(socket.SHUT_WR)
        chunks = []
        total = 0
        while total < 65536:
            data = s.recv(4096)
            if not data:
                break
            chunks.append(data)
            total += len(data)
        return b"".join(chunks)


def makeDaemons(
    only: str,
    tmp: Path,
    services: Sequence[Workload],
    log: bool,
    idle: Sequence[Workload] = (),
    spawners: Sequence[str] = (),
    metrics: bool = False,
) -> List[Daemon]:
    """
    Write one config per daemon (same text, own ports) and describe how each
    daemon is started; nothing runs yet.

    @param idle: services configured (each listening) but never connected to.
    @param spawners: values for our C{--spawner} option, one daemon each
        (named C{ours-<spawner>}); empty for one daemon C{ours} with the
        plugin's default spawner.
    @param metrics: also run C{ours-metrics}, our daemon with C{--metrics}
        on (the cost of counting).
    """
    daemons = []
    ours = [f"ours-{s}" for s in spawners] or ["ours"]
    if metrics:
        ours.append("ours-metrics")
    for name in ["xinetd", *ours]:
        if only != "both" and not name.startswith(only):
            continue
        ports = {w.name: benchlib.freePort() for w in services}
        ports.update({w.name: benchlib.freePort() for w in idle})
        serviceLog = tmp / f"{name}-services.log" if log else None
        cfg = tmp / f"{name}.conf"
        cfg.write_text(benchlib.renderConfig([*services, *idle], ports, serviceLog))
        daemonLog = tmp / f"{name}.log"
        if name == "xinetd":
            argv = [XINETD, "-dontfork", "-stayalive", "-f", str(cfg)]
            argv += ["-filelog", str(daemonLog)]
            daemons.append(Daemon(name, argv, ports, daemonLog))
        else:
            # twistd's own runner: it calls privilegedStartService (sockets
            # below 1024, then the rest) as xinetd's plugin expects.
            argv = [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "xinetd",
                "--config",
                str(cfg),
            ]
            if name == "ours-metrics":
                where = f"tcp:{benchlib.freePort()}:interface=127.0.0.1"
                argv += ["--metrics", where]
            elif name != "ours":
                argv += ["--spawner", name[len("ours-") :]]
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
            )
            daemons.append(Daemon(name, argv, ports, daemonLog, cwd=REPO, env=env))
    return daemons


def loadavg() -> str:
    """
    The 1, 5 and 15 minute load averages: other work on the machine skews
    every number here, and this is how the reader sees it.
    """
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machineFacts() -> str:
    """
    The facts a reader needs to compare a results table with another.
    """
    import twisted

    xinetdVersion = "absent"
    if os.path.exists(XINETD):
        out = subprocess.run([XINETD, "-version"], capture_output=True, text=True)
        xinetdVersion = (out.stdout + out.stderr).strip().splitlines()[0]
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; nproc {os.cpu_count()}; "
        f"cpu {model}; kernel {platform.release()}; "
        f"python {platform.python_version()}; twisted {twisted.__version__}; "
        f"xinetd {xinetdVersion}"
    )


def measure(
    daemons: Sequence[Daemon],
    client: Path,
    services: Sequence[Workload],
    concurrencies: Sequence[int],
    rounds: int,
    connections: int,
    timeLimit: float,
) -> List[Round]:
    """
    Alternate the daemons over rounds of each workload and concurrency.
    """
    results = []
    for w in services:
        for conc in concurrencies:
            for r in range(rounds):
                order = list(daemons) if r % 2 == 0 else list(reversed(daemons))
                for d in order:
                    before = benchlib.processTree(d.pid)
                    res = benchlib.runClient(
                        client, d.ports[w.name], conc, connections, timeLimit, w.payload
                    )
                    after = benchlib.processTree(d.pid)
                    cpu = benchlib.longLivedCpu(before, after) / TICK
                    parent = benchlib.longLivedCpu(
                        {k: v for k, v in before.items() if k[0] == d.pid}, after
                    )
                    results.append(Round(w.name, d.name, conc, res, cpu, parent / TICK))
                    print(
                        f"  {w.name:8} {d.name:7} C={conc:<3} round {r + 1}: "
                        f"{res['rate']:7.0f} conns/s  errors {res['errors']:.0f}"
                        f"  daemon CPU {cpu * 1e6 / max(res['completed'], 1):.0f} us/conn",
                        flush=True,
                    )
    return results


def parseArgs(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=3000, help="per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", default="1,8", help="comma-separated")
    p.add_argument(
        "--workloads",
        default="hello,cat",
        help="comma-separated from hello, cat, echo, daytime",
    )
    p.add_argument("--only", choices=("both", "xinetd", "ours"), default="both")
    p.add_argument(
        "--log",
        action="store_true",
        help="log_type = FILE with log_on_success = PID HOST EXIT DURATION",
    )
    p.add_argument("--quick", action="store_true", help="800 connections, 1 round")
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
        "--extra-services",
        type=int,
        default=0,
        help="also configure this many idle hello services (own ports)",
    )
    p.add_argument(
        "--metrics",
        action="store_true",
        help="also run our daemon with --metrics on (daemon ours-metrics)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    args = p.parse_args(argv)
    if args.quick:
        args.connections, args.rounds = 800, 1
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.workloads = args.workloads.split(",")
    args.spawner = [s for s in args.spawner.split(",") if s]
    return args


def main(argv: Sequence[str]) -> int:
    args = parseArgs(argv)
    if os.geteuid() != 0:
        print(
            "run_spawn.py must run as root: the services run as user = nobody,\n"
            "which both xinetd and xinetd-twisted can only set up as root.",
            file=sys.stderr,
        )
        return 2
    if args.only in ("both", "xinetd") and not os.path.exists(XINETD):
        print(f"{XINETD} is missing: apt-get install xinetd", file=sys.stderr)
        return 2
    client, hello = benchlib.build()
    known = benchlib.workloads(hello)
    unknown = [w for w in args.workloads if w not in known]
    if unknown:
        print(f"unknown workloads: {unknown}; known: {list(known)}", file=sys.stderr)
        return 2
    services = [known[w] for w in args.workloads]

    tmp = Path(tempfile.mkdtemp(prefix="xinetd-bench-"))
    # The daemons and `nobody` must reach the log files and the config.
    tmp.chmod(0o755)
    idle = [
        attr.evolve(known["hello"], name=f"idle{i}") for i in range(args.extra_services)
    ]
    daemons = makeDaemons(
        args.only, tmp, services, args.log, idle, args.spawner, args.metrics
    )
    print(machineFacts())
    loadBefore = loadavg()
    print(f"configs and logs in {tmp}")
    status = 0
    try:
        for d in daemons:
            d.start()
            try:
                for w in services:
                    d.waitReady(
                        w.name, benchlib.HELLO_LINE if w.name == "hello" else b""
                    )
            except RuntimeError as e:
                d.stop()
                print(f"\n{d.name} failed to start: {e}\n--- {d.logPath} ---")
                print(d.log()[-4000:])
                return 1
            time.sleep(0.5)
            pids = [pid for pid, _ in benchlib.processTree(d.pid)]
            d.idleRssKiB = benchlib.rssKiB(pids)
            d.idlePssKiB = benchlib.pssKiB(pids)
            d.idleProcesses = len(pids)
        for d in daemons:
            # Warm-up: page cache, allocator, and helpers started on first use.
            for w in services:
                benchlib.runClient(client, d.ports[w.name], 4, 300, 20.0, w.payload)
        rounds = measure(
            daemons,
            client,
            services,
            args.concurrency,
            args.rounds,
            args.connections,
            args.time_limit,
        )
        rows = benchlib.summarise(rounds, {w.name: w.expectedBytes for w in services})
        print()
        print(
            f"{args.rounds} rounds x {args.connections} connections, "
            f"log {'FILE' if args.log else 'off'}, user = nobody, "
            f"{len(services) + len(idle)} services configured\n"
        )
        print(benchlib.formatTable(rows))
        print()
        for d in daemons:
            pids = [pid for pid, _ in benchlib.processTree(d.pid)]
            print(
                f"- {d.name}: idle {d.idleProcesses} process(es), "
                f"RSS {d.idleRssKiB / 1024:.1f} MiB, PSS {d.idlePssKiB / 1024:.1f} MiB;"
                f" after the runs {len(pids)} process(es), "
                f"RSS {benchlib.rssKiB(pids) / 1024:.1f} MiB, "
                f"PSS {benchlib.pssKiB(pids) / 1024:.1f} MiB"
            )
        print(f"- load average before {loadBefore}, after {loadavg()}")
        if any(r["errors"] or not r["bytesOk"] for r in rows):
            status = 3
    finally:
        for d in daemons:
            d.stop()
    if not args.keep and status == 0:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
