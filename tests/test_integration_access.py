"""
Integration tests: access control and limits through the real C{twistd -n
xinetd} (issue 4), over loopback.

Clients connect from 127.0.0.1, from 127.0.0.2 (the client socket is bound
to that source address before connecting) and from ::1.  The backend is a
small shell script that appends the client's address to a file before
answering, so "no process was spawned for a refused client" is checked on
what really ran, next to the daemon's START/FAIL lines in a FILE log.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, freePort

FAIL_BANNER = b"go away\r\n"

BACKEND = """#!/bin/sh
# Records who it served, answers, and (with "hold") waits for the client.
echo "$REMOTE_HOST" >> {spawns}
echo "served $REMOTE_HOST"
if [ "$1" = hold ]; then
    read line
fi
"""


def _userName() -> str:
    """
    The user the backend runs as: the daemon's own (root in CI), so that no
    test depends on another account.
    """
    return pwd.getpwuid(os.geteuid()).pw_name


def _hasIPv6Loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _waitUntil(
    predicate: Callable[[], bool], timeout: float = 10.0, message: str = ""
) -> None:
    """
    Poll C{predicate} every 20 ms until it holds, failing after C{timeout}.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {message}")
        time.sleep(0.02)


def _descendants(pid: int) -> Dict[int, str]:
    """
    Every process under C{pid}, with its command line.
    """
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True
    ).stdout
    children: Dict[int, List[int]] = {}
    args: Dict[int, str] = {}
    for line in out.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 2:
            continue
        p, pp = int(fields[0]), int(fields[1])
        args[p] = fields[2] if len(fields) > 2 else ""
        children.setdefault(pp, []).append(p)
    found: Dict[int, str] = {}
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found[c] = args.get(c, "")
                todo.append(c)
    return found


