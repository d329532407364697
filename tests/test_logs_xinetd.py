"""
Differential tests: real xinetd and L{xinetd_twisted.logs.service} log the same
events (START/EXIT/FAIL) with the same bytes, timestamps and pids masked.

Real xinetd runs with C{-dontfork -stayalive} on free 127.0.0.1 ports and is
stopped by its pid.  For SYSLOG, xinetd (which always uses /dev/log) runs in
a private mount namespace whose /dev/log points at a socket of ours.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from xinetd_twisted.logs.service import ServiceLog
from xinetd_twisted.logs.sinks import (
    FileLogSink,
    SyslogConnection,
    SyslogSink,
    fileTimestamp,
    syslogTimestamp,
)

XINETD = "/usr/sbin/xinetd"
SUCCESS = frozenset({"PID", "HOST", "EXIT", "DURATION"})
FAILURE = frozenset({"HOST"})

SERVICE = """\
service {name}
{{
\ttype = {type}
\tid = {id}
\tsocket_type = stream
\tprotocol = tcp
\twait = no
\tport = {port}
\tbind = 127.0.0.1
\t{extra}
\tlog_type = {logType}
\tlog_on_success = PID HOST EXIT DURATION
\tlog_on_failure = HOST
}}
"""

# Gives xinetd a private /dev with our socket as /dev/log.
PRIVATE_DEV_LOG = """\
#!/bin/sh
set -e
mkdir "$4/olddev"
mount --rbind /dev "$4/olddev"
mount -t tmpfs tmpfs /dev
for n in null zero urandom random; do
    touch "/dev/$n"
    mount --bind "$4/olddev/$n" "/dev/$n"
