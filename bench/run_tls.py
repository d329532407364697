#!/usr/bin/env python3
"""
TLS benchmark: a TLS hello service in xinetd-twisted (C{tls_certificate})
against stunnel4 in front of xinetd, on loopback, by hand.

Both serve the same spawned hello program (bench/hello.c) for full TLS
handshakes (no session resumption) from one client: C threads of a Python
TLS client, each connecting, reading the line and the close.  Rounds
alternate between the two set-ups.  Prints connections per second (median
of the rounds), the ratio ours/baseline, and the CPU per connection of the
long-lived processes (our daemon; stunnel + xinetd).

    sudo python3 bench/run_tls.py                  # 400 connections, C = 1 and 8
    sudo python3 bench/run_tls.py --connections 1000 --rounds 5

Never run in CI: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import HELLO_LINE, REPO, Workload  # noqa: E402
from daemons import XINETD, Daemon  # noqa: E402

STUNNEL = "/usr/bin/stunnel4"
TICK = os.sysconf("SC_CLK_TCK")


def makeCertificate(directory: Path) -> Tuple[Path, Path]:
    """
    A throw-away P-256 certificate and key.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def clientContext() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch(context: ssl.SSLContext, port: int, timeout: float = 10.0) -> bytes:
    """
    One full handshake, then everything until the server closes.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw) as tls:
            chunks = []
            while True:
                try:
                    data = tls.recv(4096)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)


def waitReady(port: int, timeout: float = 30.0) -> None:
    context = clientContext()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch(context, port, 2.0) == HELLO_LINE:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing serves TLS hello on {port}")


def load(port: int, connections: int, concurrency: int) -> Tuple[float, int]:
    """
    C{connections} fetches from C{concurrency} threads.

    @return: (connections per second, errors).
    """
    errors = [0]
    lock = threading.Lock()
    share = [connections // concurrency] * concurrency
    share[0] += connections - sum(share)

    def worker(count: int) -> None:
        context = clientContext()
        for _ in range(count):
            try:
                ok = fetch(context, port) == HELLO_LINE
            except OSError:
                ok = False
            if not ok:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in share]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return connections / (time.monotonic() - started), errors[0]


def cpuTicks(pids: Sequence[int]) -> Dict[Tuple[int, int], int]:
    tree: Dict[Tuple[int, int], int] = {}
    for pid in pids:
        tree.update(benchlib.processTree(pid))
    return tree


def setUp(tmp: Path, hello: Path) -> Dict[str, Tuple[List[Daemon], int]]:
    """
    Start our daemon and stunnel + xinetd; return, by name, the processes
    and the TLS port to load.
    """
    cert, key = makeCertificate(tmp)
    hello_ = Workload("hello", str(hello), 0, len(HELLO_LINE))
    oursPort, xinetdPort, stunnelPort = (benchlib.freePort() for _ in range(3))
    ours = tmp / "ours.conf"
    ours.write_text(
        benchlib.renderConfig([hello_], {"hello": oursPort}).replace(
            "\tcps         = 0 0\n",
            f"\tcps         = 0 0\n\ttls_certificate = {cert}\n\ttls_key = {key}\n",
        )
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    oursDaemon = Daemon(
        "ours",
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "xinetd", "--config", str(ours)],
        {"hello": oursPort},
        tmp / "ours.log",
        cwd=REPO,
        env=env,
    )  # fmt: skip
    xinetdConf = tmp / "xinetd.conf"
    xinetdConf.write_text(benchlib.renderConfig([hello_], {"hello": xinetdPort}))
    xinetd = Daemon(
        "xinetd",
        [XINETD, "-dontfork", "-stayalive", "-f", str(xinetdConf)],
        {"hello": xinetdPort},
        tmp / "xinetd.log",
    )
    stunnelConf = tmp / "stunnel.conf"
    stunnelConf.write_text(
        "foreground = yes\npid =\ndebug = 3\n[hello]\n"
        f"accept = 127.0.0.1:{stunnelPort}\nconnect = 127.0.0.1:{xinetdPort}\n"
        f"cert = {cert}\nkey = {key}\nsslVersionMin = TLSv1.2\n"
    )
    stunnel = Daemon("stunnel", [STUNNEL, str(stunnelConf)], {}, tmp / "stunnel.log")
    for daemon in (oursDaemon, xinetd, stunnel):
        daemon.start()
    return {
        "ours": ([oursDaemon], oursPort),
        "stunnel+xinetd": ([stunnel, xinetd], stunnelPort),
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (user = nobody, as xinetd)", file=sys.stderr)
        return 2
    _, hello = benchlib.build()
    with tempfile.TemporaryDirectory(prefix="xt-bench-tls-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        setups = setUp(tmp, hello)
        try:
            for _, port in setups.values():
                waitReady(port)
            rates: Dict[Tuple[str, int], List[float]] = {}
            cpu: Dict[Tuple[str, int], float] = {}
            errors: Dict[Tuple[str, int], int] = {}
            for concurrency in args.concurrency:
                for round_ in range(args.rounds):
                    order = list(setups.items())
                    if round_ % 2:
                        order.reverse()
                    for label, (daemons, port) in order:
                        pids = [d.pid for d in daemons]
                        before = cpuTicks(pids)
                        rate, failed = load(port, args.connections, concurrency)
                        ticks = benchlib.longLivedCpu(before, cpuTicks(pids))
                        key = (label, concurrency)
                        rates.setdefault(key, []).append(rate)
                        cpu[key] = cpu.get(key, 0.0) + ticks / TICK
                        errors[key] = errors.get(key, 0) + failed
            print("| C | set-up | conn/s (median) | ratio | CPU µs/conn | errors |")
            print("|---|---|---|---|---|---|")
            for concurrency in args.concurrency:
                base = statistics.median(rates[("stunnel+xinetd", concurrency)])
                for label in setups:
                    key = (label, concurrency)
                    median = statistics.median(rates[key])
                    perConn = cpu[key] * 1e6 / (args.connections * args.rounds)
                    print(
                        f"| {concurrency} | {label} | {median:.0f} | "
                        f"{median / base:.2f} | {perConn:.0f} | {errors[key]} |"
                    )
        finally:
            for daemons, _ in setups.values():
                for daemon in daemons:
                    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
