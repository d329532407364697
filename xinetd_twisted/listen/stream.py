# -*- test-case-name: tests.test_listen_stream -*-
"""
Accepting stream connections without Twisted transports.

A connection that goes to a child process never needs a Twisted transport:
building one (and tearing it down without touching the shared socket) costs
more than the rest of the accept path.  L{StreamAcceptor} watches the raw
listening socket, accepts in batches and hands each connected descriptor to a
callable that owns it from then on.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Callable, Optional, Tuple

from twisted.internet.interfaces import IReactorFDSet, IReactorTime, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.readiness import waiting

ConnectionHandler = Callable[[int, object], None]
"""
Called with (connected fd, peer address).  It owns the fd and must close it.
"""

_RETRYABLE = frozenset(
    {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR, errno.ENETDOWN}
)
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


_faces: Tuple[object, IReactorFDSet, IReactorTime] = (None, None, None)  # type: ignore[assignment]


def _facesOf(reactor: object) -> Tuple[IReactorFDSet, IReactorTime]:
    """
    C{reactor} as an L{IReactorFDSet} and an L{IReactorTime}, adapted once
    for all the acceptors of one reactor (the two adaptations were 2 of
    the 2.6 us of building each of a thousand at start-up).
    """
    global _faces
    if _faces[0] is not reactor:
        _faces = (reactor, IReactorFDSet(reactor), IReactorTime(reactor))
    return _faces[1], _faces[2]


@implementer(IReadDescriptor)
class StreamAcceptor:
    """
    Accepts connections on a listening socket and passes each one on.

    @ivar _sock: the listening socket (owned: L{close} closes it).
    @ivar _handler: receives each connection.
    @ivar _reactor: an L{IReactorFDSet} and L{IReactorTime} provider.
    @ivar _name: service id, for log messages.
    @ivar _batch: most connections accepted per readiness event, so one busy
        service cannot starve the others.
    @ivar _retryDelay: seconds to wait before accepting again after running
        out of descriptors.
    @ivar _starved: L{True} while out of descriptors (logged once per
        episode).
    """

    log = Logger()

    __slots__ = (
        "_reactor",
        "_fdset",
        "_clock",
        "_sock",
        "_fileno",
        "_accept",
        "_handler",
        "_name",
        "_batch",
        "_retryDelay",
        "_reading",
        "_paused",
        "_starved",
        "_retry",
    )

    def __init__(
        self,
        reactor: object,
        sock: socket.socket,
        handler: ConnectionHandler,
        name: str,
        batch: int = 32,
        retryDelay: float = 0.25,
    ) -> None:
        self._reactor = reactor
        self._fdset, self._clock = _facesOf(reactor)
        self._sock = sock
        self._fileno = sock.fileno()
        self._accept = getattr(sock, "_accept", None) or self._acceptDetached
        self._handler = handler
        self._name = name
        self._batch = batch
        self._retryDelay = retryDelay
        self._reading = False
        self._paused = False
        self._starved = False
        self._retry: Optional[object] = None

    def _acceptDetached(self) -> tuple[int, object]:
        conn, addr = self._sock.accept()
        return conn.detach(), addr

    @property
    def socket(self) -> socket.socket:
        """
        The listening socket (to hand to a wait-mode child, or to keep across
        a reload).
        """
        return self._sock

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return f"xinetd:{self._name}"

    def startReading(self) -> None:
        """
        Begin (or resume) accepting.
        """
        self._paused = False
        if not self._reading and self._fileno >= 0:
            self._reading = True
            self._fdset.addReader(self)

    def stopReading(self) -> None:
        """
        Stop accepting; queued connections wait in the kernel's backlog.
        """
        self._paused = True
        self._stop()

    def _stop(self) -> None:
        if self._reading:
            self._reading = False
            self._fdset.removeReader(self)

    def doRead(self) -> None:
        accept = self._accept
        handler = self._handler
        fileno = self._fileno
        for n in range(self._batch):
            if n and not waiting(fileno):
                break
            try:
                fd, address = accept()
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in _RETRYABLE:
                    continue
                if e.errno in _OUT_OF_RESOURCES:
                    self._outOfResources(e)
                    return
                self.log.error(
                    "accept() failed for service {service}: {error}",
                    service=self._name,
                    error=e,
                )
                return
            try:
                handler(fd, address)
            except Exception as e:
                if isinstance(e, OSError) and e.errno in _OUT_OF_RESOURCES:
                    # The handler needed a descriptor (a dup for a
                    # transport) and there was none: that connection is
                    # lost; pause as for accept() instead of accepting and
                    # dropping in a loop.
                    self._outOfResources(e)
                    return
                self.log.failure(
                    "service {service}: unhandled error for a connection",
                    service=self._name,
                )
            if self._starved:
                self._starved = False
                self.log.info(
                    "service {service}: descriptors available again, accepting",
                    service=self._name,
                )
            if not self._reading:
                # The handler paused us (a limit was reached).
                break

    def _outOfResources(self, error: OSError) -> None:
        """
        Out of descriptors (or memory): stop watching the socket for a moment
        instead of spinning on a readiness we cannot act on.
        """
        if not self._starved:
            self._starved = True
            self.log.error(
                "service {service}: cannot accept ({error}); "
                "pausing and retrying every {delay}s until resources free up",
                service=self._name,
                error=error.strerror,
                delay=self._retryDelay,
            )
        self._stop()
        self._retry = self._clock.callLater(self._retryDelay, self._retryAccept)

    def _retryAccept(self) -> None:
        self._retry = None
        if self._paused or self._fileno < 0:
            return
        if not self._headroom():
            # Accepting now would only drop the connection we cannot serve.
            self._retry = self._clock.callLater(self._retryDelay, self._retryAccept)
            return
        self._reading = True
        self._fdset.addReader(self)

    def _headroom(self) -> bool:
        """
        Whether two descriptors are free (the accepted one and a copy).
        """
        spare = []
        try:
            for _ in range(2):
                spare.append(os.dup(self._fileno))
        except OSError:
            return False
        finally:
            for fd in spare:
                os.close(fd)
        return True

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def close(self) -> None:
        """
        Stop accepting and close our descriptor.  Children holding the socket
        (wait mode) keep their own copy.
        """
        self._stop()
        if self._retry is not None and self._retry.active():  # type: ignore[attr-defined]
            self._retry.cancel()  # type: ignore[attr-defined]
        self._retry = None
        if self._fileno >= 0:
            self._fileno = -1
            self._sock.close()
