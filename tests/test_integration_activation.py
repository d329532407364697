"""
Integration tests: the real C{twistd -n xinetd} started by
C{systemd-socket-activate}, serving the sockets it inherits (stream and
datagram, wait and nowait, internal and programs) and never binding their
addresses itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Callable, List, Optional

import tests.daemon
from tests.daemon import Daemon, fetch, freePort
from tests.test_integration_delegation import holdersOf
from tests.test_integration_kinds import (
    DGRAM_WAIT_SERVER,
    STREAM_WAIT_SERVER,
    _attrs,
    _KindsTestCase,
    _service,
    _waitFor,
)
from tests.test_integration_stream import _interpreter, _requireRoot

HOST = "127.0.0.1"
ACTIVATE = "/usr/bin/systemd-socket-activate"


def _retrying(action: Callable[[], bytes], seconds: float = 20.0) -> Optional[bytes]:
    """
    Call C{action} until it works (the daemon is exec'ed only once the
    first client knocks, and takes a moment to serve); L{None} on timeout.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return action()
        except OSError:
            time.sleep(0.1)
    return None


def _udp(port: int, data: bytes, timeout: float = 1.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (HOST, port))
        return s.recv(65536)


def _echoStream(port: int) -> str:
    """
    The internal stream echo, id echo-stream, configured on C{port}.
    """
    return _service(
        "echo",
        _attrs(
            type="INTERNAL UNLISTED",
            id="echo-stream",
            port=port,
            bind=HOST,
            socket_type="stream",
            wait="no",
        ),
    )


