"""
A service's user cannot stall other users' services through its spawn
sub-helper: through the real daemon, with the sub-helper SIGSTOPped.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
from typing import List

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_integration_access import _descendants

HOST = "127.0.0.1"


def _service(name: str, port: int, user: str) -> str:
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        f"\tsocket_type = stream\n\twait = no\n\tbind = {HOST}\n"
        f"\tuser = {user}\n\tserver = /bin/echo\n\tserver_args = {name}\n"
        "\tcps = 0 0\n}\n"
    )


class StoppedSubHelperTests(TestCase):
    def test_otherUsersKeepBeingServed(self) -> None:
        """
        With nobody's sub-helper stopped and 280 connections waiting on it,
        a service of another user is still served at once.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root: services of two users")
        other = "daemon"
        try:
            pwd.getpwnam(other)
        except KeyError:
            raise SkipTest("no user 'daemon'") from None
        stalled, served = freePort(), freePort()
        d = Daemon(
            _service("stalled", stalled, "nobody") + _service("served", served, other)
        )
        self.addCleanup(d.cleanup)
        d.start(waitFor=(HOST, stalled))
        self.assertEqual(fetch(HOST, stalled), b"stalled\n")
        self.assertEqual(fetch(HOST, served), b"served\n")
        assert d.process is not None
        nobody = pwd.getpwnam("nobody").pw_uid
        helpers = [
            pid
            for pid, args in _descendants(d.process.pid).items()
            if "helper" in args and os.stat(f"/proc/{pid}").st_uid == nobody
        ]
        # One lane, or two when the start-up probe and the first fetch
        # overlapped on a loaded machine: every one of them is stopped.
        self.assertTrue(helpers)
        for pid in helpers:
            os.kill(pid, signal.SIGSTOP)
            self.addCleanup(self._continue, pid)
        clients: List[socket.socket] = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for _ in range(280):
            # Not waiting for the handshake: where the stopped sub-helper
            # accepts on the service's socket (delegated accepting), those
            # past its backlog wait for the kernel to retry their SYN.
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex((HOST, stalled))
            clients.append(c)
        started = time.monotonic()
        for _ in range(5):
            self.assertEqual(fetch(HOST, served, timeout=5), b"served\n")
        self.assertLess(time.monotonic() - started, 5)
        # The stuck sub-helper is found, logged and replaced within seconds.
        deadline = time.monotonic() + 20
        while "answered nothing" not in d.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("answered nothing", d.log())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if fetch(HOST, stalled, timeout=2) == b"stalled\n":
                    break
            except OSError:
                pass
            time.sleep(0.2)
        self.assertEqual(fetch(HOST, stalled), b"stalled\n")

    def _continue(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
