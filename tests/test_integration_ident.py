"""
USERID logging and IDONLY through the real daemon, with a fake identd on
127.0.0.1:113 (the port RFC 1413 fixes, so these tests need root).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import List, Optional

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort


class FakeIdentd:
    """
    Answers every RFC 1413 query with a fixed user, in a thread of the test
    process (the daemon under test is another process).

    @ivar queries: the request lines received.
    """

    def __init__(self, user: str = "alice") -> None:
        self.user = user
        self.queries: List[bytes] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", 113))
        except OSError as e:
            self.sock.close()
            raise SkipTest(f"cannot bind 127.0.0.1:113 for a fake identd: {e}") from e
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                self.queries.append(data)
                ports = data.strip().decode()
                conn.sendall(f"{ports} : USERID : UNIX : {self.user}\r\n".encode())

    def stop(self) -> None:
        self._stop = True
        self.thread.join(5)
        self.sock.close()


def _requireRoot() -> None:
    if os.geteuid() != 0:
        raise SkipTest("needs root: identd's port 113 is privileged")


def _service(port: int, log: str, extra: str) -> str:
    return f"""
service hello
{{
	type = UNLISTED
	port = {port}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
	user = nobody
	server = /bin/echo
	server_args = served
	log_type = FILE {log}
{extra}
}}
"""


class IdentTests(TestCase):
    """
    The daemon asks the client's identd, as xinetd does for USERID.
    """

    def start(self, extra: str) -> tuple:
        _requireRoot()
        port = freePort()
        daemon = Daemon("")
        self.addCleanup(daemon.cleanup)
        log = os.path.join(daemon.directory, "service.log")
        with open(daemon.configPath, "w") as f:
            f.write(_service(port, log, extra))
        daemon.start(waitFor=("127.0.0.1", port))
        return daemon, port, log

    def waitFor(self, path: str, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        content: Optional[str] = None
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    content = f.read()
            except FileNotFoundError:
                content = ""
            if text in content:
                return content
            time.sleep(0.05)
        self.fail(f"{text!r} not in {content!r}")

    def test_useridOnSuccess(self) -> None:
        """
        With USERID the server runs and the identd's answer is logged as a
        USERID line; the query names the client's and the server's ports.
        """
        identd = FakeIdentd()
        self.addCleanup(identd.stop)
        daemon, port, log = self.start("\tlog_on_success = HOST USERID\n")
        with socket.create_connection(("127.0.0.1", port)) as client:
            clientPort = client.getsockname()[1]
            client.shutdown(socket.SHUT_WR)
            client.settimeout(10)
            self.assertEqual(client.recv(100), b"served\n")
        # (The harness's start-up check connected too, and was asked about
        # as well: wait for the lines and the query of this connection.)
        self.waitFor(log, "USERID: hello UNIX : alice")
        self.waitFor(log, "START: hello from=127.0.0.1")
        expected = f"{clientPort},{port}\r\n".encode()
        deadline = time.monotonic() + 10
        while expected not in identd.queries and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(expected, identd.queries)

    def test_idonlyWithoutIdentd(self) -> None:
        """
        IDONLY refuses a client whose identd does not answer: NOID line, no
        server.
        """
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", 113))
        except OSError:
            raise SkipTest("something listens on 127.0.0.1:113") from None
        finally:
            probe.close()
        daemon, port, log = self.start(
            "\tlog_on_success = HOST USERID EXIT\n\tflags = IDONLY\n"
        )
        self.assertEqual(fetch("127.0.0.1", port), b"")
        content = self.waitFor(log, "NOID: hello 127.0.0.1 no server")
        self.assertNotIn("START", content)

    def test_idonlyWithIdentd(self) -> None:
        """
        IDONLY serves a client whose identd answers, after logging USERID.
        """
        identd = FakeIdentd("bob")
        self.addCleanup(identd.stop)
        daemon, port, log = self.start(
            "\tlog_on_success = HOST USERID\n\tflags = IDONLY\n"
        )
        self.assertEqual(fetch("127.0.0.1", port), b"served\n")
        self.waitFor(log, "USERID: hello UNIX : bob")

    def test_useridOnFailure(self) -> None:
        """
        log_on_failure = USERID asks the refused client's identd too.
        """
        identd = FakeIdentd("mallory")
        self.addCleanup(identd.stop)
        daemon, port, log = self.start(
            "\tlog_on_failure = HOST USERID\n\tonly_from = 10.0.0.1\n"
        )
        self.assertEqual(fetch("127.0.0.1", port), b"")
        content = self.waitFor(log, "USERID: hello UNIX : mallory")
        self.assertIn("FAIL: hello address from=127.0.0.1", content)


def _kindService(kind: str, port: int, log: str, extra: str, upstream: int = 0) -> str:
    """
    An internal echo, a redirect to C{upstream}, or the tcpmux multiplexer,
    logging to C{log}.
    """
    common = (
        f"\tport = {port}\n\tsocket_type = stream\n\twait = no\n"
        f"\tbind = 127.0.0.1\n\tlog_type = FILE {log}\n{extra}"
    )
    if kind == "internal":
        return f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n{common}}}\n"
    if kind == "redirect":
        return (
            f"service relay\n{{\n\ttype = UNLISTED\n{common}"
            f"\tuser = nobody\n\tredirect = 127.0.0.1 {upstream}\n}}\n"
        )
    return (
        f"service tcpmux\n{{\n\ttype = INTERNAL UNLISTED\n{common}}}\n"
        "service hello\n{\n\ttype = TCPMUXPLUS UNLISTED\n\tsocket_type = stream\n"
        "\tprotocol = tcp\n"
        "\twait = no\n\tuser = nobody\n\tserver = /bin/echo\n"
        "\tserver_args = muxed\n}\n"
    )


class EveryKindIdentTests(TestCase):
    """
    USERID and IDONLY work for internal, redirect and tcpmux services too.
    """

    def start(self, kind: str, extra: str, upstream: int = 0) -> tuple:
        _requireRoot()
        port = freePort()
        daemon = Daemon("")
        self.addCleanup(daemon.cleanup)
        log = os.path.join(daemon.directory, "service.log")
        with open(daemon.configPath, "w") as f:
            f.write(_kindService(kind, port, log, extra, upstream))
        daemon.start(waitFor=("127.0.0.1", port))
        return daemon, port, log

    waitFor = IdentTests.waitFor

    def test_internalUserid(self) -> None:
        """An internal service logs the client's identd answer."""
        identd = FakeIdentd("carol")
        self.addCleanup(identd.stop)
        daemon, port, log = self.start("internal", "\tlog_on_success = HOST USERID\n")
        self.assertEqual(fetch("127.0.0.1", port, b"ping"), b"ping")
        self.waitFor(log, "USERID: echo UNIX : carol")

    def test_redirectUserid(self) -> None:
        """A redirect logs the client's identd answer."""
        identd = FakeIdentd("dave")
        self.addCleanup(identd.stop)
        upstream = socket.socket()
        upstream.bind(("127.0.0.1", 0))
        upstream.listen(5)
        self.addCleanup(upstream.close)
        daemon, port, log = self.start(
            "redirect", "\tlog_on_success = HOST USERID\n", upstream.getsockname()[1]
        )
        with socket.create_connection(("127.0.0.1", port)) as client:
            self.waitFor(log, "USERID: relay UNIX : dave")
            del client

    def test_tcpmuxIdonly(self) -> None:
        """The tcpmux multiplexer asks identd and, with IDONLY, waits for it."""
        identd = FakeIdentd("erin")
        self.addCleanup(identd.stop)
        daemon, port, log = self.start(
            "tcpmux", "\tlog_on_success = HOST USERID\n\tflags = IDONLY\n"
        )
        self.assertEqual(
            fetch("127.0.0.1", port, b"hello\r\n", halfClose=False), b"+Go\r\nmuxed\n"
        )
        self.waitFor(log, "USERID: tcpmux UNIX : erin")
