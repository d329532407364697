# -*- test-case-name: tests.test_protocols_ident -*-
"""
The RFC 1413 (ident) client behind C{log_on_success/log_on_failure =
USERID}, without blocking the reactor.

As xinetd's src/ident.c: connect from the connection's local address (port
0) to the client's address on port 113, send C{<remoteport>,<localport>\\r\\n},
read one CRLF-terminated line of at most 1024 bytes, check both ports and
the literal C{USERID}, and keep what follows C{USERID :} verbatim (e.g.
C{UNIX : alice}).  The whole exchange is bounded by a timeout (30 s).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union, cast

import attr
from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConnector
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from xinetd_twisted.records import plainRepr

IDENT_PORT = 113
IDENT_TIMEOUT = 30.0
IDENT_BUFFER = 1024  # IBUFSIZE in src/ident.c

NO_SERVER = "no server"
TIMEOUT = "timeout"
SYSTEM_ERROR = "system error"
RECEIVE_ERROR = "error while receiving response"
BAD_RESPONSE = "bad response"

Address = Union[IPv4Address, IPv6Address, Tuple[str, int]]


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class IdentResult:
    """
    What the ident query found: exactly one of the two fields is set.

    @ivar userid: the text after C{USERID :} (for the USERID line).
    @ivar noid: xinetd's reason for a NOID line (C{no server}, C{timeout},
        C{system error}, C{error while receiving response}, C{bad response}).
    """

    userid: Optional[str] = None
    noid: Optional[str] = None


def _hostPort(address: Address) -> Tuple[str, int]:
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host, address.port
    return address[0], address[1]


def _port(text: bytes, expected: int) -> bool:
    # xinetd's parse_base10: strtol, surrounding white space allowed.
    text = text.strip()
    if not text:
        return False
    try:
        return int(text) == expected
    except ValueError:
        return False


def parseResponse(line: bytes, remotePort: int, localPort: int) -> Optional[str]:
    """
    Check an identd reply line (without its CRLF) as xinetd's verify_line.

    @param remotePort: the client's port (first in the reply).
    @param localPort: our port (second in the reply).
    @return: the text after C{USERID :} with leading white space removed,
        or L{None} when the line is not a USERID reply for these ports.
    """
    # C stops at a NUL; so does xinetd.
    line = line.split(b"\0", 1)[0]
    first, comma, rest = line.partition(b",")
    if not comma or not _port(first, remotePort):
        return None
    second, colon, rest = rest.partition(b":")
    if not colon or not _port(second, localPort):
        return None
    rest = rest.lstrip()
    if not rest.startswith(b"USERID"):
        return None
    rest = rest[len(b"USERID") :].lstrip()
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip()
    if not rest:
        return None
    return rest.decode("utf-8", "surrogateescape")


class _IdentProtocol(Protocol):
    """
    Sends the query, collects the first CRLF line.
    """

    def __init__(self, query: "_IdentQuery") -> None:
        self._query = query
        self._buffer = b""

    def connectionMade(self) -> None:
        q = self._query
        transport = cast(Any, self.transport)
        transport.write(b"%d,%d\r\n" % (q.remotePort, q.localPort))

    def dataReceived(self, data: bytes) -> None:
        if self._query.done:
            return
        self._buffer += data
        # xinetd reads at most IBUFSIZE bytes looking for CRLF.
        end = self._buffer.find(b"\r\n", 0, IDENT_BUFFER)
        if end >= 0:
            userid = parseResponse(
                self._buffer[:end], self._query.remotePort, self._query.localPort
            )
            if userid is None:
                self._query.finish(IdentResult(noid=BAD_RESPONSE))
            else:
                self._query.finish(IdentResult(userid=userid))
        elif len(self._buffer) >= IDENT_BUFFER:
            self._query.finish(IdentResult(noid=RECEIVE_ERROR))

    def connectionLost(self, reason: Optional[Failure] = None) -> None:  # type: ignore[override]
        self._query.finish(IdentResult(noid=RECEIVE_ERROR))


class _IdentQuery(ClientFactory):
    """
    One query: owns the connector, the timer and the result Deferred.
    """

    protocol = _IdentProtocol  # type: ignore[assignment]
    # One "Starting factory <...>" per query would flood the log.
    noisy = False

    def logPrefix(self) -> str:
        """
        What, where Twisted's log would name this object.
        """
        return "ident"

    def __init__(self, remotePort: int, localPort: int) -> None:
        self.remotePort = remotePort
        self.localPort = localPort
        self.deferred: Deferred[IdentResult] = Deferred()
        self.connector: Any = None
        self.timer: Any = None
        self.protocolInstance: Optional[_IdentProtocol] = None
        self.done = False

    def buildProtocol(self, addr: object) -> _IdentProtocol:
        self.protocolInstance = _IdentProtocol(self)
        self.protocolInstance.factory = self
        return self.protocolInstance

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        if reason.check(error.ConnectBindError, error.UnknownHostError):
            self.finish(IdentResult(noid=SYSTEM_ERROR))
        elif reason.check(error.UserError):
            # stopConnecting() from our own timeout.
            self.finish(IdentResult(noid=TIMEOUT))
        else:
            self.finish(IdentResult(noid=NO_SERVER))

    def timedOut(self) -> None:
        self.timer = None
        self.finish(IdentResult(noid=TIMEOUT), abort=True)

    def finish(self, result: IdentResult, abort: bool = False) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        proto, self.protocolInstance = self.protocolInstance, None
        if proto is not None and proto.transport is not None:
            transport = cast(Any, proto.transport)
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()
        elif self.connector is not None:
            try:
                self.connector.stopConnecting()
            except error.NotConnectingError:
                pass
        self.deferred.callback(result)


def queryIdent(
    reactor: object,
    localAddress: Address,
    peerAddress: Address,
    timeout: Optional[float] = IDENT_TIMEOUT,
    identPort: int = IDENT_PORT,
) -> Deferred[IdentResult]:
    """
    Ask the client's identd who owns a connection.

    @param reactor: provides C{IReactorTCP} and C{IReactorTime}.
    @param localAddress: our end of the client connection (its host is
        where the query is sent from).
    @param peerAddress: the client's end (its host gets the query).
    @param timeout: seconds for the whole exchange, or L{None} for none
        (xinetd's IDONLY).
    @param identPort: where identd listens (113; injectable for tests).
    @return: a L{Deferred} that always fires with an L{IdentResult}, never
        errs.
    """
    localHost, localPort = _hostPort(localAddress)
    peerHost, peerPort = _hostPort(peerAddress)
    query = _IdentQuery(peerPort, localPort)
    if timeout is not None:
        query.timer = reactor.callLater(timeout, query.timedOut)  # type: ignore[attr-defined]
    try:
        # Twisted's own connect timeout is only a backstop: ours decides.
        query.connector = reactor.connectTCP(  # type: ignore[attr-defined]
            peerHost,
            identPort,
            query,
            timeout=(timeout + 1) if timeout is not None else 3600,
            bindAddress=(localHost, 0),
        )
    except Exception:
        query.finish(IdentResult(noid=SYSTEM_ERROR))
    return query.deferred
