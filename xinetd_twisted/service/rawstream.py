# -*- test-case-name: tests.test_service_rawstream -*-
"""
echo and discard on the bare descriptor: the fast door's connections of
these two internal services, served without a Twisted transport and
protocol.

Building a C{tcp.Server} (a duplicate descriptor, address objects, a log
prefix, a producer) and tearing it down cost more than echoing a
kilobyte.  L{RawStreamConnection} is the whole connection instead: the
reactor watches its descriptor, it reads, writes back what it read (echo)
or drops it (discard), and closes once the client has half-closed and
everything has been written.  While output is pending it reads nothing,
so a client that sends without reading is held back by TCP's window
instead of making the daemon buffer.  L{RawDoor} gives each one the same
bounds and log lines as the transport path: the descriptor budget, the
idle sweep, C{max_duration}, removal, START and EXIT.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Union

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IReadWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.service.connection import Address, Connection
from xinetd_twisted.service.duration import LimitedConnections
from xinetd_twisted.service.factory import ConnectionLimits

CHUNK = 65536
"""
Bytes read at once: at most this much is ever held for one connection.
"""

READS_PER_EVENT = 4
"""
Reads per readiness event, so that one fast client cannot keep the
reactor from the others.
"""

_RECV_FLAGS = int(socket.MSG_DONTWAIT)
_SEND_FLAGS = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)


@implementer(IReadWriteDescriptor)
class RawStreamConnection:
    """
    One echo or discard connection on its own (blocking) descriptor; every
    read and write is non-blocking by its flags, so no C{fcntl} is needed.

    @ivar peer: the client's address as C{accept()} gave it (a
        L{UNIXAddress} for a UNIX-domain client).
    @ivar started: when it began, on the wall clock (for DURATION).
    @ivar sawData: data arrived since the idle sweep last looked.
    @ivar connected: not closed yet.
    @ivar handedOff: always L{False}: nothing here goes to a child (for
        the parts that end in-process connections).
    """

    handedOff = False

    def __init__(
        self,
        reactor: Any,
        sock: socket.socket,
        peer: Union[Address, UNIXAddress, None],
        echo: bool,
        ended: Callable[[RawStreamConnection], None],
        started: float = 0.0,
        name: str = "xinetd",
    ) -> None:
        """
        @param sock: the connection (owned: closed here).
        @param echo: write back what is read (echo), or drop it (discard).
        @param ended: called once, when the connection is closed.
        @param name: the service id, for the reactor's log prefix.
        """
        self._reactor = reactor
        self._sock = sock
        self._fd = sock.fileno()
        self._echo = echo
        self._ended = ended
        self._name = name
        self.peer = peer
        self.started = started
        self.sawData = False
        self.connected = True
        self._pending = b""
        self._inputEnded = False
        self._reading = False
        self._writing = False

    def start(self) -> None:
        """
        Begin serving: read what the client already sent (often all of it,
        and its half-close, when accepting in a batch), then wait for more.
        """
        self.doRead()
        if self.connected and not self._writing:
            self._startReading()

    @property
    def transport(self) -> RawStreamConnection:
        """
        Itself: what C{max_duration} and a service's removal need of a
        transport (C{connected}, C{getPeer}, C{abortConnection}).
        """
        return self

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return f"xinetd:{self._name}"

    def getPeer(self) -> Any:
        """
        The client's address as a Twisted address (for log messages).
        """
        peer = self.peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            if len(peer) == 4:
                return IPv6Address("TCP", peer[0], peer[1], peer[2], peer[3])
            return IPv4Address("TCP", peer[0], peer[1])
        return peer if peer is not None else UNIXAddress(None)

    def doRead(self) -> None:
        sock = self._sock
        for _ in range(READS_PER_EVENT):
            try:
                data = sock.recv(CHUNK, _RECV_FLAGS)
            except BlockingIOError:
                return None
            except OSError:
                self._close()
                return None
            if not data:
                self._endOfInput()
                return None
            self.sawData = True
            if self._echo:
                self._send(data)
                if self._pending or not self.connected:
                    return None
        return None

    def doWrite(self) -> None:
        if not self.connected:
            return None
        pending, self._pending = self._pending, b""
        self._send(pending)
        if self.connected and not self._pending:
            self._stopWriting()
            if self._inputEnded:
                self._close()
            else:
                self._startReading()
        return None

    def _send(self, data: bytes) -> None:
        try:
            sent = self._sock.send(data, _SEND_FLAGS)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close()
            return
        if sent < len(data):
            # Back-pressure: read nothing more until this is written.
            self._pending = data[sent:]
            self._stopReading()
            self._startWriting()

    def _endOfInput(self) -> None:
        """
        The client half-closed: close once everything read is written back
        (in the same read as the last data, nothing is lost).
        """
        self._inputEnded = True
        self._stopReading()
        if not self._pending:
            self._close()

    def readConnectionLost(self, reason: Failure) -> None:
        """
        The reactor saw the end of input (and stopped reading).
        """
        self._reading = False
        self._endOfInput()

    def connectionLost(self, reason: Failure) -> None:
        """
        The reactor saw the connection fail (and stopped watching it).
        """
        self._reading = self._writing = False
        self._close()

    def idled(self) -> None:
        """
        Nothing arrived for the idle timeout.
        """
        self._close()

    def abortConnection(self) -> None:
        """
        Close now, dropping what is not written yet.
        """
        self._close()

    def _startReading(self) -> None:
        if not self._reading:
            self._reading = True
            self._reactor.addReader(self)

    def _stopReading(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def _startWriting(self) -> None:
        if not self._writing:
            self._writing = True
            self._reactor.addWriter(self)

    def _stopWriting(self) -> None:
        if self._writing:
            self._writing = False
            self._reactor.removeWriter(self)

    def _close(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self._stopReading()
        self._stopWriting()
        self._pending = b""
        # close(), never shutdown(): everything the client sent was read,
        # so the kernel ends the connection with a FIN after our data.
        self._sock.close()
        self._fd = -1
        self._ended(self)


class RawDoor:
    """
    Serves a service's admitted fast-door echo or discard connections as
    L{RawStreamConnection}s, within the same bounds as the transport path.
    """

    def __init__(
        self,
        reactor: Any,
        limits: ConnectionLimits,
        connections: LimitedConnections,
        began: Callable[[Any], float],
        ended: Callable[[Any, float], None],
    ) -> None:
        """
        @param limits: the service's descriptor budget and idle sweep.
        @param connections: the service's in-process connections (closed
            after C{max_duration}, and on removal).
        @param began: logs and counts a connection's start (given its peer);
            returns its start time.
        @param ended: logs and counts its end (given its peer and start).
        """
        self._reactor = reactor
        self._limits = limits
        self._connections = connections
        self._began = began
        self._endedHook = ended

    def serve(self, connection: Connection, serviceId: str, echo: bool) -> bool:
        """
        Serve an admitted raw connection, taking its descriptor; L{False}
        when the descriptor budget is spent (the descriptor stays the
        caller's to close).
        """
        limits = self._limits
        if not limits.take(serviceId):
            return False
        # A UNIX-domain client has no address: logged as the transport
        # path logs it (a UNIXAddress), never as an empty host.
        peer = connection.remote
        sock = socket.socket(
            connection.family, socket.SOCK_STREAM, 0, connection.take()
        )
        raw = RawStreamConnection(
            self._reactor,
            sock,
            UNIXAddress(None) if peer is None else peer,
            echo,
            self._ended,
            name=serviceId,
        )
        raw.started = self._began(raw.peer)
        raw.start()
        if raw.connected:
            # Not served at once: bound its idle time and its duration (a
            # connection served in start() needs neither).
            if limits.sweep is not None:
                limits.sweep.watch(raw)
            self._connections.add(raw)
        return True

    def _ended(self, raw: RawStreamConnection) -> None:
        limits = self._limits
        limits.descriptors.release(limits.cost)
        if limits.sweep is not None:
            limits.sweep.forget(raw)
        self._endedHook(raw.peer, raw.started)


__all__ = ["RawStreamConnection", "RawDoor"]
