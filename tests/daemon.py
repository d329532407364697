"""
Run the real daemon (C{twistd -n xinetd}) as a subprocess for integration
tests, and talk to it over loopback with plain blocking sockets.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Set, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(REPO, "tests", "probe.py")


def twistdCommand() -> List[str]:
    """
    The real twistd command of the Python running the tests.
    """
    candidate = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(candidate, os.X_OK):
        return [candidate]
    found = shutil.which("twistd")
    if found:
        return [found]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


_HANDED_OUT: Set[Tuple[int, int]] = set()
"""The C{(kind, port)} pairs L{freePort} has returned in this process."""


def freePort(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    """
    A port that was free a moment ago on loopback, and that no earlier call
    returned: the kernel can hand the same free port to two binds in a row,
    and a test that asks for two ports must not get one port twice (its
    second service would not bind, and its clients would reach the first).
    """
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    for _ in range(1000):
        with socket.socket(family, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if (kind, port) not in _HANDED_OUT:
            _HANDED_OUT.add((kind, port))
            return port
    raise OSError("no loopback port left that this process has not used")


def waitForPort(host: str, port: int, timeout: float = 15.0) -> None:
    """
    Wait until something accepts TCP connections on host:port.
    """
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect((host, port))
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def fetch(
    host: str,
    port: int,
    send: bytes = b"",
    timeout: float = 10.0,
    halfClose: bool = True,
) -> bytes:
    """
    Connect, send C{send}, optionally half-close, and read until EOF.

    @raise socket.timeout: when no EOF arrives in time (the parent kept the
        socket open, for instance).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        if send:
            s.sendall(send)
        if halfClose:
            s.shutdown(socket.SHUT_WR)
        chunks: List[bytes] = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def readNow(sock: socket.socket) -> bytes:
    """
    Everything readable on C{sock} now, up to EOF, without waiting.
    """
    chunks: List[bytes] = []
    while True:
        try:
            data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class Daemon:
    """
    One C{twistd -n xinetd} process on a temporary configuration.

    @ivar directory: temporary directory holding the config and logs.
    @ivar logPath: twistd's log file.
    """

    def __init__(
        self,
        configText: str,
        extraArgs: Optional[List[str]] = None,
        serviceEvents: bool = True,
        environment: Optional[dict] = None,
    ) -> None:
        self.directory = tempfile.mkdtemp(prefix="xt-daemon-")
        os.chmod(self.directory, 0o755)
        self.configPath = os.path.join(self.directory, "xinetd.conf")
        with open(self.configPath, "w") as f:
            f.write(configText)
        self.logPath = os.path.join(self.directory, "twistd.log")
        self.extraArgs = extraArgs or []
        self.serviceEvents = serviceEvents
        self.environment = environment or {}
        self.process: Optional[subprocess.Popen] = None

    def start(self, waitFor: Optional[tuple] = None, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.environment)
        cmd = (
            twistdCommand()
            + [
                "-n",
                "--pidfile=",
                "--logfile",
                self.logPath,
                "xinetd",
                "--config",
                self.configPath,
            ]
            # Service lines in twistd's log too, where tests read them.
            + (["--service-events"] if self.serviceEvents else [])
            + self.extraArgs
        )
        self.process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with {self.process.returncode}:\n{self.output()}"
                )
            if "Started working" in self.log():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("daemon did not start:\n" + self.log())
            time.sleep(0.05)
        if waitFor is not None:
            waitForPort(*waitFor)

    def output(self) -> str:
        assert self.process is not None
        out = self.process.stdout.read() if self.process.stdout else b""
        return out.decode("utf-8", "replace") + "\n" + self.log()

    def log(self) -> str:
        try:
            with open(self.logPath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
