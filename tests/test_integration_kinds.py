"""
Integration tests: every kind of service through the real C{twistd -n
xinetd}: stream and dgram C{wait = yes} servers, the internal services over
TCP and UDP, redirect, tcpmux (TCPMUX and TCPMUXPLUS), banners, IPv6 and
dual-stack sockets.

Each test writes a configuration, starts the daemon as a subprocess and
talks to it with plain blocking sockets over loopback.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import struct
import time
from typing import Callable, Optional, Tuple

from twisted.trial.unittest import SkipTest

from tests.daemon import PROBE, Daemon, fetch, freePort
from tests.test_integration_stream import DaemonTestCase, _interpreter, _requireRoot

HOST = "127.0.0.1"
DAYTIME = re.compile(rb"^\d\d [A-Z]{3} \d{4} \d\d:\d\d:\d\d \S+\r\n$")
ALPHABET = bytes(range(0x21, 0x7E))
EPOCH_1900 = 2208988800

STREAM_WAIT_SERVER = r"""
import os, socket, sys
listener = socket.socket(fileno=0)
listener.settimeout(float(sys.argv[1]))
served = 0
while True:
    try:
        conn, peer = listener.accept()
    except socket.timeout:
        break
    served += 1
    conn.sendall(("%d %d %s\n" % (os.getpid(), served,
                  os.environ.get("REMOTE_HOST", "-"))).encode())
    conn.close()
"""

DGRAM_WAIT_SERVER = r"""
import os, socket, sys
sock = socket.socket(fileno=0)
sock.settimeout(float(sys.argv[1]))
first = True
while first or float(sys.argv[1]) > 0:
    try:
        data, peer = sock.recvfrom(2048)
    except socket.timeout:
        break
    first = False
    reply = "%d %s %s %s" % (os.getpid(), os.environ.get("REMOTE_HOST", "-"),
                             peer[0], data.decode())
    sock.sendto(reply.encode(), peer)
    if float(sys.argv[1]) <= 0:
        break
