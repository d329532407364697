"""
The spawn helpers start each server pinned to the CPU they run on, for its
first moments only: through the real daemon, every server, whoever started
it, ends with the daemon's own CPU affinity.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Dict, Set

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, freePort
from tests.test_integration_access import _descendants
from tests.test_integration_spawnpressure import HOST


def _services(ports: Dict[str, int]) -> str:
    """
    Services whose server waits for its client: as root (started by the
    root helper) and as nobody (by a sub-helper).
    """
    return "".join(
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        f"\tsocket_type = stream\n\twait = no\n\tbind = {HOST}\n\tuser = {name}\n"
        "\tserver = /bin/cat\n\tcps = 0 0\n}\n"
        for name, port in ports.items()
    )


def _servers(daemonPid: int) -> list:
    """
    The pids of the daemon's running C{/bin/cat} servers (argv[0] C{cat}).
    """
    return [
        pid
        for pid, args in _descendants(daemonPid).items()
        if args.split(" ")[0].rsplit("/", 1)[-1] == "cat"
    ]


class ServerAffinityTests(TestCase):
    def serverAffinity(
        self, daemonPid: int, expected: Set[int], timeout: float = 10.0
    ) -> Set[int]:
        """
        The CPU affinity of the daemon's one running server once it is
        C{expected}, or as it is after C{timeout}: the helper gives it back
        just after the server's exec, so a test may look a moment before.
        """
        deadline = time.monotonic() + timeout
        while True:
            servers = _servers(daemonPid)
            mask = os.sched_getaffinity(servers[0]) if servers else set()
            if mask == expected or time.monotonic() > deadline:
                return mask
            time.sleep(0.01)

    def waitGone(self, daemonPid: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while _servers(daemonPid):
            if time.monotonic() > deadline:
                self.fail("a server did not exit after its client's EOF")
            time.sleep(0.01)

    def test_serversKeepTheDaemonsAffinity(self) -> None:
        """
        A server started by the root helper and one started by a sub-helper
        each have every CPU the daemon may run on, connection after
        connection.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root: a service of another user")
        if len(os.sched_getaffinity(0)) < 2:
            raise SkipTest("one CPU: nothing is pinned")
        ports = {name: freePort() for name in ("root", "nobody")}
        daemon = Daemon(_services(ports))
        self.addCleanup(daemon.cleanup)
        daemon.start(waitFor=(HOST, ports["root"]))
        assert daemon.process is not None
        pid = daemon.process.pid
        expected = os.sched_getaffinity(pid)
        seen = []
        for name, port in ports.items():
            for _ in range(5):
                with socket.create_connection((HOST, port), timeout=10) as client:
                    seen.append((name, self.serverAffinity(pid, expected)))
                    client.shutdown(socket.SHUT_WR)
                    client.settimeout(10)
                    self.assertEqual(client.recv(1), b"")
                self.waitGone(pid)
        self.assertEqual(seen, [(name, expected) for name in ports for _ in range(5)])
        self.assertNotIn("Traceback", daemon.log())
