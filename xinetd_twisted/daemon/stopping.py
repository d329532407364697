# -*- test-case-name: tests.test_daemon_superserver -*-
"""
How the daemon ends: on SIGQUIT, on SIGTERM (at once, or with the graceful
stop of C{--graceful-stop}: wait for running servers, then send the rest
SIGTERM, then exit), and on its own when no service is left.
"""

from __future__ import annotations

import atexit
import os
import signal
from typing import Any, Callable, Optional

from twisted.logger import Logger

TERM_GRACE = 2.0
"""
Seconds left to servers sent SIGTERM by a graceful stop to end (and have
their EXIT lines logged) before the daemon exits anyway.
"""

POLL_INTERVAL = 0.1

_log = Logger(namespace="xinetd_twisted.daemon")


class DaemonEnding:
    """
    Owns how a L{SuperServer} ends: SIGQUIT, SIGTERM (and whether a
    graceful stop is under way), and the exit when no service is left.

    @ivar terminating: whether a graceful stop is under way (reloads are
        then refused).
    """

    def __init__(
        self,
        server: Any,
        reactor: Any,
        exitProcess: Optional[Callable[[int], None]] = None,
    ) -> None:
        """
        @param server: the L{SuperServer}.
        @param exitProcess: called with an exit status when the daemon must
            end on its own; by default stops the reactor and makes the
            process exit with that status.
        """
        self._server = server
        self._reactor = reactor
        self._exitProcess = exitProcess or self._stopWithStatus
        self.terminating = False

    def exitIfNothingServed(self, message: str) -> bool:
        """
        xinetd exits when no service is available, unless C{-stayalive}.

        @return: whether the daemon goes on.
        """
        server = self._server
        if server.namedServices or server.options.stayalive:
            return True
        _log.critical(message)
        self._exitProcess(1)
        return False

    def _stopWithStatus(self, status: int) -> None:
        # twistd exits 0 once the reactor has stopped and the pidfile is
        # removed; the status is set at interpreter exit, after all that.
        if status:
            atexit.register(os._exit, status)
        self._reactor.stop()

    def quit(self) -> None:
        """
        SIGQUIT: close every socket and exit with status 0; running servers
        are left alone.
        """
        _log.warn("Exiting...")
        self._reactor.stop()

    def terminate(self) -> None:
        """
        SIGTERM.  As xinetd: the servers of internal and redirect services
        end (ours run inside the daemon, so their connections close with
        it) and ordinary servers are left running.  With L{DaemonOptions}
        C{gracefulStop}: stop accepting, wait that long for running servers,
        send the rest SIGTERM, then exit.
        """
        server = self._server
        grace = server.options.gracefulStop
        if not grace:
            self.quit()
            return
        if self.terminating:
            return
        self.terminating = True
        for runtime in server:
            runtime.deactivate()
        gracefulStop(server, grace)


def gracefulStop(server: Any, grace: float) -> None:
    """
    C{server} (a L{SuperServer}) no longer accepts: wait up to C{grace}
    seconds for its servers, SIGTERM the rest, then quit.
    """
    reactor = server.context.reactor
    _log.info(
        "Graceful stop: no longer accepting; waiting up to {grace} s for "
        "{count} running server(s)",
        grace=grace,
        count=len(server.runningChildren()),
    )

    def endChildren() -> None:
        for runtime, pid in server.runningChildren():
            _log.warn(
                "Sending signal 15 to {service} server {pid}",
                service=runtime.serviceId,
                pid=pid,
            )
            server.context.spawner.signalChild(pid, int(signal.SIGTERM))
        waitFor(reactor.seconds() + TERM_GRACE, server.quit)

    def waitFor(deadline: float, then: Callable[[], None]) -> None:
        if not server.runningChildren() or reactor.seconds() >= deadline:
            then()
            return
        reactor.callLater(POLL_INTERVAL, waitFor, deadline, then)

    waitFor(reactor.seconds() + grace, endChildren)
