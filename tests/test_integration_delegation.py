"""
Delegated accepting through the real daemon: the compiled sub-helper of a
plain service's user accepts on the service's socket and starts each
server itself; the daemon follows every one (START and EXIT lines,
REMOTE_HOST), takes the socket back when the service stops being plain or
the sub-helper ends, and hands it over again.  Root only: a service's user
is what gives it a sub-helper.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import time
from typing import List, Optional, Tuple

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_integration_access import _descendants
from tests.test_integration_kinds import _waitFor
from xinetd_twisted.spawn import helper as helperModule

HOST = "127.0.0.1"
SCRIPT = '#!/bin/sh\necho "$1 $REMOTE_HOST"\n'


def _listeningInode(port: int) -> Optional[str]:
    """
    The socket inode of whatever listens on 127.0.0.1:C{port} (TCP).
    """
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":
                return fields[9]
    return None


def _socketInodes(pid: int) -> List[str]:
    inodes = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(target[len("socket:[") : -1])
    return inodes


def holdersOf(d: Daemon, port: int, user: str = "nobody") -> List[int]:
    """
    The helper processes of daemon C{d} running as C{user} (its
    sub-helpers) that hold the socket listening on 127.0.0.1:C{port}.
    """
    assert d.process is not None
    uid = pwd.getpwnam(user).pw_uid
    inode = _listeningInode(port)
    found = []
    for pid, args in _descendants(d.process.pid).items():
        try:
            owner = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if "helper" in args and owner == uid and inode in _socketInodes(pid):
            found.append(pid)
    return found


class DelegationTests(TestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("needs root: a service of another user")
        if not os.access(helperModule.SUBHELPER_PATH, os.X_OK):
            raise SkipTest("the compiled sub-helper is not built (make test builds it)")

    def daemon(self, services: str, extraArgs: Optional[List[str]] = None) -> Daemon:
        d = Daemon(
            "defaults\n{\n\tlog_on_success = PID HOST EXIT\n}\n" + services,
            extraArgs,
        )
        self.addCleanup(d.cleanup)
        self.script = os.path.join(d.directory, "who.sh")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        os.chmod(self.script, 0o755)
        return d

    def service(
        self, name: str, port: int, args: str, extra: str = "", cps: str = "0 0"
    ) -> str:
        """
        A service of nobody running the script with C{args}; plain unless
        C{extra} or C{cps} (xinetd's default is on: C{50 10}) say otherwise.
        """
        return (
            f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
            f"\tsocket_type = stream\n\twait = no\n\tbind = {HOST}\n"
            f"\tuser = nobody\n\tserver = {self.script}\n\tserver_args = {args}\n"
            f"\tcps = {cps}\n{extra}}}\n"
        )

    def holders(self, d: Daemon, port: int) -> List[int]:
        return holdersOf(d, port)

    def start(self, d: Daemon, port: int) -> None:
        """
        Start C{d} (its config written by now) and wait for C{port}.
        """
        d.start(waitFor=(HOST, port))

    def handedOver(
        self, args: str, extraArgs: Optional[List[str]] = None
    ) -> Tuple[Daemon, int, int]:
        """
        A daemon serving one plain service C{who} of nobody, after the
        first connection: with the pid of the sub-helper that took its
        socket.
        """
        port = freePort()
        d = self.daemon("", extraArgs)
        with open(d.configPath, "a") as f:
            f.write(self.service("who", port, args))
        self.start(d, port)
        fetch(HOST, port)
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        [holder] = self.holders(d, port)
        return d, port, holder

    def test_subHelperAccepts(self) -> None:
        """
        After the first connection the sub-helper holds the socket and
        starts the servers; each is served with REMOTE_HOST and logged
        START (its pid, the client) and EXIT as any other.
        """
        port = freePort()
        d = self.daemon("")
        with open(d.configPath, "a") as f:
            f.write(self.service("who", port, "one"))
        self.start(d, port)
        self.assertEqual(fetch(HOST, port), b"one 127.0.0.1\n")
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        for _ in range(5):
            self.assertEqual(fetch(HOST, port), b"one 127.0.0.1\n")

        # Six fetches, and the daemon's start-up probe (waitForPort).
        def logged() -> List[List[str]]:
            log = d.log()
            return [
                re.findall(r"START: who pid=(\d+) from=127\.0\.0\.1", log),
                re.findall(r"EXIT: who status=0 pid=(\d+)", log),
            ]

        self.assertTrue(_waitFor(lambda: len(logged()[1]) == 7), d.log())
        starts, exits = logged()
        self.assertEqual(sorted(starts), sorted(exits))
        self.assertEqual(len(set(starts)), 7)
        self.assertNotIn("Traceback", d.log())

    def test_notPlainNotDelegated(self) -> None:
        """
        A service with cps on (xinetd's default) or an address list is
        accepted by the daemon: its sub-helper never holds the socket.
        """
        cps, listed = freePort(), freePort()
        d = self.daemon("")
        with open(d.configPath, "a") as f:
            f.write(self.service("cps", cps, "cps", cps="50 10"))
            f.write(
                self.service("listed", listed, "listed", "\tonly_from = 127.0.0.1\n")
            )
        self.start(d, cps)
        for port, name in ((cps, b"cps"), (listed, b"listed")):
            for _ in range(3):
                self.assertEqual(fetch(HOST, port), name + b" 127.0.0.1\n")
        time.sleep(0.5)
        self.assertEqual(self.holders(d, cps) + self.holders(d, listed), [])

    def test_acceptInDaemon(self) -> None:
        """
        C{--accept-in-daemon}: a plain service's socket stays the daemon's.
        """
        port = freePort()
        d = self.daemon("", ["--accept-in-daemon"])
        with open(d.configPath, "a") as f:
            f.write(self.service("who", port, "mine"))
        self.start(d, port)
        for _ in range(3):
            self.assertEqual(fetch(HOST, port), b"mine 127.0.0.1\n")
        time.sleep(0.5)
        self.assertEqual(self.holders(d, port), [])

    def test_reload(self) -> None:
        """
        A reload that changes the server's arguments takes the socket back;
        the new arguments serve, and the socket is handed over again.
        """
        port = freePort()
        d = self.daemon("")
        base = open(d.configPath).read()
        with open(d.configPath, "w") as f:
            f.write(base + self.service("who", port, "before"))
        self.start(d, port)
        self.assertEqual(fetch(HOST, port), b"before 127.0.0.1\n")
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        with open(d.configPath, "w") as f:
            f.write(base + self.service("who", port, "after"))
        d.signal(signal.SIGHUP)
        self.assertTrue(
            _waitFor(lambda: fetch(HOST, port) == b"after 127.0.0.1\n"), d.log()
        )
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        for _ in range(3):
            self.assertEqual(fetch(HOST, port), b"after 127.0.0.1\n")
        # Made not plain: the daemon accepts again.
        with open(d.configPath, "w") as f:
            f.write(base + self.service("who", port, "after", cps="100 5"))
        d.signal(signal.SIGHUP)
        self.assertTrue(_waitFor(lambda: not self.holders(d, port)), d.log())
        self.assertEqual(fetch(HOST, port), b"after 127.0.0.1\n")
        self.assertNotIn("Traceback", d.log())

    def test_reloadRebinds(self) -> None:
        """
        A reload that binds a handed-over service's port again (turning
        PROXY on, then off) finds the port free: the sub-helper's copy of
        the old socket stopped listening when it was closed.
        """
        port = freePort()
        d = self.daemon("")
        base = open(d.configPath).read()
        with open(d.configPath, "w") as f:
            f.write(base + self.service("who", port, "r"))
        self.start(d, port)
        fetch(HOST, port)
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        for extra in ("\tproxy_protocol = 127.0.0.2\n", ""):
            with open(d.configPath, "w") as f:
                f.write(base + self.service("who", port, "r", extra))
            reloads = d.log().count("Reconfigured")
            d.signal(signal.SIGHUP)

            def reloaded(before: int = reloads) -> bool:
                return d.log().count("Reconfigured") > before

            self.assertTrue(_waitFor(reloaded), d.log())
            self.assertNotIn("bind failed", d.log())
        self.assertEqual(fetch(HOST, port), b"r 127.0.0.1\n")
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())

    def test_subHelperKilled(self) -> None:
        """
        The sub-helper holding the socket killed, the daemon accepts again
        at once, and a new sub-helper takes the socket.
        """
        d, port, holder = self.handedOver("k")
        os.kill(holder, signal.SIGKILL)
        self.assertTrue(_waitFor(lambda: not os.path.exists(f"/proc/{holder}")))
        for _ in range(3):
            self.assertEqual(fetch(HOST, port), b"k 127.0.0.1\n")
        self.assertTrue(
            _waitFor(lambda: [p for p in self.holders(d, port) if p != holder]),
            d.log(),
        )
        self.assertEqual(fetch(HOST, port), b"k 127.0.0.1\n")

    def test_stoppedSubHelper(self) -> None:
        """
        A sub-helper stopped (by its user, say) while it holds the socket
        is found stuck once clients wait there, and killed; the daemon
        serves them.
        """
        d, port, holder = self.handedOver("s")
        os.kill(holder, signal.SIGSTOP)
        self.addCleanup(self._continue, holder)
        self.assertEqual(fetch(HOST, port, timeout=30), b"s 127.0.0.1\n")
        self.assertIn("with clients waiting on a socket it accepts on", d.log())

    def _continue(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def test_idleRetirement(self) -> None:
        """
        With C{--helper-idle 1} the sub-helper gives the socket back and
        exits once idle; the next connection is served and the socket is
        handed to the new one.
        """
        d, port, holder = self.handedOver("idle", ["--helper-idle", "1"])
        self.assertTrue(_waitFor(lambda: not os.path.exists(f"/proc/{holder}")))
        self.assertEqual(fetch(HOST, port), b"idle 127.0.0.1\n")
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        self.assertNotIn("sub-helper died", d.log())
        self.assertNotIn("Traceback", d.log())

    def test_sensorTakesItBack(self) -> None:
        """
        Once a client touches a SENSOR service, a delegated service takes
        its socket back and refuses that client, as every service does.
        """
        port, trap = freePort(), freePort()
        d = self.daemon("")
        with open(d.configPath, "a") as f:
            f.write(self.service("who", port, "x"))
            f.write(
                self.service(
                    "trap", trap, "t", "\tflags = SENSOR\n\tdeny_time = FOREVER\n"
                )
            )
        self.start(d, port)
        fetch(HOST, port)
        self.assertTrue(_waitFor(lambda: self.holders(d, port)), d.log())
        self.assertEqual(fetch(HOST, trap), b"")
        self.assertTrue(_waitFor(lambda: not self.holders(d, port)), d.log())
        self.assertEqual(fetch(HOST, port), b"")
        log = d.log()
        self.assertIn("fail: who", log[log.index("global_no_access") :])
