# -*- test-case-name: tests.test_listen_wait -*-
"""
Wait-mode services: the socket itself goes to the child.

For C{wait = yes} the child gets the listening (stream) or bound (dgram)
socket on fds 0-2 and does the accepting or reading itself, and the daemon
stops watching the socket until the child exits.  Twisted's ports cannot be
used for this: C{tcp.Port} accepts and C{udp.Port} reads ahead, stealing what
the child should get.  L{WaitDescriptor} watches the socket without touching
its data.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Callable, Optional

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

PEEK_SIZE = 512
"""
How much of a queued datagram is looked at (never consumed) to tell the
sender and whether the last child read it.
"""


def setBlocking(fd: int, blocking: bool) -> None:
    """
    Set or clear O_NONBLOCK.  The flag belongs to the open file description,
    which the child shares: the parent must set it back before it reads
    again, or the reactor would block in the kernel.
    """
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = (flags & ~os.O_NONBLOCK) if blocking else (flags | os.O_NONBLOCK)
    if wanted != flags:
        fcntl.fcntl(fd, fcntl.F_SETFL, wanted)


@implementer(IReadDescriptor)
class WaitDescriptor:
    """
    Watches a wait-mode socket; when it becomes readable, stops watching and
    calls C{onReady(peer)} so the owner can start the one child.  The owner
    calls L{childDone} when the child has exited.

    @ivar _sock: the socket (owned: L{close} closes our descriptor only).
    @ivar _datagram: C{True} for dgram sockets: the sender of the queued
        datagram is peeked (MSG_PEEK) to give the child its REMOTE_HOST.
    @ivar _handed: for dgram, what the queue head looked like when the child
        got the socket, to tell afterwards whether the child read it.
    """

    def __init__(
        self,
        reactor: object,
        sock: socket.socket,
        onReady: Callable[[Optional[object]], None],
        name: str,
    ) -> None:
        self._fdset: IReactorFDSet = IReactorFDSet(reactor)
        self._sock = sock
        self._fileno = sock.fileno()
        self._onReady = onReady
        self._name = name
        self._datagram = sock.type == socket.SOCK_DGRAM
        self._reading = False
        self._busy = False
        self._handed: Optional[tuple] = None

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return f"xinetd:{self._name}"

    def startReading(self) -> None:
        if not self._reading and not self._busy and self._fileno >= 0:
            self._reading = True
            self._fdset.addReader(self)

    def stopReading(self) -> None:
        if self._reading:
            self._reading = False
            self._fdset.removeReader(self)

    def _peek(self) -> Optional[tuple]:
        try:
            data, address = self._sock.recvfrom(PEEK_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            # An ICMP error queued on the socket: reading it clears it.
            try:
                self._sock.recvfrom(1)
            except OSError:
                pass
            return None
        return (address, data)

    def doRead(self) -> None:
        peer: Optional[object] = None
        if self._datagram:
            head = self._peek()
            if head is None:
                return
            peer = head[0]
            self._handed = head
        self.stopReading()
        self._busy = True
        setBlocking(self._fileno, True)
        self._onReady(peer)

    def childDone(self) -> Optional[object]:
        """
        The child exited: make the socket non-blocking again and watch it.

        A datagram that is still at the head of the queue, unchanged, was
        never read by the child: it is discarded (and its sender returned),
        so a server that dies without reading cannot be restarted forever
        by one datagram.  Datagrams that arrived meanwhile are kept for the
        next child (xinetd discards them all).

        @return: the sender of a discarded datagram, or L{None}.
        """
        if self._fileno < 0:
            return None
        setBlocking(self._fileno, False)
        dropped = None
        if self._datagram and self._handed is not None:
            head = self._peek()
            if head is not None and head == self._handed:
                try:
                    self._sock.recvfrom(1)
                    dropped = head[0]
                except OSError:
                    pass
            self._handed = None
        self._busy = False
        self.startReading()
        return dropped

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def close(self) -> None:
        """
        Stop watching and close our descriptor; a running child keeps its
        own copy of the socket and is not disturbed (no shutdown()).
        """
        self.stopReading()
        if self._fileno >= 0:
            self._fileno = -1
            self._sock.close()
