"""
Real inetd programs from Debian packages, run by the real daemon and driven
by their real clients: in.tftpd (tftpd-hpa), git daemon, rsync --daemon,
sshd -i, and a shell-script backend.

Each test skips with a reason when its program (or client) is not
installed; CI installs xinetd tftpd-hpa tftp-hpa rsync openssh-server
openssh-client git.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Callable, List, Optional, Sequence, Tuple

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon

HOST = "127.0.0.1"


def requireRoot() -> None:
    """
    Skip unless root: the services switch users (CI runs as root).
    """
    if os.geteuid() != 0:
        raise SkipTest("needs root: the services switch users (CI runs as root)")


def requireProgram(path: str, package: str) -> str:
    """
    Skip unless C{path} (or, for a bare name, something on PATH) can be run.

    @return: the program's absolute path.
    """
    found = path if os.path.isabs(path) else shutil.which(path)
    if not found or not os.access(found, os.X_OK):
        raise SkipTest(f"{path} is missing (Debian package {package})")
    return found


def service(name: str, **attributes: object) -> str:
    """
    One xinetd service block with the attributes in the order given.
    """
    lines = "".join(f"\t{k} = {v}\n" for k, v in attributes.items())
    return f"service {name}\n{{\n{lines}}}\n"


def run(
    argv: Sequence[str], timeout: float = 15.0, **kw: object
) -> subprocess.CompletedProcess:
    """
    Run a client to completion (bounded), capturing its output.
    """
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        **kw,
    )


def waitFor(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """
    Poll C{predicate} until it holds or C{timeout} seconds pass.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def freePort(kind: int = socket.SOCK_STREAM) -> int:
    """
    A port that was free a moment ago on 127.0.0.1.
    """
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class InteropTestCase(TestCase):
    """
    Starts one daemon per test in a world-readable temporary directory and
    cleans it up.

    @ivar d: the daemon of the running test.
    @ivar serviceLog: the FILE log every service of the test writes.
    """

    timeout = 60
    d: Daemon
    serviceLog: str

    def programService(
        self, name: str, port: int, user: str, server: str, **more: object
    ) -> str:
        """
        A C{type = UNLISTED} stream C{wait = no} service on loopback that logs
        to L{serviceLog}; C{more} adds or overrides attributes (C{server_args},
        or C{socket_type}/C{protocol}/C{wait} for a datagram service).
        """
        attributes: dict = dict(
            type="UNLISTED",
            port=port,
            socket_type="stream",
            wait="no",
            bind=HOST,
            user=user,
            server=server,
            log_type=f"FILE {self.serviceLog}",
            log_on_success="PID HOST EXIT",
        )
        attributes.update(more)
        return service(name, **attributes)

    def startDaemon(
        self,
        build: Callable[[Daemon], str],
        waitFor: Optional[Tuple[str, int]] = None,
    ) -> Daemon:
        """
        Write the configuration C{build(daemon)} returns (it may create
        files in C{daemon.directory} first) and start the daemon.
        """
        d = Daemon("")
        self.addCleanup(d.cleanup)
        self.d = d
        self.serviceLog = os.path.join(d.directory, "services.log")
        with open(d.configPath, "w") as f:
            f.write(build(d))
        try:
            d.start(waitFor=waitFor)
        except OSError as e:
            self.fail(f"daemon not serving {waitFor}: {e}\n{d.log()}")
        return d

    def logLines(self) -> List[str]:
        """
        The lines of the services' FILE log so far.
        """
        try:
            with open(self.serviceLog) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def explain(self, result: subprocess.CompletedProcess) -> str:
        """
        A failure message: the client's output and the daemon's logs.
        """
        return (
            f"exit {result.returncode}\nstdout: {result.stdout!r}\n"
            f"stderr: {result.stderr!r}\nservice log: {self.logLines()}\n"
            f"daemon log:\n{self.d.log()[-3000:]}"
        )
