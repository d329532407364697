"""
Tests for L{xinetd_twisted.listen.stream}.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.listen.stream import StreamAcceptor


def listener(testCase: SynchronousTestCase) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


class _CountingSocket(socket.socket):
    """
    A listening socket that counts the accept() calls made on it.
    """

    accepts = 0

    def _accept(self):  # type: ignore[no-untyped-def]
        self.accepts += 1
        return super()._accept()


class StreamAcceptorTests(SynchronousTestCase):
    """
    Tests for L{StreamAcceptor}.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.sock = listener(self)
        self.accepted: list = []
        self.acceptor = StreamAcceptor(
            self.reactor, self.sock, self.handler, "svc", batch=4
        )
        self.addCleanup(self.acceptor.close)
        self.clients: list = []

    def handler(self, fd: int, address: object) -> None:
        self.accepted.append(address)
        os.close(fd)

    def connect(self, count: int) -> None:
        for _ in range(count):
            c = socket.create_connection(self.sock.getsockname())
            self.clients.append(c)
            self.addCleanup(c.close)

    def test_startStopReading(self) -> None:
        """
        The acceptor registers and unregisters itself as a reader.
        """
        self.acceptor.startReading()
        self.assertIn(self.acceptor, self.reactor.getReaders())
        self.acceptor.stopReading()
        self.assertNotIn(self.acceptor, self.reactor.getReaders())

    def test_acceptsInBatches(self) -> None:
        """
        One readiness event accepts at most C{batch} connections; the rest
        wait for the next.
        """
        self.acceptor.startReading()
        self.connect(6)
        self.acceptor.doRead()
        self.assertEqual(len(self.accepted), 4)
        self.acceptor.doRead()
        self.assertEqual(len(self.accepted), 6)

    def test_noFailingAcceptAfterTheLast(self) -> None:
        """
        A batch ends when no connection waits, found without an accept()
        that fails: one accept per connection.
        """
        sock = _CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        acceptor = StreamAcceptor(self.reactor, sock, self.handler, "svc", batch=8)
        self.addCleanup(acceptor.close)
        self.sock = sock
        acceptor.startReading()
        self.connect(1)
        acceptor.doRead()
        self.assertEqual((len(self.accepted), sock.accepts), (1, 1))
        self.connect(3)
        acceptor.doRead()
        self.assertEqual((len(self.accepted), sock.accepts), (4, 4))

    def test_handlerGetsConnectedDescriptor(self) -> None:
        """
        The handler receives a connected descriptor: closing it gives the
        client EOF.
        """
        self.acceptor.startReading()
        self.connect(1)
        self.acceptor.doRead()
        self.clients[0].settimeout(5)
        self.assertEqual(self.clients[0].recv(10), b"")
        self.assertEqual(self.accepted[0][0], "127.0.0.1")

    def test_outOfDescriptorsPausesThenRetries(self) -> None:
        """
        EMFILE stops reading instead of spinning, logs once per episode, and
        reading resumes after the retry delay.
        """
        self.acceptor.startReading()

        def failing() -> tuple:
            raise OSError(errno.EMFILE, "Too many open files")

        self.acceptor._accept = failing
        self.acceptor.doRead()
        self.assertNotIn(self.acceptor, self.reactor.getReaders())
        self.acceptor.doRead()
        self.reactor.advance(0.25)
        self.assertIn(self.acceptor, self.reactor.getReaders())
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])

    def test_handlerErrorIsContained(self) -> None:
        """
        An exception from the handler is logged and does not stop the batch.
        """

        def broken(fd: int, address: object) -> None:
            os.close(fd)
            raise RuntimeError("boom")

        self.acceptor._handler = broken
        self.acceptor.startReading()
        self.connect(2)
        self.acceptor.doRead()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_closeClosesSocket(self) -> None:
        """
        Closing stops reading and closes the listening socket.
        """
        self.acceptor.startReading()
        self.acceptor.close()
        self.assertEqual(self.sock.fileno(), -1)
        self.assertEqual(self.acceptor.fileno(), -1)
