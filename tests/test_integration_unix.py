"""
Integration tests: services on UNIX-domain sockets (C{listen_path})
through the real C{twistd -n xinetd}, with real clients (socat, and a
Python AF_UNIX client run as another user).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from typing import List

from tests.daemon import REPO, Daemon
from tests.test_integration_kinds import (
    STREAM_WAIT_SERVER,
    _attrs,
    _KindsTestCase,
    _service,
    _waitFor,
)
from tests.test_integration_stream import _interpreter, _requireRoot, _traversable

ENVIRONMENT_SERVER = r"""
import os
print(" ".join(os.environ.get(name, "-")
               for name in ("REMOTE_UID", "REMOTE_GID", "REMOTE_PID", "REMOTE_HOST")))
"""

CLIENT = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write("%d %s" % (os.getpid(), data.decode()))
"""

NOBODY = 65534


def unixFetch(path: str, send: bytes = b"", timeout: float = 10.0) -> bytes:
    """
    Connect to C{path}, send, half-close and read until EOF.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        if send:
            s.sendall(send)
        s.shutdown(socket.SHUT_WR)
        with s.makefile("rb") as replies:
            return replies.read()


def clientAs(uid: int, path: str) -> List[str]:
    """
    Run the Python client as C{uid}; its pid and what the server wrote.
    """
    result = subprocess.run(
        [_interpreter(), "-I", "-S", "-c", CLIENT, path],
        user=uid,
        group=uid,
        extra_groups=[],
        capture_output=True,
        timeout=20,
        check=True,
    )
    return result.stdout.decode().split()


class UnixSocketTests(_KindsTestCase):
    """
    listen_path services: programs (wait no and yes) and internal ones.
    """

    def unixService(self, d: Daemon, name: str, **values: object) -> str:
        values.setdefault("listen_path", os.path.join(d.directory, f"{name}.sock"))
        values.setdefault("type", "UNLISTED")
        return _service(name, _attrs(socket_type="stream", **values))

    def test_programGetsCredentials(self) -> None:
        """
        A program's environment holds the client's uid, gid and pid
        (SO_PEERCRED) and no REMOTE_HOST; START and EXIT name uid:N.
        """
        _requireRoot()

        def build(d: Daemon) -> str:
            server = self.script(d, "env.py", ENVIRONMENT_SERVER)
            return self.unixService(
                d,
                "creds",
                wait="no",
                user="nobody",
                server=_interpreter(),
                server_args=f"-I -S {server}",
                log_on_success="HOST PID EXIT",
            )

        d = self.startDaemon(build, None)
        path = os.path.join(d.directory, "creds.sock")
        pid, uid, gid, remotePid, host = clientAs(NOBODY, path)
        self.assertEqual((uid, gid, remotePid, host), ("65534", "65534", pid, "-"))
        self.assertTrue(_waitFor(lambda: "EXIT: creds" in d.log()), d.log())
        self.assertRegex(d.log(), r"START: creds pid=\d+ from=uid:65534")

    def test_refusalNamesUid(self) -> None:
        """A refused client's FAIL line names its uid."""
        _requireRoot()
        hour = (time.localtime().tm_hour + 2) % 24
        window = f"{hour:02d}:00-{hour:02d}:01"

        def build(d: Daemon) -> str:
            return self.unixService(
                d,
                "closed",
                wait="no",
                user="nobody",
                server="/bin/echo",
                access_times=window,
                log_on_failure="HOST",
            )

        d = self.startDaemon(build, None)
        path = os.path.join(d.directory, "closed.sock")
        clientAs(NOBODY, path)
        self.assertTrue(
            _waitFor(lambda: "FAIL: closed time from=uid:65534" in d.log()), d.log()
        )

    def test_socatToInternalEcho(self) -> None:
        """socat reaches an internal echo on a path."""
        socat = shutil.which("socat")
        if socat is None:
            self.skipTest("socat not installed (Debian package socat)")

        def build(d: Daemon) -> str:
            return self.unixService(d, "echo", type="INTERNAL", wait="no")

        d = self.startDaemon(build, None)
        path = os.path.join(d.directory, "echo.sock")
        result = subprocess.run(
            [socat, "-t", "5", "-", f"UNIX-CONNECT:{path}"],
            input=b"through socat\n",
            capture_output=True,
            timeout=20,
        )
        self.assertEqual(result.stdout, b"through socat\n", result.stderr)

    def test_waitServerAccepts(self) -> None:
        """A wait = yes server gets the listening UNIX socket and accepts."""
        _requireRoot()

        def build(d: Daemon) -> str:
            server = self.script(d, "streamwait.py", STREAM_WAIT_SERVER)
            return self.unixService(
                d,
                "swait",
                wait="yes",
                user="nobody",
                server=_interpreter(),
                server_args=f"-I -S {server} 1.0",
            )

        d = self.startDaemon(build, None)
        path = os.path.join(d.directory, "swait.sock")
        first = unixFetch(path).split()
        second = unixFetch(path).split()
        self.assertEqual(first[1:], [b"1", b"-"])
        self.assertEqual(second[:2], [first[0], b"2"])

    def test_ownerAndMode(self) -> None:
        """The socket file gets socket_owner and socket_mode."""
        _requireRoot()

        def build(d: Daemon) -> str:
            return self.unixService(
                d,
                "echo",
                type="INTERNAL",
                id="owned",
                wait="no",
                listen_path=os.path.join(d.directory, "owned.sock"),
                socket_owner="nobody:nogroup",
                socket_mode="0600",
            )

        d = self.startDaemon(build, None)
        status = os.lstat(os.path.join(d.directory, "owned.sock"))
        self.assertTrue(stat.S_ISSOCK(status.st_mode))
        self.assertEqual((status.st_uid, stat.S_IMODE(status.st_mode)), (NOBODY, 0o600))
        # 0600 and owned by nobody: only nobody (and root) may connect.
        self.assertEqual(
            clientAs(NOBODY, os.path.join(d.directory, "owned.sock"))[1:], []
        )

    def test_staleReplacedAndRemovedAtStop(self) -> None:
        """A stale socket file is replaced at start; the path is removed at stop."""
        d = self.daemon("")
        path = os.path.join(d.directory, "echo.sock")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        with open(d.configPath, "w") as f:
            f.write(self.unixService(d, "echo", type="INTERNAL", wait="no"))
        d.start()
        self.assertEqual(unixFetch(path, b"fresh\n"), b"fresh\n")
        d.stop()
        self.assertFalse(os.path.lexists(path))

    def test_reload(self) -> None:
        """
        A reload keeps an unchanged path's socket (new mode applied in
        place) and removes the path of a service it removes.
        """

        def config(d: Daemon, mode: str, second: bool) -> str:
            text = self.unixService(
                d, "echo", type="INTERNAL", wait="no", socket_mode=mode
            )
            if second:
                text += self.unixService(d, "daytime", type="INTERNAL", wait="no")
            return text

        d = self.startDaemon(lambda d: config(d, "0666", True), None)
        echo = os.path.join(d.directory, "echo.sock")
        daytime = os.path.join(d.directory, "daytime.sock")
        before = os.lstat(echo).st_ino
        self.assertTrue(unixFetch(daytime))
        with open(d.configPath, "w") as f:
            f.write(config(d, "0660", False))
        d.signal(signal.SIGHUP)
        self.assertTrue(_waitFor(lambda: not os.path.lexists(daytime)), d.log())
        status = os.lstat(echo)
        self.assertEqual((status.st_ino, stat.S_IMODE(status.st_mode)), (before, 0o660))
        self.assertEqual(unixFetch(echo, b"kept\n"), b"kept\n")


class ExampleTests(_KindsTestCase):
    """
    conf/xinetd.d/whoami, the bundled example.
    """

    def test_whoami(self) -> None:
        """The bundled configuration's whoami names the client's uid."""
        _requireRoot()
        if not _traversable(REPO):
            self.skipTest("the checkout is not reachable by nobody")
        with open(os.path.join(REPO, "conf", "xinetd.conf")) as f:
            d = self.daemon(f.read())
        d.start()
        path = "/tmp/xinetd-twisted-whoami.sock"
        self.assertEqual(clientAs(NOBODY, path)[1:5], ["uid", "65534", "gid", "65534"])
        d.stop()
        self.assertFalse(os.path.lexists(path))
