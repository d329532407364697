# -*- test-case-name: tests.test_protocols_portmap -*-
"""
A non-blocking portmap (rpcbind) client for the two calls a super-server
makes: PMAPPROC_SET and PMAPPROC_UNSET of PMAP version 2 (RFC 1833 section
3), as ONC RPC calls (RFC 5531) over UDP to 127.0.0.1:111, encoded by hand
in XDR (RFC 4506): every field here is one big-endian 32-bit word.

Each call is resent a few times on a timeout; its Deferred fires with the
portmapper's boolean answer, or L{False} when nobody answered.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Dict, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

PMAP_PROGRAM = 100000
PMAP_VERSION = 2
PMAPPROC_SET = 1
PMAPPROC_UNSET = 2
PMAP_PORT = 111

IPPROTO_TCP = 6
IPPROTO_UDP = 17
PROTOCOL_NUMBERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
"""
The protocol numbers the portmapper knows, by our protocol names.
"""

_CALL = 0
_REPLY = 1
_RPC_VERSION = 2
_AUTH_NONE = 0
_MSG_ACCEPTED = 0
_SUCCESS = 0

TIMEOUT = 1.0
"""
Seconds to wait for an answer before resending.
"""

TRIES = 3
"""
Sends of one call before it is given up (answering L{False}).
"""


def encodeCall(
    xid: int, procedure: int, program: int, version: int, protocol: int, port: int
) -> bytes:
    """
    The 14 words of a PMAP v2 call with AUTH_NONE credentials: the RPC call
    header (xid, CALL, rpcvers 2, prog, vers, proc, cred, verf) and the
    C{mapping} argument (prog, vers, prot, port).
    """
    return struct.pack(
        ">14I",
        xid,
        _CALL,
        _RPC_VERSION,
        PMAP_PROGRAM,
        PMAP_VERSION,
        procedure,
        _AUTH_NONE,
        0,
        _AUTH_NONE,
        0,
        program,
        version,
        protocol,
        port,
    )


def decodeReply(data: bytes) -> Optional[Tuple[int, bool]]:
    """
    C{(xid, answer)} from a reply to one of our calls, or L{None} for
    anything else.  A call that was denied or not accepted (wrong
    program, system error) answers L{False}.
    """
    if len(data) < 12:
        return None
    xid, kind, replyStatus = struct.unpack_from(">3I", data)
    if kind != _REPLY:
        return None
    if replyStatus != _MSG_ACCEPTED:
        return (xid, False)
    if len(data) < 20:
        return None
    _flavor, length = struct.unpack_from(">2I", data, 12)
    offset = 20 + ((length + 3) & ~3)
    if len(data) < offset + 8:
        return (xid, False)
    acceptStatus, answer = struct.unpack_from(">2I", data, offset)
    return (xid, acceptStatus == _SUCCESS and answer != 0)


class _Pending:
    __slots__ = ("deferred", "payload", "triesLeft", "timer")

    def __init__(self, deferred: Deferred, payload: bytes, triesLeft: int) -> None:
        self.deferred = deferred
        self.payload = payload
        self.triesLeft = triesLeft
        self.timer: Any = None


class PortmapClient(DatagramProtocol):
    """
    Sends PMAP SET/UNSET calls from one UDP port of ours, opened on the
    first call and closed by L{close}.

    @ivar address: the portmapper's C{(host, port)}.
    """

    log = Logger(namespace="xinetd_twisted.rpc")
    noisy = False

    def __init__(
        self,
        reactor: Any,
        address: Tuple[str, int] = ("127.0.0.1", PMAP_PORT),
        timeout: float = TIMEOUT,
        tries: int = TRIES,
    ) -> None:
        self._reactor = reactor
        self.address = address
        self._timeout = timeout
        self._tries = tries
        self._port: Any = None
        self._pending: Dict[int, _Pending] = {}
        self._xid = int.from_bytes(os.urandom(4), "big")

    def set(self, program: int, version: int, protocol: int, port: int) -> Deferred:
        """
        Register C{program} C{version} on C{protocol} (6 or 17) C{port}.

        @return: a Deferred firing with the answer (L{False}: refused or no
            answer).
        """
        return self._call(PMAPPROC_SET, program, version, protocol, port)

    def unset(self, program: int, version: int) -> Deferred:
        """
        Unregister C{program} C{version} (every protocol, as PMAP does).
        """
        return self._call(PMAPPROC_UNSET, program, version, 0, 0)

    def _call(
        self, procedure: int, program: int, version: int, protocol: int, port: int
    ) -> Deferred:
        if self._port is None:
            try:
                self._port = self._reactor.listenUDP(0, self, interface=self.address[0])
            except Exception as e:
                self.log.error("cannot reach the portmapper: {error}", error=e)
                return succeed(False)
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        xid = self._xid
        d: Deferred = Deferred()
        pending = _Pending(
            d, encodeCall(xid, procedure, program, version, protocol, port), self._tries
        )
        self._pending[xid] = pending
        self._send(xid, pending)
        return d

    def _send(self, xid: int, pending: _Pending) -> None:
        pending.triesLeft -= 1
        pending.timer = self._reactor.callLater(self._timeout, self._timedOut, xid)
        if self.transport is not None:
            try:
                self.transport.write(pending.payload, self.address)
            except OSError:
                # ECONNREFUSED from an earlier datagram, or no route: the
                # timer resends or gives up.
                pass

    def _timedOut(self, xid: int) -> None:
        pending = self._pending.get(xid)
        if pending is None:
            return
        if pending.triesLeft > 0:
            self._send(xid, pending)
            return
        del self._pending[xid]
        pending.deferred.callback(False)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        decoded = decodeReply(data)
        if decoded is None:
            return
        xid, answer = decoded
        pending = self._pending.pop(xid, None)
        if pending is None:
            return
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.deferred.callback(answer)

    def connectionRefused(self) -> None:
        pass

    def close(self) -> Deferred:
        """
        Answer L{False} to every call still waiting and close our port.
        """
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if call.timer is not None and call.timer.active():
                call.timer.cancel()
            call.deferred.callback(False)
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        result = port.stopListening()
        return result if isinstance(result, Deferred) else succeed(None)
