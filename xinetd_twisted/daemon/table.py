# -*- test-case-name: tests.test_daemon_superserver -*-
"""
The table of service runtimes a L{SuperServer} holds as its children:
building, binding and removing them, carrying out a reload L{Plan}, and
the removed services whose servers still run.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from xinetd_twisted.config.model import Config, ServiceConfig
from xinetd_twisted.daemon.plan import Plan
from xinetd_twisted.daemon.pressure import BackPressure
from xinetd_twisted.service.context import DaemonContext
from xinetd_twisted.service.runtime import ServiceRuntime, logListening

if TYPE_CHECKING:
    from xinetd_twisted.daemon.activation import InheritedSocket, InheritedSockets
    from xinetd_twisted.daemon.imetrics import IMetrics
    from xinetd_twisted.daemon.rpc import RpcRegistrations


class SocketInheritance:
    """
    Socket activation's part of the table: which of the sockets systemd
    passed each service serves on, and giving each runtime its own.

    @ivar inheritedFor: the socket systemd passed for a service, by
        lower-case id.
    """

    def __init__(self) -> None:
        self.inheritedFor: Dict[str, InheritedSocket] = {}

    def assign(self, inherited: Optional[InheritedSockets], config: Config) -> None:
        """
        Which of the sockets systemd passed (L{None}: none) each service of
        C{config} serves on.
        """
        if inherited is not None and inherited.sockets:
            self.inheritedFor = inherited.assign(config.services)

    def logUnused(self, inherited: Optional[InheritedSockets]) -> None:
        """
        Log the passed sockets no service uses.
        """
        if inherited is not None and inherited.sockets:
            inherited.logUnused(self.inheritedFor)

    def give(self, runtime: ServiceRuntime) -> None:
        """
        Give a runtime its inherited socket, if systemd passed one for it.
        """
        if not self.inheritedFor:
            # Nothing passed (the common case): no lookup per service.
            if runtime.inherited is not None:
                runtime.inherited = None
            return
        inherited = self.inheritedFor.get(runtime.serviceId.lower())
        runtime.inherited = (
            None if inherited is None else inherited.sourceFor(runtime.service)
        )


class ServiceTable:
    """
    The runtimes of one daemon, kept as children of C{collection}.

    @ivar draining: runtimes of services a reload removed whose servers
        have not all been reaped yet (for their EXIT lines and the dump).
    @ivar rpc: the rpcbind registrations of the RPC services (made, with
        their portmap client, on first use: most configurations have no RPC
        service).
    @ivar inheritance: which socket systemd passed each service serves on.
    @ivar pressure: told by the spawner when it is backed up or has caught
        up for a credential set (L{BackPressure.changed}).
    """

    log = Logger(namespace="xinetd_twisted.daemon")

    def __init__(
        self,
        collection: MultiService,
        context: DaemonContext,
        metrics: IMetrics,
        rpc: Optional[RpcRegistrations] = None,
    ) -> None:
        self._collection = collection
        self._context = context
        self._metrics = metrics
        self._rpc = rpc
        self.draining: List[ServiceRuntime] = []
        self.inheritance = SocketInheritance()
        self.pressure = BackPressure(self).changed

    @property
    def rpc(self) -> RpcRegistrations:
        if self._rpc is None:
            from xinetd_twisted.daemon.rpc import RpcRegistrations
            from xinetd_twisted.protocols.portmap import PortmapClient

            self._rpc = RpcRegistrations(PortmapClient(self._context.reactor))
        return self._rpc

    @rpc.setter
    def rpc(self, registrations: RpcRegistrations) -> None:
        self._rpc = registrations

    def stopRpc(self) -> Deferred:
        """
        The daemon stops: unset every rpcbind mapping (if any were made).
        """
        return succeed(None) if self._rpc is None else self._rpc.stop()

    def __iter__(self) -> Any:
        return iter(list(self._collection))

    def add(
        self, service: ServiceConfig, subservices: Sequence[ServiceConfig]
    ) -> Optional[ServiceRuntime]:
        """
        Build a service's runtime and make it a child; one that cannot be
        built is logged and left out (one broken service never takes the
        others down).
        """
        try:
            runtime = ServiceRuntime(self._context, service)
            runtime.setSubservices(subservices)
            self._followBinds(runtime)
        except Exception:
            self.log.failure(
                "Service {service} failed to start and is deactivated.",
                service=service.serviceId,
            )
            return None
        # addService starts it at once while we run (a reload): say first
        # where its socket comes from.
        self.inheritance.give(runtime)
        self._collection.addService(runtime)
        return runtime

    def _followBinds(self, runtime: ServiceRuntime) -> None:
        """
        Have an RPC service's binds registered with rpcbind.  Only RPC
        services are followed (the registrations ignore the others): a
        thousand plain ones keep no bound method each.
        """
        if "RPC" in runtime.service.types:
            runtime.onBound = self.rpc.runtimeBound

    def bindAll(self, runtimes: Sequence[ServiceRuntime]) -> None:
        """
        L{bind} each of C{runtimes}, then say where they listen in one
        event (L{logListening}).
        """
        listening: List[Tuple[str, str]] = []
        for runtime in runtimes:
            self.bind(runtime, listening)
        logListening(listening)

    def bind(
        self,
        runtime: ServiceRuntime,
        listening: Optional[List[Tuple[str, str]]] = None,
    ) -> bool:
        """
        Bind a runtime's socket (and serve, when the daemon runs); one that
        cannot be bound is logged and removed.

        @param listening: where to add C{(serviceId, where)} once bound,
            for the caller to log; by default the runtime logs it.
        """
        self.inheritance.give(runtime)
        try:
            if listening is None:
                runtime.privilegedStartService()
            else:
                where = runtime.activate(announce=False)
                if where is not None:
                    listening.append((runtime.serviceId, where))
        except OSError as e:
            self.log.error(
                "bind failed for service {service} ({error}); "
                "Service {service} failed to start and is deactivated.",
                service=runtime.serviceId,
                error=e.strerror or str(e),
            )
        except Exception:
            self.log.failure(
                "Service {service} failed to start and is deactivated.",
                service=runtime.serviceId,
            )
        else:
            if self._collection.running:
                runtime.startService()
            if runtime.spec is not None:
                self._metrics.listening(runtime.serviceId, runtime.spec.describe())
            return True
        self._collection.removeService(runtime)
        runtime.deactivate()
        return False

    def start(
        self,
        service: ServiceConfig,
        subservices: Sequence[ServiceConfig],
        listening: Optional[List[Tuple[str, str]]] = None,
    ) -> bool:
        """
        Build, bind and serve a new service.

        @param listening: as for L{bind}.
        """
        runtime = self.add(service, subservices)
        return runtime is not None and self.bind(runtime, listening)

    def drop(self, runtime: ServiceRuntime) -> None:
        """
        A service is gone (or changed identity): close its socket, forget
        its pending spawn retries and end its servers as xinetd does
        (SIGKILL for programs).
        """
        runtime.deactivate()
        if self._rpc is not None:
            self._rpc.remove(runtime.serviceId)
        for pid in sorted(runtime.servers):
            self.log.info(
                "Sending signal 9 to {service} server {pid}",
                service=runtime.serviceId,
                pid=pid,
            )
        runtime.endServers(int(signal.SIGKILL))
        self._collection.removeService(runtime)
        self._metrics.removed(runtime.serviceId)
        if runtime.servers:
            self.draining.append(runtime)
        self.log.info("service {service} deactivated", service=runtime.serviceId)

    def apply(self, plan: Plan) -> None:
        """
        Carry out a reload plan.
        """
        collection = self._collection
        # Stop first: a new service may want a port a stopped one holds.
        for serviceId in plan.stop:
            self.drop(collection.getServiceNamed(serviceId))
        for serviceId, service in plan.update:
            runtime = collection.getServiceNamed(serviceId)
            if service.serviceId != runtime.name:
                # Same service, id spelled differently: keep it, renamed.
                collection.removeService(runtime)
                runtime.name = service.serviceId
                collection.addService(runtime)
                runtime.startService()
            runtime.update(service)
            runtime.setSubservices(plan.subservices)
            self._followBinds(runtime)
            if self._rpc is not None or "RPC" in service.types:
                self.rpc.runtimeUpdated(runtime)
            self.log.info("readjusting service {service}", service=service.serviceId)
        listening: List[Tuple[str, str]] = []
        started = [s for s in plan.start if self.start(s, plan.subservices, listening)]
        logListening(listening)
        for serviceId in plan.kept:
            runtime = collection.getServiceNamed(serviceId)
            runtime.setSubservices(plan.subservices)
            self.log.warn(
                "service {service} keeps its old definition: the new "
                "configuration has errors where it is defined ({where})",
                service=serviceId,
                where=runtime.service.configFile,
            )
        self._context.sinks.closeUnused([r.service for r in self.withDraining()])
        self.log.info(
            "Reconfigured: new={new} old={old} dropped={dropped} kept={kept} "
            "(services)",
            new=len(started),
            old=len(plan.update),
            dropped=len(plan.stop),
            kept=len(plan.kept),
        )

    def stillDraining(self) -> List[ServiceRuntime]:
        """
        The removed services whose servers still run.
        """
        self.draining = [r for r in self.draining if r.servers]
        return self.draining

    def withDraining(self) -> List[ServiceRuntime]:
        """
        The services, and the removed ones whose servers still run.
        """
        return list(self) + self.stillDraining()

    def runningChildren(self) -> List[Tuple[ServiceRuntime, int]]:
        """
        C{(runtime, pid)} of every server started and not yet reaped.
        """
        return [
            (runtime, pid) for runtime in self.withDraining() for pid in runtime.servers
        ]

    def removeAll(self) -> None:
        """
        Forget every runtime (the daemon stopped them).
        """
        for runtime in self:
            self._collection.removeService(runtime)
        self.draining.clear()
