"""
Tests for L{xinetd_twisted.protocols.portmap}: the XDR of PMAP SET/UNSET,
and the client's answers, retries and timeouts against a fake portmapper
on a loopback UDP port.
"""

from __future__ import annotations

import struct
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xinetd_twisted.protocols.portmap import (
    PMAPPROC_SET,
    PMAPPROC_UNSET,
    PortmapClient,
    decodeReply,
    encodeCall,
)


def reply(xid: int, answer: int = 1, accept: int = 0) -> bytes:
    return struct.pack(">7I", xid, 1, 0, 0, 0, accept, answer)


class XdrTests(SynchronousTestCase):
    """
    The bytes on the wire.
    """

    def test_call(self) -> None:
        """
        A SET call is the RFC 1057 call header with AUTH_NONE and the
        mapping: 14 big-endian words.
        """
        data = encodeCall(7, PMAPPROC_SET, 100001, 3, 17, 4321)
        self.assertEqual(
            struct.unpack(">14I", data),
            (7, 0, 2, 100000, 2, 1, 0, 0, 0, 0, 100001, 3, 17, 4321),
        )

    def test_replyTrue(self) -> None:
        """
        An accepted reply answering TRUE.
        """
        self.assertEqual(decodeReply(reply(9, 1)), (9, True))

    def test_replyFalse(self) -> None:
        """
        An accepted reply answering FALSE (already registered).
        """
        self.assertEqual(decodeReply(reply(9, 0)), (9, False))

    def test_notAccepted(self) -> None:
        """
        PROG_UNAVAIL and a denied reply are L{False}.
        """
        self.assertEqual(decodeReply(reply(9, 1, accept=1)), (9, False))
        self.assertEqual(decodeReply(struct.pack(">5I", 9, 1, 1, 0, 0)), (9, False))

    def test_garbage(self) -> None:
        """
        Short data and calls are not replies.
        """
        self.assertIsNone(decodeReply(b"abc"))
        self.assertIsNone(decodeReply(encodeCall(1, PMAPPROC_SET, 1, 1, 6, 1)))


class FakePortmapper(DatagramProtocol):
    """
    Answers TRUE to every call after ignoring the first C{drop} datagrams.
    """

    def __init__(self, drop: int = 0, answer: int = 1) -> None:
        self.drop = drop
        self.answer = answer
        self.calls: List[tuple] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        words = struct.unpack(">14I", data)
        self.calls.append(words)
        if self.drop > 0:
            self.drop -= 1
            return
        self.transport.write(reply(words[0], self.answer), addr)  # type: ignore[attr-defined]


class ClientTests(TestCase):
    """
    The client on the real reactor, against a fake portmapper.
    """

    def portmapper(self, **kw: Any) -> tuple:
        fake = FakePortmapper(**kw)
        port = reactor.listenUDP(0, fake, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        client = PortmapClient(
            reactor, ("127.0.0.1", port.getHost().port), timeout=0.2, tries=3
        )
        self.addCleanup(client.close)
        return fake, client

    @inlineCallbacks
    def test_set(self) -> Any:
        """
        SET answers the portmapper's TRUE.
        """
        fake, client = self.portmapper()
        answer = yield client.set(100001, 2, 17, 999)
        self.assertTrue(answer)
        self.assertEqual(
            fake.calls[0][5:], (PMAPPROC_SET, 0, 0, 0, 0, 100001, 2, 17, 999)
        )

    @inlineCallbacks
    def test_unset(self) -> Any:
        """
        UNSET sends the program and version, protocol and port 0.
        """
        fake, client = self.portmapper()
        answer = yield client.unset(100001, 2)
        self.assertTrue(answer)
        self.assertEqual(
            fake.calls[0][5:], (PMAPPROC_UNSET, 0, 0, 0, 0, 100001, 2, 0, 0)
        )

    @inlineCallbacks
    def test_refused(self) -> Any:
        """
        A FALSE answer is L{False}.
        """
        _, client = self.portmapper(answer=0)
        answer = yield client.set(100001, 2, 17, 999)
        self.assertFalse(answer)

    @inlineCallbacks
    def test_resent(self) -> Any:
        """
        A lost call is resent with the same xid.
        """
        fake, client = self.portmapper(drop=2)
        answer = yield client.set(100001, 2, 17, 999)
        self.assertTrue(answer)
        self.assertEqual(len(fake.calls), 3)
        self.assertEqual({c[0] for c in fake.calls}, {fake.calls[0][0]})


class TimeoutTests(SynchronousTestCase):
    """
    Nobody answers: on a fake clock.
    """

    def test_givesUp(self) -> None:
        """
        After C{tries} timeouts the call answers L{False}.
        """
        clock = Clock()
        sent: List[bytes] = []

        class Reactor:
            def listenUDP(self, port: int, protocol: Any, interface: str) -> Any:
                class Transport:
                    def write(self, data: bytes, addr: Any) -> None:
                        sent.append(data)

                protocol.transport = Transport()
                return None

            def callLater(self, *a: Any, **kw: Any) -> Any:
                return clock.callLater(*a, **kw)

        client = PortmapClient(Reactor(), timeout=1.0, tries=3)
        d: Deferred = client.set(1, 1, 6, 1)
        results: list = []
        d.addCallback(results.append)
        clock.advance(1.0)
        clock.advance(1.0)
        self.assertEqual(results, [])
        clock.advance(1.0)
        self.assertEqual(results, [False])
        self.assertEqual(len(sent), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closeAnswersPending(self) -> None:
        """
        Closing the client answers L{False} to calls still waiting.
        """
        clock = Clock()

        class Reactor:
            def listenUDP(self, port: int, protocol: Any, interface: str) -> Any:
                return None

            def callLater(self, *a: Any, **kw: Any) -> Any:
                return clock.callLater(*a, **kw)

        client = PortmapClient(Reactor())
        results: list = []
        client.unset(1, 1).addCallback(results.append)
        client.close()
        self.assertEqual(results, [False])
        self.assertEqual(clock.getDelayedCalls(), [])
