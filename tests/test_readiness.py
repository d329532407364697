"""
Tests for L{xinetd_twisted.readiness}.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.readiness import waiting


class WaitingTests(SynchronousTestCase):
    """
    L{waiting} says whether input waits, for any number of descriptors in
    turn, without consuming it.
    """

    def test_inputOrNot(self) -> None:
        """Nothing sent: not waiting; sent: waiting, and still there."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        self.assertFalse(waiting(ours.fileno()))
        theirs.send(b"x")
        self.assertTrue(waiting(ours.fileno()))
        self.assertTrue(waiting(ours.fileno()))
        self.assertEqual(ours.recv(1), b"x")
        self.assertFalse(waiting(ours.fileno()))

    def test_descriptorsApart(self) -> None:
        """One descriptor's input says nothing of another's."""
        pairs = [socket.socketpair() for _ in range(3)]
        for a, b in pairs:
            self.addCleanup(a.close)
            self.addCleanup(b.close)
        pairs[1][1].send(b"x")
        self.assertEqual([waiting(a.fileno()) for a, _ in pairs], [False, True, False])

    def test_pendingConnection(self) -> None:
        """A connection queued on a listening socket is input."""
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        self.assertFalse(waiting(server.fileno()))
        client = socket.create_connection(server.getsockname())
        self.addCleanup(client.close)
        self.assertTrue(waiting(server.fileno()))
