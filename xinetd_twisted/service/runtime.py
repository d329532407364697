# -*- test-case-name: tests.test_daemon_superserver -*-
"""
One configured service as a Twisted L{IService}: its parts (log,
admission, children), its kind, and its own socket.

Like L{twisted.application.internet.StreamServerEndpointService}, it binds
in C{privilegedStartService} (falling back to C{startService}) and closes
in C{stopService}; its C{factory} serves it on any other endpoint too.
"""

from __future__ import annotations

import socket
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.sockets import (
    SocketSource,
    SocketSpec,
    specFor,
)
from xinetd_twisted.service.binding import ServiceSocket
from xinetd_twisted.service.context import DaemonContext
from xinetd_twisted.service.parts import ServiceParts
from xinetd_twisted.service.program import ProgramKind, WaitKind
from xinetd_twisted.service.readings import RuntimeReadings

if TYPE_CHECKING:
    from xinetd_twisted.service.inprocess import (
        InternalDatagramKind,
        InternalStreamKind,
        RedirectKind,
        TcpmuxKind,
    )

Kind = Union[
    ProgramKind,
    WaitKind,
    "InternalStreamKind",
    "InternalDatagramKind",
    "RedirectKind",
    "TcpmuxKind",
]

REACTIVATE_RETRY = 10.0
"""
Seconds between attempts to bind again a socket closed by cps.
"""


def kindFor(parts: ServiceParts) -> Kind:
    """
    The kind that serves a service, by its configuration.
    """
    service = parts.service
    if service.isInternal or service.redirect is not None:
        # The in-process kinds (and the builtins, redirect and tcpmux behind
        # them) are imported only when a service is served in-process.
        from xinetd_twisted.service import inprocess

        if not service.isInternal:
            return inprocess.RedirectKind(parts)
        if isTcpmux(service):
            return inprocess.TcpmuxKind(parts)
        if service.socketType == "dgram":
            return inprocess.InternalDatagramKind(parts)
        return inprocess.InternalStreamKind(parts)
    if service.wait:
        return WaitKind(parts)
    return ProgramKind(parts)


def logListening(listening: Sequence[Tuple[str, str]]) -> None:
    """
    Say where services listen: one event for all of C{listening}
    (C{(serviceId, where)} in the order they were bound), one line each,
    C{service ID listening on WHERE}.  At start-up a thousand services
    make one event, not a thousand: each event costs the log observers
    far more than its line (twistd's observer formats the time of, writes
    and flushes every event, about 30 us each).

    The event's C{listening} field is the list itself.
    """
    if not listening:
        return
    # The text is made here, once: braces in an id are escaped, not
    # formatted by the observers.
    text = "\n".join(
        [f"service {serviceId} listening on {where}" for serviceId, where in listening]
    )
    _listeningLog.info(
        text.replace("{", "{{").replace("}", "}}"), listening=list(listening)
    )


_listeningLog = Logger(namespace="xinetd_twisted.service")


def isTcpmux(service: ServiceConfig) -> bool:
    """
    Whether the internal service is the tcpmux multiplexer.
    """
    return service.name.lower() == "tcpmux" and service.socketType == "stream"


def hasRuntime(service: ServiceConfig) -> bool:
    """
    Whether a service gets a runtime of its own (tcpmux sub-services have
    no socket: the multiplexer serves them).
    """
    return service.isInternal or not service.isTcpmuxSubservice


