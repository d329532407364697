"""
Tests for the test suite's own helpers in L{tests.daemon}.
"""

from __future__ import annotations

import socket
from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from tests import daemon


class _RepeatingSocket:
    """
    A socket whose kernel hands out the ports of C{ports} in turn, the
    same one twice in a row as a real kernel sometimes does.
    """

    ports: List[int] = []

    def __init__(self, family: int, kind: int) -> None:
        self.port = 0

    def __enter__(self) -> _RepeatingSocket:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def bind(self, address: Any) -> None:
        self.port = self.ports.pop(0)

    def getsockname(self) -> Any:
        return ("127.0.0.1", self.port)


class FreePortTests(SynchronousTestCase):
    """
    L{daemon.freePort}: a port free a moment ago, never one it gave before.
    """

    def test_neverTwice(self) -> None:
        """
        When the kernel offers a port already handed out, the next offer is
        taken instead; per socket type, since TCP and UDP ports are apart.
        """
        fake = type("FakeSocketModule", (), {})()
        fake.socket = _RepeatingSocket  # type: ignore[attr-defined]
        fake.AF_INET = socket.AF_INET  # type: ignore[attr-defined]
        self.patch(daemon, "socket", fake)
        self.patch(daemon, "_HANDED_OUT", set())
        self.patch(_RepeatingSocket, "ports", [5000, 5000, 5002, 5000])
        first = daemon.freePort()
        second = daemon.freePort()
        self.assertEqual((first, second), (5000, 5002))
        self.assertEqual(daemon.freePort(kind=socket.SOCK_DGRAM), 5000)

    def test_real(self) -> None:
        """Real ports, asked for many times, are all different."""
        ports = [daemon.freePort() for _ in range(200)]
        self.assertEqual(len(set(ports)), 200)
