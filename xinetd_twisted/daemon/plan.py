# -*- test-case-name: tests.test_daemon_plan -*-
"""
The reload plan: a pure function from the services running now and a newly
loaded configuration to what must happen to each service (keep and update
in place, rebind, start, stop), tested without sockets.
"""

from __future__ import annotations

from typing import List, Mapping, Tuple

import attr

from xinetd_twisted.config.model import Config, ServiceConfig
from xinetd_twisted.listen.sockets import specFor
from xinetd_twisted.records import plainRepr


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Plan:
    """
    What a reload does, in this order: L{stop}, then L{update}, then
    L{start}.

    @ivar stop: running service ids to stop (removed, or rebound: those
        appear in L{start} too).
    @ivar update: C{(running id, new configuration)}: same socket, new
        settings in place (socket, counters and children kept).
    @ivar start: configurations to bind and start.
    @ivar subservices: the tcpmux sub-services of the new configuration.
    @ivar kept: running service ids left exactly as they run, because the
        new configuration has errors where they are defined: their new
        definition is broken, or they vanished from a file with errors (a
        mistake in a reload never stops a running service).
    """

    stop: Tuple[str, ...] = ()
    update: Tuple[Tuple[str, ServiceConfig], ...] = ()
    start: Tuple[ServiceConfig, ...] = ()
    subservices: Tuple[ServiceConfig, ...] = ()
    kept: Tuple[str, ...] = ()

    @property
    def rebound(self) -> Tuple[str, ...]:
        """
        Services stopped only to be bound again with their new socket.
        """
        starting = {s.serviceId.lower() for s in self.start}
        return tuple(s for s in self.stop if s.lower() in starting)


def sameSocket(current: ServiceConfig, new: ServiceConfig) -> bool:
    """
    Whether a reloaded service is the same service on the same socket
    (xinetd's identity: id, type, wait, protocol, socket type, port) and the
    same bind address and family (which otherwise force a rebind).
    """
    wanted, requested = specFor(new), specFor(current)
    if wanted is None or requested is None:
        return False
    return (
        wanted.identity() == requested.identity()
        and current.wait == new.wait
        and current.isInternal == new.isInternal
        and (current.redirect is None) == (new.redirect is None)
        and current.types == new.types
        and current.name.lower() == new.name.lower()
        # TLS and PROXY choose the listener: turning either on or off rebinds.
        and (current.tlsCertificate is None) == (new.tlsCertificate is None)
        and (current.proxyProtocol is None) == (new.proxyProtocol is None)
    )


def ownsSocket(service: ServiceConfig) -> bool:
    """
    Whether a service has a runtime of its own (tcpmux sub-services have no
    socket: the multiplexer serves them).
    """
    return service.isInternal or not service.isTcpmuxSubservice


def planReload(running: Mapping[str, ServiceConfig], config: Config) -> Plan:
    """
    The plan that takes C{running} (id -> the configuration it runs) to
    C{config}.
    """
    byLower = {serviceId.lower(): serviceId for serviceId in running}
    stop: List[str] = []
    update: List[Tuple[str, ServiceConfig]] = []
    start: List[ServiceConfig] = []
    seen = set()
    for service in config.services:
        if not ownsSocket(service):
            continue
        current = byLower.get(service.serviceId.lower())
        if current is not None:
            seen.add(current)
            if sameSocket(running[current], service):
                update.append((current, service))
                continue
            stop.append(current)
        start.append(service)
    kept: List[str] = []
    for serviceId in running:
        if serviceId in seen:
            continue
        if (
            serviceId.lower() in config.droppedServices
            or running[serviceId].configFile in config.filesWithErrors
        ):
            kept.append(serviceId)
        else:
            stop.append(serviceId)
    return Plan(
        stop=tuple(stop),
        update=tuple(update),
        start=tuple(start),
        subservices=tuple(s for s in config.services if s.isTcpmuxSubservice),
        kept=tuple(kept),
    )