done
ln -s "$1" /dev/log
exec {xinetd} -dontfork -stayalive -filelog "$2" -f "$3"
"""


def freePort() -> int:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()


def waitFor(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def mask(line: str) -> str:
    line = re.sub(r"pid=[1-9]\d*", "pid=N", line)
    line = re.sub(r"duration=\d+", "duration=D", line)
    return re.sub(r"xinetd\[\d+\]", "xinetd[P]", line)


def byService(lines: List[str]) -> Dict[str, List[str]]:
    # EXIT comes at reaping, after later connections' lines: compare each
    # service's lines as a sorted list.
    groups: Dict[str, List[str]] = {}
    for line in lines:
        found = re.search(r"(START|EXIT|FAIL): (\S+)", line)
        assert found is not None, line
        groups.setdefault(found.group(2), []).append(mask(line))
    return {key: sorted(value) for key, value in groups.items()}


class XinetdComparison(SynchronousTestCase):
    """
    Runs xinetd with three services (an internal daytime, /bin/true, and
    /bin/true refused by only_from) and replays the same events through
    L{ServiceLog}.
    """

    def setUp(self) -> None:
        if not os.path.exists(XINETD):
            raise SkipTest(f"{XINETD} is not installed")
        if os.getuid() != 0:
            raise SkipTest("xinetd needs root to run external services as a user")
        self.directory = tempfile.mkdtemp(prefix="xt-xinetd-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.ports = {"xtday": freePort(), "xttrue": freePort(), "xtdeny": freePort()}

    def config(self, logType: str) -> str:
        services = [
            ("daytime", "INTERNAL UNLISTED", "xtday", ""),
            ("xttrue", "UNLISTED", "xttrue", "user = root\n\tserver = /bin/true"),
            (
                "xtdeny",
                "UNLISTED",
                "xtdeny",
                "user = root\n\tserver = /bin/true\n\tonly_from = 10.9.9.9",
            ),
        ]
        text = "defaults\n{\n}\n" + "".join(
            SERVICE.format(
                name=name,
                type=kind,
                id=serviceId,
                port=self.ports[serviceId],
                extra=extra,
                logType=logType,
            )
            for name, kind, serviceId, extra in services
        )
        path = os.path.join(self.directory, "xinetd.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def startXinetd(self, argv: List[str]) -> subprocess.Popen:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        self.addCleanup(stop)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.ports["xttrue"]), 1).close()
            except OSError:
                return process.poll() is not None
            return True

        waitFor(listening)
        if process.poll() is not None:
            raise SkipTest(f"xinetd exited with {process.returncode}")
        return process

    def exercise(self) -> List[Tuple[str, Optional[IPv4Address]]]:
        """
        One connection per service, each read to its end.
        """
        peers: List[Tuple[str, Optional[IPv4Address]]] = []
        # The probe connection of startXinetd logged a xttrue START/EXIT too.
        peers.append(("xttrue", None))
        for serviceId in ("xtday", "xttrue", "xtdeny"):
            client = socket.create_connection(("127.0.0.1", self.ports[serviceId]), 5)
            host, port = client.getsockname()
            for _ in range(100):
                if not client.recv(1024):
                    break
            client.close()
            peers.append((serviceId, IPv4Address("TCP", host, port)))
        return peers

    def replay(self, logs: Dict[str, ServiceLog], peers: list) -> None:
        """
        The events xinetd saw, told to our logs.
        """
        for serviceId, peer in peers:
            log = logs[serviceId]
            peer = peer or IPv4Address("TCP", "127.0.0.1", 1)
            if serviceId == "xtday":
                log.start(0, peer)
                continue
            log.start(4242, peer)
            if serviceId == "xtdeny":
                log.fail("address", peer)
            log.exit(4242, status=0, duration=0)

    def test_fileLog(self) -> None:
        """FILE log lines match xinetd's, and so do their timestamps."""
        theirs = os.path.join(self.directory, "xinetd.log")
        ours = os.path.join(self.directory, "ours.log")
        config = self.config(f"FILE {theirs}")
        began = time.time()
        self.startXinetd(
            [
                XINETD,
                "-dontfork",
                "-stayalive",
                "-filelog",
                os.path.join(self.directory, "daemon.log"),
                "-f",
                config,
            ]
        )
        peers = self.exercise()

        def theirLines() -> List[str]:
            try:
                with open(theirs) as f:
                    return f.read().splitlines()
            except FileNotFoundError:
                return []

        self.assertTrue(waitFor(lambda: len(theirLines()) >= 8))
        ended = time.time()

        logs = {}
        for serviceId in self.ports:
            sink = FileLogSink(ours, serviceId)
            self.addCleanup(sink.close)
            logs[serviceId] = ServiceLog(serviceId, SUCCESS, FAILURE, sink)
        self.replay(logs, peers)
        with open(ours) as f:
            ourLines = f.read().splitlines()

        stamps = {fileTimestamp(t) for t in range(int(began) - 1, int(ended) + 2)}
        prefix = re.compile(r"^(\d\d/\d{1,2}/\d{1,2}@\d\d:\d\d:\d\d): ")
        for line in theirLines() + ourLines:
            found = prefix.match(line)
            assert found is not None, line
            self.assertIn(found.group(1), stamps)
        strip = [prefix.sub("", line) for line in theirLines()]
        mine = [prefix.sub("", line) for line in ourLines]
        # The probe connection's peer port is unknown: compare it by shape.
        self.assertEqual(byService(strip), byService(mine))

    def test_syslog(self) -> None:
        """SYSLOG datagrams match xinetd's, byte for byte but the pid."""
        if shutil.which("unshare") is None:
            raise SkipTest("unshare is not installed")
        theirPath = os.path.join(self.directory, "their.sock")
        ourPath = os.path.join(self.directory, "our.sock")
        receivers = {}
        for path in (theirPath, ourPath):
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.addCleanup(receiver.close)
            receiver.bind(path)
            receiver.settimeout(10)
            receivers[path] = receiver
        script = os.path.join(self.directory, "run.sh")
        with open(script, "w") as f:
            f.write(PRIVATE_DEV_LOG.format(xinetd=XINETD))
        os.chmod(script, 0o755)
        namespaceDir = os.path.join(self.directory, "ns")
        os.mkdir(namespaceDir)
        config = self.config("SYSLOG local3 notice")
        began = time.time()
        self.startXinetd(
            [
                "unshare",
                "-m",
                script,
                theirPath,
                os.path.join(self.directory, "daemon.log"),
                config,
                namespaceDir,
            ]
        )
        peers = self.exercise()
        theirs = []
        try:
            for _ in range(8):
                theirs.append(receivers[theirPath].recv(4096).decode())
        except socket.timeout:
            pass
        ended = time.time()
        self.assertEqual(len(theirs), 8, theirs)

        connection = SyslogConnection(ourPath)
        self.addCleanup(connection.disconnect)
        logs = {
            serviceId: ServiceLog(
                serviceId, SUCCESS, FAILURE, SyslogSink(connection, "local3", "notice")
            )
            for serviceId in self.ports
        }
        self.replay(logs, peers)
        ours = [receivers[ourPath].recv(4096).decode() for _ in range(8)]

        stamps = {syslogTimestamp(t) for t in range(int(began) - 1, int(ended) + 2)}
        header = re.compile(r"^<157>(\w\w\w [ \d]\d \d\d:\d\d:\d\d) xinetd\[\d+\]: ")
        for datagram in theirs + ours:
            found = header.match(datagram)
            assert found is not None, datagram
            self.assertIn(found.group(1), stamps)
        self.assertEqual(
            byService([header.sub("", d) for d in theirs]),
            byService([header.sub("", d) for d in ours]),
        )
