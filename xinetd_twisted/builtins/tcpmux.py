# -*- test-case-name: tests.test_builtins_tcpmux -*-
"""
The tcpmux multiplexer (RFC 1078): the client names a service on the first
line, and the connection goes to that service.

Differences from xinetd (src/builtins.c C{tcpmux_handler}), all deliberate:

  - the name line may end in LF as well as CRLF, may arrive in several
    reads, and may be followed by data the client pipelined; that data is
    handed on with the connection instead of making the request fail;
  - a name line longer than 1 KiB closes the connection, like a line without
    any terminator at EOF;
  - C{HELP} lists the sub-services, one per line (RFC 1078), instead of
    "not found";
  - replies carry no trailing NUL byte (xinetd writes C{sizeof} of the
    string literal);
  - an optional timeout closes a connection that never sends its line.

As in xinetd since CVE-2012-0862, only services of type TCPMUX or TCPMUXPLUS
can be selected, whatever the integrator passes in.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Tuple

from twisted.internet.interfaces import (
    IAddress,
    IPullProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python import log
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config.model import ServiceConfig
from .observe import IBuiltinObserver, NullObserver

__all__ = [
    "TcpmuxFactory",
    "TcpmuxProtocol",
    "TcpmuxHandoff",
    "NOT_FOUND",
    "GO",
    "MAX_NAME_LINE",
]

#: The reply to an unknown name.
NOT_FOUND = b"-Service name not found\r\n"

#: The positive reply sent on behalf of a TCPMUXPLUS service.
GO = b"+Go\r\n"

#: Longest name line accepted, terminator included (xinetd's read buffer).
MAX_NAME_LINE = 1024

#: C{handoff(subservice, pipelined, transport)}: give the connection to
#: C{subservice}.  C{pipelined} are the bytes the client sent after the name
#: line, which the sub-service must see first.  When called, the transport
#: has stopped reading, every byte tcpmux wrote has reached the kernel, and
#: tcpmux will never touch the transport again.  The callee owns it: hand
#: C{transport.getHandle()} to a child, then removeReader/removeWriter and
#: close the parent's socket object -- never loseConnection/abortConnection,
#: which would shut down the child's socket too -- or, to refuse, write a
#: C{-reason} line and loseConnection.
TcpmuxHandoff = Callable[[ServiceConfig, bytes, ITCPTransport], None]


class TcpmuxFactory(ServerFactory):
    """
    The tcpmux service's factory.

    @ivar serviceId: the tcpmux service's C{id} (START/EXIT are logged under
        it, as in xinetd).
    @ivar handoff: see L{TcpmuxHandoff}.
    @ivar clock: schedules the name timeout.
    @ivar observer: told of connection start, and of the end of connections
        that were not handed off.
    @ivar nameTimeout: seconds to wait for the name line, or L{None} (xinetd
        waits forever).
    """

    protocol = None  # type: ignore[assignment]
    noisy = False

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.serviceId

    def __init__(
        self,
        serviceId: str,
        subservices: Iterable[ServiceConfig],
        handoff: TcpmuxHandoff,
        clock: IReactorTime,
        observer: Optional[IBuiltinObserver] = None,
        nameTimeout: Optional[float] = 60.0,
    ) -> None:
        self.serviceId = serviceId
        self.handoff = handoff
        # Any: without the zope mypy plugin, interface methods type badly.
        self.clock: Any = clock
        self.observer: Any = observer if observer is not None else NullObserver()
        self.nameTimeout = nameTimeout
        self.setSubservices(subservices)

    def setSubservices(self, subservices: Iterable[ServiceConfig]) -> None:
        """
        Replace the selectable services (on reload).  Services that are not
        of type TCPMUX or TCPMUXPLUS are ignored (CVE-2012-0862).
        """
        self._subservices: Tuple[ServiceConfig, ...] = tuple(
            s for s in subservices if s.isTcpmuxSubservice
        )

    def names(self) -> Tuple[str, ...]:
        """
        The selectable names, in configuration order.
        """
        return tuple(s.name for s in self._subservices)

    def find(self, name: bytes) -> Optional[ServiceConfig]:
        """
        The sub-service called C{name}, compared case-insensitively (ASCII),
        or L{None}.
        """
        wanted = name.lower()
        for s in self._subservices:
            if s.name.encode("utf-8", "surrogateescape").lower() == wanted:
                return s
        return None

    def buildProtocol(self, addr: IAddress) -> TcpmuxProtocol:  # type: ignore[override]
        p = TcpmuxProtocol()
        p.factory = self
        return p


@implementer(IPullProducer)
class _FlushThenHandOff:
    """
    Writes C{+Go}, and hands the connection off once the transport reports
    its buffer empty: a pull producer is asked for more exactly then.
    """

    def __init__(self, protocol: TcpmuxProtocol) -> None:
        self._protocol = protocol
        self._written = False

    def resumeProducing(self) -> None:
        if not self._written:
            self._written = True
            self._protocol.transport.write(GO)
        else:
            self._protocol.transport.unregisterProducer()
            self._protocol._handOff()

    def stopProducing(self) -> None:
        pass


class TcpmuxProtocol(Protocol):
    """
    Reads the name line and dispatches: C{HELP}, not found, or hand-off.

    @ivar subservice: the selected service once found, else L{None}.
    @ivar pipelined: bytes received after the name line.
    @ivar handedOff: whether the connection now belongs to the hand-off.
    """

    factory: TcpmuxFactory
    transport: Any
    subservice: Optional[ServiceConfig] = None
    pipelined: bytes = b""
    handedOff = False

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.factory.serviceId

    def __init__(self) -> None:
        self._buffer = b""
        self._done = False
        self._peer: Optional[IAddress] = None
        self._timeout: Any = None

    def connectionMade(self) -> None:
        self._peer = self.transport.getPeer()
        self.factory.observer.connectionMade(self.factory.serviceId, self._peer)
        if self.factory.nameTimeout is not None:
            self._timeout = self.factory.clock.callLater(
                self.factory.nameTimeout, self.transport.loseConnection
            )

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            self.pipelined += data
            return
        self._buffer += data
        end = self._buffer.find(b"\n", 0, MAX_NAME_LINE)
        if end < 0:
            if len(self._buffer) >= MAX_NAME_LINE:
                self._finish()
                self.transport.loseConnection()
            return
        line, self.pipelined = self._buffer[:end], self._buffer[end + 1 :]
        self._buffer = b""
        self._finish()
        self._dispatch(line.rstrip(b"\r").strip(b" \t"))

    def _finish(self) -> None:
        self._done = True
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _dispatch(self, name: bytes) -> None:
        if name.upper() == b"HELP":
            listing = "".join(n + "\r\n" for n in self.factory.names())
            self.transport.write(listing.encode("utf-8", "surrogateescape"))
            self.transport.loseConnection()
            return
        found = self.factory.find(name)
        if found is None:
            self.transport.write(NOT_FOUND)
            self.transport.loseConnection()
            return
        self.subservice = found
        # Nothing more is read: the rest of the stream is the sub-service's.
        self.transport.pauseProducing()
        if "TCPMUXPLUS" in found.types:
            self.transport.registerProducer(_FlushThenHandOff(self), False)
        else:
            self._handOff()

    def _handOff(self) -> None:
        assert self.subservice is not None
        self.handedOff = True
        try:
            self.factory.handoff(self.subservice, self.pipelined, self.transport)
        except BaseException:
            # No child can have the socket if the hand-off failed before
            # spawning; closing is the only way not to leak the client.
            log.err(None, "tcpmux hand-off failed")
            self.handedOff = False
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._finish()
        if self._peer is not None and not self.handedOff:
            self.factory.observer.connectionLost(
                self.factory.serviceId, self._peer, reason
            )
