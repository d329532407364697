"""
The daemon's log names services, never object reprs: the factories and
protocols of builtins/ and protocols/ are quiet and prefix what Twisted
logs for them with the service id.
"""

from __future__ import annotations

from typing import Any, List, cast

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xinetd_twisted.builtins.datagram import DATAGRAM_SERVICES, InternalDatagramProtocol
from xinetd_twisted.builtins.stream import EchoProtocol, InternalStreamFactory
from xinetd_twisted.builtins.tcpmux import TcpmuxFactory, TcpmuxProtocol
from xinetd_twisted.protocols.ident import queryIdent
from xinetd_twisted.protocols.redirect import RedirectFactory, RedirectProtocol


class QuietTests(SynchronousTestCase):
    """
    Starting and stopping our factories and protocols logs nothing, and
    their log prefix is the service id.
    """

    def setUp(self) -> None:
        self.events: List[dict] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def assertQuiet(self, thing: Any) -> None:
        thing.doStart()
        thing.doStop()
        self.assertEqual([formatEvent(e) for e in self.events], [])

    def test_datagram(self) -> None:
        """An internal UDP service: quiet, prefixed with its id."""
        protocol = InternalDatagramProtocol(
            "echo-dgram", DATAGRAM_SERVICES["echo"], Clock()
        )
        protocol.transport = StringTransport(
            hostAddress=IPv4Address("UDP", "127.0.0.1", 7)
        )
        self.assertQuiet(protocol)
        self.assertEqual(protocol.logPrefix(), "echo-dgram")

    def test_stream(self) -> None:
        """An internal TCP service's factory and protocols."""
        factory = InternalStreamFactory("echo-stream", EchoProtocol, Clock())
        self.assertQuiet(factory)
        self.assertEqual(factory.logPrefix(), "echo-stream")
        self.assertEqual(factory.buildProtocol(None).logPrefix(), "echo-stream")

    def test_tcpmux(self) -> None:
        """The tcpmux factory and protocol."""
        factory = TcpmuxFactory("tcpmux", [], cast(Any, None), Clock())
        self.assertQuiet(factory)
        self.assertEqual(factory.logPrefix(), "tcpmux")
        protocol = TcpmuxProtocol()
        protocol.factory = factory
        self.assertEqual(protocol.logPrefix(), "tcpmux")

    def test_redirect(self) -> None:
        """The redirect factory and protocol."""
        factory = RedirectFactory("web", ("127.0.0.1", 80), MemoryReactorClock())
        self.assertQuiet(factory)
        self.assertEqual(factory.logPrefix(), "web")
        protocol = RedirectProtocol()
        protocol.factory = factory
        self.assertEqual(protocol.logPrefix(), "web")

    def test_ident(self) -> None:
        """An ident query's client factory logs nothing as it connects."""
        reactor = MemoryReactorClock()
        queryIdent(reactor, ("127.0.0.1", 23), ("127.0.0.2", 40000))
        factory = reactor.tcpClients[0][2]
        self.assertQuiet(factory)
        self.assertEqual(factory.logPrefix(), "ident")


class RealPortTests(TestCase):
    """
    What Twisted itself logs when our protocols get a real socket.
    """

    def test_udpPortNamesService(self) -> None:
        """
        Binding an internal UDP service logs C{<id> starting on <port>},
        with no object repr.
        """
        events: List[dict] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        protocol = InternalDatagramProtocol(
            "echo-dgram", DATAGRAM_SERVICES["echo"], Clock()
        )
        port = cast(Any, _reactor).listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        texts = [formatEvent(e) for e in events]
        self.assertEqual(texts, [f"echo-dgram starting on {port.getHost().port}"])
