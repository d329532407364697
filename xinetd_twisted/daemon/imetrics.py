# -*- test-case-name: tests.test_daemon_metrics -*-
"""
What the daemon tells its metrics (L{IMetrics}), and L{NullMetrics}, the
metrics of a daemon without C{--metrics}: the daemon imports this module at
every start, L{xinetd_twisted.daemon.metrics} only for C{--metrics}.
"""

from __future__ import annotations

from zope.interface import implementer

from xinetd_twisted.service.context import IServiceHooks, NoHooks


class IMetrics(IServiceHooks):
    """
    What the runtime tells the metrics, one call per event (the service
    events of L{IServiceHooks}, and the daemon's).
    """

    def reloaded(success: bool) -> None:
        """
        A reload (SIGHUP) ended, applied or refused.
        """

    def listening(serviceId: str, address: str) -> None:
        """
        The service listens at C{address} (a readable description); replaces
        an earlier address of the same service.
        """

    def removed(serviceId: str) -> None:
        """
        The service no longer listens (its counters stay).
        """


@implementer(IMetrics)
class NullMetrics(NoHooks):
    """
    The metrics of a daemon without C{--metrics}: every call does nothing.
    """

    def reloaded(self, success: bool) -> None:
        pass

    def listening(self, serviceId: str, address: str) -> None:
        pass

    def removed(self, serviceId: str) -> None:
        pass
