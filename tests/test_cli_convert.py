"""
Tests for C{xinetd-twisted convert}: inetd.conf to xinetd.conf, checked by
this project's loader and, when installed, by the real xinetd.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import List, Tuple

import attr
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.daemon import Daemon, fetch, freePort
from xinetd_twisted.cli import main
from xinetd_twisted.config.model import Config, Location, ServiceConfig
from xinetd_twisted.config.reader import loadConfig, parseConfigText

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "config", "inetd")
SERVICES = os.path.join(FIXTURES, "services")
XINETD = "/usr/sbin/xinetd"


def convert(*args: str) -> Tuple[int, str, str]:
    """
    Run C{convert} with the fixture services file: (status, stdout, stderr).
    """
    out, err = io.StringIO(), io.StringIO()
    status = main(["convert", "--services", SERVICES, *args], out, err)
    return status, out.getvalue(), err.getvalue()


def blocks(text: str) -> List[List[str]]:
    """
    The attribute lines of each service block, stripped.
    """
    found: List[List[str]] = []
    for line in text.splitlines():
        if line.startswith("service "):
            found.append([])
        elif line.startswith("\t"):
            found[-1].append(" ".join(line.split()))
    return found


def comparable(service: ServiceConfig) -> ServiceConfig:
    """
    A service without where it was written.
    """
    return attr.evolve(service, location=Location("", 0))


class ConvertTests(SynchronousTestCase):
    """
    The converter's output.
    """

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_header(self) -> None:
        """
        The output starts with a comment naming the file it came from, and
        each block with the line it came from.
        """
        path = self.write("echo stream tcp nowait root internal\n")
        status, out, err = convert(path)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out.splitlines()[0], f"# Converted from {path} by xinetd-twisted convert."
        )
        self.assertIn(
            "# 1: echo stream tcp nowait root internal\nservice echo\n{\n", out
        )

    def test_internal(self) -> None:
        """
        Internal services are INTERNAL with the socket type of their line and
        no NAMEINARGS (xconv.pl's bug).
        """
        path = self.write(
            "echo stream tcp nowait root internal\ndiscard dgram udp wait root internal\n"
        )
        first, second = blocks(convert(path)[1])
        self.assertEqual(
            first[:3], ["id = echo-stream", "type = INTERNAL", "flags = IPv4"]
        )
        self.assertIn("socket_type = stream", first)
        self.assertEqual(second[0], "id = discard-dgram")
        self.assertIn("socket_type = dgram", second)
        self.assertNotIn("NAMEINARGS", "\n".join(first + second))

    def test_external(self) -> None:
        """
        External services: user and group split, the rate as cps, tcpd
        unwrapped, a port number as UNLISTED + port, the bind address.
        """
        path = self.write(
            "127.0.0.1:8010 stream tcp nowait.60 nobody:nogroup /usr/sbin/tcpd /bin/cat -u\n"
        )
        (block,) = blocks(convert(path)[1])
        self.assertEqual(
            block,
            [
                "type = UNLISTED",
                "flags = IPv4 REUSE NAMEINARGS",
                "socket_type = stream",
                "protocol = tcp",
                "wait = no",
                "user = nobody",
                "group = nogroup",
                "groups = yes",
                "server = /bin/cat",
                "server_args = cat -u",
                "libwrap = cat",
                "port = 8010",
                "bind = 127.0.0.1",
                "cps = 1 600",
            ],
        )

    def test_errors(self) -> None:
        """
        Lines that cannot be converted go to stderr with their line number,
        the others are written, and the status is 1.
        """
        path = self.write(
            "# rpc\nrstatd/1-5 dgram rpc/udp wait nobody /usr/sbin/tcpd /usr/sbin/rpc.rstatd\n"
            "echo stream tcp nowait root internal\n"
        )
        status, out, err = convert(path)
        self.assertEqual(status, 1)
        self.assertTrue(
            err.startswith(f"{path}:2: error: RPC services are not supported")
        )
        self.assertEqual(len(blocks(out)), 1)

    def test_warningsKeepStatus(self) -> None:
        """
        Warnings go to stderr but do not fail the conversion.
        """
        path = self.write("8009 dgram udp wait nobody /bin/cat\n")
        status, out, err = convert(path)
        self.assertEqual(status, 0)
        self.assertIn(f"{path}:1: service 8009: warning: no argv given", err)

    def test_stdin(self) -> None:
        """
        Without a file, standard input is converted; errors say C{<stdin>}.
        """
        self.patch(__import__("sys"), "stdin", io.StringIO("echo stream tcp nowait\n"))
        status, out, err = convert()
        self.assertEqual(status, 1)
        self.assertTrue(out.startswith("# Converted from standard input"))
        self.assertTrue(err.startswith("<stdin>:1: error:"))

    def test_unreadable(self) -> None:
        """
        A file that cannot be read is one message and status 2.
        """
        status, out, err = convert(self.mktemp())
        self.assertEqual((status, out, len(err.splitlines())), (2, "", 1))
        self.assertIn("cannot read: No such file or directory", err)

    def test_fifo(self) -> None:
        """
        A FIFO is refused at once (it used to wait for a writer forever).
        """
        fifo = self.mktemp()
        os.mkfifo(fifo)
        status, out, err = convert(fifo)
        self.assertEqual((status, out), (2, ""))
        self.assertIn(f"{fifo} is not a regular file (it is a FIFO)", err)

    def test_binary(self) -> None:
        """
        A binary file is refused with its location.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"echo stream tcp nowait root internal\n\x00")
        status, out, err = convert(path)
        self.assertEqual((status, out), (2, ""))
        self.assertIn(f"{path}:2: fatal: not a configuration file", err)

    def test_binaryStdin(self) -> None:
        """
        Bytes on standard input that are not text are refused, not a
        UnicodeDecodeError traceback.
        """
        result = subprocess.run(
            [sys.executable, "-m", "xinetd_twisted.cli", "convert"],
            input=b"\xff\xfe\x00garbage",
            capture_output=True,
            cwd=ROOT,
            timeout=60,
        )
        self.assertEqual(result.returncode, 2)
        self.assertNotIn(b"Traceback", result.stderr)


