"""
Tests for the factory door (L{xinetd_twisted.service.factory}): every stream
service's C{factory} serves it on any Twisted endpoint, with the same bytes
and log lines as on the daemon's own socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from typing import Any, Tuple

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    connectProtocol,
    serverFromString,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.daemon import freePort
from xinetd_twisted.server import superServerFromPath
from xinetd_twisted.service.context import DescriptorBudget
from xinetd_twisted.service.factory import ConnectionLimits, ServiceFactory


class _Conversation(Protocol):
    """
    Sends C{send} once connected and collects everything until the close.
    """

    def __init__(self, send: bytes = b"") -> None:
        self._send = send
        self.data = b""
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        if self._send:
            self.transport.write(self._send)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.data)


class FactoryTests(TestCase):
    """
    C{server.getServiceNamed(id).factory} on UNIX, adopted and TLS endpoints.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="xt-factory-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.logPath = os.path.join(self.directory, "services.log")
        user = "\tuser = nobody\n" if os.geteuid() == 0 else ""
        script = os.path.join(self.directory, "hello.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nread x\necho got $x\n")
        os.chmod(script, 0o755)
        os.chmod(self.directory, 0o755)
        common = (
            "\tsocket_type = stream\n\twait = no\n\tbind = 127.0.0.1\n"
            f"\tlog_type = FILE {self.logPath}\n"
            "\tlog_on_success = PID HOST EXIT\n"
        )
        text = (
            f"service hello\n{{\n{common}\ttype = UNLISTED\n\tport = {freePort()}\n"
            f"\tserver = {script}\n{user}}}\n"
            f"service echo\n{{\n{common}\ttype = INTERNAL UNLISTED\n"
            f"\tport = {freePort()}\n}}\n"
        )
        path = os.path.join(self.directory, "xinetd.conf")
        with open(path, "w") as f:
            f.write(text)
        self.server = superServerFromPath(path, options=None)
        self.server.privilegedStartService()
        self.server.startService()
        self.addCleanup(self.server.stopService)

    def listen(self, endpoint: Any, serviceId: str) -> Deferred:
        d = endpoint.listen(self.server.getServiceNamed(serviceId).factory)

        def listening(port: Any) -> Any:
            self.addCleanup(port.stopListening)
            return port

        return d.addCallback(listening)

    def logLines(self) -> list:
        with open(self.logPath) as f:
            return f.read().splitlines()

    async def untilLogged(self, word: str, count: int) -> None:
        from twisted.internet.task import deferLater

        for _ in range(200):
            if sum(word in line for line in self.logLines()) >= count:
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"{count} {word} lines not logged: {self.logLines()}")

    async def test_programOnUnixEndpoint(self) -> None:
        """
        A program service served on a UNIX endpoint gets the connection on
        fds 0-2 and logs START and EXIT.
        """
        path = os.path.join(self.directory, "hello.sock")
        await self.listen(UNIXServerEndpoint(reactor, path), "hello")
        client = _Conversation(b"unix\n")
        await connectProtocol(UNIXClientEndpoint(reactor, path), client)
        self.assertEqual(await client.done, b"got unix\n")
        await self.untilLogged(" EXIT: hello ", 1)
        (start,) = [line for line in self.logLines() if " START: hello " in line]
        self.assertRegex(start, r"START: hello pid=\d+")

    async def test_internalOnUnixEndpoint(self) -> None:
        """
        An internal service answers on a UNIX endpoint as on TCP.
        """
        path = os.path.join(self.directory, "echo.sock")
        await self.listen(UNIXServerEndpoint(reactor, path), "echo")
        client = _Conversation(b"ping")
        await connectProtocol(UNIXClientEndpoint(reactor, path), client)
        client.transport.loseWriteConnection()  # type: ignore[attr-defined]
        self.assertEqual(await client.done, b"ping")
        await self.untilLogged(" EXIT: echo ", 1)
        self.assertTrue(any(" START: echo pid=0" in line for line in self.logLines()))

    async def test_programOnAdoptedSocket(self) -> None:
        """
        A program service served on an adopted listening TCP socket logs the
        client's address, as on its own socket.
        """
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        port = sock.getsockname()[1]
        # The endpoint closes the descriptor it adopts.
        endpoint = AdoptedStreamServerEndpoint(reactor, sock.detach(), socket.AF_INET)
        await self.listen(endpoint, "hello")
        client = _Conversation(b"adopted\n")
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        self.assertEqual(await client.done, b"got adopted\n")
        await self.untilLogged(" EXIT: hello ", 1)
        self.assertTrue(
            any(
                " START: hello " in line and "from=127.0.0.1" in line
                for line in self.logLines()
            )
        )

    async def test_programBehindTLS(self) -> None:
        """
        Behind a TLS endpoint there is no plain socket to hand over: the
        program gets a socketpair the daemon relays, in plaintext both ways.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("needs openssl to make a certificate")
        key = os.path.join(self.directory, "key.pem")
        cert = os.path.join(self.directory, "cert.pem")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
            check=True,
            capture_output=True,
        )  # fmt: skip
        from twisted.internet.ssl import CertificateOptions

        endpoint = serverFromString(
            reactor,
            f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        )
        port = await self.listen(endpoint, "hello")
        from twisted.internet.endpoints import SSL4ClientEndpoint

        client = _Conversation(b"secret\n")
        await connectProtocol(
            SSL4ClientEndpoint(
                reactor, "127.0.0.1", port.getHost().port, CertificateOptions()
            ),
            client,
        )
        self.assertEqual(await client.done, b"got secret\n")
        await self.untilLogged(" EXIT: hello ", 1)


class _Kind:
    """
    An IStreamKind that attaches an echo-like inner protocol at once.
    """

    def __init__(self) -> None:
        self.connected_: list = []

    def connected(self, protocol: Any) -> None:
        self.connected_.append(protocol)
        protocol.attach(Protocol())


class LimitsTests(SynchronousTestCase):
    """
    In-process connections draw on the descriptor budget and are closed
    when idle.
    """

    def connect(self, factory: ServiceFactory) -> Tuple[Any, StringTransport]:
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_idleClosed(self) -> None:
        """A connection that sends nothing for the idle timeout (up to 1.25 times it) is aborted."""
        clock = Clock()
        limits = ConnectionLimits(DescriptorBudget(), clock, 300.0, 1)
        protocol, transport = self.connect(
            ServiceFactory(_Kind(), "echo", limits=limits)
        )
        clock.pump([1] * 299)
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(b"x")
        clock.pump([1] * 299)
        self.assertFalse(transport.disconnecting)
        clock.pump([1] * 76)
        self.assertTrue(transport.disconnecting)

    def test_budgetRefuses(self) -> None:
        """Past the descriptor budget a connection is closed before the kind sees it."""
        budget = DescriptorBudget(limit=3)
        kind = _Kind()
        factory = ServiceFactory(
            kind, "relay", limits=ConnectionLimits(budget, Clock(), None, 2)
        )
        first, _ = self.connect(factory)
        _, refused = self.connect(factory)
        self.assertTrue(refused.disconnecting)
        self.assertEqual(kind.connected_, [first])
        self.assertEqual(budget.held, 2)
        self.flushLoggedErrors()
        first.connectionLost(None)
        self.assertEqual(budget.held, 0)
        third, transport = self.connect(factory)
        self.assertFalse(transport.disconnecting)

    def test_detachedReleases(self) -> None:
        """A connection handed to a child gives its descriptors back and is never idled."""
        clock = Clock()
        budget = DescriptorBudget()
        limits = ConnectionLimits(budget, clock, 10.0, 1)
        protocol, transport = self.connect(
            ServiceFactory(_Kind(), "mux", limits=limits)
        )
        protocol.detached()
        self.assertEqual(budget.held, 0)
        clock.advance(20)
        self.assertFalse(transport.disconnecting)
