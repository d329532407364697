# -*- test-case-name: tests.test_integration_udp -*-
"""
echo, discard, daytime, time and chargen over UDP, answered in the daemon
datagram by datagram.
"""

from __future__ import annotations

import socket
from typing import Any, Dict, Optional, Tuple

from zope.interface import implementer

from xinetd_twisted.builtins import IBuiltinObserver, NullObserver, datagramProtocol
from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.service.parts import ServiceParts

DGRAM_FAIL_INTERVAL = 60.0
"""
xinetd logs a refused datagram source at most once a minute per service.
"""

DATAGRAM_RECEIVE_BUFFER = 4 * 1024 * 1024
"""
Bytes the kernel may queue for a UDP internal service: a burst of a
thousand small datagrams takes about a megabyte of socket buffer, four
times the usual default.
"""


def _roomForBursts(sock: socket.socket) -> None:
    # SO_RCVBUFFORCE passes net.core.rmem_max, for root only.
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, DATAGRAM_RECEIVE_BUFFER)
            return
        except OSError:
            continue


@implementer(IBuiltinObserver)
class InternalDatagramKind(NullObserver):
    """
    echo, discard, daytime, time, chargen over UDP: each datagram answered
    in-process, within the reply and amplification budgets, never to a
    reply (loop guard).

    @ivar protocol: the L{DatagramProtocol} that serves the socket.
    """

    factory = None

    def __init__(self, parts: ServiceParts) -> None:
        self._parts = parts
        self._failLogged: Dict[Tuple[str, int], float] = {}
        self._port: Any = None
        service = parts.service
        self.protocol = datagramProtocol(
            service.name.lower(),
            service.serviceId,
            parts.context.reactor,
            observer=self,
            guard=parts.context.loopGuard,
            admit=self._admitDatagram,
            amplification=parts.context.amplification,
        )

    def update(self, service: ServiceConfig) -> None:
        pass

    @property
    def listeningSocket(self) -> Optional[socket.socket]:
        return None if self._port is None else self._port.socket

    def open(self, sock: socket.socket) -> None:
        _roomForBursts(sock)
        try:
            self._port = self._parts.context.reactor.adoptDatagramPort(
                sock.fileno(), sock.family, self.protocol
            )
        finally:
            sock.close()

    def close(self) -> None:
        if self._port is not None:
            self._port.stopListening()
            self._port = None

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def endConnections(self) -> None:
        pass

    def _admitDatagram(self, peer: Tuple[str, int]) -> bool:
        admission = self._parts.admission
        admission.connections += 1
        # cps guards against process floods: datagrams answered in-process
        # cost none, and the reply and amplification budgets bound them.
        refusal = admission.check(peer[0], countRate=False)
        if refusal is None:
            return True
        now = self._parts.seconds()
        last = self._failLogged.get(peer)
        if last is None or now - last >= DGRAM_FAIL_INTERVAL:
            if len(self._failLogged) > 4096:
                self._failLogged.clear()
            self._failLogged[peer] = now
            admission.refuse(refusal, peer[0])
        else:
            admission.deactivationPending(refusal)
        return False

    def datagramServed(self, serviceId: str, peer: Tuple[str, int]) -> None:
        self._parts.context.hooks.connection(serviceId)
        self._parts.log.start(0, peer)


__all__ = ["InternalDatagramKind"]