class RoundTripTests(SynchronousTestCase):
    """
    Converting, then loading, gives what C{--inetd-compat} gives.
    """

    def both(self, name: str) -> Tuple[Config, Config]:
        source = os.path.join(FIXTURES, name)
        empty = self.mktemp()
        with open(empty, "w") as f:
            f.write("")
        direct = loadConfig(empty, inetdConf=source, isRoot=True, servicesFile=SERVICES)
        _, out, _ = convert(source)
        converted = parseConfigText(
            out, "converted.conf", isRoot=True, servicesFile=SERVICES
        )
        return direct, converted

    def assertSame(self, name: str, count: int) -> None:
        direct, converted = self.both(name)
        self.assertEqual(len(direct.services), count)
        self.assertEqual(
            [comparable(s) for s in converted.services],
            [comparable(s) for s in direct.services],
        )
        self.assertEqual(converted.dropped, direct.dropped)

    def test_roundTrip(self) -> None:
        """
        Every form the converter writes loads to the same services.
        """
        self.assertSame("roundtrip.conf", 12)

    def test_openbsd(self) -> None:
        """
        The openbsd-inetd fixture round-trips (services whose program is
        missing are dropped by both).
        """
        direct, _ = self.both("openbsd.conf")
        self.assertSame("openbsd.conf", len(direct.services))

    def test_debian(self) -> None:
        """
        The Debian fixture round-trips.
        """
        direct, _ = self.both("debian.conf")
        self.assertSame("debian.conf", len(direct.services))


def _portFree(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _udpEcho(port: int, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(data, ("127.0.0.1", port))
        return s.recv(65536)


def _replies(catPort: int) -> Tuple[bytes, bytes, bytes]:
    """
    What the internal echo (TCP and UDP) and the external cat answer.
    """
    return (
        fetch("127.0.0.1", 7, b"hello, echo\n"),
        _udpEcho(7, b"hello, udp\n"),
        fetch("127.0.0.1", catPort, b"hello, cat\n"),
    )


class RealXinetdTests(SynchronousTestCase):
    """
    The converted file under the real xinetd, and under this daemon.
    """

    def setUp(self) -> None:
        if not os.path.exists(XINETD):
            raise SkipTest(f"{XINETD} is not installed")
        if os.getuid() != 0:
            raise SkipTest("needs root: the internal echo listens on port 7")
        if not (_portFree(7, socket.SOCK_STREAM) and _portFree(7, socket.SOCK_DGRAM)):
            raise SkipTest("port 7 on 127.0.0.1 is in use")
        self.catPort = freePort()
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.inetdPath = os.path.join(self.directory, "inetd.conf")
        with open(self.inetdPath, "w") as f:
            f.write(
                "127.0.0.1:echo stream tcp nowait root internal\n"
                "127.0.0.1:echo dgram udp wait root internal\n"
                f"127.0.0.1:{self.catPort} stream tcp nowait nobody /bin/cat cat\n"
            )
        status, self.converted, err = convert(self.inetdPath)
        self.assertEqual((status, err), (0, ""))
        self.convertedPath = os.path.join(self.directory, "converted.conf")
        with open(self.convertedPath, "w") as f:
            f.write(self.converted)

    def runXinetd(self) -> Tuple[str, Tuple[bytes, bytes, bytes]]:
        """
        Start xinetd on the converted file, collect the replies, stop it by
        its PID; return its log and the replies.
        """
        log = os.path.join(self.directory, "xinetd.log")
        process = subprocess.Popen(
            [
                XINETD,
                "-dontfork",
                "-stayalive",
                "-filelog",
                log,
                "-f",
                self.convertedPath,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(timeout=10)

        self.addCleanup(stop)
        deadline = time.monotonic() + 10
        text = ""
        while "Started working" not in text:
            self.assertLess(time.monotonic(), deadline, f"xinetd did not start: {text}")
            self.assertIsNone(process.poll(), "xinetd exited")
            time.sleep(0.05)
            if os.path.exists(log):
                with open(log) as f:
                    text = f.read()
        replies = _replies(self.catPort)
        stop()
        return text, replies

    def test_xinetdRunsConverted(self) -> None:
        """
        Real xinetd starts every converted service, and the converted file
        and C{--inetd-compat} serve the same bytes under this daemon.
        """
        log, theirs = self.runXinetd()
        self.assertTrue(re.search(r"Started working: 3 available service", log), log)
        self.assertEqual(theirs[0], b"hello, echo\n")
        self.assertEqual(theirs[2], b"hello, cat\n")
        for text, extra in (
            (self.converted, []),
            ("", ["--inetd-compat", self.inetdPath]),
        ):
            daemon = Daemon(text, extra)
            self.addCleanup(daemon.cleanup)
            daemon.start(waitFor=("127.0.0.1", self.catPort))
            self.assertEqual(_replies(self.catPort), theirs)
            daemon.cleanup()
