"""
Differential tests: the same configuration run by the real xinetd
(C{/usr/sbin/xinetd}) and by our daemon on different ports, the same
clients against both, and what the clients receive compared.

Both configurations come from one template (L{differentialConfig}) that
takes the ports and the FILE log path as parameters; both daemons get the
same environment.  One scripted session (L{_Session}) runs against each
daemon; each test compares one aspect of the two transcripts and asserts
that the only differences are these documented ones (docs/differences.md):

  1. tcpmux: xinetd follows C{+Go\\r\\n} and C{-Service name not found\\r\\n}
     with a NUL byte (it writes C{sizeof} the literal); we do not.
  2. Probe report: C{ppid} is our spawn helper, not the daemon (pids
     themselves are never compared; C{sid == pid} and C{pgid == pid} are).
     Environment keys that differ by design: L{ENV_DIFFERENT_BY_DESIGN}.
  3. dgram C{wait = yes}: when the server exits xinetd discards every
     datagram queued meanwhile; we keep them for the next server (a burst
     of three to a one-datagram server: one answer from xinetd, three here).
  4. Service log lines (times, non-zero pids and durations masked):
     - echo/discard/chargen over TCP are forked by xinetd (C{START pid=N},
       C{EXIT status=0 pid=N}); we serve them in the daemon (C{pid=0}).
     - redirect: xinetd forks a proxy child (C{pid=N}); ours is in the
       daemon (C{pid=0}).
     - the dgram wait burst above: one START/EXIT from xinetd, three here.
     - an address refusal: xinetd forks first and logs C{START} + C{FAIL} +
       C{EXIT}; we refuse in the parent and log only C{FAIL}.
     - tcpmux: a sub-service's START/EXIT carry the tcpmux service id and
       the server's pid in both; but a connection that reaches no
       sub-service (unknown name) is logged by xinetd with its forked
       multiplexer's pid (C{START: tcpmux pid=N} + C{EXIT}) and by us with
       C{pid=0}.
  See L{EXPECTED_LOG_DIFFERENCES} for the exact lines.

Everything else is identical: every internal service's bytes over TCP and
UDP (daytime and time to within the test's tolerance), the spawned probe's
argv, whole environment, fds 0-2 (socket type, family, addresses, blocking),
uid/gid/groups, umask, session and process group leadership, cwd, root,
nice, rlimits, ignored and blocked signals, the redirect's bytes and its
TRAFFIC line, a TCPMUX server's output, and every other log line.
"""

from __future__ import annotations

import calendar
import collections
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import PROBE, REPO, Daemon, fetch, freePort, waitForPort
from tests.test_integration_delegation import holdersOf as _holders

XINETD = "/usr/sbin/xinetd"
PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"
INTERNALS = ("echo", "discard", "daytime", "time", "chargen")
DAYTIME = re.compile(rb"^(\d\d) ([A-Z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) (\S+)\r\n$")
EPOCH_1900 = 2208988800
MONTHS = b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()

ENV_DIFFERENT_BY_DESIGN: FrozenSet[str] = frozenset()
"""
Environment variables a spawned server sees differently under the two
daemons by design.  (Both pass their start-up environment, C{env} and
C{REMOTE_HOST}; the tests give both the same environment, and no key
differs: twistd adds nothing.)
"""

ONE_DATAGRAM_SCRIPT = """
import os, socket
sock = socket.socket(fileno=0)
data, peer = sock.recvfrom(2048)
sock.sendto(b"%s %s" % (os.environ["REMOTE_HOST"].encode(), data), peer)
"""

OWN_SCRIPT = "#!/bin/sh\nprintf '+OK own\\r\\n%s\\n' \"$(id -un)\"\n"


