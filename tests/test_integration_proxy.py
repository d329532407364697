"""
Integration tests: the PROXY protocol from trusted proxies
(C{proxy_protocol}, our extension) through the real C{twistd -n xinetd},
with Debian's haproxy in front (C{send-proxy}, C{send-proxy-v2}).

haproxy connects to the daemon from 127.0.0.2 (the trusted proxy);
clients connect to haproxy from 127.0.0.3 (or 127.0.0.1 for s_client),
so the address the daemon reports tells which one it took for the client.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from typing import Callable, List

from twisted.trial.unittest import TestCase

from tests.daemon import Daemon, freePort, waitForPort
from tests.tlsfiles import makePKI

HOST = "127.0.0.1"
PROXY_SOURCE = "127.0.0.2"
CLIENT = "127.0.0.3"

BACKEND = """#!/bin/sh
echo "from=$REMOTE_HOST"
read line
echo "got $line"
"""

HAPROXY = """\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def waitUntil(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def talk(port: int, send: bytes, source: str = CLIENT, host: str = HOST) -> bytes:
    """
    Connect from C{source}, send, half-close, read until EOF.
    """
    import socket

    with socket.socket() as s:
        s.settimeout(15)
        s.bind((source, 0))
        s.connect((host, port))
        try:
            s.sendall(send)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            # The daemon may close a refused connection before we finish.
            return b""
        chunks: List[bytes] = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


class ProxyTestCase(TestCase):
    """
    A daemon, and haproxy in front of it.
    """

    def setUp(self) -> None:
        self.haproxy = shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
        )
        if self.haproxy is None:
            self.skipTest("needs haproxy (Debian package haproxy)")
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        os.chmod(self.directory, 0o755)
        self.logPath = os.path.join(self.directory, "services.log")
        self.script = os.path.join(self.directory, "backend.sh")
        with open(self.script, "w") as f:
            f.write(BACKEND)
        os.chmod(self.script, 0o755)

    def block(
        self, serviceId: str, port: int, body: str, types: str = "UNLISTED"
    ) -> str:
        user = (
            "\tuser = root\n" if os.geteuid() == 0 and "INTERNAL" not in types else ""
        )
        return (
            f"service {serviceId}\n{{\n\ttype = {types}\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tbind = {HOST}\n\tport = {port}\n"
            f"\tlog_type = FILE {self.logPath}\n"
            "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n"
            f"\tproxy_protocol = {PROXY_SOURCE}\n{user}{body}}}\n"
        )

    def program(self, serviceId: str, port: int, extra: str = "") -> str:
        return self.block(serviceId, port, f"\tserver = {self.script}\n{extra}")

    def daemon(self, text: str) -> Daemon:
        daemon = Daemon(text)
        self.addCleanup(daemon.cleanup)
        self.addCleanup(self._keepLog, daemon)
        daemon.start()
        return daemon

    def _keepLog(self, daemon: Daemon) -> None:
        with open(os.path.abspath(f"{self.id()}.twistd.log"), "w") as f:
            f.write(daemon.log())

    def front(self, upstream: int, option: str) -> int:
        """
        Start haproxy relaying a new port to C{upstream} with C{option}
        (C{send-proxy} or C{send-proxy-v2}); return its port.
        """
        port = freePort()
        config = os.path.join(self.directory, f"haproxy-{port}.cfg")
        with open(config, "w") as f:
            f.write(
                HAPROXY + f"frontend f\n    bind {HOST}:{port}\n    default_backend b\n"
                f"backend b\n    server s {HOST}:{upstream} {option} "
                f"source {PROXY_SOURCE}\n"
            )
        assert self.haproxy is not None
        process = subprocess.Popen(
            [self.haproxy, "-db", "-f", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            process.terminate()
            process.wait(10)

        self.addCleanup(stop)
        waitForPort(HOST, port)
        return port

    def serviceLog(self) -> str:
        try:
            with open(self.logPath) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def untilLogged(self, word: str, count: int = 1) -> List[str]:
        waitUntil(lambda: self.serviceLog().count(word) >= count)
        return [line for line in self.serviceLog().splitlines() if word in line]


class ProgramTests(ProxyTestCase):
    """
    A program behind haproxy: the header's client is the client, and the
    program reads the bytes after the header from the socket itself.
    """

    def test_sendProxy(self) -> None:
        """
        send-proxy (v1): REMOTE_HOST and from= are the client's.
        """
        port = freePort()
        self.daemon(self.program("hello", port))
        out = talk(self.front(port, "send-proxy"), b"hello\n")
        self.assertEqual(out, f"from={CLIENT}\ngot hello\n".encode())
        # haproxy's readiness probe came from 127.0.0.1: the other START.
        starts = self.untilLogged("START: hello", 2)
        self.assertEqual(
            sum(
                bool(re.search(rf"START: hello pid=\d+ from={CLIENT}$", s))
                for s in starts
            ),
            1,
        )

    def test_sendProxyV2(self) -> None:
        """
        send-proxy-v2 works the same.
        """
        port = freePort()
        self.daemon(self.program("hello", port))
        out = talk(self.front(port, "send-proxy-v2"), b"hello v2\n")
        self.assertEqual(out, f"from={CLIENT}\ngot hello v2\n".encode())

    def test_onlyFromSeesTheClient(self) -> None:
        """
        only_from is checked against the header's client: refused clients
        are logged with their own address.
        """
        port = freePort()
        self.daemon(self.program("guarded", port, f"\tonly_from = {CLIENT}\n"))
        front = self.front(port, "send-proxy-v2")
        self.assertIn(b"got ok", talk(front, b"ok\n"))
        self.assertNotIn(b"got", talk(front, b"no\n", source="127.0.0.4"))
        waitUntil(lambda: "FAIL: guarded address from=127.0.0.4\n" in self.serviceLog())

    def test_trustedWithoutHeader(self) -> None:
        """
        A trusted address that sends no header is closed at once: FAIL
        proxy with its own address, no program.
        """
        port = freePort()
        self.daemon(self.program("hello", port))
        self.assertEqual(talk(port, b"hello\n", source=PROXY_SOURCE), b"")
        (fail,) = self.untilLogged("FAIL: hello")
        self.assertRegex(fail, rf"FAIL: hello proxy from={PROXY_SOURCE}$")
        self.assertNotIn("START", self.serviceLog())

    def test_untrustedNeverParsed(self) -> None:
        """
        From any other address a PROXY line is just the client's data.
        """
        port = freePort()
        self.daemon(self.program("hello", port))
        line = b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\n"
        out = talk(port, line, source="127.0.0.5")
        self.assertEqual(out, b"from=127.0.0.5\ngot " + line)


class InProcessTests(ProxyTestCase):
    """
    In-process services and TLS behind haproxy.
    """

    def test_internalEcho(self) -> None:
        """
        An internal echo service behind haproxy echoes the bytes after the
        header and logs the header's client.
        """
        port = freePort()
        self.daemon(self.block("echo", port, "", types="INTERNAL UNLISTED"))
        self.assertEqual(talk(self.front(port, "send-proxy-v2"), b"ping"), b"ping")
        waitUntil(lambda: f"START: echo pid=0 from={CLIENT}\n" in self.serviceLog())

    def test_tlsAfterHeader(self) -> None:
        """
        With TLS on the same service the header comes first, then the
        handshake (openssl s_client through haproxy).
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("needs openssl (Debian package openssl)")
        pki = makePKI(self.directory)
        port = freePort()
        self.daemon(
            self.program("tlshello", port, f"\ttls_certificate = {pki.combined}\n")
        )
        front = self.front(port, "send-proxy")
        result = subprocess.run(
            [openssl, "s_client", "-connect", f"{HOST}:{front}", "-quiet"],
            input=b"secret\n",
            capture_output=True,
            timeout=20,
        )
        self.assertEqual(result.stdout, f"from={HOST}\ngot secret\n".encode())
        waitUntil(lambda: "START: tlshello" in self.serviceLog())
        self.assertNotIn(f"from={PROXY_SOURCE}", self.serviceLog())
