"""
UDP internal services through the real daemon under load: bursts are
answered, amplification is bounded.
"""

from __future__ import annotations

import socket
import time

from twisted.trial.unittest import TestCase

from tests.daemon import Daemon, freePort

HOST = "127.0.0.1"


def _internal(name: str, port: int) -> str:
    return (
        f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tport = {port}\n"
        f"\tsocket_type = dgram\n\twait = yes\n\tbind = {HOST}\n}}\n"
    )


class UdpLoadTests(TestCase):
    def daemon(self, text: str, port: int) -> Daemon:
        d = Daemon(text)
        self.addCleanup(d.cleanup)
        d.start()
        # A datagram service has no TCP port to wait for: wait for an answer.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                s.sendto(b"up?", (HOST, port))
                try:
                    s.recvfrom(4096)
                    return d
                except socket.timeout:
                    continue
        self.fail("the UDP service never answered")

    def test_echoBurstAnswered(self) -> None:
        """
        1000 echo datagrams sent as 20 bursts of 50, 5 ms apart, are nearly
        all answered (at least 95%).
        """
        port = freePort(kind=socket.SOCK_DGRAM)
        self.daemon(_internal("echo", port), port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((HOST, 0))
            for burst in range(20):
                for i in range(50):
                    s.sendto(b"%d.%d" % (burst, i), (HOST, port))
                time.sleep(0.005)
            answers = set()
            s.settimeout(1.0)
            try:
                while len(answers) < 1000:
                    answers.add(s.recvfrom(100)[0])
            except socket.timeout:
                pass
        self.assertGreaterEqual(len(answers), 950, len(answers))

    def test_chargenAmplificationBounded(self) -> None:
        """
        A thousand 1-byte datagrams to chargen from one source get back at
        most 64 KiB (plus the refill of a second or two) more than they sent.
        """
        port = freePort(kind=socket.SOCK_DGRAM)
        self.daemon(_internal("chargen", port), port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((HOST, 0))
            for _ in range(1000):
                s.sendto(b"x", (HOST, port))
            received = 0
            s.settimeout(1.0)
            try:
                while True:
                    received += len(s.recvfrom(4096)[0])
            except socket.timeout:
                pass
        self.assertLessEqual(received - 1000, 64 * 1024 + 3 * 8 * 1024, received)
        self.assertGreater(received, 16 * 1024)
