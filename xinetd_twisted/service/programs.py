# -*- test-case-name: tests.test_integration_stream -*-
"""
Services that start a program: stream C{wait = no} (each connection becomes
a child's fds 0-2) and C{wait = yes} (the socket itself goes to the child).

Both go through the shared pipeline of L{ServiceRuntime} (banner, policy,
refusal, log) and the one spawner.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

from xinetd_twisted.listen.sockets import numericHost
from xinetd_twisted.listen.wait import WaitDescriptor
from xinetd_twisted.protocols.ident import queryIdent
from xinetd_twisted.service.banners import sendNoWait
from xinetd_twisted.service.runtime import AcceptingRuntime, ServiceRuntime


class SpawningStreamRuntime(AcceptingRuntime):
    """
    Stream C{wait = no} with a program: each connection becomes a child's
    fds 0, 1 and 2; the parent keeps nothing, so the client sees EOF when
    the child exits.
    """

    def _connection(self, fd: int, address: object) -> None:
        try:
            peer = numericHost(address)
            self._admit(fd, peer, lambda admitted: self._serve(admitted, peer, address))
        finally:
            os.close(fd)

    def _serve(self, fd: int, peer: str, address: Any) -> None:
        if "USERID" in self.service.logOnSuccess:
            self._identThenSpawn(fd, peer, address)
            return
        success = self._banners.success
        if success:
            sendNoWait(fd, success)
        self._spawn(fd, peer)

    def _identThenSpawn(self, fd: int, peer: str, address: Any) -> None:
        """
        USERID logging: ask the client's identd.  With IDONLY the server
        starts only once identd has answered; otherwise it starts at once
        and the answer is logged when it comes (xinetd makes every client
        wait for it).
        """
        sock = socket.socket(fileno=os.dup(fd))
        try:
            localAddress = sock.getsockname()
        finally:
            sock.close()
        d = queryIdent(
            self._context.reactor,
            localAddress,
            address,
            timeout=None
            if "IDONLY" in self.service.flags
            else self._context.identTimeout,
            identPort=self._context.identPort,
        )
        if "IDONLY" not in self.service.flags:
            d.addCallback(self.log.identified, peer)
            success = self._banners.success
            if success:
                sendNoWait(fd, success)
            self._spawn(fd, peer)
            return
        held = os.dup(fd)
        if self.countsInstances:
            self.policy.started(peer)

        def answered(result: Any) -> None:
            try:
                if self.countsInstances:
                    self.policy.ended(peer)
                self.log.identified(result, peer)
                if result.userid is None:
                    return
                success = self._banners.success
                if success:
                    sendNoWait(held, success)
                self._spawn(held, peer)
            finally:
                os.close(held)

        d.addCallback(answered)


class WaitRuntime(ServiceRuntime):
    """
    C{wait = yes} with a program: the child gets the socket itself (the
    listening socket for stream, the bound socket with the datagram still
    queued for dgram) and the daemon stops watching it until the child
    exits.
    """

    _waiter: Optional[WaitDescriptor] = None
    countsInstances = True

    def _open(self, sock: socket.socket) -> None:
        self._waiter = WaitDescriptor(
            self._context.reactor, sock, self._ready, self.serviceId
        )
        self._waiter.startReading()

    def _close(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None

    def _ready(self, address: Optional[object]) -> None:
        waiter = self._waiter
        assert waiter is not None
        peer = numericHost(address) if address is not None else None
        self.connections += 1
        refusal = self.policy.check(peer, self._cachedName(peer))
        if refusal is not None:
            self._refuse(refusal, peer)
            self._drainRefused(waiter)
            return
        self._spawn(waiter.fileno(), peer)

    def _drainRefused(self, waiter: WaitDescriptor) -> None:
        """
        A refused datagram is read and dropped (xinetd drains); a refused
        stream connection is accepted and closed.
        """
        sock = waiter.socket
        try:
            if sock.type == socket.SOCK_DGRAM:
                sock.recvfrom(1, socket.MSG_DONTWAIT)
            else:
                conn, _ = sock.accept()
                conn.close()
        except OSError:
            pass
        if self._waiter is waiter:
            waiter.childDone()

    def _childGone(self) -> None:
        if self._waiter is not None and self.active:
            dropped = self._waiter.childDone()
            if dropped is not None:
                self.daemonLog.warn(
                    "service {service}: the server exited without reading the "
                    "datagram from {peer}; discarded it",
                    service=self.serviceId,
                    peer=numericHost(dropped),
                )
