# -*- test-case-name: tests.test_daemon_superserver -*-
"""
The parts of one service, composed: its log, its admission and its
children.  The kinds serve connections through these parts and nothing
else.
"""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger

from xinetd_twisted.config.builtins import builtinFor
from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.logs.service import ServiceLog
from xinetd_twisted.policy.access import ServicePolicy
from xinetd_twisted.service.admission import Admission
from xinetd_twisted.service.children import Children
from xinetd_twisted.service.context import DaemonContext
from xinetd_twisted.service.front import ServiceFront


def countsInstances(service: ServiceConfig) -> bool:
    """
    Whether the servers of C{service} count towards C{instances},
    C{per_source} and the process limit: programs and redirects do, and
    the internal services xinetd forks for.
    """
    if not service.isInternal:
        return True
    builtin = builtinFor(service.name, service.socketType)
    return builtin is not None and builtin.forks


class ServiceParts:
    """
    One service's log, admission and children, and the configuration they
    serve (swapped in place on reload).

    @ivar front: its TLS and trusted proxies (L{ServiceFront}).
    @ivar active: whether the service's socket is open and served.
    """

    __slots__ = (
        "context",
        "service",
        "log",
        "admission",
        "children",
        "front",
        "active",
    )

    daemonLog = Logger(namespace="xinetd_twisted.service")

    def __init__(
        self,
        context: DaemonContext,
        service: ServiceConfig,
        deactivateFor: Callable[[float], None],
    ) -> None:
        self.context = context
        self.service = service
        self.log = ServiceLog.fromConfig(service, context.sinks.sinkFor(service))
        self.admission = Admission(context, service, self.log, deactivateFor)
        self.children = Children(
            context,
            service,
            policy=self._policy,
            log=self._log,
            recheck=self.admission.recheckAccess,
            countsInstances=countsInstances(service),
        )
        self.front = ServiceFront(service)
        self.active = False

    # Bound methods rather than lambdas: a thousand services keep two
    # closures and their cells less each.

    def _policy(self) -> ServicePolicy:
        return self.admission.policy

    def _log(self) -> ServiceLog:
        return self.log

    def reconfigure(self, service: ServiceConfig) -> None:
        """
        Take a reloaded configuration, keeping counts and children.
        """
        self.service = service
        if self.log.sink is not None:
            self.log.sink.reopen()
        self.log = ServiceLog.fromConfig(service, self.context.sinks.sinkFor(service))
        self.admission.reconfigure(service, self.log)
        self.children.reconfigure(service)
        self.front.reconfigure(service)

    def seconds(self) -> float:
        """
        The daemon's clock.
        """
        return self.context.policy.seconds()
