# -*- test-case-name: tests.test_integration_ops -*-
"""
How the running daemon meets the world outside its services: xinetd's
signals, systemd readiness and watchdog, the metrics endpoint, the daemon's
own syslog, the SENSOR list's expiry, and the descriptor budget.
"""

from __future__ import annotations

import resource
import signal
from typing import Any, List, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger, globalLogPublisher

from xinetd_twisted.daemon.imetrics import IMetrics
from xinetd_twisted.daemon.notify import SystemdNotifier
from xinetd_twisted.daemon.signals import SignalHandlers
from xinetd_twisted.logs.daemonsyslog import DaemonSyslogObserver
from xinetd_twisted.service.context import DaemonContext

DESCRIPTOR_RESERVE = 256
"""
Descriptors in-process connections never take: kept for accepting,
spawning, logs and the daemon's own needs.
"""

SENSOR_SCRUB_INTERVAL = 60.0
"""
Seconds between two expiries of the SENSOR list's entries.
"""

_log = Logger(namespace="xinetd_twisted.daemon")


def budgetDescriptors(
    context: DaemonContext, serviceCount: int, raiseLimit: bool
) -> None:
    """
    Raise the soft descriptor limit to the hard one (when C{raiseLimit}),
    and leave L{DESCRIPTOR_RESERVE} of them, and one per service, out of
    what in-process connections may hold.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raiseLimit and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError) as e:
            _log.warn("cannot raise the descriptor limit: {error}", error=e)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    context.descriptors.limit = max(16, soft - DESCRIPTOR_RESERVE - serviceCount)


class Operations:
    """
    The daemon's outward duties while it runs, for one L{SuperServer}.

    @ivar notifier: tells systemd about readiness, reloads and stops.
    @ivar metrics: the counters, served on C{options.metrics} when set.
    """

    def __init__(
        self,
        server: Any,
        reactor: Any,
        metrics: IMetrics,
        notifier: SystemdNotifier,
    ) -> None:
        """
        @param server: the L{SuperServer}: its C{options}, C{context},
            C{reload}, C{terminate}, C{quit}, C{dump}, C{serviceCount} and
            C{exitIfNothingServed}.
        """
        self._server = server
        self._reactor = reactor
        self.metrics = metrics
        self.notifier = notifier
        self._signals = SignalHandlers(reactor)
        self._ownSyslog: Optional[DaemonSyslogObserver] = None
        self._metricsPort: Any = None
        self._scrub: Any = None
        self._running = False

    def start(self) -> None:
        """
        Serve metrics, send the daemon's messages to syslog if asked, take
        over SIGHUP (and SIGUSR1), and finish starting once the reactor
        runs.
        """
        options = self._server.options
        self._running = True
        if self._scrub is None:
            self._scrub = self._reactor.callLater(
                SENSOR_SCRUB_INTERVAL, self._scrubSensor
            )
        if options.metrics is not None and self._metricsPort is None:
            self._listenMetrics(options.metrics)
        if options.syslogFacility is not None and self._ownSyslog is None:
            self._ownSyslog = DaemonSyslogObserver(
                self._server.context.sinks.syslog, options.syslogFacility
            )
            globalLogPublisher.addObserver(self._ownSyslog)
        self._signals.handle(
            options.reloadSignals, lambda signum: self._server.reload(), "reloading"
        )
        if options.stopSignals:
            # twistd rotates its --logfile on SIGUSR1: keep doing that too,
            # first, so that the dump's messages go to the new file.
            self._signals.handle(
                (signal.SIGUSR1,),
                lambda signum: self._server.dump(),
                "dumping state",
                chain=True,
            )
        # The reactor installs its SIGTERM handler as it starts running
        # (after this, under twistd): take over once it runs.
        whenRunning = getattr(self._reactor, "callWhenRunning", None)
        if whenRunning is None:
            self._ready()
        else:
            whenRunning(self._ready)

    def _ready(self) -> None:
        """
        The reactor runs: handle SIGTERM/SIGQUIT, and say so only now, when
        every signal does what xinetd's does.
        """
        if not self._running:
            return
        server = self._server
        if server.options.stopSignals:
            self._signals.handle((signal.SIGTERM,), self._onStop, "stopping")
            self._signals.handle((signal.SIGQUIT,), self._onStop, "exiting")
        _log.info(
            "Started working: {count} available service(s)",
            count=server.serviceCount(),
        )
        self.notifier.ready(self._status())
        self.notifier.startWatchdog()
        server.exitIfNothingServed("no services. Exiting...")

    def _onStop(self, signum: int) -> None:
        if signum == signal.SIGTERM:
            self._server.terminate()
        else:
            self._server.quit()

    def _status(self) -> str:
        return f"{self._server.serviceCount()} services"

    def reloading(self) -> None:
        """
        A reload begins.
        """
        self.notifier.reloading()

    def reloaded(self, success: bool) -> None:
        """
        A reload ended, applied or refused: either way the daemon is ready.
        """
        self.metrics.reloaded(success)
        self.notifier.ready(self._status())
        if not success:
            self.notifier.status(f"reload failed; {self._status()}")

    def stop(self) -> List[Deferred]:
        """
        Give everything back; fires-when-done Deferreds for the caller to
        wait on.
        """
        self._running = False
        self.notifier.stopWatchdog()
        self.notifier.stopping()
        self._signals.restore()
        if self._ownSyslog is not None:
            globalLogPublisher.removeObserver(self._ownSyslog)
            self._ownSyslog = None
        if self._scrub is not None and self._scrub.active():
            self._scrub.cancel()
        self._scrub = None
        waits: List[Deferred] = []
        if self._metricsPort is not None:
            waits.append(self._metricsPort.stopListening())
            self._metricsPort = None
        self.notifier.close()
        return waits

    def _listenMetrics(self, description: str) -> None:
        def listening(port: Any) -> None:
            self._metricsPort = port
            _log.info("metrics at {where}/metrics", where=description)

        def failed(reason: Any) -> None:
            _log.error(
                "cannot serve metrics on {where}: {error}",
                where=description,
                error=reason.getErrorMessage(),
            )

        try:
            d = self.metrics.listen(self._reactor, description)  # type: ignore[attr-defined]
        except ValueError as e:
            _log.error(
                "cannot serve metrics on {where}: {error}", where=description, error=e
            )
            return
        d.addCallbacks(listening, failed)

    def _scrubSensor(self) -> None:
        sensor = self._server.context.policy.sensorList
        if sensor is not None and sensor.scrub():
            _log.info("At least 1 DENY_TIME has expired, global_no_access list updated")
        self._scrub = self._reactor.callLater(SENSOR_SCRUB_INTERVAL, self._scrubSensor)
