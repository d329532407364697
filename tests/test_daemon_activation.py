"""
Tests for xinetd_twisted.daemon.activation: systemd's variables, what an
inherited descriptor is, and which service each inherited socket serves.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import parse, service
from xinetd_twisted.daemon.activation import (
    InheritedSocket,
    InheritedSockets,
    listenDescriptors,
    specOfDescriptor,
)
from xinetd_twisted.listen.sockets import SocketSpec


def tcpService(
    name: str, port: int, serviceId: str = "", socketType: str = "stream"
) -> str:
    body = (
        f"    type = INTERNAL UNLISTED\n    id = {serviceId or name}\n"
        f"    socket_type = {socketType}\n"
        f"    wait = {'no' if socketType == 'stream' else 'yes'}\n"
        f"    port = {port}\n    bind = 127.0.0.1"
    )
    return service(body, name=name)


class VariablesTests(SynchronousTestCase):
    """
    LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES.
    """

    def test_named(self) -> None:
        """Descriptors start at 3 and take their names in order."""
        environ = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
        self.assertEqual(listenDescriptors(environ, 42), [(3, "a"), (4, "b")])

    def test_unnamed(self) -> None:
        """Missing or empty names are systemd's unknown."""
        environ = {"LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": ":x"}
        self.assertEqual(
            listenDescriptors(environ, 42), [(3, "unknown"), (4, "x"), (5, "unknown")]
        )

    def test_otherProcess(self) -> None:
        """Variables meant for another pid (a parent's) pass nothing."""
        environ = {"LISTEN_PID": "41", "LISTEN_FDS": "1"}
        self.assertEqual(listenDescriptors(environ, 42), [])

    def test_malformed(self) -> None:
        """Malformed or absent variables pass nothing."""
        for environ in (
            {},
            {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
            {"LISTEN_PID": "42"},
        ):
            self.assertEqual(listenDescriptors(environ, 42), [])

    def test_unset(self) -> None:
        """Reading the variables unsets them, even when they are not ours."""
        environ = {
            "LISTEN_PID": "1",
            "LISTEN_FDS": "1",
            "LISTEN_FDNAMES": "a",
            "X": "y",
        }
        self.assertEqual(InheritedSockets.fromEnvironment(environ, 42).sockets, ())
        self.assertEqual(environ, {"X": "y"})


class DescriptorTests(SynchronousTestCase):
    """
    What an inherited descriptor is.
    """

    def test_tcp(self) -> None:
        """A bound TCP socket: family, type, tcp, address and port."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.assertEqual(
            specOfDescriptor(sock.fileno()),
            SocketSpec(socket.AF_INET, socket.SOCK_STREAM, "tcp", "127.0.0.1", port),
        )

    def test_udp6(self) -> None:
        """A bound UDP IPv6 socket, with its V6ONLY."""
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::1", 0))
        spec = specOfDescriptor(sock.fileno())
        assert spec is not None
        self.assertEqual(
            (spec.family, spec.socketType, spec.protocol, spec.address, spec.v6only),
            (socket.AF_INET6, socket.SOCK_DGRAM, "udp", "::1", True),
        )

    def test_unix(self) -> None:
        """A UNIX socket's address is its path."""
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "s")
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.unlink, path)
        sock.bind(path)
        spec = specOfDescriptor(sock.fileno())
        assert spec is not None
        self.assertEqual(
            (spec.family, spec.address, spec.protocol), (socket.AF_UNIX, path, "unix")
        )

    def test_notSocket(self) -> None:
        """A pipe is no socket."""
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.assertIsNone(specOfDescriptor(r))


def inherited(
    name: str, port: int, socketType: int = socket.SOCK_STREAM
) -> InheritedSocket:
    protocol = "tcp" if socketType == socket.SOCK_STREAM else "udp"
    spec = SocketSpec(socket.AF_INET, socketType, protocol, "127.0.0.1", port)
    return InheritedSocket(name, -1, spec)


class AssignTests(SynchronousTestCase):
    """
    Which service each inherited socket serves.
    """

    def test_byName(self) -> None:
        """A socket named like a service id serves it, whatever its address."""
        config = parse(tcpService("echo", 7000, "echo-stream"))
        named = inherited("ECHO-stream", 9999)
        self.assertEqual(
            InheritedSockets([named]).assign(config.services), {"echo-stream": named}
        )

    def test_byAddress(self) -> None:
        """A socket named like no service serves the service on its address."""
        config = parse(tcpService("echo", 7000) + tcpService("daytime", 7001))
        unnamed = inherited("xinetd.socket", 7001)
        self.assertEqual(
            InheritedSockets([unnamed]).assign(config.services), {"daytime": unnamed}
        )

    def test_protocolMatters(self) -> None:
        """A datagram socket does not serve a stream service on its port."""
        config = parse(tcpService("echo", 7000))
        dgram = inherited("unknown", 7000, socket.SOCK_DGRAM)
        self.assertEqual(InheritedSockets([dgram]).assign(config.services), {})

    def test_namedTakesPrecedence(self) -> None:
        """A service with a named socket does not also take one by address."""
        config = parse(tcpService("echo", 7000))
        named, unnamed = inherited("echo", 9999), inherited("unknown", 7000)
        self.assertEqual(
            InheritedSockets([unnamed, named]).assign(config.services), {"echo": named}
        )

    def test_unusedLogged(self) -> None:
        """An unused socket is logged with its name and address."""
        sockets = InheritedSockets([inherited("spare", 7005)])
        events: list = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        sockets.logUnused({})
        [event] = [e for e in events if e.get("name") == "spare"]
        self.assertEqual(event["address"], "127.0.0.1:7005/tcp")

    def test_wrongTypeRefused(self) -> None:
        """A named socket of the wrong type fails the service's activation."""
        [svc] = parse(tcpService("echo", 7000)).services
        source = inherited("echo", 7000, socket.SOCK_DGRAM).sourceFor(svc)
        error = self.assertRaises(OSError, source)
        self.assertEqual(error.errno, errno.EPROTOTYPE)

    def test_sourceDuplicates(self) -> None:
        """Each activation gets its own non-blocking duplicate."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        spec = specOfDescriptor(sock.fileno())
        assert spec is not None
        [svc] = parse(tcpService("echo", spec.port)).services
        taken, takenSpec, origin = InheritedSocket(
            "echo", sock.fileno(), spec
        ).sourceFor(svc)()
        taken.close()
        self.assertEqual(takenSpec, spec)
        self.assertIn("inherited socket echo", origin)
        self.assertEqual(sock.getsockname()[1], spec.port)
