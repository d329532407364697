"""
C{flags += FREEBIND}: IP_FREEBIND / IPV6_FREEBIND, so that C{bind} may name
an address not configured yet (openSUSE/xinetd#13).  The daemon runs in a
network namespace the test creates, binds addresses that namespace does not
have, and serves them once the test adds them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import List

from twisted.trial.unittest import SynchronousTestCase

import tests.daemon
from tests.daemon import Daemon, freePort
from tests.test_integration_kinds import _attrs, _KindsTestCase, _service, _waitFor
from tests.test_integration_stream import _requireRoot
from xinetd_twisted.listen.sockets import (
    IP_FREEBIND,
    IPV6_FREEBIND,
    SocketSpec,
    openSocket,
)

ADDRESS4 = "10.213.0.1"
ADDRESS6 = "fd00:213::1"
UNFREE4 = "10.213.0.2"

CLIENT = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
s.settimeout(10)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(sys.argv[3].encode())
s.shutdown(socket.SHUT_WR)
sys.stdout.write(s.makefile("rb").read().decode())
"""


class OptionTests(SynchronousTestCase):
    """
    The socket option itself, on loopback.
    """

    def test_set(self) -> None:
        """A FREEBIND spec sets IP_FREEBIND (IPV6_FREEBIND) before bind."""
        for family, host, level, option in (
            (socket.AF_INET, "127.0.0.1", socket.IPPROTO_IP, IP_FREEBIND),
            (socket.AF_INET6, "::1", socket.IPPROTO_IPV6, IPV6_FREEBIND),
        ):
            spec = SocketSpec(family, socket.SOCK_STREAM, "tcp", host, 0, freebind=True)
            sock = openSocket(spec)
            self.addCleanup(sock.close)
            self.assertEqual(sock.getsockopt(level, option), 1)

    def test_notSet(self) -> None:
        """Without the flag the option stays off."""
        spec = SocketSpec(socket.AF_INET, socket.SOCK_STREAM, "tcp", "127.0.0.1", 0)
        sock = openSocket(spec)
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IP, IP_FREEBIND), 0)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class NamespaceTests(_KindsTestCase):
    """
    The real daemon in a network namespace of its own.
    """

    def setUp(self) -> None:
        _requireRoot()
        if shutil.which("ip") is None:
            self.skipTest("ip not installed (Debian package iproute2)")
        self.namespace = f"xt-freebind-{os.getpid()}"
        try:
            _ip("netns", "add", self.namespace)
        except subprocess.CalledProcessError as e:
            self.skipTest(f"cannot create a network namespace: {e.stderr!r}")
        self.addCleanup(_ip, "netns", "del", self.namespace)
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        original = tests.daemon.twistdCommand
        prefix = ["ip", "netns", "exec", self.namespace]
        self.patch(tests.daemon, "twistdCommand", lambda: prefix + original())

    def inside(self, host: str, port: int, data: str) -> str:
        """
        What a client inside the namespace gets back.
        """
        command: List[str] = ["ip", "netns", "exec", self.namespace]
        command += [shutil.which("python3") or "/usr/bin/python3", "-I", "-S", "-c"]
        result = subprocess.run(
            command + [CLIENT, host, str(port), data],
            capture_output=True,
            timeout=30,
        )
        return result.stdout.decode()

    def test_bindBeforeTheAddressExists(self) -> None:
        """
        With FREEBIND, services bind IPv4 and IPv6 addresses the namespace
        does not have and serve them once they are added; without it the
        bind fails.
        """
        port = freePort()

        def echo(serviceId: str, bind: str, flags: str) -> str:
            return _service(
                "echo",
                _attrs(
                    type="INTERNAL UNLISTED",
                    id=serviceId,
                    port=port,
                    bind=bind,
                    socket_type="stream",
                    wait="no",
                    **({"flags": flags} if flags else {}),
                ),
            )

        def build(d: Daemon) -> str:
            return (
                echo("free4", ADDRESS4, "FREEBIND")
                + echo("free6", ADDRESS6, "FREEBIND")
                + echo("plain", UNFREE4, "")
            )

        d = self.startDaemon(build, None)
        self.assertIn("bind failed for service plain", d.log())
        self.assertIn(f"free4 listening on {ADDRESS4}:{port}/tcp", d.log())
        _ip("-n", self.namespace, "addr", "add", f"{ADDRESS4}/24", "dev", "lo")
        _ip("-n", self.namespace, "addr", "add", f"{ADDRESS6}/64", "dev", "lo", "nodad")
        self.assertTrue(
            _waitFor(lambda: self.inside(ADDRESS4, port, "four\n") == "four\n"),
            d.log(),
        )
        self.assertEqual(self.inside(ADDRESS6, port, "six\n"), "six\n")
