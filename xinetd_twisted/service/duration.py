# -*- test-case-name: tests.test_service_duration -*-
"""
C{max_duration = SECONDS} (our extension): how long one server or one
in-process connection may last.

A server still running after C{SECONDS} is sent SIGTERM, and SIGKILL
L{KILL_GRACE} seconds later if it is still there; an in-process
connection (internal, redirect, tcpmux before the hand-off) is closed.
Both are logged in the daemon's log.  The clock is the daemon's reactor.
"""

from __future__ import annotations

import signal
import weakref
from typing import Any, Callable, Iterator, Optional

from twisted.logger import Logger

KILL_GRACE = 5.0
"""
Seconds between SIGTERM and SIGKILL for a server over its C{max_duration}.
"""

_log = Logger(namespace="xinetd_twisted.service")


class ServerDeadline:
    """
    The C{max_duration} timers of one running server.
    """

    def __init__(
        self,
        reactor: Any,
        signalChild: Callable[[int, int], None],
        serviceId: str,
        pid: int,
        seconds: float,
        grace: float = KILL_GRACE,
    ) -> None:
        """
        @param signalChild: the spawner's C{signalChild(pid, signal)}.
        """
        self._reactor = reactor
        self._signalChild = signalChild
        self._serviceId = serviceId
        self._pid = pid
        self._seconds = seconds
        self._grace = grace
        self._timer: Any = reactor.callLater(seconds, self._terminate)

    @property
    def pending(self) -> bool:
        """
        Whether a signal is still to be sent.
        """
        return self._timer is not None and self._timer.active()

    def _terminate(self) -> None:
        _log.warn(
            "service {service}: server {pid} still running after max_duration "
            "{seconds} s: sending signal 15",
            service=self._serviceId,
            pid=self._pid,
            seconds=self._seconds,
        )
        self._timer = self._reactor.callLater(self._grace, self._kill)
        self._send(signal.SIGTERM)

    def _kill(self) -> None:
        self._timer = None
        _log.warn(
            "service {service}: server {pid} still running {grace} s after "
            "SIGTERM: sending signal 9",
            service=self._serviceId,
            pid=self._pid,
            grace=self._grace,
        )
        self._send(signal.SIGKILL)

    def _send(self, signum: int) -> None:
        try:
            self._signalChild(self._pid, int(signum))
        except Exception:
            _log.failure(
                "service {service}: signalling server {pid}",
                service=self._serviceId,
                pid=self._pid,
            )

    def cancel(self) -> None:
        """
        The server ended: no signal is sent.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def serverDeadline(context: Any, service: Any, pid: int) -> Optional[ServerDeadline]:
    """
    The deadline of a server just started for C{service}, or L{None} when
    it has no C{max_duration}.

    @param context: the daemon's L{DaemonContext} (its reactor and spawner).
    @param service: the service's L{ServiceConfig}.
    """
    seconds = getattr(service, "maxDuration", None)
    if not seconds:
        return None
    return ServerDeadline(
        context.reactor, context.spawner.signalChild, service.serviceId, pid, seconds
    )


class LimitedConnections:
    """
    The in-process connections of one service (a weak set of protocols,
    as the kinds keep to end them on removal), each closed when it has
    lasted the service's C{max_duration}.
    """

    def __init__(self, reactor: Any, service: Callable[[], Any]) -> None:
        """
        @param service: the service's configuration now (it changes on
            reload; a connection keeps the limit it started with).
        """
        self._reactor = reactor
        self._service = service
        self._protocols: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._timers: "weakref.WeakKeyDictionary[Any, Any]" = (
            weakref.WeakKeyDictionary()
        )

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._protocols))

    def __len__(self) -> int:
        return len(self._protocols)

    def add(self, protocol: Any) -> None:
        """
        Track a connection's protocol (with a transport, now or soon) and
        start its clock.
        """
        if protocol in self._protocols:
            return
        self._protocols.add(protocol)
        service = self._service()
        seconds = getattr(service, "maxDuration", None)
        if not seconds:
            return
        timers: list = []

        def gone(ref: Any) -> None:
            # The connection ended and its protocol was collected: no timer
            # should outlive it in the reactor.
            for timer in timers:
                if timer.active():
                    timer.cancel()

        ref = weakref.ref(protocol, gone)
        timer = self._reactor.callLater(
            seconds, self._expire, ref, service.serviceId, seconds
        )
        timers.append(timer)
        self._timers[protocol] = timer

    def _expire(self, ref: Any, serviceId: str, seconds: float) -> None:
        protocol = ref()
        if protocol is None:
            return
        self._timers.pop(protocol, None)
        if getattr(protocol, "handedOff", False) or getattr(
            getattr(protocol, "inner", None), "handedOff", False
        ):
            # A tcpmux connection now belongs to a server: the server's
            # own max_duration applies.
            return
        transport = getattr(protocol, "transport", None)
        if transport is None or not getattr(transport, "connected", True):
            return
        peer: Any = None
        try:
            peer = transport.getPeer()
        except Exception:
            pass
        _log.warn(
            "service {service}: closing the connection from {peer} after "
            "max_duration {seconds} s",
            service=serviceId,
            peer=getattr(peer, "host", peer),
            seconds=seconds,
        )
        transport.abortConnection()

    def cancelAll(self) -> None:
        """
        Stop every clock (the connections themselves are left alone).
        """
        for timer in list(self._timers.values()):
            if timer.active():
                timer.cancel()
        self._timers.clear()