def differentialConfig(ports: Dict[str, int], shared: str, log: str) -> str:
    """
    The configuration both daemons run.

    @param ports: the port of each service, by service id.
    @param shared: a world-readable directory holding C{probe.py} and
        C{own.sh} (the same path for both daemons, so argv is the same).
    @param log: the FILE log path of every service.
    """
    blocks = [
        "defaults\n{\n"
        f"\tlog_type = FILE {log}\n"
        "\tlog_on_success = PID HOST EXIT DURATION\n"
        "\tlog_on_failure = HOST ATTEMPT\n"
        "}\n"
    ]

    def block(name: str, **attrs: object) -> None:
        body = "".join(f"\t{k} = {v}\n" for k, v in attrs.items())
        blocks.append(f"service {name}\n{{\n{body}}}\n")

    for name in INTERNALS:
        for kind in ("stream", "dgram"):
            block(
                name,
                type="INTERNAL UNLISTED",
                id=f"{name}-{kind}",
                socket_type=kind,
                protocol="tcp" if kind == "stream" else "udp",
                wait="no" if kind == "stream" else "yes",
                user="root",
                port=ports[f"{name}-{kind}"],
                bind=HOST,
                flags="IPv4",
            )
    probe = dict(
        type="UNLISTED",
        socket_type="stream",
        protocol="tcp",
        wait="no",
        user="nobody",
        bind=HOST,
        flags="IPv4",
        server=PYTHON,
        server_args=f"-I -S {shared}/probe.py",
    )
    block(
        "probe",
        port=ports["probe"],
        env="PROBE_ONE=1 PROBE_TWO=two",
        umask="027",
        nice="5",
        rlimit_cpu="30",
        **probe,
    )
    block("refused", port=ports["refused"], only_from="10.9.9.9", **probe)
    # Plain (nothing to check, cps off): our daemon hands its socket to
    # nobody's compiled sub-helper, which starts the later servers itself.
    block("plain", port=ports["plain"], cps="0 0", **probe)
    block(
        "dwait",
        type="UNLISTED",
        socket_type="dgram",
        protocol="udp",
        wait="yes",
        user="nobody",
        bind=HOST,
        flags="IPv4",
        port=ports["dwait"],
        server=PYTHON,
        server_args=f"-I -S {shared}/onedatagram.py",
    )
    block(
        "redir",
        type="UNLISTED",
        socket_type="stream",
        protocol="tcp",
        wait="no",
        user="root",
        port=ports["redir"],
        bind=HOST,
        flags="IPv4",
        redirect=f"{HOST} {ports['echo-stream']}",
        log_on_success="PID HOST EXIT DURATION TRAFFIC",
    )
    block(
        "tcpmux",
        type="INTERNAL UNLISTED",
        socket_type="stream",
        protocol="tcp",
        wait="no",
        user="root",
        port=ports["tcpmux"],
        bind=HOST,
        flags="IPv4",
    )
    block(
        "probeplus",
        type="TCPMUXPLUS UNLISTED",
        socket_type="stream",
        protocol="tcp",
        wait="no",
        user="nobody",
        server=PYTHON,
        server_args=f"-I -S {shared}/probe.py",
    )
    block(
        "own",
        type="TCPMUX UNLISTED",
        socket_type="stream",
        protocol="tcp",
        wait="no",
        user="daemon",
        server=f"{shared}/own.sh",
    )
    return "\n".join(blocks)


def _ports() -> Dict[str, int]:
    ports = {}
    for name in INTERNALS:
        ports[f"{name}-stream"] = freePort()
        ports[f"{name}-dgram"] = freePort(kind=socket.SOCK_DGRAM)
    for name in ("probe", "refused", "plain", "redir", "tcpmux"):
        ports[name] = freePort()
    ports["dwait"] = freePort(kind=socket.SOCK_DGRAM)
    return ports


