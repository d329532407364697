"""
C{--helper-idle}: through the real daemon, a service user's spawn
sub-helper exits once idle, then the root helper, and the next connection
starts others.
"""

from __future__ import annotations

import os
import pwd
import time
from typing import List

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_integration_access import _descendants
from tests.test_integration_kinds import STREAM_WAIT_SERVER, _interpreter
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

    def helpers(self, daemon: Daemon) -> List[int]:
        """
        Every helper process of the daemon (root helper and sub-helpers).
        """
        assert daemon.process is not None
        return [
            pid
            for pid, args in _descendants(daemon.process.pid).items()
            if "helper" in args
        ]

    def test_rootHelperExitsWhenIdle(self) -> None:
        """
        With C{--helper-idle 1}, once nobody's sub-helper has gone the root
        helper goes too, leaving the daemon alone; the next connection
        starts new ones and its server still runs as nobody.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root: a service of another user")
        port = freePort()
        config = (
            f"service whoami\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
            f"\tsocket_type = stream\n\twait = no\n\tbind = {HOST}\n"
            "\tuser = nobody\n\tserver = /usr/bin/id\n\tserver_args = -un\n"
            "\tcps = 0 0\n}\n"
        )
        d = Daemon(config, ["--helper-idle", "1"])
        self.addCleanup(d.cleanup)
        d.start(waitFor=(HOST, port))
        self.assertEqual(fetch(HOST, port), b"nobody\n")
        first = self.helpers(d)
        self.assertTrue(first)
        deadline = time.monotonic() + 20
        while self.helpers(d) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.helpers(d), [])
        for pid in first:
            self.assertFalse(os.path.exists(f"/proc/{pid}"))
        self.assertEqual(fetch(HOST, port), b"nobody\n")
        self.assertEqual(fetch(HOST, port), b"nobody\n")
        log = d.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("spawn helper ended", log)
        self.assertNotIn("died", log)

    def test_waitServiceAfterRootHelperRetired(self) -> None:
        """
        A C{wait = yes} server keeps the helpers while it runs; once it
        has exited and they are all gone, the next client gets a new
        server from new helpers.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root: a service of another user")
        port = freePort()
        d = Daemon("", ["--helper-idle", "1"])
        self.addCleanup(d.cleanup)
        server = os.path.join(d.directory, "streamwait.py")
        with open(server, "w") as f:
            f.write(STREAM_WAIT_SERVER)
        os.chmod(server, 0o755)
        with open(d.configPath, "w") as f:
            f.write(
                f"service swait\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
                f"\tsocket_type = stream\n\twait = yes\n\tbind = {HOST}\n"
                f"\tuser = nobody\n\tserver = {_interpreter()}\n"
                f"\tserver_args = -I -S {server} 0.5\n}}\n"
            )
        d.start(waitFor=(HOST, port))
        first = fetch(HOST, port).split()  # start()'s probe was the first
        self.assertEqual(first[1], b"2")
        self.assertTrue(self.helpers(d))
        deadline = time.monotonic() + 20
        while self.helpers(d) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.helpers(d), [])
        self.assertFalse(os.path.exists(f"/proc/{int(first[0])}"))
        second = fetch(HOST, port).split()
        self.assertNotEqual(second[0], first[0])
        self.assertEqual(second[1], b"1")
        self.assertNotIn("Traceback", d.log())