"""


def _service(name: str, body: str) -> str:
    """
    One service block; C{body} holds tab-indented attribute lines.
    """
    return f"service {name}\n{{\n{body}}}\n"


def _attrs(**values: object) -> str:
    return "".join(f"\t{k} = {v}\n" for k, v in values.items())


def _internal(name: str, socketType: str, port: int, serviceId: str = "") -> str:
    body = _attrs(
        type="INTERNAL UNLISTED",
        id=serviceId or f"{name}-{socketType}",
        socket_type=socketType,
        protocol="tcp" if socketType == "stream" else "udp",
        wait="no" if socketType == "stream" else "yes",
        user="root",
        port=port,
        bind=HOST,
    )
    return _service(name, body)


def _udp(
    port: int, send: bytes = b"x\n", timeout: float = 5.0, source: str = HOST
) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.sendto(send, (HOST, port))
        return s.recv(65536)


def _readExactly(port: int, count: int, host: str = HOST) -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((host, port))
        data = b""
        while len(data) < count:
            chunk = s.recv(count - len(data))
            if not chunk:
                break
            data += chunk
        return data


def _waitFor(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _chargenLine(start: int) -> bytes:
    return bytes(ALPHABET[(start + i) % len(ALPHABET)] for i in range(72)) + b"\r\n"


class _KindsTestCase(DaemonTestCase):
    """
    Starts a daemon on a configuration built after its directory exists
    (scripts and banners live there, readable by every user).
    """

    def startDaemon(
        self, build: Callable[[Daemon], str], waitFor: Optional[Tuple[str, int]]
    ) -> Daemon:
        d = self.daemon("")
        with open(d.configPath, "w") as f:
            f.write(build(d))
        try:
            d.start(waitFor=waitFor)
        except OSError as e:
            self.fail(f"daemon not serving {waitFor}: {e}\n{d.log()}")
        return d

    def script(self, d: Daemon, name: str, text: str) -> str:
        path = os.path.join(d.directory, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        return path

    def log(self) -> str:
        """
        The service log file C{self.logFile} (set by the classes whose
        services log to one), empty until it exists.
        """
        try:
            with open(self.logFile) as f:
                return f.read()
        except FileNotFoundError:
            return ""


class WaitModeTests(_KindsTestCase):
    """
    C{wait = yes}: the server gets the socket itself and the daemon waits.
    """

    def test_streamWaitServesThenResumes(self) -> None:
        """
        A stream wait server accepts every connection on fd 0 until it is
        idle and exits; the daemon then watches the socket again and starts
        a new server for the next client.
        """
        _requireRoot()
        port = freePort()

        def build(d: Daemon) -> str:
            server = self.script(d, "streamwait.py", STREAM_WAIT_SERVER)
            return _service(
                "swait",
                _attrs(
                    type="UNLISTED",
                    port=port,
                    socket_type="stream",
                    wait="yes",
                    bind=HOST,
                    user="nobody",
                    server=_interpreter(),
                    server_args=f"-I -S {server} 1.0",
                ),
            )

        self.startDaemon(build, None)
        first = fetch(HOST, port, timeout=10).split()
        second = fetch(HOST, port, timeout=10).split()
        self.assertEqual(first[1:], [b"1", b"-"])
        self.assertEqual(second[:2], [first[0], b"2"])
        # The server exits after one idle second; the next client gets a
        # new one, started when the daemon saw the socket readable again.
        pid = int(first[0])
        self.assertTrue(_waitFor(lambda: not os.path.exists(f"/proc/{pid}")))
        third = fetch(HOST, port, timeout=10).split()
        self.assertNotEqual(third[0], first[0])
        self.assertEqual(third[1], b"1")

    def _dgramDaemon(self, idle: float) -> int:
        port = freePort(kind=socket.SOCK_DGRAM)

        def build(d: Daemon) -> str:
            server = self.script(d, "dgramwait.py", DGRAM_WAIT_SERVER)
            return _service(
                "dwait",
                _attrs(
                    type="UNLISTED",
                    port=port,
                    socket_type="dgram",
                    protocol="udp",
                    wait="yes",
                    bind=HOST,
                    user="nobody",
                    server=_interpreter(),
                    server_args=f"-I -S {server} {idle}",
                ),
            )

        self.startDaemon(build, None)
        return port

    def test_dgramWaitQueuedDatagramsKept(self) -> None:
        """
        Datagrams queued while a one-shot server runs are kept for the next
        servers (xinetd discards them): a burst of three is answered three
        times, by three servers.
        """
        _requireRoot()
        port = self._dgramDaemon(0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            for n in range(3):
                s.sendto(b"burst%d" % n, (HOST, port))
            replies = [s.recv(2048).split() for _ in range(3)]
        self.assertEqual(
            sorted(r[3] for r in replies), [b"burst0", b"burst1", b"burst2"]
        )
        self.assertEqual(len({r[0] for r in replies}), 3)

    def test_dgramWaitServerThatNeverReads(self) -> None:
        """
        A server that exits without reading its datagram is started once
        for it, not again and again: the unread datagram is discarded, and
        the service still serves the next one.
        """
        _requireRoot()
        port = freePort(kind=socket.SOCK_DGRAM)
        logFile = []

        def build(d: Daemon) -> str:
            logFile.append(os.path.join(d.directory, "dgram.log"))
            return _service(
                "lazy",
                _attrs(
                    type="UNLISTED",
                    port=port,
                    socket_type="dgram",
                    protocol="udp",
                    wait="yes",
                    bind=HOST,
                    user="nobody",
                    server="/bin/true",
                    log_type=f"FILE {logFile[0]}",
                    log_on_success="PID EXIT",
                ),
            )

        d = self.startDaemon(build, None)

        def lines(word: str) -> int:
            try:
                with open(logFile[0]) as f:
                    return f.read().count(word)
            except FileNotFoundError:
                return 0

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"unread", (HOST, port))
            self.assertTrue(_waitFor(lambda: lines("EXIT: lazy") == 1), d.log())
            # Long enough for a restart loop to show (it would spin at once).
            time.sleep(1.0)
            self.assertEqual(lines("START: lazy"), 1, d.log())
            s.sendto(b"next", (HOST, port))
            self.assertTrue(_waitFor(lambda: lines("EXIT: lazy") == 2), d.log())
        self.assertIn("discarded it", d.log())

    def test_dgramWaitSeveralClients(self) -> None:
        """
        Each datagram starts a server that reads it from fd 0 and answers
        its sender; several clients in a row are each served by a new one.
        """
        _requireRoot()
        port = self._dgramDaemon(0)
        pids = set()
        for n in range(4):
            reply = _udp(port, f"hello{n}".encode(), timeout=10).split()
            self.assertEqual(
                reply[1:], [b"127.0.0.1", b"127.0.0.1", f"hello{n}".encode()]
            )
            pids.add(reply[0])
        self.assertEqual(len(pids), 4)

    def test_dgramWaitRemoteHostIsFirstSender(self) -> None:
        """
        REMOTE_HOST is the sender of the datagram that started the server,
        even when the server then reads datagrams from others.
        """
        _requireRoot()
        port = self._dgramDaemon(2.0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.settimeout(10)
            a.bind(("127.0.0.2", 0))
            a.sendto(b"first", (HOST, port))
            replyA = a.recv(2048).split()
        replyB = _udp(port, b"second", timeout=10).split()
        self.assertEqual(replyA[1:], [b"127.0.0.2", b"127.0.0.2", b"first"])
        self.assertEqual(replyB, [replyA[0], b"127.0.0.2", b"127.0.0.1", b"second"])


class FirstClientTests(_KindsTestCase):
    """
    The first client of a service user (the one that makes the spawn
    helper start a sub-helper for those credentials).
    """

    def test_firstClientOfAUserGetsEOF(self) -> None:
        """
        The very first connection for a user gets the server's output and
        EOF when it exits: no helper process keeps a copy of the connection.
        """
        _requireRoot()
        port = freePort()
        body = _attrs(
            type="UNLISTED",
            port=port,
            socket_type="stream",
            wait="no",
            bind=HOST,
            user="daemon",
            server="/bin/echo",
            server_args="first",
        )
        # No waitFor: a probing connection would be the first client.
        self.startDaemon(lambda d: _service("first", body), None)
        self.assertEqual(fetch(HOST, port, timeout=5), b"first\n")


class InternalServiceTests(_KindsTestCase):
    """
    echo, discard, daytime, time, chargen over TCP and UDP in the daemon.
    """

    def setUp(self) -> None:
        self.ports = {}
        blocks = []
        for name in ("echo", "discard", "daytime", "time", "chargen"):
            for kind, sockType in (
                ("stream", socket.SOCK_STREAM),
                ("dgram", socket.SOCK_DGRAM),
            ):
                port = freePort(kind=sockType)
                self.ports[(name, kind)] = port
                blocks.append(_internal(name, kind, port))
        self.d = self.startDaemon(
            lambda d: "\n".join(blocks), (HOST, self.ports[("daytime", "stream")])
        )

    def test_echoStreamHalfClose(self) -> None:
        """
        Everything sent before a half-close comes back, then EOF.
        """
        payload = bytes(range(256)) * 200
        self.assertEqual(
            fetch(HOST, self.ports[("echo", "stream")], send=payload), payload
        )

    def test_discardStream(self) -> None:
        """
        discard reads and drops; the client gets EOF and no byte.
        """
        self.assertEqual(
            fetch(HOST, self.ports[("discard", "stream")], send=b"x" * 10000), b""
        )

    def test_daytimeStream(self) -> None:
        """
        daytime sends xinetd's C{DD MON YYYY HH:MM:SS ZONE\\r\\n} and closes.
        """
        reply = fetch(HOST, self.ports[("daytime", "stream")])
        self.assertRegex(reply, DAYTIME)
        self.assertIn(time.strftime("%Y").encode(), reply)

    def test_timeStream(self) -> None:
        """
        time sends 4 big-endian bytes: seconds since 1900, within 2 s.
        """
        reply = fetch(HOST, self.ports[("time", "stream")])
        self.assertEqual(len(reply), 4)
        (value,) = struct.unpack("!I", reply)
        self.assertLess(abs(value - EPOCH_1900 - time.time()), 2)

    def test_chargenStream(self) -> None:
        """
        chargen sends 74-byte lines of the 93-character alphabet, each
        starting one character after the previous.
        """
        data = _readExactly(self.ports[("chargen", "stream")], 74 * 3)
        lines = [data[i : i + 74] for i in range(0, len(data), 74)]
        start = ALPHABET.index(lines[0][:1])
        self.assertEqual(lines, [_chargenLine(start + i) for i in range(3)])

    def test_echoDgram(self) -> None:
        """
        A datagram comes back to its sender unchanged.
        """
        self.assertEqual(
            _udp(self.ports[("echo", "dgram")], b"ping\x00pong"), b"ping\x00pong"
        )

    def test_discardDgram(self) -> None:
        """
        discard over UDP answers nothing.
        """
        self.assertRaises(
            socket.timeout, _udp, self.ports[("discard", "dgram")], b"x", 0.5
        )

    def test_daytimeDgram(self) -> None:
        """
        daytime over UDP: one datagram in xinetd's format.
        """
        self.assertRegex(_udp(self.ports[("daytime", "dgram")]), DAYTIME)

    def test_timeDgram(self) -> None:
        """
        time over UDP: 4 bytes, within 2 s.
        """
        (value,) = struct.unpack("!I", _udp(self.ports[("time", "dgram")]))
        self.assertLess(abs(value - EPOCH_1900 - time.time()), 2)

    def test_chargenDgram(self) -> None:
        """
        chargen over UDP: one 1024-byte datagram of 13 full lines and a
        60-character one.
        """
        reply = _udp(self.ports[("chargen", "dgram")])
        self.assertEqual(len(reply), 1024)
        start = ALPHABET.index(reply[:1])
        expected = b"".join(_chargenLine(start + i) for i in range(13))
        expected += _chargenLine(start + 13)[:60] + b"\r\n"
        self.assertEqual(reply, expected)

    def test_everyDatagramAnswered(self) -> None:
        """
        A burst of datagrams is answered datagram by datagram (xinetd
        answers one and drains the rest).
        """
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            for n in range(10):
                s.sendto(b"%d" % n, (HOST, self.ports[("echo", "dgram")]))
            replies = sorted(s.recv(2048) for _ in range(10))
        self.assertEqual(replies, sorted(b"%d" % n for n in range(10)))


class InProcessEchoTests(_KindsTestCase):
    """
    echo and discard served in the daemon on the bare descriptor: many
    clients, back-pressure, log lines and refusals.
    """

    def setUp(self) -> None:
        self.ports = {
            name: freePort() for name in ("echo", "discard", "refused", "one")
        }
        self.logFile = ""

        def build(d: Daemon) -> str:
            self.logFile = os.path.join(d.directory, "services.log")
            logging = _attrs(
                log_type=f"FILE {self.logFile}",
                log_on_success="PID HOST EXIT DURATION",
                log_on_failure="HOST",
            )
            blocks = [
                _internal("echo", "stream", self.ports["echo"], "echo"),
                _internal("discard", "stream", self.ports["discard"], "discard"),
                _internal("echo", "stream", self.ports["refused"], "refused"),
                _internal("echo", "stream", self.ports["one"], "one"),
            ]
            extras = {
                # Past xinetd's default cps (50 a second) for many clients.
                "echo": "\tcps = 1000 1\n",
                "refused": "\tonly_from = 10.9.9.9\n",
                "one": "\tper_source = 1\n",
            }
            text = ""
            ids = ("echo", "discard", "refused", "one")
            for block, serviceId in zip(blocks, ids, strict=True):
                head, _, tail = block.rpartition("}")
                text += head + logging + extras.get(serviceId, "") + "}" + tail
            return text

        self.d = self.startDaemon(build, (HOST, self.ports["discard"]))

    def connect(self, name: str) -> socket.socket:
        s = socket.create_connection((HOST, self.ports[name]), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_manyConnections(self) -> None:
        """
        Sixty-four clients at once each get their own bytes back.
        """
        clients = [self.connect("echo") for _ in range(64)]
        for n, s in enumerate(clients):
            s.sendall(b"%04d" % n * 256)
            s.shutdown(socket.SHUT_WR)
        for n, s in enumerate(clients):
            self.assertEqual(s.makefile("rb").read(), b"%04d" % n * 256)

    def test_backPressure(self) -> None:
        """
        A client that sends without reading is held back (its sends stop
        going through) while other clients are served; once it reads, it
        gets every byte back, then EOF after its half-close.
        """
        s = self.connect("echo")
        s.setblocking(False)
        block = bytes(range(256)) * 256
        sent = 0
        # 64 MiB is far more than the socket buffers on both sides hold:
        # sending stops only if the daemon stopped reading.
        while sent < 64 << 20:
            try:
                sent += s.send(block)
            except BlockingIOError:
                break
        self.assertLess(sent, 64 << 20)
        self.assertEqual(fetch(HOST, self.ports["echo"], send=b"other"), b"other")
        s.setblocking(True)
        s.settimeout(10)
        received = 0
        shut = False
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            expected = (block * (len(data) // len(block) + 2))[
                received % len(block) : received % len(block) + len(data)
            ]
            self.assertEqual(data, expected)
            received += len(data)
            if received == sent and not shut:
                s.shutdown(socket.SHUT_WR)
                shut = True
        self.assertEqual(received, sent)

    def test_discard(self) -> None:
        """
        discard drops a megabyte and closes after the half-close.
        """
        self.assertEqual(fetch(HOST, self.ports["discard"], send=b"d" * (1 << 20)), b"")

    def test_logLines(self) -> None:
        """
        Each connection is logged as xinetd logs its forked echo: START with
        the client's address, EXIT with status, pid 0 and duration.
        """
        self.assertEqual(fetch(HOST, self.ports["echo"], send=b"hi"), b"hi")
        self.assertTrue(_waitFor(lambda: "EXIT: echo" in self.log()), self.log())
        log = self.log()
        self.assertIn("START: echo pid=0 from=127.0.0.1", log)
        self.assertRegex(log, r"EXIT: echo status=0 pid=0 duration=\d+\(sec\)")

    def test_refused(self) -> None:
        """
        A client only_from refuses is closed unanswered and logged FAIL.
        """
        s = self.connect("refused")
        try:
            s.sendall(b"x")
            self.assertEqual(s.recv(10), b"")
        except ConnectionResetError:
            pass
        self.assertTrue(
            _waitFor(lambda: "FAIL: refused address from=127.0.0.1" in self.log()),
            self.log(),
        )
        self.assertNotIn("START: refused", self.log())

    def test_perSource(self) -> None:
        """
        With per_source = 1, a second connection from the client is refused
        while the first is open, and admitted once it has closed.
        """
        first = self.connect("one")
        first.sendall(b"1")
        self.assertEqual(first.recv(1), b"1")
        try:
            # Closed with the byte unread: a reset, or an EOF.
            self.assertEqual(fetch(HOST, self.ports["one"], send=b"2"), b"")
        except ConnectionResetError:
            pass
        self.assertTrue(
            _waitFor(lambda: "FAIL: one per_source_limit" in self.log()), self.log()
        )
        first.shutdown(socket.SHUT_WR)
        self.assertEqual(first.recv(1), b"")
        self.assertTrue(_waitFor(lambda: self.log().count("EXIT: one") == 1))
        self.assertEqual(fetch(HOST, self.ports["one"], send=b"3"), b"3")


class RedirectTests(_KindsTestCase):
    """
    C{redirect}: a TCP proxy to a loopback echo server.
    """

    def start(self, target: str) -> None:
        """
        Serve a redirect to C{target}: C{"echo"}, C{"daytime"} (both
        internal services of the same daemon) or C{"refused"} (a port
        nothing listens on).
        """
        self.port = freePort()
        self.echo = freePort()
        self.daytime = freePort()
        self.logFile = ""
        targetPort = {"echo": self.echo, "daytime": self.daytime}.get(target)

        def build(d: Daemon) -> str:
            self.logFile = os.path.join(d.directory, "redir.log")
            internals = _internal("echo", "stream", self.echo) + _internal(
                "daytime", "stream", self.daytime
            )
            return internals + _service(
                "redir",
                _attrs(
                    type="UNLISTED",
                    port=self.port,
                    socket_type="stream",
                    wait="no",
                    bind=HOST,
                    user="root",
                    redirect=f"{HOST} {targetPort or freePort()}",
                    log_type=f"FILE {self.logFile}",
                    log_on_success="PID HOST EXIT DURATION TRAFFIC",
                ),
            )

        self.d = self.startDaemon(build, (HOST, self.port))

    def test_bytesBothWaysAndTraffic(self) -> None:
        """
        Bytes go to the target and back; EOF from the client closes both
        sides; the TRAFFIC line counts each direction.
        """
        self.start("echo")
        payload = os.urandom(100000)
        with socket.create_connection((HOST, self.port), timeout=10) as s:
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                self.assertTrue(chunk, "EOF before the echo came back")
                got += chunk
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(s.recv(10), b"")
        self.assertEqual(got, payload)
        # The daemon's start-up probe made a connection of its own first.
        traffic = f"TRAFFIC: redir in={len(payload)}(bytes) out={len(payload)}(bytes)"
        self.assertTrue(_waitFor(lambda: traffic in self.log()), self.log())
        self.assertRegex(self.log(), r"START: redir pid=\d+ from=127\.0\.0\.1\n")

    def test_targetEOFClosesClient(self) -> None:
        """
        When the target closes, the client gets its bytes and then EOF while
        its own side is still open.
        """
        self.start("daytime")
        reply = fetch(HOST, self.port, halfClose=False, timeout=5)
        self.assertRegex(reply, DAYTIME)

    def test_refusedTargetClosesClient(self) -> None:
        """
        When the target refuses, the client is closed at once and no
        TRAFFIC line is written.
        """
        self.start("refused")
        self.assertEqual(fetch(HOST, self.port, halfClose=False, timeout=5), b"")
        self.assertTrue(
            _waitFor(lambda: "can't connect to remote host" in self.d.log()),
            self.d.log(),
        )
        self.assertNotIn("TRAFFIC", self.log())


class TcpmuxTests(_KindsTestCase):
    """
    The tcpmux multiplexer and its TCPMUX / TCPMUXPLUS sub-services.
    """

    def setUp(self) -> None:
        _requireRoot()
        self.port = freePort()
        self.plainPort = freePort()

        def build(d: Daemon) -> str:
            probe = os.path.join(d.directory, "probe.py")
            shutil.copy(PROBE, probe)
            os.chmod(probe, 0o755)
            own = self.script(
                d,
                "own.sh",
                "#!/bin/sh\nprintf '+OK here\\r\\nown %s\\n' \"$(id -un)\"\n",
            )
            return (
                _internal("tcpmux", "stream", self.port)
                + _service(
                    "Probe",
                    _attrs(
                        type="TCPMUXPLUS UNLISTED",
                        socket_type="stream",
                        protocol="tcp",
                        wait="no",
                        user="nobody",
                        server=_interpreter(),
                        server_args=f"-I -S {probe}",
                    ),
                )
                + _service(
                    "own",
                    _attrs(
                        type="TCPMUX UNLISTED",
                        socket_type="stream",
                        protocol="tcp",
                        wait="no",
                        user="daemon",
                        server=own,
                    ),
                )
                + _service(
                    "plain",
                    _attrs(
                        type="UNLISTED",
                        port=self.plainPort,
                        socket_type="stream",
                        wait="no",
                        bind=HOST,
                        user="nobody",
                        server="/bin/echo",
                        server_args="plain",
                    ),
                )
            )

        self.d = self.startDaemon(build, (HOST, self.port))

    def test_tcpmuxPlusGoThenServer(self) -> None:
        """
        A TCPMUXPLUS service: C{+Go\\r\\n} (no NUL) then the server's output;
        the server runs as the sub-service's own user.
        """
        reply = fetch(HOST, self.port, send=b"probe\r\n", halfClose=False)
        self.assertTrue(reply.startswith(b"+Go\r\n{"), reply[:40])
        report = json.loads(reply[5:])
        nobody = pwd.getpwnam("nobody")
        self.assertEqual((report["uid"], report["gid"]), (nobody.pw_uid, nobody.pw_gid))
        self.assertEqual(report["env"]["REMOTE_HOST"], HOST)
        self.assertEqual(report["fds"], [0, 1, 2])

    def test_caseInsensitive(self) -> None:
        """
        Names are compared without regard to case.
        """
        reply = fetch(HOST, self.port, send=b"PROBE\r\n", halfClose=False)
        self.assertTrue(reply.startswith(b"+Go\r\n{"), reply[:40])

    def test_tcpmuxServerAnswersItself(self) -> None:
        """
        A TCPMUX service gets the connection with nothing sent for it; the
        server writes its own C{+} line.
        """
        reply = fetch(HOST, self.port, send=b"own\r\n", halfClose=False)
        self.assertEqual(reply, b"+OK here\r\nown daemon\n")

    def test_pipelinedDataRefusedNotLost(self) -> None:
        """
        Bytes sent after the name line in the same packet cannot reach the
        server (the daemon read them): the client is told with a C{-} line
        instead of the bytes being lost silently.
        """
        reply = fetch(HOST, self.port, send=b"own\r\nextra\n", halfClose=False)
        self.assertEqual(
            reply, b"-own: data after the service name is not supported\r\n"
        )

    def test_unknownName(self) -> None:
        """
        An unknown name gets exactly C{-Service name not found\\r\\n}.
        """
        reply = fetch(HOST, self.port, send=b"nosuch\r\n", halfClose=False)
        self.assertEqual(reply, b"-Service name not found\r\n")

    def test_ordinaryServiceNotSelectable(self) -> None:
        """
        A service that is not TCPMUX/TCPMUXPLUS cannot be reached by name
        (CVE-2012-0862), though it serves on its own port.
        """
        reply = fetch(HOST, self.port, send=b"plain\r\n", halfClose=False)
        self.assertEqual(reply, b"-Service name not found\r\n")
        self.assertEqual(fetch(HOST, self.plainPort), b"plain\n")


class BannerTests(_KindsTestCase):
    """
    banner, banner_success and banner_fail: the files' bytes exactly.
    """

    BANNER = b"\x00banner\r\n\xff"
    SUCCESS = b"ok:\tno newline"
    FAIL = b"go away\n\x01"

    def start(self, extra: str) -> int:
        port = freePort()

        def build(d: Daemon) -> str:
            paths = []
            for name, data in (
                ("banner", self.BANNER),
                ("success", self.SUCCESS),
                ("fail", self.FAIL),
            ):
                path = os.path.join(d.directory, name)
                with open(path, "wb") as f:
                    f.write(data)
                paths.append(path)
            return _service(
                "daytime",
                _attrs(
                    type="INTERNAL UNLISTED",
                    port=port,
                    socket_type="stream",
                    wait="no",
                    bind=HOST,
                    user="root",
                    banner=paths[0],
                    banner_success=paths[1],
                    banner_fail=paths[2],
                )
                + extra,
            )

        self.startDaemon(build, (HOST, port))
        return port

    def test_bannerThenSuccess(self) -> None:
        """
        An admitted client reads banner, banner_success, then the service.
        """
        port = self.start("")
        reply = fetch(HOST, port)
        prefix = self.BANNER + self.SUCCESS
        self.assertEqual(reply[: len(prefix)], prefix)
        self.assertRegex(reply[len(prefix) :], DAYTIME)

    def test_bannerThenFail(self) -> None:
        """
        A refused client reads banner (sent before access control), then
        banner_fail, then EOF.
        """
        port = self.start("\tonly_from = 10.9.9.9\n")
        self.assertEqual(fetch(HOST, port, halfClose=False), self.BANNER + self.FAIL)


def _freeDualPort() -> int:
    """
    A TCP port free on both families (a dual-stack socket checks both).
    """
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return int(s.getsockname()[1])


def _canBindIPv6() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        raise SkipTest(f"cannot bind ::1: {e}") from None


class IPv6Tests(_KindsTestCase):
    """
    IPv6-only and dual-stack sockets.
    """

    def probeDaemon(self, bind: str, port: int, waitFor: Tuple[str, int]) -> None:
        def build(d: Daemon) -> str:
            probe = self.probeIn(d)
            body = _attrs(
                type="UNLISTED",
                port=port,
                socket_type="stream",
                wait="no",
                flags="IPv6",
                user="nobody",
                server=_interpreter(),
                server_args=f"-I -S {probe}",
            )
            if bind:
                body += f"\tbind = {bind}\n"
            return _service("probe6", body)

        self.startDaemon(build, waitFor)

    def test_ipv6Loopback(self) -> None:
        """
        C{flags = IPv6}, C{bind = ::1}: an IPv6 client is served and its
        REMOTE_HOST is C{::1}.
        """
        _requireRoot()
        _canBindIPv6()
        port = freePort(socket.AF_INET6)
        self.probeDaemon("::1", port, ("::1", port))
        report = json.loads(fetch("::1", port))
        self.assertEqual(report["env"]["REMOTE_HOST"], "::1")
        self.assertEqual(report["stdio"]["0"]["family"], "AF_INET6")

    def test_dualStack(self) -> None:
        """
        On a C{::} socket an IPv4 client is served, and appears as
        C{::ffff:127.0.0.1} (as in xinetd).
        """
        _requireRoot()
        _canBindIPv6()
        port = _freeDualPort()
        self.probeDaemon("", port, (HOST, port))
        report = json.loads(fetch(HOST, port))
        self.assertEqual(report["env"]["REMOTE_HOST"], "::ffff:127.0.0.1")
        report6 = json.loads(fetch("::1", port))
        self.assertEqual(report6["env"]["REMOTE_HOST"], "::1")
