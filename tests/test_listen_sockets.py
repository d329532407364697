"""
Tests for L{xinetd_twisted.listen.sockets}.
"""

from __future__ import annotations

import fcntl
import os
import socket

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Location, ServiceConfig
from xinetd_twisted.listen.sockets import SocketSpec, numericHost, openServiceSocket


def service(**kw: object) -> ServiceConfig:
    """
    A stream service on an unprivileged port, with overrides.
    """
    values: dict = dict(
        name="probe",
        serviceId="probe",
        location=Location("test.conf", 1),
        socketType="stream",
        protocol="tcp",
        wait=False,
        port=0,
    )
    values.update(kw)
    return ServiceConfig(**values)


class SocketSpecTests(SynchronousTestCase):
    """
    Tests for L{SocketSpec.forService}.
    """

    def test_dualStackDefault(self) -> None:
        """
        Without bind or family flags a service listens on C{::} with
        IPV6_V6ONLY off, as xinetd does.
        """
        spec = SocketSpec.forService(service())
        self.assertEqual(
            (spec.family, spec.address, spec.v6only), (socket.AF_INET6, "::", False)
        )

    def test_bindAddressChoosesFamily(self) -> None:
        """
        An IPv4 bind address makes an IPv4 socket even when the family says
        IPv6.
        """
        spec = SocketSpec.forService(service(bind="127.0.0.1"))
        self.assertEqual((spec.family, spec.address), (socket.AF_INET, "127.0.0.1"))

    def test_flags(self) -> None:
        """
        NODELAY and KEEPALIVE flags reach the spec; v6only is honoured as
        written.
        """
        spec = SocketSpec.forService(
            service(flags=frozenset({"NODELAY", "KEEPALIVE"}), v6only=True)
        )
        self.assertEqual(
            (spec.nodelay, spec.keepalive, spec.v6only), (True, True, True)
        )

    def test_noPort(self) -> None:
        """
        A service without a port has no socket.
        """
        self.assertRaises(ValueError, SocketSpec.forService, service(port=None))


class OpenSocketTests(SynchronousTestCase):
    """
    Tests for L{openServiceSocket} against the real kernel.
    """

    def test_v6onlyOffServesIPv4(self) -> None:
        """
        A dual-stack socket accepts an IPv4 client, which it sees as a mapped
        address.
        """
        sock, spec, notice = openServiceSocket(service())
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 0)
        port = sock.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(client.close)
        sock.setblocking(True)
        conn, addr = sock.accept()
        conn.close()
        self.assertEqual(numericHost(addr), "::ffff:127.0.0.1")

    def test_givenSpecUsed(self) -> None:
        """
        The spec the caller already computed for the service is the one
        bound and returned (not a second, equal one).
        """
        wanted = SocketSpec.forService(service(bind="127.0.0.1"))
        sock, spec, notice = openServiceSocket(service(bind="127.0.0.1"), spec=wanted)
        self.addCleanup(sock.close)
        self.assertIs(spec, wanted)
        self.assertIsNone(notice)
        self.assertEqual(sock.getsockname()[0], "127.0.0.1")

    def test_v6onlyOn(self) -> None:
        """
        C{v6only = yes} sets IPV6_V6ONLY, so IPv4 clients are refused.
        """
        sock, spec, notice = openServiceSocket(service(v6only=True))
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)
        port = sock.getsockname()[1]
        self.assertRaises(
            ConnectionRefusedError, socket.create_connection, ("127.0.0.1", port), 2
        )

    def test_options(self) -> None:
        """
        Sockets are non-blocking, close-on-exec, SO_REUSEADDR, and carry
        the NODELAY/KEEPALIVE flags.
        """
        sock, spec, notice = openServiceSocket(
            service(bind="127.0.0.1", flags=frozenset({"NODELAY", "KEEPALIVE"}))
        )
        self.addCleanup(sock.close)
        self.assertFalse(sock.getblocking())
        # On the descriptor too (a wait = yes server gets it as it is).
        self.assertTrue(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
        self.assertEqual(sock.type, socket.SOCK_STREAM)
        self.assertFalse(sock.get_inheritable())
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR), 1)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)

    def test_portInUse(self) -> None:
        """
        Binding a port in use raises OSError for the caller to report.
        """
        first, spec, _ = openServiceSocket(service(bind="127.0.0.1"))
        self.addCleanup(first.close)
        port = first.getsockname()[1]
        self.assertRaises(
            OSError, openServiceSocket, service(bind="127.0.0.1", port=port)
        )

    def test_dgram(self) -> None:
        """
        A dgram service gets a bound, non-listening UDP socket.
        """
        sock, spec, _ = openServiceSocket(
            service(socketType="dgram", protocol="udp", bind="127.0.0.1")
        )
        self.addCleanup(sock.close)
        self.assertEqual(sock.type, socket.SOCK_DGRAM)