def connectFrom(
    source: Optional[str], host: str, port: int, timeout: float = 10.0
) -> socket.socket:
    """
    A TCP connection to C{host:port} whose source address is C{source}
    (any loopback address: 127.0.0.0/8 is all ours on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if source is not None:
            s.bind((source, 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def readAll(s: socket.socket) -> bytes:
    """
    Everything until EOF (a reset after the data counts as EOF).
    """
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def fetchFrom(source: Optional[str], host: str, port: int, timeout=10.0) -> bytes:
    """
    Connect from C{source}, half-close, read until EOF.
    """
    with connectFrom(source, host, port, timeout) as s:
        s.shutdown(socket.SHUT_WR)
        return readAll(s)


def readLine(s: socket.socket) -> bytes:
    """
    One line from a held connection (the backend's "served" line).
    """
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        data += chunk
    return data


class AccessDaemon:
    """
    A daemon whose services all run the recording backend and log to one
    FILE log, with C{banner_fail} set.

    @ivar ports: the port of each service, by name.
    """

    def __init__(self, test: TestCase, extraArgs: Optional[List[str]] = None):
        self.daemon = Daemon("", extraArgs=extraArgs)
        test.addCleanup(self.daemon.cleanup)
        self.directory = self.daemon.directory
        self.spawnsPath = os.path.join(self.directory, "spawns")
        self.logPath = os.path.join(self.directory, "services.log")
        self.backend = os.path.join(self.directory, "backend")
        with open(self.backend, "w") as f:
            f.write(BACKEND.format(spawns=self.spawnsPath))
        os.chmod(self.backend, 0o755)
        with open(os.path.join(self.directory, "fail.txt"), "wb") as f:
            f.write(FAIL_BANNER)
        self.ports: Dict[str, int] = {}
        self._services: List[str] = []

    @property
    def pid(self) -> int:
        """
        The daemon's pid.
        """
        assert self.daemon.process is not None
        return self.daemon.process.pid

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def service(
        self,
        name: str,
        lines: str = "",
        bind: str = "127.0.0.1",
        hold: bool = False,
        cps: str = "50 10",
    ) -> int:
        """
        Add a service running the backend; returns its port.
        """
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        port = freePort(family)
        self.ports[name] = port
        cpsLine = f"\tcps\t\t= {cps}" if cps else ""
        self._services.append(
            f"""
service {name}
{{
\ttype\t\t= UNLISTED
\tport\t\t= {port}
\tsocket_type\t= stream
\tprotocol\t= tcp
\twait\t\t= no
\tbind\t\t= {bind}
\tuser\t\t= {_userName()}
\tserver\t\t= {self.backend}
\tserver_args\t= {"hold" if hold else "once"}
{cpsLine}
{lines}
}}
"""
        )
        return port

    def internal(self, name: str, serviceId: str, socketType: str, lines: str) -> int:
        """
        Add an internal service (C{name} is the builtin's); returns its port.
        """
        kind = socket.SOCK_DGRAM if socketType == "dgram" else socket.SOCK_STREAM
        port = freePort(kind=kind)
        self.ports[serviceId] = port
        self._services.append(
            f"""
service {name}
{{
\ttype\t\t= INTERNAL UNLISTED
\tid\t\t= {serviceId}
\tport\t\t= {port}
\tsocket_type\t= {socketType}
\twait\t\t= {"yes" if socketType == "dgram" else "no"}
\tbind\t\t= 127.0.0.1
{lines}
}}
"""
        )
        return port

    def text(self) -> str:
        return f"""
defaults
{{
\tlog_type\t= FILE {self.logPath}
\tlog_on_success\t= PID HOST EXIT
\tlog_on_failure\t= HOST
\tbanner_fail\t= {self.path("fail.txt")}
}}
""" + "".join(self._services)

    def start(self) -> None:
        with open(self.daemon.configPath, "w") as f:
            f.write(self.text())
        self.daemon.start()
        # Wait on the log, not by connecting: a probe connection would be
        # counted (cps, spawns) and refused by most services here.
        count = len(self._services)
        _waitUntil(
            lambda: self.twistdLog().count(" listening on ") >= count,
            message=f"{count} services listening:\n{self.twistdLog()}",
        )

    def twistdLog(self) -> str:
        return self.daemon.log()

    def serviceLog(self) -> str:
        try:
            with open(self.logPath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def spawns(self) -> List[str]:
        """
        The client address of every backend that ran, in order.
        """
        try:
            with open(self.spawnsPath) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def backends(self) -> int:
        """
        Backend processes running now under the daemon.
        """
        return sum(self.backend in args for args in _descendants(self.pid).values())

    def waitForLog(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        _waitUntil(
            lambda: self.serviceLog().count(text) >= count,
            timeout,
            f"{count} x {text!r} in the service log:\n{self.serviceLog()}",
        )

    def waitForTwistdLog(self, text: str, timeout: float = 10.0) -> None:
        _waitUntil(
            lambda: text in self.twistdLog(),
            timeout,
            f"{text!r} in twistd's log:\n{self.twistdLog()}",
        )

    def fetch(self, name: str, source: Optional[str] = "127.0.0.1") -> bytes:
        host = "::1" if source == "::1" else "127.0.0.1"
        return fetchFrom(source, host, self.ports[name])

    def hold(self, name: str, source: str = "127.0.0.1") -> socket.socket:
        """
        A connection whose backend was started and is waiting for input.
        The caller closes it (registered for cleanup by L{AccessTestCase}).
        """
        s = connectFrom(source, "127.0.0.1", self.ports[name])
        return s


class AccessTestCase(TestCase):
    """
    Builds access daemons and checks refusals the way xinetd shows them.
    """

    def setUp(self) -> None:
        if not os.access("/bin/sh", os.X_OK):
            raise SkipTest("/bin/sh is missing: the backend is a shell script")

    def access(self, extraArgs: Optional[List[str]] = None) -> AccessDaemon:
        return AccessDaemon(self, extraArgs)

    def wrapped(self, deny: str, extra: Sequence[str] = ()) -> AccessDaemon:
        """
        An access daemon reading our own hosts.allow (empty) and
        hosts.deny (C{deny}).
        """
        d = self.access()
        allow, denyPath = d.path("hosts.allow"), d.path("hosts.deny")
        with open(allow, "w") as f:
            f.write("# nothing allowed explicitly\n")
        with open(denyPath, "w") as f:
            f.write(deny)
        d.daemon.extraArgs = ["--hosts-allow", allow, "--hosts-deny", denyPath]
        d.daemon.extraArgs += list(extra)
        return d

    def held(
        self, d: AccessDaemon, name: str, source: str = "127.0.0.1"
    ) -> socket.socket:
        """
        Hold a served connection open: its backend runs until it is closed.
        """
        s = d.hold(name, source)
        self.addCleanup(s.close)
        self.assertEqual(
            readLine(s), f"served {source}\n".encode(), f"{name} from {source}"
        )
        return s

    def assertServed(self, d: AccessDaemon, name: str, source: str) -> None:
        """
        C{source} gets the backend's answer from service C{name}, then EOF.
        """
        self.assertEqual(
            d.fetch(name, source),
            f"served {source}\n".encode(),
            f"{name} from {source}",
        )

    def assertRefused(
        self, d: AccessDaemon, name: str, source: str, reason: str
    ) -> None:
        """
        C{source} gets banner_fail then EOF, a FAIL line with C{reason} and
        from= is logged, and no backend ran for it.
        """
        line = f"FAIL: {name} {reason} from={source}"
        before = d.serviceLog().count(line)
        spawned = d.spawns()
        self.assertEqual(d.fetch(name, source), FAIL_BANNER, f"{name} from {source}")
        d.waitForLog(line, before + 1)
        self.assertEqual(d.spawns(), spawned)

    def release(self, d: AccessDaemon, s: socket.socket, name: str) -> None:
        """
        Close a held connection and wait until its backend was reaped.
        """
        exits = d.serviceLog().count(f"EXIT: {name}")
        s.close()
        d.waitForLog(f"EXIT: {name}", exits + 1)


class AddressTests(AccessTestCase):
    """
    only_from / no_access, decided in the parent before anything starts.
    """

    def test_onlyFromRefusesOthersWithoutSpawning(self) -> None:
        """
        C{only_from = 127.0.0.1} serves 127.0.0.1; 127.0.0.2 gets banner_fail
        and EOF, a FAIL address line with from=, and no process at all.
        """
        d = self.access()
        d.service("svc", "\tonly_from\t= 127.0.0.1\n")
        d.start()
        self.assertServed(d, "svc", "127.0.0.1")
        _waitUntil(lambda: d.backends() == 0, message="first backend gone")
        processes = len(_descendants(d.pid))
        for _ in range(5):
            self.assertRefused(d, "svc", "127.0.0.2", "address")
        self.assertEqual(d.spawns(), ["127.0.0.1"])
        self.assertEqual(d.serviceLog().count("START: svc"), 1)
        self.assertEqual(len(_descendants(d.pid)), processes)

    def test_forms(self) -> None:
        """
        Numeric wildcards (127.0.0.0 = 127/8, 127.0.1.0 = 127.0.1/24), /n
        masks, factorized a.b.c.{d,e}, an empty only_from, and an address in
        both lists (denied, with xinetd's error line) decide per client.
        """
        d = self.access()
        cases = {
            "wild": (
                "\tonly_from\t= 127.0.0.0\n",
                {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.5"},
            ),
            "wild24": ("\tonly_from\t= 127.0.1.0\n", {"127.0.1.5"}),
            "mask": ("\tonly_from\t= 127.0.0.2/32\n", {"127.0.0.2"}),
            "net": ("\tonly_from\t= 127.0.0.2/31\n", {"127.0.0.2", "127.0.0.3"}),
            "fact": ("\tonly_from\t= 127.0.0.{1,3}\n", {"127.0.0.1", "127.0.0.3"}),
            "empty": ("\tonly_from\t=\n", set()),
            "deny": (
                "\tno_access\t= 127.0.0.2\n",
                {"127.0.0.1", "127.0.0.3", "127.0.1.5"},
            ),
            "both": (
                "\tonly_from\t= 127.0.0.0/24\n\tno_access\t= 127.0.0.0/24\n",
                set(),
            ),
            "nested": (
                "\tonly_from\t= 127.0.0.0\n\tno_access\t= 127.0.0.3\n",
                {"127.0.0.1", "127.0.0.2", "127.0.1.5"},
            ),
        }
        for name, (lines, _) in cases.items():
            d.service(name, lines)
        d.start()
        for name, (_, allowed) in cases.items():
            for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.5"):
                if source in allowed:
                    self.assertServed(d, name, source)
                else:
                    self.assertRefused(d, name, source, "address")
        d.waitForTwistdLog(
            "Service=both: only_from list and no_access list match equally "
            "the address 127.0.0.1"
        )

    def test_ipv6Client(self) -> None:
        """
        A client on ::1 is matched by IPv6 entries: served where listed in
        only_from, refused where in no_access or not listed.
        """
        if not _hasIPv6Loopback():
            raise SkipTest("::1 cannot be bound here")
        d = self.access()
        d.service("six", "\tonly_from\t= ::1\n", bind="::1")
        d.service("nosix", "\tno_access\t= ::1\n", bind="::1")
        d.service("four", "\tonly_from\t= 127.0.0.1\n", bind="::1")
        d.start()
        self.assertServed(d, "six", "::1")
        self.assertRefused(d, "nosix", "::1", "address")
        self.assertRefused(d, "four", "::1", "address")


class BannerTests(AccessTestCase):
    """
    C{banner} goes to every client before the checks; C{banner_fail} only
    to the refused.
    """

    def test_bannerThenBannerFail(self) -> None:
        """
        A refused client reads banner then banner_fail; a served one reads
        banner then the server's output.
        """
        d = self.access()
        with open(d.path("banner.txt"), "wb") as f:
            f.write(b"hello\r\n")
        d.service(
            "svc", f"\tbanner\t\t= {d.path('banner.txt')}\n\tonly_from\t= 127.0.0.1\n"
        )
        d.start()
        self.assertEqual(d.fetch("svc", "127.0.0.2"), b"hello\r\n" + FAIL_BANNER)
        self.assertEqual(d.fetch("svc", "127.0.0.1"), b"hello\r\nserved 127.0.0.1\n")


class SpawnTests(AccessTestCase):
    """
    What the access tests rely on from the spawning path.
    """

    def test_firstClientGetsEOF(self) -> None:
        """
        The client gets EOF as soon as its server exits, the very first
        client of a service (whose spawn starts the helper's sub-helper for
        the service's credentials) included.
        """
        d = self.access()
        d.service("svc")
        d.start()
        for _ in range(2):
            self.assertEqual(
                fetchFrom("127.0.0.1", "127.0.0.1", d.ports["svc"], 5),
                b"served 127.0.0.1\n",
            )


def _windowExcluding(now: time.struct_time) -> str:
    """
    An C{access_times} window (no midnight wrap) that does not hold C{now}.
    """
    return "00:00-01:00" if now.tm_hour >= 12 else "22:00-23:00"


class TimeTests(AccessTestCase):
    """
    access_times, checked in local time before anything starts.
    """

    def test_outsideWindowRefused(self) -> None:
        """
        A window that excludes now refuses with FAIL time; one that
        includes now serves.
        """
        d = self.access()
        d.service("closed", f"\taccess_times\t= {_windowExcluding(time.localtime())}\n")
        d.service("open", "\taccess_times\t= 00:00-23:59\n")
        d.start()
        self.assertRefused(d, "closed", "127.0.0.1", "time")
        self.assertServed(d, "open", "127.0.0.1")

    def test_severalWindows(self) -> None:
        """
        Several windows: being inside any one of them is enough.
        """
        now = time.localtime()
        here = f"{now.tm_hour:02d}:00-{now.tm_hour:02d}:59"
        d = self.access()
        d.service("svc", f"\taccess_times\t= {_windowExcluding(now)} {here}\n")
        d.start()
        if time.localtime().tm_hour != now.tm_hour:
            raise SkipTest("the hour changed while the daemon started")
        self.assertServed(d, "svc", "127.0.0.1")


class LimitTests(AccessTestCase):
    """
    instances, per_source and the daemon-wide --limit, with servers held
    running by open connections.
    """

    def test_instances(self) -> None:
        """
        With C{instances = 2} and two servers running the third client is
        refused with FAIL service_limit; once one ends, a client is served.
        """
        d = self.access()
        d.service("svc", "\tinstances\t= 2\n", hold=True)
        d.start()
        first = self.held(d, "svc")
        self.held(d, "svc", "127.0.0.2")
        self.assertRefused(d, "svc", "127.0.0.3", "service_limit")
        self.assertEqual(d.backends(), 2)
        self.release(d, first, "svc")
        self.held(d, "svc", "127.0.0.3")

    def test_instancesZero(self) -> None:
        """
        C{instances = 0} refuses every client with FAIL service_limit.
        """
        d = self.access()
        d.service("svc", "\tinstances\t= 0\n")
        d.start()
        self.assertRefused(d, "svc", "127.0.0.1", "service_limit")

    def test_perSource(self) -> None:
        """
        With C{per_source = 1}, a second client from the same address is
        refused with FAIL per_source_limit while other addresses are served.
        """
        d = self.access()
        d.service("svc", "\tper_source\t= 1\n", hold=True)
        d.start()
        first = self.held(d, "svc")
        self.assertRefused(d, "svc", "127.0.0.1", "per_source_limit")
        self.held(d, "svc", "127.0.0.2")
        self.assertRefused(d, "svc", "127.0.0.2", "per_source_limit")
        self.release(d, first, "svc")
        self.held(d, "svc", "127.0.0.1")

    def test_processLimitAcrossServices(self) -> None:
        """
        C{--limit 2} counts the servers of every service: with one running
        for each of two services, either refuses with FAIL process_limit.
        """
        d = self.access(["--limit", "2"])
        d.service("one", hold=True)
        d.service("two", hold=True)
        d.start()
        first = self.held(d, "one")
        self.held(d, "two")
        self.assertRefused(d, "one", "127.0.0.1", "process_limit")
        self.assertRefused(d, "two", "127.0.0.2", "process_limit")
        self.release(d, first, "one")
        self.held(d, "two", "127.0.0.2")


def _connectionRefused(port: int) -> bool:
    try:
        with connectFrom(None, "127.0.0.1", port, timeout=2):
            return False
    except ConnectionRefusedError:
        return True


class ConnectionRateTests(AccessTestCase):
    """
    cps: deactivation of the listening socket, and reactivation.
    """

    def test_cpsDeactivatesThenReactivates(self) -> None:
        """
        With C{cps = 2 3} connections 1 and 2 are served, the 3rd is refused
        with FAIL "connections per second", the port refuses connections
        for about 3 s, then serves again.
        """
        d = self.access()
        port = d.service("svc", cps="2 3")
        d.start()
        self.assertServed(d, "svc", "127.0.0.1")
        self.assertServed(d, "svc", "127.0.0.1")
        self.assertRefused(d, "svc", "127.0.0.1", "connections per second")
        tripped = time.monotonic()
        d.waitForTwistdLog(
            "Deactivating service svc due to excessive incoming connections."
            "  Restarting in 3 seconds."
        )
        self.assertTrue(_connectionRefused(port))
        _waitUntil(lambda: not _connectionRefused(port), 10, "reactivation")
        paused = time.monotonic() - tripped
        self.assertTrue(2.0 <= paused <= 5.0, paused)
        d.waitForTwistdLog("Activating service svc")
        self.assertServed(d, "svc", "127.0.0.2")

    def test_defaultIsFiftyTen(self) -> None:
        """
        Without C{cps}, xinetd's default 50 10 applies: a burst of 60
        served connections deactivates the service for 10 seconds.
        """
        d = self.access()
        port = d.service("svc", cps="")
        d.start()
        answers = []
        for _ in range(60):
            try:
                answers.append(fetchFrom("127.0.0.2", "127.0.0.1", port))
            except ConnectionRefusedError:
                answers.append(b"refused")
        d.waitForLog("FAIL: svc connections per second from=127.0.0.2")
        d.waitForTwistdLog("Restarting in 10 seconds.")
        # The start-up probe was the first connection of the window.
        self.assertEqual(answers.count(b"served 127.0.0.2\n"), 50)
        self.assertEqual(answers.count(FAIL_BANNER), 1)
        self.assertEqual(answers[51:], [b"refused"] * 9)

    def test_refusedByAddressNotCounted(self) -> None:
        """
        Connections refused by address do not count toward cps (xinetd
        counts them, so refused clients can close a service to everyone):
        after 60 refused from 127.0.0.2 under the default 50 10, 127.0.0.1
        is still served.
        """
        d = self.access()
        port = d.service("svc", "\tonly_from\t= 127.0.0.1\n", cps="")
        d.start()
        answers = [fetchFrom("127.0.0.2", "127.0.0.1", port) for _ in range(60)]
        self.assertEqual(answers, [FAIL_BANNER] * 60)
        d.waitForLog("FAIL: svc address from=127.0.0.2", 60)
        self.assertNotIn("connections per second", d.serviceLog())
        self.assertServed(d, "svc", "127.0.0.1")

    def test_instancesSurviveReactivation(self) -> None:
        """
        A cps reactivation keeps the count of running servers (xinetd
        forgets it, RH bz770858): C{instances = 1} still refuses while the
        server started before the pause runs.
        """
        d = self.access()
        port = d.service("svc", "\tinstances\t= 1\n", hold=True, cps="2 2")
        d.start()
        first = self.held(d, "svc")
        self.assertRefused(d, "svc", "127.0.0.2", "service_limit")
        self.assertRefused(d, "svc", "127.0.0.2", "connections per second")
        _waitUntil(lambda: not _connectionRefused(port), 10, "reactivation")
        # The probe connection above counted too: let the cps window pass.
        time.sleep(2.1)
        self.assertRefused(d, "svc", "127.0.0.2", "service_limit")
        self.release(d, first, "svc")
        self.assertServed(d, "svc", "127.0.0.2")


def _loadAverage() -> float:
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


class LoadTests(AccessTestCase):
    """
    max_load, read from /proc/loadavg.
    """

    def test_maxLoad(self) -> None:
        """
        A service whose C{max_load} is below the current load refuses with
        FAIL load and xinetd's error line; one far above it serves.
        """
        if _loadAverage() <= 0.0:
            raise SkipTest("the 1-minute load average reads 0.00 here")
        d = self.access()
        d.service("tiny", "\tmax_load\t= 0.001\n")
        d.service("huge", "\tmax_load\t= 100000\n")
        d.start()
        self.assertServed(d, "huge", "127.0.0.1")
        if _loadAverage() <= 0.0:
            raise SkipTest("the 1-minute load average fell to 0.00")
        self.assertRefused(d, "tiny", "127.0.0.1", "load")
        d.waitForTwistdLog("refused connect from 127.0.0.1 due to excessive load")


class SensorTests(AccessTestCase):
    """
    SENSOR services and the global no-access list.
    """

    def sensorDaemon(self, denyTime: str) -> AccessDaemon:
        d = self.access()
        d.service("trap", f"\tflags\t\t= SENSOR\n\tdeny_time\t= {denyTime}\n")
        d.service("svc")
        d.start()
        return d

    def test_sensorDeniesEverywhere(self) -> None:
        """
        A client that touched a SENSOR service (refused, FAIL address, the
        CRITICAL "Adding" line) is then refused by every other service
        while other clients are served; nothing ran for it.
        """
        d = self.sensorDaemon("FOREVER")
        self.assertServed(d, "svc", "127.0.0.2")
        self.assertRefused(d, "trap", "127.0.0.2", "address")
        d.waitForTwistdLog("Adding 127.0.0.2 to the global_no_access list")
        self.assertRefused(d, "svc", "127.0.0.2", "address")
        self.assertServed(d, "svc", "127.0.0.1")
        self.assertEqual(d.spawns(), ["127.0.0.2", "127.0.0.1"])

    def test_foreverSurvivesReload(self) -> None:
        """
        A FOREVER entry is still there after SIGHUP re-read the
        configuration.
        """
        d = self.sensorDaemon("FOREVER")
        self.assertRefused(d, "trap", "127.0.0.2", "address")
        d.daemon.signal(signal.SIGHUP)
        d.waitForTwistdLog("Reconfigured")
        self.assertRefused(d, "svc", "127.0.0.2", "address")
        self.assertServed(d, "svc", "127.0.0.1")

    def test_neverRecordsNothing(self) -> None:
        """
        C{deny_time = NEVER}: the sensor refuses but denies nothing else.
        """
        d = self.sensorDaemon("NEVER")
        self.assertRefused(d, "trap", "127.0.0.2", "address")
        self.assertServed(d, "svc", "127.0.0.2")
        self.assertNotIn("global_no_access", d.twistdLog())


class LibwrapTests(AccessTestCase):
    """
    hosts.allow / hosts.deny, by the daemon name xinetd gives libwrap.
    """

    def test_denied(self) -> None:
        """
        A hosts.deny rule for the server's basename refuses that client with
        FAIL libwrap and xinetd's "libwrap refused" line; others are served.
        """
        d = self.wrapped("backend: 127.0.0.2\n")
        d.service("svc")
        d.start()
        self.assertRefused(d, "svc", "127.0.0.2", "libwrap")
        d.waitForTwistdLog(
            "libwrap refused connection to svc (libwrap=backend) from 127.0.0.2"
        )
        self.assertServed(d, "svc", "127.0.0.1")

    def test_nolibwrapFlag(self) -> None:
        """
        C{flags = NOLIBWRAP} skips hosts.allow/deny.
        """
        d = self.wrapped("backend: 127.0.0.2\n")
        d.service("svc", "\tflags\t\t= NOLIBWRAP\n")
        d.start()
        self.assertServed(d, "svc", "127.0.0.2")

    def test_libwrapAttribute(self) -> None:
        """
        The C{libwrap} attribute replaces the daemon name: a rule for that
        name applies, a rule for the server's basename does not.
        """
        d = self.wrapped("other: 127.0.0.2\nbackend: 127.0.0.3\n")
        d.service("renamed", "\tlibwrap\t\t= other\n")
        d.service("plain")
        d.start()
        self.assertRefused(d, "renamed", "127.0.0.2", "libwrap")
        self.assertServed(d, "renamed", "127.0.0.3")
        self.assertServed(d, "plain", "127.0.0.2")
        self.assertRefused(d, "plain", "127.0.0.3", "libwrap")

    def test_noLibwrapOption(self) -> None:
        """
        C{--no-libwrap} consults neither file.
        """
        d = self.wrapped("ALL: ALL\n", ["--no-libwrap"])
        d.service("svc")
        d.start()
        self.assertServed(d, "svc", "127.0.0.2")


class InternalTests(AccessTestCase):
    """
    Internal services (served in the daemon) apply the same policy.
    """

    def test_internalStream(self) -> None:
        """
        An internal stream service refuses an address outside only_from
        with banner_fail, EOF and a FAIL line, and serves the others.
        """
        d = self.access()
        d.internal("daytime", "daytime", "stream", "\tonly_from\t= 127.0.0.1\n")
        d.start()
        self.assertTrue(d.fetch("daytime", "127.0.0.1").endswith(b"\r\n"))
        self.assertRefused(d, "daytime", "127.0.0.2", "address")

    def test_tcpmuxWaitingCounts(self) -> None:
        """
        tcpmux connections still waiting for their name line count against
        instances and per_source, as xinetd's forked multiplexers do: with
        instances = 5 and per_source = 3, of 30 idle connections from one
        address 3 are held, and a sixth from anywhere is refused.
        """
        d = self.access()
        d.internal("tcpmux", "mux", "stream", "\tinstances\t= 5\n\tper_source\t= 3\n")
        d.start()
        held = []
        for _ in range(3):
            s = connectFrom("127.0.0.1", "127.0.0.1", d.ports["mux"])
            self.addCleanup(s.close)
            held.append(s)
        for _ in range(27):
            self.assertEqual(d.fetch("mux", "127.0.0.1"), FAIL_BANNER)
        d.waitForLog("FAIL: mux per_source_limit from=127.0.0.1", 27)
        for _ in range(2):
            s = connectFrom("127.0.0.2", "127.0.0.1", d.ports["mux"])
            self.addCleanup(s.close)
            held.append(s)
        self.assertEqual(d.fetch("mux", "127.0.0.3"), FAIL_BANNER)
        d.waitForLog("FAIL: mux service_limit from=127.0.0.3")

    def test_internalDatagram(self) -> None:
        """
        An internal UDP service answers a listed client, drops a refused
        client's datagrams without a reply, and logs FAIL address for that
        source once (xinetd's 60 s de-duplication).
        """
        d = self.access()
        port = d.internal("daytime", "udaytime", "dgram", "\tonly_from\t= 127.0.0.1")
        d.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as refused:
            refused.bind(("127.0.0.2", 0))
            refused.settimeout(0.5)
            for _ in range(3):
                refused.sendto(b"x", ("127.0.0.1", port))
                self.assertRaises(socket.timeout, refused.recvfrom, 100)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as allowed:
                allowed.bind(("127.0.0.1", 0))
                allowed.settimeout(5)
                allowed.sendto(b"x", ("127.0.0.1", port))
                self.assertTrue(allowed.recvfrom(100)[0].endswith(b"\r\n"))
        d.waitForLog("FAIL: udaytime address from=127.0.0.2")
        self.assertEqual(
            d.serviceLog().count("FAIL: udaytime address from=127.0.0.2"), 1
        )


def _reverseName(address: str) -> Optional[str]:
    try:
        return socket.getnameinfo((address, 0), socket.NI_NAMEREQD)[0]
    except OSError:
        return None


class NameTests(AccessTestCase):
    """
    Host names: resolved at load time, and matched by the client's
    reverse-lookup name where only a name can match.
    """

    def test_onlyFromHostName(self) -> None:
        """
        C{only_from = localhost} serves 127.0.0.1 and refuses 127.0.0.2.
        """
        try:
            addresses = {a[4][0] for a in socket.getaddrinfo("localhost", None)}
        except OSError:
            raise SkipTest("localhost does not resolve here") from None
        if "127.0.0.1" not in addresses or "127.0.0.2" in addresses:
            raise SkipTest(f"localhost resolves to {addresses}")
        d = self.access()
        d.service("svc", "\tonly_from\t= localhost\n")
        d.start()
        self.assertServed(d, "svc", "127.0.0.1")
        self.assertRefused(d, "svc", "127.0.0.2", "address")

    def test_hostsDenyByReverseName(self) -> None:
        """
        A hosts.deny rule naming the client's host name (tcpd matches the
        reverse-lookup name) refuses that client with FAIL libwrap.
        """
        name = _reverseName("127.0.0.1")
        if name is None or _reverseName("127.0.0.2") is not None:
            raise SkipTest("needs a name for 127.0.0.1 and none for 127.0.0.2")
        d = self.wrapped(f"backend: {name}\n")
        d.service("svc")
        d.start()
        self.assertServed(d, "svc", "127.0.0.2")
        self.assertRefused(d, "svc", "127.0.0.1", "libwrap")


class ReloadTests(AccessTestCase):
    """
    SIGHUP: a new policy applies at once, running counts are kept.
    """

    def reload(self, d: AccessDaemon, old: str, new: str) -> None:
        text = d.text()
        self.assertIn(old, text)
        with open(d.daemon.configPath, "w") as f:
            f.write(text.replace(old, new))
        reloads = d.twistdLog().count("Reconfigured")
        d.daemon.signal(signal.SIGHUP)
        _waitUntil(
            lambda: d.twistdLog().count("Reconfigured") > reloads,
            message="Reconfigured",
        )

    def test_newOnlyFrom(self) -> None:
        """
        After a reload that changes only_from, the new list decides.
        """
        d = self.access()
        d.service("svc", "\tonly_from\t= 127.0.0.1\n")
        d.start()
        self.assertRefused(d, "svc", "127.0.0.2", "address")
        self.reload(d, "only_from\t= 127.0.0.1", "only_from\t= 127.0.0.2")
        self.assertServed(d, "svc", "127.0.0.2")
        self.assertRefused(d, "svc", "127.0.0.1", "address")

    def test_instancesKeptAcrossReload(self) -> None:
        """
        A reload keeps counting the servers already running: with
        C{instances = 1} and one running, a client is still refused.
        """
        d = self.access()
        d.service("svc", "\tinstances\t= 1\n", hold=True)
        d.start()
        first = self.held(d, "svc")
        self.reload(d, "\tinstances\t= 1\n", "\tinstances\t= 1\n\tper_source\t= 5\n")
        self.assertRefused(d, "svc", "127.0.0.2", "service_limit")
        self.release(d, first, "svc")
        self.assertServed(d, "svc", "127.0.0.2")


FLOOD_CONNECTIONS = 2000
FLOOD_SECONDS = 10.0


class FloodTests(AccessTestCase):
    """
    A flood of refused connections costs no process and does not stop the
    service for others.
    """

    def test_refusedFloodDefaultCps(self) -> None:
        """
        With the default C{cps = 50 10}, a flood of refused connections
        from 127.0.0.2 (at most 400, 10 s) does not deactivate the service:
        40 connections from 127.0.0.1 meanwhile are all served.
        """
        d = self.access()
        d.service("svc", "\tonly_from\t= 127.0.0.1\n", cps="")
        d.start()
        port = d.ports["svc"]
        deadline = time.monotonic() + FLOOD_SECONDS
        refused: List[bytes] = []

        def flood() -> None:
            while time.monotonic() < deadline and len(refused) < 400:
                try:
                    refused.append(fetchFrom("127.0.0.2", "127.0.0.1", port))
                except OSError as e:
                    refused.append(repr(e).encode())

        thread = threading.Thread(target=flood)
        thread.start()
        try:
            served = [d.fetch("svc", "127.0.0.1") for _ in range(40)]
        finally:
            thread.join(FLOOD_SECONDS + 30)
        self.assertEqual(served, [b"served 127.0.0.1\n"] * 40)
        self.assertEqual(set(refused), {FAIL_BANNER})

    def test_refusedFloodKeepsServingOthers(self) -> None:
        """
        While two threads open up to 2000 refused connections from
        127.0.0.2 (at most 10 s), every connection from 127.0.0.1 made
        meanwhile is served, and no server ever runs for 127.0.0.2.  (cps is
        off: xinetd's default 50 10 would rightly close the port to all.)
        """
        d = self.access()
        d.service("svc", "\tonly_from\t= 127.0.0.1\n", cps="0 0")
        d.start()
        port = d.ports["svc"]
        deadline = time.monotonic() + FLOOD_SECONDS
        lock = threading.Lock()
        refused: List[int] = [0]
        wrong: List[bytes] = []

        def flood() -> None:
            while time.monotonic() < deadline:
                with lock:
                    if refused[0] >= FLOOD_CONNECTIONS:
                        return
                    refused[0] += 1
                try:
                    answer = fetchFrom("127.0.0.2", "127.0.0.1", port)
                except OSError as e:
                    answer = repr(e).encode()
                if answer != FAIL_BANNER:
                    wrong.append(answer)

        threads = [threading.Thread(target=flood) for _ in range(2)]
        for t in threads:
            t.start()
        served = []
        try:
            while any(t.is_alive() for t in threads):
                served.append(d.fetch("svc", "127.0.0.1"))
        finally:
            for t in threads:
                t.join(FLOOD_SECONDS + 30)
        self.assertEqual(wrong, [])
        self.assertGreater(len(served), 0)
        self.assertEqual(served, [b"served 127.0.0.1\n"] * len(served))
        self.assertEqual(d.spawns(), ["127.0.0.1"] * len(served))
        d.waitForLog("FAIL: svc address from=127.0.0.2", refused[0], timeout=20)
        # A START line is written when the helper reports the child started,
        # which may come after the child has already answered its client.
        d.waitForLog("START: svc", len(served), timeout=20)
        self.assertEqual(d.serviceLog().count("START: svc"), len(served))
        print(f"flood: {refused[0]} refused, {len(served)} served meanwhile")
