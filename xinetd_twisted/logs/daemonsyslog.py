# -*- test-case-name: tests.test_logs_daemonsyslog -*-
"""
The daemon's own messages to syslog, as xinetd sends them (its C{-syslog
facility} option): ident C{xinetd}, the daemon's pid, the message's level.

Service lines (START, EXIT, FAIL ...) are not sent here: they go to each
service's own C{log_type}.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

from xinetd_twisted.logs.service import SERVICE_EVENT, SERVICE_NAMESPACE
from xinetd_twisted.logs.sinks import (
    SYSLOG_FACILITIES,
    SYSLOG_LEVELS,
    SYSLOG_PROBLEM,
    SyslogConnection,
)

_LEVELS: Dict[Any, int] = {
    LogLevel.debug: SYSLOG_LEVELS["debug"],
    LogLevel.info: SYSLOG_LEVELS["info"],
    LogLevel.warn: SYSLOG_LEVELS["warning"],
    LogLevel.error: SYSLOG_LEVELS["err"],
    LogLevel.critical: SYSLOG_LEVELS["crit"],
}


@implementer(ILogObserver)
class DaemonSyslogObserver:
    """
    Sends every event except service lines to syslog at C{facility}.

    The connection's own warning that syslog is unreachable (an event with
    L{SYSLOG_PROBLEM}) is not sent: it is logged once per outage, to the
    daemon's other logs.

    @ivar _connection: the daemon's syslog connection (never blocks).
    @ivar _facility: the facility's number.
    """

    def __init__(self, connection: SyslogConnection, facility: str) -> None:
        if facility not in SYSLOG_FACILITIES:
            raise ValueError(f"Bad syslog facility: {facility}")
        self._connection = connection
        self._facility = SYSLOG_FACILITIES[facility]

    def __call__(self, event: Dict[str, Any]) -> None:
        if event.get("log_namespace") == SERVICE_NAMESPACE or event.get(SERVICE_EVENT):
            return
        if event.get(SYSLOG_PROBLEM):
            # Syslog is what failed: the warning goes to the other logs.
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}: {failure.getErrorMessage()}"
        level = _LEVELS.get(event.get("log_level"), SYSLOG_LEVELS["info"])
        for line in text.splitlines() or [""]:
            self._connection.send(self._facility * 8 + level, line)
