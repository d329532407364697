"""
C{--sched-slice}: through the real daemon, the daemon and its helpers run
with the slice, the servers they start with the kernel's default.
"""

from __future__ import annotations

import os
from typing import Dict, List

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_integration_access import _descendants
from tests.test_integration_spawnpressure import HOST


def schedSlice(sched: str) -> int:
    """
    The C{se.slice} of a C{/proc/PID/sched} text, in nanoseconds.
    """
    for line in sched.splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    raise SkipTest("this kernel shows no se.slice")


def sliceOf(pid: int) -> int:
    with open(f"/proc/{pid}/sched") as f:
        return schedSlice(f.read())


def _services(ports: Dict[str, int]) -> str:
    """
    Services whose server prints its own scheduler state: as root (started
    by the root helper), as nobody (by a sub-helper), and with C{nice}
    (set up in Python in a forked child).
    """
    extra = {
        "root": "\tuser = root\n",
        "nobody": "\tuser = nobody\n",
        "nice": "\tuser = root\n\tnice = 3\n",
    }
    return "".join(
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        f"\tsocket_type = stream\n\twait = no\n\tbind = {HOST}\n{extra[name]}"
        "\tserver = /bin/cat\n\tserver_args = /proc/self/sched\n\tcps = 0 0\n}\n"
        for name, port in ports.items()
    )


class SchedSliceTests(TestCase):
    def start(self, args: List[str]) -> Dict[str, int]:
        """
        Start the daemon with C{args}; give each server's slice.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root: a service of another user")
        ports = {name: freePort() for name in ("root", "nobody", "nice")}
        self.daemon = Daemon(_services(ports), args)
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start(waitFor=(HOST, ports["nice"]))
        return {
            name: schedSlice(fetch(HOST, port).decode()) for name, port in ports.items()
        }

    def helpers(self) -> List[int]:
        """
        The daemon's helper processes (root helper and sub-helpers).
        """
        assert self.daemon.process is not None
        return [
            pid
            for pid, args in _descendants(self.daemon.process.pid).items()
            if "helper" in args
        ]

    def test_given(self) -> None:
        """
        With C{--sched-slice 100} the daemon, the root helper and nobody's
        sub-helper run with a slice of 100 us; the servers, whoever started
        them, keep the kernel's default (ours, as the test is not given a
        slice).
        """
        default = sliceOf(os.getpid())
        servers = self.start(["--sched-slice", "100"])
        if "scheduler slice not set" in self.daemon.log():
            raise SkipTest("this kernel takes no slice")
        assert self.daemon.process is not None
        helpers = self.helpers()
        self.assertGreaterEqual(len(helpers), 2)
        self.assertEqual(
            [sliceOf(pid) for pid in [self.daemon.process.pid, *helpers]],
            [100_000] * (1 + len(helpers)),
        )
        self.assertNotEqual(default, 100_000)
        self.assertEqual(servers, {"root": default, "nobody": default, "nice": default})
        self.assertNotIn("Traceback", self.daemon.log())

    def test_default(self) -> None:
        """
        By default (as with C{--sched-slice 0}) every process keeps the
        kernel's default.
        """
        default = sliceOf(os.getpid())
        servers = self.start([])
        assert self.daemon.process is not None
        helpers = self.helpers()
        self.assertGreaterEqual(len(helpers), 2)
        self.assertEqual(
            [sliceOf(pid) for pid in [self.daemon.process.pid, *helpers]],
            [default] * (1 + len(helpers)),
        )
        self.assertEqual(servers, {"root": default, "nobody": default, "nice": default})
        self.assertNotIn("scheduler slice", self.daemon.log())
