"""
The configurations Debian's xinetd package ships, and differential checks
against the real xinetd binary when it is installed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from typing import List, Set, Tuple

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_config_support import FIXTURES, SYSFILES, messages, parse
from xinetd_twisted.config import loadConfig
from xinetd_twisted.config.model import Severity

DEBIAN = os.path.join(FIXTURES, "debian")
XINETD = "/usr/sbin/xinetd"


def debianMain() -> str:
    """
    The shipped xinetd.conf, pointing at the copied xinetd.d.
    """
    with open(os.path.join(DEBIAN, "xinetd.conf")) as f:
        text = f.read()
    return text.replace("/etc/xinetd.d", os.path.join(DEBIAN, "xinetd.d"))


class ShippedTests(SynchronousTestCase):
    """
    What the shipped files mean.
    """

    def test_shippedConfigRunsNothing(self) -> None:
        """
        Every shipped service is disable = yes: no services, no problems.
        """
        config = parse(debianMain(), path=os.path.join(DEBIAN, "xinetd.conf"))
        self.assertEqual((config.services, config.problems), ((), ()))
        self.assertEqual(len(config.files), 13)

    def test_shippedEnabled(self) -> None:
        """
        With disable removed, the internals run once each; the *-udp files
        duplicate ids and the servers/services internals no longer exist.
        """
        root = FilePath(self.mktemp())
        root.makedirs()
        source = FilePath(os.path.join(DEBIAN, "xinetd.d"))
        for child in source.children():
            text = child.getContent().decode()
            root.child(child.basename()).setContent(
                re.sub(r"(?im)^\s*disable\s*=\s*yes\s*$", "", text).encode()
            )
        config = parse(f"includedir {root.path}\n")
        self.assertEqual(
            [s.serviceId for s in config.services],
            [
                "chargen-stream",
                "chargen-dgram",
                "daytime-stream",
                "daytime-dgram",
                "discard-stream",
                "discard-dgram",
                "echo-stream",
                "echo-dgram",
                "time-stream",
                "time-dgram",
            ],
        )
        errors = messages(config, Severity.ERROR)
        self.assertEqual(len(errors), 7, errors)
        self.assertEqual(
            sorted(config.dropped),
            sorted(
                [
                    "chargen-dgram",
                    "daytime-dgram",
                    "discard-dgram",
                    "echo-dgram",
                    "servers",
                    "services",
                    "time-dgram",
                ]
            ),
        )
        self.assertTrue(
            any("No such internal service: servers/stream" in e for e in errors)
        )

    def test_sampleConf(self) -> None:
        """
        The upstream sample: programs under /usr/etc are missing, tftp is
        disabled by defaults, the internals and the redirect remain.
        """
        config = loadConfig(
            os.path.join(DEBIAN, "examples", "sample.conf"),
            environ={},
            isRoot=True,
            **SYSFILES,
        )
        self.assertEqual(
            [s.serviceId for s in config.services],
            [
                "telnet",
                "systat",
                "echo-stream",
                "echo-dgram",
                "chargen-stream",
                "chargen-dgram",
                "daytime-stream",
                "daytime-dgram",
                "time-stream",
                "time-dgram",
            ],
        )
        self.assertNotIn("tftp", config.dropped)
        self.assertEqual(len(config.dropped), 17)

    def test_emptyConf(self) -> None:
        """
        The empty template: every attribute without a value gets a warning
        (wrong count) or an error; the service is dropped.
        """
        config = loadConfig(
            os.path.join(DEBIAN, "examples", "empty.conf"),
            environ={},
            isRoot=True,
            **SYSFILES,
        )
        self.assertEqual(config.services, ())
        self.assertEqual(config.dropped, ("empty",))


def _freePorts(count: int) -> List[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class DifferentialTests(SynchronousTestCase):
    """
    Our reading of broken configurations against xinetd's own.
    """

    def setUp(self) -> None:
        if not os.access(XINETD, os.X_OK):
            raise SkipTest(f"{XINETD} is not installed")
        if os.geteuid() != 0:
            raise SkipTest("xinetd needs root to run services as root")

    def runXinetd(self, config: str) -> Tuple[int, Set[int], List[str]]:
        """
        Run xinetd on C{config}; return the number of services it started,
        the lines its messages name, and its log.
        """
        log = self.mktemp()
        process = subprocess.Popen(
            [XINETD, "-dontfork", "-filelog", log, "-f", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
            process.wait(10)

        self.addCleanup(stop)
        text = ""
        for _ in range(100):
            if os.path.exists(log):
                with open(log) as f:
                    text = f.read()
                if "Started working" in text:
                    break
            time.sleep(0.05)
        found = re.search(r"Started working: (\d+) available service", text)
        self.assertIsNotNone(found, text)
        assert found is not None
        lines = {int(n) for n in re.findall(r"\[line=(\d+)\]", text)}
        return int(found.group(1)), lines, text.splitlines()

    def compare(self, body: str) -> None:
        ports = iter(_freePorts(8))
        text = re.sub(r"PORT", lambda m: str(next(ports)), body)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        count, lines, log = self.runXinetd(path)
        ours = loadConfig(path, isRoot=True)
        self.assertEqual(len(ours.services), count, "\n".join(log))
        ourLines = {p.location.line for p in ours.problems}
        self.assertTrue(lines <= ourLines, (lines, ourLines, log))

    def test_brokenServices(self) -> None:
        """
        Bad flag, missing space, repeated and unknown attributes, duplicate
        port with bind, missing server: same survivors, same lines.
        """
        block = (
            "service {name}\n{{\n type = UNLISTED\n socket_type = stream\n wait = no\n"
            " user = root\n server = {server}\n port = {port}\n{extra}\n}}\n"
        )
        text = "defaults\n{\n bind = 127.0.0.1\n}\n"
        text += block.format(name="good", server="/bin/cat", port="PORT", extra="")
        text += block.format(
            name="badflag", server="/bin/cat", port="PORT", extra=" flags = BOGUS"
        )
        text += block.format(
            name="nospace", server="/bin/cat", port="PORT", extra=" nice= 1"
        )
        text += block.format(
            name="good2",
            server="/bin/cat",
            port="47999",
            extra=" nice = 1\n nice = 2\n bogus = x",
        )
        text += block.format(name="dup", server="/bin/cat", port="47999", extra="")
        text += block.format(
            name="noserver", server="/nonexistent", port="PORT", extra=""
        )
        text += block.format(
            name="badcount", server="/bin/cat", port="PORT", extra=" cps = 1"
        )
        self.compare(text)

    def test_missingAttributesAndTypes(self) -> None:
        """
        Missing wait, unknown internal, dgram nowait internal, brace on the
        service line: same survivors and lines.
        """
        text = (
            "service a\n{\n type = UNLISTED\n socket_type = stream\n user = root\n"
            " server = /bin/cat\n port = PORT\n bind = 127.0.0.1\n}\n"
            "service servers\n{\n type = INTERNAL UNLISTED\n socket_type = stream\n"
            " wait = no\n port = PORT\n bind = 127.0.0.1\n}\n"
            "service echo\n{\n type = INTERNAL UNLISTED\n socket_type = dgram\n"
            " wait = yes\n port = PORT\n bind = 127.0.0.1\n}\n"
            "service b {\n type = UNLISTED\n}\n"
            "service c\n{\n type = UNLISTED\n socket_type = stream\n wait = no\n user = root\n"
            " server = /bin/cat\n port = PORT\n bind = 127.0.0.1\n only_from = 127.0.0.1 # x\n}\n"
        )
        self.compare(text)
