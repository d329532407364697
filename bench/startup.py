#!/usr/bin/env python3
"""
Start-up benchmark: from exec to every configured port listening, for real
xinetd and ours on the same configuration of N services (own ports), beside
the floor of any Twisted daemon: Python importing the reactor and twistd
(pyOpenSSL kept out, as the daemon keeps it out without TLS services).

    sudo python3 bench/startup.py --services 1000 --rounds 3

Never run in CI; prints medians and ratios.  bench/run_spawn.py --startup
runs the same measurement beside its other modes.  A first round, not
counted, writes the bytecode caches (as an installed package has them) and
warms the page cache.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import daemons  # noqa: E402
from benchlib import REPO, Workload  # noqa: E402

FLOOR = (
    "import sys; sys.modules['OpenSSL'] = None; "
    "from twisted.internet import reactor; import twisted.scripts.twistd"
)
KINDS = ("xinetd", "ours", "floor")


def listening(port: int) -> bool:
    """
    Whether something listens on 127.0.0.1:C{port} (a connect that is not
    refused; the connection is closed at once).
    """
    with socket.socket() as s:
        err = s.connect_ex(("127.0.0.1", port))
    return err not in (errno.ECONNREFUSED,)


def timeToListen(argv: List[str], ports: Sequence[int], env: Dict[str, str]) -> float:
    """
    Seconds from exec until the last of C{ports} listens (then every port
    is checked once), after which the daemon is stopped.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        last = ports[-1]
        while not listening(last):
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {process.returncode}")
            if time.monotonic() - started > 120:
                raise RuntimeError("not listening after 120 s")
            time.sleep(0.001)
        elapsed = time.monotonic() - started
        missing = [p for p in ports if not listening(p)]
        if missing:
            raise RuntimeError(f"{len(missing)} ports not listening")
        return elapsed
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def floor(python: str = sys.executable, env: Optional[Dict[str, str]] = None) -> float:
    """
    Seconds for C{python} to import the reactor and twistd, pyOpenSSL out.
    """
    started = time.monotonic()
    subprocess.run([python, "-c", FLOOR], check=True, env=env)
    return time.monotonic() - started


def measureStartup(
    python: str,
    tmp: Path,
    services: Sequence[Workload],
    rounds: int,
    oursOptions: Sequence[str] = (),
    kinds: Sequence[str] = KINDS,
) -> Dict[str, List[float]]:
    """
    C{rounds} rounds of xinetd, ours and the floor (or those of C{kinds}),
    in alternating order (reversed every other round), on one config text
    with fresh ports for each run, after one round that is not counted.

    @return: for each of C{kinds}, the seconds of each round.
    """
    results: Dict[str, List[float]] = {k: [] for k in kinds}
    env = daemons.oursEnv()
    for r in range(-1, rounds):
        for kind in kinds if r % 2 == 0 else list(reversed(kinds)):
            if kind == "floor":
                took = floor(python, env)
                if r >= 0:
                    results[kind].append(took)
                continue
            ports = dict(
                zip(
                    (w.name for w in services),
                    benchlib.freePorts(len(services)),
                    strict=True,
                )
            )
            cfg = tmp / f"startup-{kind}.conf"
            cfg.write_text(benchlib.renderConfig(services, ports))
            if kind == "xinetd":
                argv = daemons.xinetdArgv(cfg)
            else:
                log = ["--logfile", str(tmp / "startup-ours.log")]
                argv = daemons.oursArgv(python, cfg, oursOptions, log)
            order = [ports[w.name] for w in services]
            took = timeToListen(argv, order, env)
            if r >= 0:
                results[kind].append(took)
    return results


def formatStartup(results: Dict[str, List[float]], count: int) -> str:
    """
    The medians of L{measureStartup}'s rounds and the ratios to xinetd and
    to the floor.
    """
    med = {k: statistics.median(v) for k, v in results.items() if v}
    rounds = max(len(v) for v in results.values())
    out = [f"{count} services, {rounds} rounds, medians:"]
    for k in med:
        runs = ", ".join(f"{x * 1000:.0f}" for x in results[k])
        out.append(f"- {k}: {med[k] * 1000:.0f} ms (runs: {runs})")
    if "ours" in med and "xinetd" in med:
        out.append(f"- ours / xinetd = {med['ours'] / med['xinetd']:.1f}x")
    if "ours" in med and "floor" in med:
        out.append(
            "- ours / floor (Python + reactor + twistd) = "
            f"{med['ours'] / med['floor']:.2f}x"
        )
    return "\n".join(out)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=1, help="spread over K users")
    p.add_argument("--python", default="", help="interpreter of our daemon")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: the services run as user = nobody", file=sys.stderr)
        return 2
    _, hello = benchlib.build()
    template = benchlib.workloads(hello)["hello"]
    users = benchlib.serviceUsers(args.users)
    services = benchlib.spread(template, args.services, users, "s")
    python = daemons.daemonPython(args.python)
    with tempfile.TemporaryDirectory(prefix="xinetd-startup-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        results = measureStartup(python, tmp, services, args.rounds)
    print(formatStartup(results, args.services))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
