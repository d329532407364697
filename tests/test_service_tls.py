"""
Tests for TLS in front of a service (L{xinetd_twisted.service.tls} and the
factory door's handshake gate in L{xinetd_twisted.service.factory}).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.test_config_support import EXTERNAL, parse, service
from tests.tlsfiles import makePKI
from xinetd_twisted.service.factory import ServiceProtocol
from xinetd_twisted.service.tls import TLS_HANDSHAKE_TIMEOUT, ServiceTLS, tlsEnvironment


@implementer(ISSLTransport)
class _TLSTransport(StringTransport):
    """
    A TLS transport: a protocol version, perhaps a client certificate.
    """

    def __init__(self, certificate: Any = None) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.9", 4000))
        self._certificate = certificate
        self.aborted = False

    def getHandle(self) -> Any:
        class handle:
            @staticmethod
            def get_protocol_version_name() -> str:
                return "TLSv1.3"

        return handle

    def getPeerCertificate(self) -> Any:
        return self._certificate

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


class _Kind:
    def __init__(self) -> None:
        self.connected: List[ServiceProtocol] = []

    def connected_(self, protocol: ServiceProtocol) -> None:
        self.connected.append(protocol)


class _Admission:
    def __init__(self) -> None:
        self.connections = 0
        self.refusals: List[Tuple[str, Optional[str]]] = []

    def refuse(self, refusal: Any, peer: Optional[str]) -> None:
        self.refusals.append((refusal.reason, peer))


class _Parts:
    def __init__(self) -> None:
        class context:
            reactor = Clock()

        self.context = context
        self.admission = _Admission()


class _Inner(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class HandshakeGateTests(SynchronousTestCase):
    """
    The factory door under TLS: nothing before the handshake completes.
    """

    def setUp(self) -> None:
        self.kind = _Kind()
        self.parts = _Parts()
        kind: Any = type("K", (), {"connected": self.kind.connected_})()
        self.protocol = ServiceProtocol(kind, self.parts)  # type: ignore[arg-type]
        self.transport = _TLSTransport()
        self.protocol.makeConnection(self.transport)

    def test_waitsForHandshake(self) -> None:
        """
        The kind sees the connection only once the handshake completed.
        """
        self.assertEqual(self.kind.connected, [])
        self.protocol.handshakeCompleted()
        self.assertEqual(self.kind.connected, [self.protocol])

    def test_failedHandshakeRefused(self) -> None:
        """
        A connection lost before the handshake completed is FAIL tls.
        """
        self.protocol.connectionLost(Failure(ValueError("no shared cipher")))
        self.assertEqual(self.parts.admission.refusals, [("tls", "192.0.2.9")])
        self.assertEqual(self.parts.admission.connections, 1)
        self.assertEqual(self.kind.connected, [])

    def test_lostAfterHandshakeNotRefused(self) -> None:
        """
        A connection lost after its handshake is no refusal.
        """
        self.protocol.handshakeCompleted()
        self.protocol.connectionLost(Failure(ValueError("bye")))
        self.assertEqual(self.parts.admission.refusals, [])

    def test_handshakeTimeout(self) -> None:
        """
        A handshake not completed in time is aborted and refused.
        """
        self.parts.context.reactor.advance(TLS_HANDSHAKE_TIMEOUT)
        self.assertTrue(self.transport.aborted)
        self.assertEqual(self.parts.admission.refusals, [("tls", "192.0.2.9")])

    def test_earlyDataKept(self) -> None:
        """
        Plaintext that arrives with the end of the handshake, before the
        kind attaches its protocol, reaches that protocol.
        """
        self.protocol.handshakeCompleted()
        self.protocol.dataReceived(b"early")
        inner = _Inner()
        self.protocol.attach(inner)
        self.assertEqual(inner.data, b"early")


class EnvironmentTests(SynchronousTestCase):
    """
    tlsEnvironment.
    """

    def test_plainTransport(self) -> None:
        """
        Nothing for a transport that is not TLS.
        """
        self.assertEqual(tlsEnvironment(StringTransport()), ())

    def test_noClientCertificate(self) -> None:
        """
        Only SSL_PROTOCOL without a client certificate.
        """
        self.assertEqual(
            tlsEnvironment(_TLSTransport()), (("SSL_PROTOCOL", "TLSv1.3"),)
        )

    def test_clientCertificate(self) -> None:
        """
        The client certificate's subject and issuer, RFC 4514.
        """
        from cryptography import x509

        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        pki = makePKI(directory)
        with open(pki.clientCertificate, "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())

        class peer:
            @staticmethod
            def to_cryptography() -> Any:
                return certificate

        self.assertEqual(
            dict(tlsEnvironment(_TLSTransport(peer))),
            {
                "SSL_PROTOCOL": "TLSv1.3",
                "SSL_CLIENT_DN": "CN=alice,O=xinetd-twisted tests",
                "SSL_CLIENT_I_DN": "CN=Test CA,O=xinetd-twisted tests",
            },
        )


class ReloadTests(SynchronousTestCase):
    """
    ServiceTLS reads its files again at reload.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.pki = makePKI(self.directory)
        (self.service,) = parse(
            service(EXTERNAL + f"\ntls_certificate = {self.pki.combined}")
        ).services

    def test_badFileKeepsOptions(self) -> None:
        """
        A file that went bad keeps the options in use and logs FILE:LINE.
        """
        tls = ServiceTLS(self.service)
        before = tls.options
        os.remove(self.pki.combined)
        with capturedLogs() as events:
            self.assertFalse(tls.reload(self.service))
        self.assertIs(tls.options, before)
        (event,) = [e for e in events if e["log_level"] is LogLevel.error]
        self.assertEqual(str(event["where"]), "test.conf:10")
        self.assertIn("cannot read", event["problem"])

    def test_reloadReadsAgain(self) -> None:
        """
        A good file at reload gives new options.
        """
        tls = ServiceTLS(self.service)
        before = tls.options
        self.assertTrue(tls.reload(self.service))
        self.assertIsNot(tls.options, before)


class PortListenerTests(SynchronousTestCase):
    """
    The Twisted port a TLS (or PROXY in-process) service listens with.
    """

    def test_noDelay(self) -> None:
        """
        Its socket has TCP_NODELAY, which accepted connections inherit: the
        daemon relays small records and must not wait for delayed ACKs.
        """
        import socket

        from twisted.internet import reactor
        from twisted.internet.protocol import Factory

        from xinetd_twisted.service.front import PortListener

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        listener = PortListener(reactor, sock, Factory.forProtocol(Protocol))
        self.addCleanup(listener.close)
        self.assertEqual(
            listener.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1
        )
