"""
C{flags += REUSEPORT}: SO_REUSEPORT on a service's socket, so that several
daemons (as the same user) can serve one address and port and the kernel
spreads the clients over them: the way past one reactor thread.
"""

from __future__ import annotations

import socket
from typing import List

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_config_support import messages, parse, service
from tests.test_integration_kinds import _attrs, _service, _waitFor
from tests.test_integration_stream import DaemonTestCase
from tests.test_listen_unix import unixBody
from xinetd_twisted.config.model import Severity
from xinetd_twisted.listen.sockets import SocketSpec, openSocket


class OptionTests(SynchronousTestCase):
    """
    The socket option itself, on loopback.
    """

    def test_set(self) -> None:
        """
        A REUSEPORT spec sets SO_REUSEPORT before the bind, for stream and
        datagram sockets of both families: a second socket binds the same
        port.
        """
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            for kind, protocol in (
                (socket.SOCK_STREAM, "tcp"),
                (socket.SOCK_DGRAM, "udp"),
            ):
                first = openSocket(
                    SocketSpec(family, kind, protocol, host, 0, reuseport=True)
                )
                self.addCleanup(first.close)
                self.assertEqual(
                    first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1
                )
                port = first.getsockname()[1]
                second = openSocket(
                    SocketSpec(family, kind, protocol, host, port, reuseport=True)
                )
                self.addCleanup(second.close)
                self.assertEqual(second.getsockname()[1], port)

    def test_notSet(self) -> None:
        """
        Without the flag the option stays off and a second bind fails.
        """
        spec = SocketSpec(socket.AF_INET, socket.SOCK_STREAM, "tcp", "127.0.0.1", 0)
        first = openSocket(spec)
        self.addCleanup(first.close)
        self.assertEqual(first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 0)
        port = first.getsockname()[1]
        with self.assertRaises(OSError):
            openSocket(
                SocketSpec(socket.AF_INET, socket.SOCK_STREAM, "tcp", "127.0.0.1", port)
            )


class ConfigTests(SynchronousTestCase):
    """
    The flag in a configuration.
    """

    def test_flag(self) -> None:
        """
        C{flags = REUSEPORT} asks for the option, with no remark; it is part
        of what a reload must keep to keep the socket.
        """
        config = parse(
            service(
                "type = INTERNAL UNLISTED\n socket_type = stream\n wait = no\n"
                " port = 4000\n flags = REUSEPORT",
                name="echo",
            )
        )
        [echo] = config.services
        spec = SocketSpec.forService(echo)
        self.assertTrue(spec.reuseport)
        self.assertEqual(messages(config), [])
        plain = attr.evolve(spec, reuseport=False)
        self.assertNotEqual(spec.identity(), plain.identity())

    def test_unixSocketWarns(self) -> None:
        """
        On a UNIX socket the flag can do nothing: a warning naming the line,
        and the service is kept.
        """
        config = parse(service(unixBody("/run/x.sock", "    flags = REUSEPORT\n")))
        self.assertEqual(len(config.services), 1)
        self.assertFalse(SocketSpec.forService(config.services[0]).reuseport)
        [warning] = messages(config, Severity.WARNING)
        self.assertIn("REUSEPORT has no effect there", warning)
        self.assertIn("test.conf:", warning)


def _echo(port: int, flags: str) -> str:
    return _service(
        "echo",
        _attrs(
            type="INTERNAL UNLISTED",
            id="echo-stream",
            socket_type="stream",
            wait="no",
            bind="127.0.0.1",
            port=port,
            log_on_success="PID",
            **({"flags": flags} if flags else {}),
        ),
    )


class TwoDaemonsTests(DaemonTestCase):
    """
    Two real daemons on one configuration.
    """

    def test_shareThePort(self) -> None:
        """
        With REUSEPORT both daemons bind the port, the kernel gives each some
        of the clients, and the port stays served when one of them stops.
        """
        port = freePort()
        daemons: List[Daemon] = [
            self.daemon(_echo(port, "REUSEPORT")) for _ in range(2)
        ]
        for d in daemons:
            d.start(waitFor=("127.0.0.1", port))
            self.assertIn(f"listening on 127.0.0.1:{port}/tcp", d.log())

        def served() -> List[int]:
            return [d.log().count("START: echo-stream") for d in daemons]

        # Each start's readiness probe was one connection.
        self.assertTrue(_waitFor(lambda: sum(served()) == 2), served())
        before = served()
        count = 40
        for i in range(count):
            self.assertEqual(fetch("127.0.0.1", port, b"%d\n" % i), b"%d\n" % i)
        self.assertTrue(_waitFor(lambda: sum(served()) == count + 2), served())
        each = [n - b for n, b in zip(served(), before, strict=True)]
        self.assertTrue(all(n > 0 for n in each), each)
        daemons[0].stop()
        self.assertEqual(fetch("127.0.0.1", port, b"after\n"), b"after\n")

    def test_withoutTheFlag(self) -> None:
        """
        Without it the second daemon cannot bind the port: it says so and
        the first keeps serving every client.
        """
        port = freePort()
        first, second = (self.daemon(_echo(port, "")) for _ in range(2))
        first.start(waitFor=("127.0.0.1", port))
        second.start()
        self.assertIn("bind failed for service echo-stream", second.log())
        self.assertEqual(fetch("127.0.0.1", port, b"x\n"), b"x\n")