class ActivationTests(_KindsTestCase):
    """
    Services on the sockets systemd-socket-activate passes.
    """

    def setUp(self) -> None:
        if shutil.which(ACTIVATE) is None:
            self.skipTest(f"{ACTIVATE} missing (Debian package systemd)")

    def activated(
        self,
        build: Callable[[Daemon], str],
        listen: List[object],
        names: List[str],
        knock: Callable[[], bytes],
        datagram: bool = False,
    ) -> tuple:
        """
        Start the daemon under systemd-socket-activate listening on
        C{listen} (ports on loopback, or paths), named C{names} (none: the
        default name); C{knock} is the first client, which makes it exec
        the daemon.

        @return: the daemon and what C{knock} got.
        """
        original = tests.daemon.twistdCommand
        prefix = [ACTIVATE, "-E", "PYTHONPATH", "-E", "PATH"]
        if datagram:
            prefix.append("-d")
        for where in listen:
            prefix += ["-l", where if isinstance(where, str) else f"{HOST}:{where}"]
        if names:
            prefix.append("--fdname=" + ":".join(names))
        self.patch(tests.daemon, "twistdCommand", lambda: prefix + original())
        answer: List[Optional[bytes]] = []
        knocker = threading.Thread(target=lambda: answer.append(_retrying(knock)))
        knocker.start()
        self.addCleanup(knocker.join, 30)
        d = self.startDaemon(build, None)
        knocker.join(30)
        self.assertTrue(answer and answer[0] is not None, d.log())
        return d, answer[0]

    def test_namedAndAddressed(self) -> None:
        """
        A socket named like a service id is its only socket (the configured
        port stays unbound); a socket named like no service serves the
        service bound to its address; an unused one is logged; children
        never see LISTEN_*.
        """
        named, addressed, spare, configured = (
            freePort(),
            freePort(),
            freePort(),
            freePort(),
        )
        user = {"user": "nobody"} if _isRoot() else {}

        def build(d: Daemon) -> str:
            return _service(
                "hello",
                _attrs(
                    type="UNLISTED",
                    port=configured,
                    bind=HOST,
                    socket_type="stream",
                    wait="no",
                    server="/usr/bin/env",
                    **user,
                ),
            ) + _echoStream(addressed)

        d, environment = self.activated(
            build,
            [named, addressed, spare],
            ["hello", "xinetd-twisted-activated.socket", "spare"],
            lambda: fetch(HOST, named),
        )
        self.assertIn(b"REMOTE_HOST=127.0.0.1", environment)
        self.assertNotIn(b"LISTEN_", environment)
        self.assertEqual(fetch(HOST, addressed, b"by address\n"), b"by address\n")
        self.assertRaises(ConnectionRefusedError, fetch, HOST, configured)
        log = d.log()
        self.assertIn(
            f"hello listening on inherited socket hello ({HOST}:{named}/tcp)", log
        )
        self.assertIn(
            f"inherited socket spare ({HOST}:{spare}/tcp) is not used by any service",
            log,
        )
        self.assertNotIn("bind failed", log)

    def test_inheritedNotHandedOver(self) -> None:
        """
        A plain service's inherited socket stays the daemon's: it is
        systemd's too, so no sub-helper is given it (one it bound would be,
        see tests.test_integration_delegation).
        """
        if not _isRoot():
            self.skipTest("needs root: a service of another user")

        named = freePort()

        def build(d: Daemon) -> str:
            return _service(
                "hello",
                _attrs(
                    type="UNLISTED",
                    port=freePort(),
                    bind=HOST,
                    socket_type="stream",
                    wait="no",
                    server="/bin/echo",
                    server_args="inherited",
                    user="nobody",
                    cps="0 0",
                ),
            )

        d, first = self.activated(build, [named], ["hello"], lambda: fetch(HOST, named))
        self.assertEqual(first, b"inherited\n")
        for _ in range(3):
            self.assertEqual(fetch(HOST, named), b"inherited\n")
        time.sleep(0.5)
        self.assertEqual(holdersOf(d, named), [])

    def test_reloadKeepsThem(self) -> None:
        """A reload (even one that changes the port) keeps the inherited sockets."""
        named, configured, moved = freePort(), freePort(), freePort()

        d, first = self.activated(
            lambda d: _echoStream(configured),
            [named],
            ["echo-stream"],
            lambda: fetch(HOST, named, b"first\n"),
        )
        self.assertEqual(first, b"first\n")
        with open(d.configPath, "w") as f:
            f.write(_echoStream(moved))
        d.signal(signal.SIGHUP)
        self.assertTrue(_waitFor(lambda: "Reconfigured" in d.log()), d.log())
        self.assertEqual(fetch(HOST, named, b"again\n"), b"again\n")
        self.assertRaises(ConnectionRefusedError, fetch, HOST, moved)

    def test_unixPath(self) -> None:
        """
        An inherited UNIX socket serves the listen_path service on its path;
        the daemon neither replaces nor removes systemd's socket file.
        """
        directory = tempfile.mkdtemp(prefix="xt-activated-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "echo.sock")

        def build(d: Daemon) -> str:
            return _service(
                "echo",
                _attrs(
                    type="INTERNAL",
                    socket_type="stream",
                    wait="no",
                    listen_path=path,
                ),
            )

        d, answer = self.activated(build, [path], [], lambda: _unixEcho(path, b"un\n"))
        self.assertEqual(answer, b"un\n")
        inode = os.lstat(path).st_ino
        self.assertIn(f"listening on inherited socket unknown (unix:{path})", d.log())
        d.stop()
        self.assertEqual(os.lstat(path).st_ino, inode)

    def test_streamWait(self) -> None:
        """A stream wait = yes server gets the inherited listening socket."""
        _requireRoot()
        port = freePort()

        def build(d: Daemon) -> str:
            server = self.script(d, "streamwait.py", STREAM_WAIT_SERVER)
            return _service(
                "swait",
                _attrs(
                    type="UNLISTED",
                    port=freePort(),
                    socket_type="stream",
                    wait="yes",
                    user="nobody",
                    server=_interpreter(),
                    server_args=f"-I -S {server} 1.0",
                ),
            )

        d, first = self.activated(build, [port], ["swait"], lambda: fetch(HOST, port))
        second = fetch(HOST, port).split()
        self.assertEqual(first.split()[1:], [b"1", b"-"])
        self.assertEqual(second[:2], [first.split()[0], b"2"])

    def test_datagram(self) -> None:
        """Datagram sockets: an internal echo, and a wait = yes program."""
        _requireRoot()
        echo, program = (
            freePort(kind=socket.SOCK_DGRAM),
            freePort(kind=socket.SOCK_DGRAM),
        )

        def build(d: Daemon) -> str:
            server = self.script(d, "dgramwait.py", DGRAM_WAIT_SERVER)
            return _service(
                "echo",
                _attrs(
                    type="INTERNAL UNLISTED",
                    id="echo-dgram",
                    port=freePort(kind=socket.SOCK_DGRAM),
                    socket_type="dgram",
                    wait="yes",
                ),
            ) + _service(
                "dwait",
                _attrs(
                    type="UNLISTED",
                    port=freePort(kind=socket.SOCK_DGRAM),
                    socket_type="dgram",
                    wait="yes",
                    user="nobody",
                    server=_interpreter(),
                    server_args=f"-I -S {server} 0",
                ),
            )

        d, reply = self.activated(
            build,
            [echo, program],
            ["echo-dgram", "dwait"],
            lambda: _udp(echo, b"ping"),
            datagram=True,
        )
        self.assertEqual(reply, b"ping")
        answer = _retrying(lambda: _udp(program, b"hello", timeout=5))
        assert answer is not None, d.log()
        self.assertEqual(answer.split()[1:], [HOST.encode(), HOST.encode(), b"hello"])


def _unixEcho(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        with s.makefile("rb") as replies:
            return replies.read()


def _isRoot() -> bool:
    return os.geteuid() == 0
