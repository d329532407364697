# -*- test-case-name: tests.test_builtins_stream -*-
"""
The TCP internal services: echo, discard, daytime, time and chargen.

xinetd forks a child for echo, discard and chargen; here every service runs
in-process, so none of them may buffer without bound: echo and chargen write
only as fast as the client reads (producers), which xinetd got for free from
blocking writes in a child.

C{twisted.protocols.wire} is not used: its Echo drops data when the client
half-closes and its Daytime fails on Python 3.
"""

from __future__ import annotations

from typing import Any, Optional, Type

from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IPullProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from .formats import ChargenRing, daytimeString, globalChargenRing, timeBytes
from .observe import IBuiltinObserver, NullObserver

__all__ = [
    "InternalStreamFactory",
    "EchoProtocol",
    "DiscardProtocol",
    "DaytimeProtocol",
    "TimeProtocol",
    "ChargenProtocol",
    "STREAM_PROTOCOLS",
]

# Whole 95-line cycles written per resumeProducing: 9 * 7030 bytes stays just
# under the transport's 64 KiB buffer, so a pull producer keeps the kernel fed
# with at most one batch held in memory.
_CHARGEN_CYCLES_PER_WRITE = 9


class InternalStreamFactory(ServerFactory):
    """
    Builds the protocol of one internal stream service.

    @ivar serviceId: the service's C{id}, passed to the observer.
    @ivar protocolClass: the L{_InternalStreamProtocol} subclass to build.
    @ivar clock: where time and daytime read the time.
    @ivar observer: told of each connection's start and end.
    @ivar ring: the chargen ring new connections copy their start from.
    """

    noisy = False

    def __init__(
        self,
        serviceId: str,
        protocol: Type[_InternalStreamProtocol],
        clock: IReactorTime,
        observer: Optional[IBuiltinObserver] = None,
        ring: Optional[ChargenRing] = None,
    ) -> None:
        self.serviceId = serviceId
        self.protocolClass = protocol
        # Any: without the zope mypy plugin, interface methods type badly.
        self.clock: Any = clock
        self.observer: Any = observer if observer is not None else NullObserver()
        self.ring = ring if ring is not None else globalChargenRing

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.serviceId

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress
    ) -> _InternalStreamProtocol:
        """
        A new protocol instance bound to this factory.
        """
        p = self.protocolClass()
        p.factory = self
        return p


class _InternalStreamProtocol(Protocol):
    """
    Reports the connection's start and end to the factory's observer.
    """

    factory: InternalStreamFactory
    transport: Any
    _peer: Optional[IAddress] = None

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.factory.serviceId

    def connectionMade(self) -> None:
        self._peer = self.transport.getPeer()
        self.factory.observer.connectionMade(self.factory.serviceId, self._peer)
        self.serviceStarted()

    def serviceStarted(self) -> None:
        """
        Start the service on the new connection.
        """

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._peer is not None:
            self.factory.observer.connectionLost(
                self.factory.serviceId, self._peer, reason
            )


@implementer(IHalfCloseableProtocol)
class EchoProtocol(_InternalStreamProtocol):
    """
    Echo (RFC 862): send back everything, close once the client has
    half-closed and all of it has been written.
    """

    def serviceStarted(self) -> None:
        # The transport is its own producer: when its write buffer is full it
        # stops reading, so a client that sends without reading is paused
        # instead of making us buffer.
        self.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        # With the producer registered the transport would never close.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()


@implementer(IHalfCloseableProtocol)
class DiscardProtocol(_InternalStreamProtocol):
    """
    Discard (RFC 863): read and drop until the client closes.
    """

    def dataReceived(self, data: bytes) -> None:
        pass

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class DaytimeProtocol(_InternalStreamProtocol):
    """
    Daytime (RFC 867), in xinetd's format, then close.
    """

    def serviceStarted(self) -> None:
        self.transport.write(daytimeString(self.factory.clock.seconds()))
        self.transport.loseConnection()


class TimeProtocol(_InternalStreamProtocol):
    """
    Time (RFC 868): 4 bytes, then close.
    """

    def serviceStarted(self) -> None:
        self.transport.write(timeBytes(self.factory.clock.seconds()))
        self.transport.loseConnection()


@implementer(IHalfCloseableProtocol, IPullProducer)
class ChargenProtocol(_InternalStreamProtocol):
    """
    Character generator (RFC 864) with xinetd's 93-character lines, written
    only when the transport's buffer is empty; input is read and dropped
    (xinetd shuts the read side down), and a client half-close does not stop
    the stream (xinetd writes until a write fails).
    """

    _ring: ChargenRing

    def serviceStarted(self) -> None:
        # A forked xinetd child starts from the parent's position and moves
        # only its own copy.
        self._ring = self.factory.ring.copy()
        self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        self.transport.write(self._ring.cycle() * _CHARGEN_CYCLES_PER_WRITE)

    def stopProducing(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        pass

    def readConnectionLost(self) -> None:
        pass

    def writeConnectionLost(self) -> None:
        self.transport.unregisterProducer()
        self.transport.loseConnection()


#: Internal stream services by xinetd service name.  xinetd's C{sensor}
#: builtin is discard; C{tcpmux} lives in L{xinetd_twisted.builtins.tcpmux}.
STREAM_PROTOCOLS = {
    "echo": EchoProtocol,
    "discard": DiscardProtocol,
    "daytime": DaytimeProtocol,
    "time": TimeProtocol,
    "chargen": ChargenProtocol,
    "sensor": DiscardProtocol,
}
