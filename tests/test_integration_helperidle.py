"""
C{--helper-idle}: through the real daemon, a service user's spawn
sub-helper exits once idle and the next connection starts another.
"""

from __future__ import annotations

import os
import pwd
import time
from typing import List

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_integration_access import _descendants
from tests.test_integration_spawnpressure import HOST, _service


class HelperIdleTests(TestCase):
    def subHelpers(self, daemon: Daemon, uid: int) -> List[int]:
        """
        The daemon's helper processes running as C{uid}.
        """
        assert daemon.process is not None
        found = []
        for pid, args in _descendants(daemon.process.pid).items():
            try:
                owner = os.stat(f"/proc/{pid}").st_uid
            except OSError:  # it has just ended
                continue
            if "helper" in args and owner == uid:
                found.append(pid)
        return found

    def test_subHelperExitsWhenIdle(self) -> None:
        """
        With C{--helper-idle 1}, nobody's sub-helper is there after its
        connection and gone soon after; the next connection is served.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root: a service of another user")
        nobody = pwd.getpwnam("nobody").pw_uid
        port = freePort()
        d = Daemon(_service("idle", port, "nobody"), ["--helper-idle", "1"])
        self.addCleanup(d.cleanup)
        d.start(waitFor=(HOST, port))
        self.assertEqual(fetch(HOST, port), b"idle\n")
        [first] = self.subHelpers(d, nobody)
        deadline = time.monotonic() + 15
        while self.subHelpers(d, nobody) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.subHelpers(d, nobody), [])
        self.assertFalse(os.path.exists(f"/proc/{first}"))
        self.assertEqual(fetch(HOST, port), b"idle\n")
        self.assertNotIn("Traceback", d.log())
        self.assertNotIn("sub-helper died", d.log())
