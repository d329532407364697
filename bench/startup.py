"""
Start-up benchmark: from exec to every configured port listening, for real
xinetd and ours on the same configuration of N services (own ports), beside
the floor of any Twisted daemon: Python importing the reactor and twistd
(pyOpenSSL kept out, as the daemon keeps it out without TLS services).

    sudo python3 bench/startup.py --services 1000 --rounds 3

Never run in CI; prints medians and ratios.  A first round, not counted,
writes the bytecode caches (as an installed package has them) and warms
the page cache.
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
from typing import Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
XINETD = "/usr/sbin/xinetd"
FLOOR = (
    "import sys; sys.modules['OpenSSL'] = None; "
    "from twisted.internet import reactor; import twisted.scripts.twistd"
)


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


def floor(env: Dict[str, str]) -> float:
    """
    Seconds for Python to import the reactor and twistd, pyOpenSSL out.
    """
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", FLOOR], check=True, env=env)
    return time.monotonic() - started


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: the services run as user = nobody", file=sys.stderr)
        return 2
    _, hello = benchlib.build()
    known = benchlib.workloads(hello)
    import attr

    services = [attr.evolve(known["hello"], name=f"s{i}") for i in range(args.services)]
    tmp = Path(tempfile.mkdtemp(prefix="xinetd-startup-"))
    tmp.chmod(0o755)
    results: Dict[str, List[float]] = {"xinetd": [], "ours": [], "floor": []}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    # As installed, the package has its bytecode compiled (Twisted's is):
    # without this ours would compile every module from source each run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for warmUp in [True] + [False] * args.rounds:
        for name in ("xinetd", "ours"):
            ports = {w.name: benchlib.freePort() for w in services}
            cfg = tmp / f"{name}.conf"
            cfg.write_text(benchlib.renderConfig(services, ports))
            if name == "xinetd":
                cmd = [XINETD, "-dontfork", "-stayalive", "-f", str(cfg)]
            else:
                cmd = [sys.executable, "-c"]
                cmd += ["from twisted.scripts.twistd import run; run()"]
                cmd += ["-n", "--pidfile=", "--logfile", str(tmp / "ours.log")]
                cmd += ["xinetd", "--config", str(cfg)]
            order = [ports[w.name] for w in services]
            took = timeToListen(cmd, order, env)
            if not warmUp:
                results[name].append(took)
        took = floor(env)
        if not warmUp:
            results["floor"].append(took)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{args.services} services, {args.rounds} rounds, medians:")
    for k in ("xinetd", "ours", "floor"):
        print(
            f"- {k}: {med[k] * 1000:.0f} ms (runs: "
            + ", ".join(f"{x * 1000:.0f}" for x in results[k])
            + ")"
        )
    print(f"- ours / xinetd = {med['ours'] / med['xinetd']:.1f}x")
    print(
        f"- ours / floor (Python + reactor + twistd) = {med['ours'] / med['floor']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