class ServiceRuntime(RuntimeReadings, Service):
    """
    One configured service (what its readers see of it:
    L{RuntimeReadings}).

    @ivar name: the service id (for C{MultiService.getServiceNamed}).
    @ivar parts: its log, admission and children.
    @ivar kind: how its connections are served.
    @ivar requested: the socket the configuration asks for (compared on
        reload; the bound one may differ after an IPv6 -> IPv4 fallback).
    @ivar spec: the socket actually bound, or L{None}.
    @ivar inherited: where its socket comes from when it is not ours to
        bind (systemd socket activation), or L{None}.
    """

    daemonLog = Logger(namespace="xinetd_twisted.service")

    # Told each time the socket is bound (RPC registration); set per
    # runtime by the table (a class default: no closure per service).
    onBound: Callable[[ServiceRuntime], object] = staticmethod(lambda runtime: None)

    def __init__(self, context: DaemonContext, service: ServiceConfig) -> None:
        self.name: str = service.serviceId  # type: ignore[assignment]
        self._context = context
        self.parts = ServiceParts(context, service, self)
        self.kind: Kind = kindFor(self.parts)
        self.requested: Optional[SocketSpec] = specFor(service)
        self.spec: Optional[SocketSpec] = None
        self.binding = ServiceSocket(service.serviceId)
        self._reactivation: Any = None
        self._paused = False

    # --- what the daemon, the dump and tests read --------------------------

    @property
    def inherited(self) -> Optional[SocketSource]:
        """
        Where its socket comes from when systemd passed it (socket
        activation), or L{None}.
        """
        return self.binding.inherited

    @inherited.setter
    def inherited(self, source: Optional[SocketSource]) -> None:
        self.binding.inherited = source

    @property
    def service(self) -> ServiceConfig:
        return self.parts.service

    @property
    def serviceId(self) -> str:
        return self.parts.service.serviceId

    @property
    def factory(self) -> Any:
        """
        The service's L{IProtocolFactory} for any stream endpoint, or
        L{None} for wait-mode and datagram services.
        """
        return self.kind.factory

    @property
    def active(self) -> bool:
        return self.parts.active

    # --- IService ------------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Bind while still privileged.

        @raise OSError: when the socket cannot be created or bound.
        """
        super().privilegedStartService()
        self.activate()

    def startService(self) -> None:
        super().startService()
        if not self.parts.active and self._reactivation is None:
            self.activate()

    def stopService(self) -> Deferred:
        """
        Close the socket and forget pending retries.  Running servers are
        left alone, as xinetd leaves them, and stay in L{running}.
        """
        super().stopService()
        self.deactivate()
        return succeed(None)

    # --- the socket ----------------------------------------------------------

    def activate(self, announce: bool = True) -> Optional[str]:
        """
        Create and bind the socket, and start serving.

        @param announce: log where it listens (else the caller does, with
            others: L{logListening}).
        @return: where it listens now, or L{None} if it already did.
        @raise OSError: when the socket cannot be created or bound.
        """
        if self.parts.active:
            return None
        sock, spec, origin = self.binding.open(self.service, self.requested)
        return self.adopt(sock, spec, origin, announce)

    def adopt(
        self,
        sock: socket.socket,
        spec: Optional[SocketSpec],
        origin: str = "",
        announce: bool = True,
    ) -> str:
        """
        Serve on C{sock}, a socket bound for this service (by us, or
        inherited).

        @param origin: where it came from, for the log (C{inherited socket
            NAME (ADDRESS)}); by default its address.
        @param announce: log where it listens (see L{activate}).
        @return: where it listens, as the log says it.
        """
        self.spec = spec
        if hasattr(self.kind, "socketIsOurs"):
            # An inherited socket (systemd's) is never handed on.
            self.kind.socketIsOurs = not origin
        self.kind.open(sock)
        self.parts.active = True
        self.parts.setServing(True)
        if self._paused:
            self.kind.pause()
        where = origin or (
            spec.describe() if spec is not None else "an inherited socket"
        )
        if announce:
            logListening([(self.serviceId, where)])
        self.onBound(self)
        return where

    def deactivate(self) -> None:
        """
        Stop serving and close our socket.  Running children are left alone.
        """
        if self._reactivation is not None and self._reactivation.active():
            self._reactivation.cancel()
        self._reactivation = None
        parts = self.parts
        parts.setServing(False)
        if parts.built("children"):
            parts.children.cancelRetries()
        if self.parts.active:
            self.parts.active = False
            self.kind.close()
        self.binding.removePath()

    def deactivateFor(self, until: float) -> None:
        """
        cps tripped: close the socket (clients get ECONNREFUSED, as with
        xinetd) and bind it again when the pause ends.
        """
        if not self.parts.active:
            return
        self.parts.active = False
        self.kind.close()
        self.binding.removePath()
        delay = max(0.0, until - self.parts.seconds())
        self._reactivation = self._context.reactor.callLater(delay, self._reactivate)

    def _reactivate(self) -> None:
        self._reactivation = None
        try:
            self.activate()
        except OSError as e:
            self.daemonLog.error(
                "Error activating service {service}: {error}; retrying in 10 s",
                service=self.serviceId,
                error=e.strerror or str(e),
            )
            self._reactivation = self._context.reactor.callLater(
                REACTIVATE_RETRY, self._reactivate
            )
            return
        self.daemonLog.error("Activating service {service}", service=self.serviceId)

    @property
    def paused(self) -> bool:
        """
        Whether it stopped taking connections because its spawner is backed
        up.
        """
        return self._paused

    def pause(self) -> None:
        """
        Stop taking connections for a while (its spawner is backed up); they
        wait in the kernel's backlog.
        """
        self._paused = True
        if self.parts.active:
            self.kind.pause()

    def resume(self) -> None:
        """
        Take connections again after L{pause}.
        """
        self._paused = False
        if self.parts.active:
            self.kind.resume()

    # --- reload and removal --------------------------------------------------

    def update(self, service: ServiceConfig) -> None:
        """
        Take a new configuration in place, keeping the socket, the counters
        and the children.
        """
        self.parts.reconfigure(service)
        self.requested = specFor(service)
        self.kind.update(service)
        if self.binding.reapply(self.requested):
            self.spec = self.requested

    def setSubservices(self, subservices: Iterable[ServiceConfig]) -> None:
        """
        The tcpmux sub-services it may hand connections to (tcpmux only).
        """
        if self.service.isInternal and isTcpmux(self.service):
            from xinetd_twisted.service.inprocess import TcpmuxKind

            assert isinstance(self.kind, TcpmuxKind)
            self.kind.setSubservices(subservices)

    def endServers(self, signum: int) -> None:
        """
        The service is gone: send its children C{signum} and end its
        in-process connections, as xinetd ends the servers it forked.
        """
        if self.parts.built("children"):
            self.parts.children.signal(signum)
        self.kind.endConnections()
