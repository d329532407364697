"""
Differential tests: the internal services against a real xinetd, byte for
byte where the protocol allows and tolerantly where the clock moves.

Skipped when /usr/sbin/xinetd is not installed.
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import subprocess
import time
from typing import Any, Callable, Dict, Tuple

from twisted.internet import reactor, threads
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from xinetd_twisted.builtins import (
    ChargenRing,
    LoopGuard,
    datagramProtocol,
    streamFactory,
)

XINETD = "/usr/sbin/xinetd"
HOST = "127.0.0.1"
DAYTIME = re.compile(rb"^(\d\d) ([A-Z]{3}) (\d+) (\d\d):(\d\d):(\d\d) (\S+)\r\n$")
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
SERVICES = ("echo", "daytime", "time", "chargen")


def _freePort(kind: int) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _config(ports: Dict[Tuple[str, str], int]) -> str:
    blocks = []
    for (name, socketType), port in sorted(ports.items()):
        blocks.append(
            f"""service {name}
{{
\ttype = INTERNAL UNLISTED
\tid = {name}-{socketType}
\tsocket_type = {socketType}
\tprotocol = {"tcp" if socketType == "stream" else "udp"}
\twait = {"no" if socketType == "stream" else "yes"}
\tuser = root
\tport = {port}
\tbind = {HOST}
\tflags = IPv4
}}
"""
        )
    return "\n".join(blocks)


def _streamRead(port: int, send: bytes = b"", limit: int = 1 << 20) -> bytes:
    """
    Connect, send, half-close, read until EOF or C{limit} bytes.
    """
    with socket.create_connection((HOST, port), timeout=5) as s:
        if send:
            s.sendall(send)
            s.shutdown(socket.SHUT_WR)
        data = b""
        while len(data) < limit:
            chunk = s.recv(min(65536, limit - len(data)))
            if not chunk:
                break
            data += chunk
        return data


def _dgram(port: int, send: bytes = b"\n") -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(send, (HOST, port))
        return s.recv(65536)


def _waitUntilServing(port: int, deadline: float) -> None:
    while True:
        try:
            _streamRead(port)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _daytimeSeconds(reply: bytes) -> Tuple[float, bytes]:
    m = DAYTIME.match(reply)
    assert m is not None, reply
    day, mon, year, hh, mm, ss, zone = m.groups()
    fields = (int(year), MONTHS.index(mon.decode()) + 1, int(day))
    fields += (int(hh), int(mm), int(ss))
    # Both sides format local time in the same zone: compare as if UTC.
    return calendar.timegm(fields + (0, 0, 0)), zone


class XinetdDifferentialTests(TestCase):
    timeout = 60

    def setUp(self):
        if not os.path.exists(XINETD):
            raise SkipTest(f"{XINETD} is not installed")
        self.xinetdPorts: Dict[Tuple[str, str], int] = {}
        for name in SERVICES:
            self.xinetdPorts[(name, "stream")] = _freePort(socket.SOCK_STREAM)
            self.xinetdPorts[(name, "dgram")] = _freePort(socket.SOCK_DGRAM)
        config = self.mktemp()
        with open(config, "w") as f:
            f.write(_config(self.xinetdPorts))
        self.log = self.mktemp()
        self.process = subprocess.Popen(
            [XINETD, "-dontfork", "-stayalive", "-filelog", self.log, "-f", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(self._stopXinetd)

        self.ours: Dict[Tuple[str, str], int] = {}
        self.ring = ChargenRing()
        guard = LoopGuard()
        for name in SERVICES:
            factory = streamFactory(name, name, reactor, ring=self.ring)
            tcp = reactor.listenTCP(0, factory, interface=HOST)
            self.addCleanup(tcp.stopListening)
            self.ours[(name, "stream")] = tcp.getHost().port
            proto = datagramProtocol(name, name, reactor, guard=guard, ring=self.ring)
            udp = reactor.listenUDP(0, proto, interface=HOST)
            self.addCleanup(udp.stopListening)
            self.ours[(name, "dgram")] = udp.getHost().port
        return threads.deferToThread(
            _waitUntilServing,
            self.xinetdPorts[("time", "stream")],
            time.monotonic() + 10,
        )

    def _stopXinetd(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def both(self, call: Callable[..., bytes], key: Tuple[str, str], *args: Any):
        """
        Fire with C{(xinetd's reply, ours)}, run in a thread so the reactor
        keeps serving our side.
        """

        def run() -> Tuple[bytes, bytes]:
            return call(self.xinetdPorts[key], *args), call(self.ours[key], *args)

        return threads.deferToThread(run)

    @inlineCallbacks
    def test_chargen(self):
        """
        The first lines of stream chargen from a fresh server, then the
        datagram (the stream did not move the ring), are identical.
        """
        theirs, ours = yield self.both(
            _streamRead, ("chargen", "stream"), b"", 74 * 200
        )
        self.assertEqual(len(theirs), 74 * 200)
        self.assertEqual(theirs, ours)
        theirs, ours = yield self.both(_dgram, ("chargen", "dgram"))
        self.assertEqual(len(theirs), 1024)
        self.assertEqual(theirs, ours)
        theirs, ours = yield self.both(_dgram, ("chargen", "dgram"))
        self.assertEqual(theirs, ours)

    @inlineCallbacks
    def test_echo(self):
        """
        Stream and datagram echo return the same bytes.
        """
        payload = bytes(range(256)) * 40
        theirs, ours = yield self.both(_streamRead, ("echo", "stream"), payload)
        self.assertEqual((theirs, ours), (payload, payload))
        theirs, ours = yield self.both(_dgram, ("echo", "dgram"), payload[:1500])
        self.assertEqual((theirs, ours), (payload[:1500], payload[:1500]))

    @inlineCallbacks
    def test_time(self):
        """
        Stream and datagram time agree within 2 seconds.
        """
        for socketType in ("stream", "dgram"):
            call = _streamRead if socketType == "stream" else _dgram
            theirs, ours = yield self.both(call, ("time", socketType))
            self.assertEqual((len(theirs), len(ours)), (4, 4))
            delta = int.from_bytes(theirs, "big") - int.from_bytes(ours, "big")
            self.assertLessEqual(abs(delta), 2)

    @inlineCallbacks
    def test_daytime(self):
        """
        Stream and datagram daytime have the same format and zone and agree
        within 2 seconds.
        """
        for socketType in ("stream", "dgram"):
            call = _streamRead if socketType == "stream" else _dgram
            theirs, ours = yield self.both(call, ("daytime", socketType))
            theirTime, theirZone = _daytimeSeconds(theirs)
            ourTime, ourZone = _daytimeSeconds(ours)
            self.assertEqual(theirZone, ourZone)
            self.assertLessEqual(abs(theirTime - ourTime), 2)
