"""
Tests for L{xinetd_twisted.listen.wait}.
"""

from __future__ import annotations

import fcntl
import os
import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.listen.wait import WaitDescriptor


def nonBlocking(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


class DatagramWaitTests(SynchronousTestCase):
    """
    L{WaitDescriptor} on a UDP socket.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.ready: list = []
        self.waiter = WaitDescriptor(self.reactor, self.sock, self.ready.append, "tftp")
        self.addCleanup(self.waiter.close)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.client.close)
        self.client.bind(("127.0.0.1", 0))

    def send(self, data: bytes) -> None:
        self.client.sendto(data, self.sock.getsockname())

    def test_readyLeavesDatagramQueued(self) -> None:
        """
        A readable socket is reported with the sender, the datagram stays
        queued for the child, reading stops and the socket turns blocking.
        """
        self.waiter.startReading()
        self.send(b"request")
        self.waiter.doRead()
        self.assertEqual(self.ready, [self.client.getsockname()])
        self.assertNotIn(self.waiter, self.reactor.getReaders())
        self.assertFalse(nonBlocking(self.sock.fileno()))
        self.assertEqual(self.sock.recvfrom(100)[0], b"request")

    def test_childDoneRestoresNonBlocking(self) -> None:
        """
        After the child exits the socket is non-blocking again and watched.
        """
        self.waiter.startReading()
        self.send(b"request")
        self.waiter.doRead()
        self.sock.recvfrom(100)
        self.assertIsNone(self.waiter.childDone())
        self.assertTrue(nonBlocking(self.sock.fileno()))
        self.assertIn(self.waiter, self.reactor.getReaders())

    def test_unreadDatagramDiscarded(self) -> None:
        """
        A datagram the child never read is discarded when it exits, so it
        cannot restart servers forever; later datagrams are kept.
        """
        self.waiter.startReading()
        self.send(b"poison")
        self.waiter.doRead()
        self.send(b"next")
        self.assertEqual(self.waiter.childDone(), self.client.getsockname())
        self.assertEqual(self.sock.recvfrom(100)[0], b"next")

    def test_closeLeavesChildCopy(self) -> None:
        """
        Closing the descriptor closes only ours: a duplicate (the child's)
        still receives.
        """
        copy = self.sock.dup()
        self.addCleanup(copy.close)
        address = self.sock.getsockname()
        self.waiter.close()
        self.client.sendto(b"x", address)
        copy.settimeout(5)
        self.assertEqual(copy.recvfrom(10)[0], b"x")


class StreamWaitTests(SynchronousTestCase):
    """
    L{WaitDescriptor} on a listening TCP socket.
    """

    def test_readyWithoutAccepting(self) -> None:
        """
        A pending connection is reported without being accepted: the child
        accepts it.
        """
        reactor = MemoryReactorClock()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        sock.setblocking(False)
        ready: list = []
        waiter = WaitDescriptor(reactor, sock, ready.append, "svc")
        self.addCleanup(waiter.close)
        waiter.startReading()
        client = socket.create_connection(sock.getsockname())
        self.addCleanup(client.close)
        waiter.doRead()
        self.assertEqual(ready, [None])
        conn, _ = sock.accept()
        conn.close()
