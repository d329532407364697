# -*- test-case-name: tests.test_daemon_superserver -*-
"""
The graceful stop (C{--graceful-stop}): wait for running servers, then
send the rest SIGTERM, then exit.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

from twisted.logger import Logger

TERM_GRACE = 2.0
"""
Seconds left to servers sent SIGTERM by a graceful stop to end (and have
their EXIT lines logged) before the daemon exits anyway.
"""

POLL_INTERVAL = 0.1

_log = Logger(namespace="xinetd_twisted.daemon")


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