def daemonEnvironment() -> Dict[str, str]:
    """
    The environment both daemons start with (what L{Daemon} gives twistd).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Xinetd:
    """
    The real xinetd in the foreground on a configuration, stopped by pid.
    """

    def __init__(self, configText: str, directory: str) -> None:
        self.configPath = os.path.join(directory, "xinetd.conf")
        self.ownLog = os.path.join(directory, "xinetd.log")
        with open(self.configPath, "w") as f:
            f.write(configText)
        self.process: Optional[subprocess.Popen] = None

    def start(self, waitFor: Tuple[str, int], timeout: float = 15.0) -> None:
        self.process = subprocess.Popen(
            [XINETD, "-dontfork", "-stayalive", "-filelog", self.ownLog]
            + ["-f", self.configPath],
            env=daemonEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while "Started working" not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("xinetd did not start:\n" + self.log())
            time.sleep(0.05)
        waitForPort(*waitFor)

    def log(self) -> str:
        try:
            with open(self.ownLog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _read(port: int, limit: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=10) as s:
        data = b""
        while len(data) < limit:
            chunk = s.recv(limit - len(data))
            if not chunk:
                break
            data += chunk
        return data


def _udp(port: int, send: bytes = b"x\n", timeout: float = 5.0) -> Optional[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(send, (HOST, port))
        try:
            return s.recv(65536)
        except socket.timeout:
            return None


def _roundTrip(port: int, payload: bytes) -> bytes:
    """
    Send C{payload} and read as many bytes back before closing (a redirect
    closes both sides on the client's EOF, so no half-close here).
    """
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while len(data) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _burst(port: int, count: int, quiet: float = 1.5) -> List[bytes]:
    """
    Send C{count} datagrams at once; collect replies until none comes for
    C{quiet} seconds.
    """
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in range(count):
            s.sendto(b"d%d" % n, (HOST, port))
        s.settimeout(quiet)
        for _ in range(count):
            try:
                replies.append(s.recv(2048))
            except socket.timeout:
                break
    return sorted(replies)


def _tcpmux(port: int, name: bytes) -> bytes:
    # xinetd's multiplexer needs the name line alone in its first read.
    return fetch(HOST, port, send=name + b"\r\n", halfClose=False)


def _waitForQuietLog(path: str, quiet: float = 1.0, timeout: float = 10.0) -> None:
    """
    Wait until the log has not grown for C{quiet} seconds (EXIT lines come
    when children are reaped).
    """
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = os.path.getsize(path) if os.path.exists(path) else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


class _Transcript:
    """
    What the clients of one daemon received, and its service log.
    """

    def __init__(self) -> None:
        self.replies: Dict[str, Any] = {}
        self.clock: Dict[str, float] = {}
        self.logLines: List[str] = []
        self.handedOver = False
        """Ours: whether nobody's sub-helper took the plain service's socket."""


def _always(port: int) -> bool:
    return True


def _runClients(
    ports: Dict[str, int], log: str, handedOver: Callable[[int], bool] = _always
) -> _Transcript:
    """
    Every client once (the plain probe twice: the second once
    C{handedOver(port)} says its socket is no longer the daemon's to
    accept on, or after 10 s).
    """
    t = _Transcript()
    r = t.replies
    # Fresh daemons: the first stream chargen starts at the ring's start.
    r["chargen-stream"] = _read(ports["chargen-stream"], 74 * 3)
    payload = bytes(range(256)) * 40
    r["echo-stream"] = fetch(HOST, ports["echo-stream"], send=payload)
    r["discard-stream"] = fetch(HOST, ports["discard-stream"], send=b"x" * 5000)
    r["daytime-stream"] = fetch(HOST, ports["daytime-stream"])
    t.clock["daytime-stream"] = time.time()
    r["time-stream"] = fetch(HOST, ports["time-stream"])
    t.clock["time-stream"] = time.time()
    r["echo-dgram"] = _udp(ports["echo-dgram"], b"ping\x00pong")
    r["discard-dgram"] = _udp(ports["discard-dgram"], timeout=0.5)
    r["daytime-dgram"] = _udp(ports["daytime-dgram"])
    t.clock["daytime-dgram"] = time.time()
    r["time-dgram"] = _udp(ports["time-dgram"])
    t.clock["time-dgram"] = time.time()
    r["chargen-dgram"] = _udp(ports["chargen-dgram"])
    r["probe"] = json.loads(fetch(HOST, ports["probe"]))
    r["plain-first"] = json.loads(fetch(HOST, ports["plain"]))
    deadline = time.monotonic() + 10
    while not handedOver(ports["plain"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    r["plain"] = json.loads(fetch(HOST, ports["plain"]))
    r["dwait"] = _burst(ports["dwait"], 3)
    r["refused"] = fetch(HOST, ports["refused"])
    r["redir"] = _roundTrip(ports["redir"], payload * 10)
    r["tcpmux-plus"] = _tcpmux(ports["tcpmux"], b"probeplus")
    r["tcpmux-own"] = _tcpmux(ports["tcpmux"], b"OWN")
    r["tcpmux-unknown"] = _tcpmux(ports["tcpmux"], b"nosuch")
    _waitForQuietLog(log)
    with open(log) as f:
        t.logLines = f.read().splitlines()
    return t


class _Session:
    """
    Both transcripts, made once per test process (each daemon is started,
    driven and stopped inside L{run}).
    """

    cached: Optional[Tuple[_Transcript, _Transcript]] = None

    @classmethod
    def run(cls) -> Tuple[_Transcript, _Transcript]:
        if cls.cached is not None:
            return cls.cached
        shared = tempfile.mkdtemp(prefix="xt-diff-")
        try:
            os.chmod(shared, 0o755)
            shutil.copy(PROBE, os.path.join(shared, "probe.py"))
            with open(os.path.join(shared, "onedatagram.py"), "w") as f:
                f.write(ONE_DATAGRAM_SCRIPT)
            os.chmod(os.path.join(shared, "onedatagram.py"), 0o644)
            own = os.path.join(shared, "own.sh")
            with open(own, "w") as f:
                f.write(OWN_SCRIPT)
            for path in (own, os.path.join(shared, "probe.py")):
                os.chmod(path, 0o755)
            theirs = cls._xinetd(shared)
            ours = cls._ours(shared)
        finally:
            shutil.rmtree(shared, ignore_errors=True)
        cls.cached = (theirs, ours)
        return cls.cached

    @staticmethod
    def _xinetd(shared: str) -> _Transcript:
        ports = _ports()
        log = os.path.join(shared, "xinetd-services.log")
        x = Xinetd(differentialConfig(ports, shared, log), shared)
        x.start(waitFor=(HOST, ports["time-stream"]))
        try:
            return _runClients(ports, log)
        finally:
            x.stop()

    @staticmethod
    def _ours(shared: str) -> _Transcript:
        ports = _ports()
        log = os.path.join(shared, "ours-services.log")
        d = Daemon(differentialConfig(ports, shared, log))
        try:
            d.start(waitFor=(HOST, ports["time-stream"]))
            transcript = _runClients(ports, log, lambda port: bool(_holders(d, port)))
            transcript.handedOver = bool(_holders(d, ports["plain"]))
            return transcript
        finally:
            d.cleanup()


def _daytimeSeconds(reply: bytes) -> int:
    m = DAYTIME.match(reply)
    assert m is not None, reply
    day, mon, year, hh, mm, ss, _zone = m.groups()
    fields = (int(year), MONTHS.index(mon) + 1, int(day), int(hh), int(mm), int(ss))
    return calendar.timegm(fields + (0, 0, 0))


def _comparableProbe(report: Dict[str, Any]) -> Dict[str, Any]:
    """
    The parts of a probe report that must be equal: no pids, no ports.
    """
    stdio = {}
    for fd, info in report["stdio"].items():
        info = dict(info)
        if info.get("peer"):
            info["peer"] = info["peer"][0]
        if info.get("sock"):
            info["sock"] = info["sock"][0]
        stdio[fd] = info
    env = {k: v for k, v in report["env"].items() if k not in ENV_DIFFERENT_BY_DESIGN}
    return {
        "argv": report["argv"],
        "env": env,
        "ids": [report[k] for k in ("uid", "gid", "euid", "egid")],
        "groups": report["groups"],
        "umask": report["umask"],
        "sessionLeader": report["sid"] == report["pid"],
        "groupLeader": report["pgid"] == report["pid"],
        "cwd": report["cwd"],
        "root": report["root"],
        "nice": report["nice"],
        "rlimits": report["rlimits"],
        "fds": report["fds"],
        "stdio": stdio,
        "sigIgn": report["sigIgn"],
        "sigBlk": report["sigBlk"],
    }


def maskLogLine(line: str) -> str:
    """
    A FILE log line without what differs between any two runs: the time
    stamp, non-zero pids and durations.
    """
    line = re.sub(r"^\d\d/\d{1,2}/\d{1,2}@\d\d:\d\d:\d\d: ", "", line)
    line = re.sub(r"pid=[1-9]\d*", "pid=N", line)
    return re.sub(r"duration=\d+\(sec\)", "duration=D(sec)", line)


def _forkedByXinetd(serviceId: str, count: int = 1) -> Dict[str, int]:
    """
    A connection xinetd serves in a forked child (START/EXIT with its pid)
    and we serve in the daemon (START/EXIT with pid=0).
    """
    return {
        f"START: {serviceId} pid=N from=127.0.0.1": count,
        f"EXIT: {serviceId} status=0 pid=N duration=D(sec)": count,
        f"START: {serviceId} pid=0 from=127.0.0.1": -count,
        f"EXIT: {serviceId} status=0 pid=0 duration=D(sec)": -count,
    }


EXPECTED_LOG_DIFFERENCES: Dict[str, int] = {
    **_forkedByXinetd("chargen-stream"),
    **_forkedByXinetd("discard-stream"),
    # The echo client, and the redirect's connection to echo.
    **_forkedByXinetd("echo-stream", 2),
    **_forkedByXinetd("redir"),
    # A burst of three datagrams to a one-shot dgram wait server: xinetd
    # serves the first and discards the two queued meanwhile; we serve all.
    "START: dwait pid=N from=127.0.0.1": -2,
    "EXIT: dwait status=0 pid=N duration=D(sec)": -2,
    # xinetd forks, then refuses in the child: START + FAIL + EXIT.  We
    # refuse in the parent: FAIL only.
    "START: refused pid=N from=127.0.0.1": 1,
    "EXIT: refused status=0 pid=N duration=D(sec)": 1,
    # An unknown tcpmux name: xinetd's multiplexer child logs START/EXIT
    # with its pid; our in-process multiplexer logs them with pid=0.
    **_forkedByXinetd("tcpmux"),
}
"""
Masked log lines that only xinetd writes (positive count) or only we
write (negative), for the session of L{_runClients}.
"""


def _requireBoth() -> None:
    if not os.path.exists(XINETD):
        raise SkipTest(f"{XINETD} is not installed")
    if os.geteuid() != 0:
        raise SkipTest("needs root: xinetd and the services switch users")
    if not os.access(PYTHON, os.X_OK):
        raise SkipTest(f"{PYTHON} is missing: no interpreter every user can run")


class DifferentialTests(TestCase):
    """
    xinetd and our daemon, same configuration, same clients.
    """

    timeout = 120

    def setUp(self) -> None:
        _requireBoth()
        self.theirs, self.ours = _Session.run()

    def assertClockServices(self, kind: str) -> None:
        """
        daytime and time: each daemon's answer is within 2 s of the clock
        when it came (the two sessions run one after the other), and both
        daytime answers have the same format and zone.
        """
        zones = []
        for t in (self.theirs, self.ours):
            day = t.replies[f"daytime-{kind}"]
            m = DAYTIME.match(day)
            self.assertIsNotNone(m, day)
            assert m is not None
            zones.append(m.group(7))
            local = time.localtime(t.clock[f"daytime-{kind}"])
            self.assertLessEqual(
                abs(_daytimeSeconds(day) - calendar.timegm(local[:6] + (0, 0, 0))),
                2,
            )
            (value,) = struct.unpack("!I", t.replies[f"time-{kind}"])
            self.assertLessEqual(abs(value - EPOCH_1900 - t.clock[f"time-{kind}"]), 2)
        self.assertEqual(zones[0], zones[1])

    def test_internalStreamServices(self) -> None:
        """
        echo, discard and chargen over TCP are byte-identical; daytime and
        time agree to the second.
        """
        for key in ("echo-stream", "discard-stream", "chargen-stream"):
            self.assertEqual(self.theirs.replies[key], self.ours.replies[key], key)
        self.assertEqual(len(self.theirs.replies["chargen-stream"]), 74 * 3)
        self.assertClockServices("stream")

    def test_internalDatagramServices(self) -> None:
        """
        echo, discard and chargen over UDP are byte-identical (discard: no
        reply from either); daytime and time agree to the second.
        """
        for key in ("echo-dgram", "discard-dgram", "chargen-dgram"):
            self.assertEqual(self.theirs.replies[key], self.ours.replies[key], key)
        self.assertIsNone(self.ours.replies["discard-dgram"])
        self.assertEqual(len(self.ours.replies["chargen-dgram"]), 1024)
        self.assertClockServices("dgram")

    def test_probeReport(self) -> None:
        """
        The spawned probe sees the same argv, environment (minus the
        documented keys), fds, credentials, umask, session, limits, nice
        and cwd under both daemons.
        """
        theirs = _comparableProbe(self.theirs.replies["probe"])
        ours = _comparableProbe(self.ours.replies["probe"])
        differences: Dict[str, Any] = {
            k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours[k]
        }
        if "env" in differences:
            a, b = differences["env"]
            differences["env"] = {
                k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)
            }
        self.assertEqual(differences, {})

    def test_plainProbeReport(self) -> None:
        """
        A plain service's server, which our sub-helper accepted and started
        itself (its socket handed over after the first connection), sees
        what xinetd's sees, as the first one did.
        """
        self.assertTrue(self.ours.handedOver)
        for key in ("plain-first", "plain"):
            theirs = _comparableProbe(self.theirs.replies[key])
            ours = _comparableProbe(self.ours.replies[key])
            self.assertEqual(
                {k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours[k]},
                {},
                key,
            )

    def test_refusedAndRedirect(self) -> None:
        """
        A refused client gets nothing from either; the redirect returns the
        same bytes.
        """
        self.assertEqual(self.theirs.replies["refused"], b"")
        self.assertEqual(self.ours.replies["refused"], b"")
        self.assertEqual(self.theirs.replies["redir"], self.ours.replies["redir"])
        self.assertEqual(len(self.ours.replies["redir"]), 256 * 40 * 10)

    def test_dgramWaitBurst(self) -> None:
        """
        dgram wait = yes, a server that reads one datagram: xinetd answers
        the first of a burst and discards the rest when the server exits;
        we keep them queued and start a server for each.
        """
        self.assertEqual(self.theirs.replies["dwait"], [b"127.0.0.1 d0"])
        self.assertEqual(
            self.ours.replies["dwait"],
            [b"127.0.0.1 d0", b"127.0.0.1 d1", b"127.0.0.1 d2"],
        )

    def test_tcpmuxNulIsTheOnlyDifference(self) -> None:
        """
        tcpmux replies differ only by the NUL byte xinetd sends after
        C{+Go\\r\\n} and C{-Service name not found\\r\\n}.
        """
        theirs, ours = self.theirs.replies, self.ours.replies
        self.assertEqual(ours["tcpmux-unknown"], b"-Service name not found\r\n")
        self.assertEqual(theirs["tcpmux-unknown"], ours["tcpmux-unknown"] + b"\x00")
        self.assertEqual(theirs["tcpmux-own"], ours["tcpmux-own"])
        self.assertEqual(ours["tcpmux-own"], b"+OK own\r\ndaemon\n")
        go = b"+Go\r\n"
        self.assertTrue(ours["tcpmux-plus"].startswith(go))
        self.assertEqual(theirs["tcpmux-plus"][: len(go) + 1], go + b"\x00")
        a = _comparableProbe(json.loads(theirs["tcpmux-plus"][len(go) + 1 :]))
        b = _comparableProbe(json.loads(ours["tcpmux-plus"][len(go) :]))
        self.assertEqual(
            {k: (a[k], b[k]) for k in a if a[k] != b[k]},
            {},
        )

    def test_serviceLogLines(self) -> None:
        """
        The FILE log lines of the same connections are the same, once
        times, pids and durations are masked, but for the documented
        differences.
        """
        # xinetd's chargen child writes until the closed client makes a
        # write fail: it ends by SIGPIPE or by the error, depending on timing.
        theirs = collections.Counter(
            maskLogLine(x).replace(
                "EXIT: chargen-stream signal=13 ", "EXIT: chargen-stream status=0 "
            )
            for x in self.theirs.logLines
        )
        ours = collections.Counter(maskLogLine(x) for x in self.ours.logLines)
        difference = dict(theirs)
        for line, n in ours.items():
            difference[line] = difference.get(line, 0) - n
        difference = {k: v for k, v in difference.items() if v}
        self.maxDiff = None
        self.assertEqual(difference, EXPECTED_LOG_DIFFERENCES)
