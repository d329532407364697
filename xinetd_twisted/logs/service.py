# -*- test-case-name: tests.test_logs_service -*-
"""
xinetd-compatible service log lines, and the same events as structured
L{twisted.logger} events.

The integrator makes one L{ServiceLog} per service and calls it on each
event (a server started or exited, a connection was refused, ident
answered).  It writes the line real xinetd would write to the service's
sink (L{xinetd_twisted.logs.sinks}), driven by C{log_on_success} and
C{log_on_failure} (reference 6.2, 6.4), and always emits a structured event
in the L{SERVICE_NAMESPACE} namespace, even for services without a
C{log_type}: that stream is ours, not xinetd's.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import (
    IO,
    TYPE_CHECKING,
    AbstractSet,
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ProcessTerminated
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.logs.sinks import LogSink, openLogFile

if TYPE_CHECKING:
    from xinetd_twisted.protocols.ident import IdentResult

SERVICE_NAMESPACE = "xinetd_twisted.service"
"""
The L{twisted.logger} namespace of structured service events.
"""

_SERVICE_LOGGER = Logger(SERVICE_NAMESPACE)
"""
The structured events' logger, shared by every service (one each cost a
thousand services ~100 KB).
"""

_serviceEvents = {"enabled": False}


def enableServiceEvents(enabled: bool = True) -> None:
    """
    Send every service event to the global L{twisted.logger} publisher (and
    so to twistd's log and any observer), or stop doing so.

    Off by default: formatting two events per connection for twistd's text
    log costs the reactor about as much as the rest of the accept and spawn
    path, and xinetd's own log does not carry them either (they go where
    C{log_type} says).  C{twistd xinetd --service-events} turns them on;
    L{jsonLogger} does too.  A L{ServiceLog} given its own C{logger} always
    emits to it.
    """
    _serviceEvents["enabled"] = enabled


JSON_LOG_ENVIRONMENT = "XINETD_TWISTED_JSON_LOG"
"""
Environment variable naming the file L{jsonLogger} appends to (C{-} or
unset: standard output).
"""

NO_ADDRESS = "<no address>"
INVALID_ADDRESS = "<invalid address>"

Peer = Union[IPv4Address, IPv6Address, Tuple[str, int], str, None]
"""
A client address as the integrator has it: a Twisted address, a
C{(host, port)} pair as C{getpeername()} gives it, a numeric host string,
or L{None} when the service has none (stream C{wait = yes}).
"""

_MAPPED_PREFIX = "::ffff:"


def renderAddress(peer: Peer, mapToIPv4: bool = False) -> str:
    """
    An address as xinetd writes it: numeric, as the socket gave it
    (C{::ffff:127.0.0.1} for an IPv4 client of a dual-stack socket).

    @param peer: the client address.
    @param mapToIPv4: write IPv4-mapped IPv6 addresses as plain IPv4 (our
        opt-in extension; xinetd never does).
    @return: the host, C{<no address>} for L{None}, C{<invalid address>}
        for anything that is not an IP address.
    """
    if peer is None:
        return NO_ADDRESS
    if isinstance(peer, (IPv4Address, IPv6Address)):
        host = peer.host
    elif isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        host = peer[0]
    elif isinstance(peer, str):
        host = peer
    else:
        return INVALID_ADDRESS
    if not host:
        return INVALID_ADDRESS
    if mapToIPv4 and host.lower().startswith(_MAPPED_PREFIX) and "." in host:
        return host[len(_MAPPED_PREFIX) :]
    return host


def _peerPort(peer: Peer) -> Optional[int]:
    if isinstance(peer, (IPv4Address, IPv6Address)):
        return peer.port
    if isinstance(peer, tuple) and len(peer) >= 2 and isinstance(peer[1], int):
        return peer[1]
    return None


def printable(text: str) -> str:
    """
    C{text} with every control character written as C{\\xHH}: C0 controls
    (CR, LF, NUL, ESC ...), DEL, C1 controls, and the raw bytes 0x80-0x9f
    an identd may send (carried as surrogates).  What a client controls
    (its ident reply) can then never start a second log line or reach a
    terminal as an escape sequence.  Other text, backslashes included, is
    kept as it was.
    """
    if _PRINTABLE.fullmatch(text):
        return text
    return _CONTROL.sub(_escapeOne, text)


_CONTROL_CLASS = "\x00-\x1f\x7f-\x9f\udc80-\udc9f"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")
_PRINTABLE = re.compile(f"[^{_CONTROL_CLASS}]*")


def _escapeOne(match: re.Match) -> str:
    code = ord(match.group())
    if code >= 0xDC80:
        code -= 0xDC00
    return f"\\x{code:02x}"


def formatStart(
    serviceId: str,
    logOnSuccess: AbstractSet[str],
    pid: int,
    peer: Peer,
    mapToIPv4: bool = False,
) -> Optional[str]:
    """
    C{START: <id>[ pid=<pid>][ from=<addr>]}, or L{None} when
    C{log_on_success} is empty.

    @param pid: the server's pid (0 for a non-forking internal service).
    """
    if not logOnSuccess:
        return None
    line = f"START: {serviceId}"
    if "PID" in logOnSuccess:
        line += f" pid={pid}"
    if "HOST" in logOnSuccess:
        line += f" from={renderAddress(peer, mapToIPv4)}"
    return line


def formatExit(
    serviceId: str,
    logOnSuccess: AbstractSet[str],
    pid: int,
    status: Optional[int] = None,
    signal: Optional[int] = None,
    duration: float = 0,
) -> Optional[str]:
    """
    C{EXIT: <id>[ status=<code>| signal=<signo>][ pid=<pid>][
    duration=<secs>(sec)]}, or L{None} unless C{log_on_success} has EXIT or
    DURATION.

    @param status: the exit code (when the server exited).
    @param signal: the signal number (when a signal killed it); wins over
        C{status}.
    @param duration: seconds of wall clock; written truncated to whole
        seconds (see L{wallDuration} for xinetd's exact arithmetic).
    """
    if not logOnSuccess & {"EXIT", "DURATION"}:
        return None
    line = f"EXIT: {serviceId}"
    if "EXIT" in logOnSuccess:
        if signal is not None:
            line += f" signal={signal}"
        else:
            line += f" status={status or 0}"
    if "PID" in logOnSuccess:
        line += f" pid={pid}"
    if "DURATION" in logOnSuccess:
        line += f" duration={int(duration)}(sec)"
    return line


def formatFail(
    serviceId: str,
    logOnFailure: AbstractSet[str],
    reason: str,
    peer: Peer,
    mapToIPv4: bool = False,
) -> Optional[str]:
    """
    C{FAIL: <id> <reason>[ from=<addr>]}, or L{None} when C{log_on_failure}
    is empty.

    @param reason: one of xinetd's reasons (C{address}, C{time}, C{fork},
        C{service_limit}, C{per_source_limit}, C{process_limit}, C{libwrap},
        C{load}, C{connections per second}).
    """
    if not logOnFailure:
        return None
    line = f"FAIL: {serviceId} {reason}"
    if "HOST" in logOnFailure:
        line += f" from={renderAddress(peer, mapToIPv4)}"
    return line


def formatUserid(serviceId: str, text: str) -> str:
    """
    C{USERID: <id> <text>}: the identd reply after C{USERID :}, verbatim
    but for control characters (see L{printable}).
    """
    return f"USERID: {serviceId} {printable(text)}"


def formatNoid(serviceId: str, peer: Peer, reason: str, mapToIPv4: bool = False) -> str:
    """
    C{NOID: <id> <addr> <reason>}.

    @param reason: C{no server}, C{timeout}, C{system error}, C{error while
        receiving response} or C{bad response}.
    """
    return f"NOID: {serviceId} {renderAddress(peer, mapToIPv4)} {reason}"


def formatTraffic(
    serviceId: str, logOnSuccess: AbstractSet[str], bytesIn: int, bytesOut: int
) -> Optional[str]:
    """
    C{TRAFFIC: <id> in=<n>(bytes) out=<n>(bytes)}, or L{None} unless
    C{log_on_success} has TRAFFIC.
    """
    if "TRAFFIC" not in logOnSuccess:
        return None
    return f"TRAFFIC: {serviceId} in={bytesIn}(bytes) out={bytesOut}(bytes)"


def wallDuration(started: float, ended: float) -> int:
    """
    A server's duration as xinetd computes it: the difference of two
    C{time()} readings in whole seconds (so 0.9 s can read as 1).

    @param started: epoch seconds when the server started.
    @param ended: epoch seconds when it was reaped.
    """
    return int(ended) - int(started)


START = "start"
EXIT = "exit"
FAIL = "fail"
USERID = "userid"
TRAFFIC = "traffic"

SCHEMA_FIELDS = (
    "time",
    "level",
    "service",
    "event",
    "pid",
    "peer",
    "peer_port",
    "reason",
    "status",
    "signal",
    "duration",
    "bytes_in",
    "bytes_out",
    "userid",
    "line",
)
"""
The keys of every structured service event, in order (docs/logging.md);
each is present in every event, L{None} (C{null}) when it does not apply.
"""

DAEMON_FIELDS = ("time", "level", "namespace", "text")
"""
The keys of every other structured event (the daemon's and Twisted's own
messages).
"""

_EVENT_FIELDS = SCHEMA_FIELDS[2:]

SERVICE_EVENT = "xinetd_service_event"
"""
Key set (to L{True}) on every event a L{ServiceLog} emits, whatever its
logger's namespace: what L{structuredEvent} and the daemon's syslog
observer recognise service events by.
"""


class ServiceLog:
    """
    One service's log: xinetd lines to its sink, structured events always.

    Every method writes the xinetd line (if the service's flags call for
    one and it has a sink) and emits one event in L{SERVICE_NAMESPACE}
    whose fields are those of L{SCHEMA_FIELDS} but C{time} and C{level}
    (which the L{twisted.logger} event carries as C{log_time} and
    C{log_level}): C{event} is one of L{START}, L{EXIT}, L{FAIL}, L{USERID}
    (a NOID has C{userid} L{None} and its C{reason}), L{TRAFFIC}; C{line}
    is the xinetd line, or L{None} when xinetd would write none.

    @ivar serviceId: the service id.
    @ivar logOnSuccess: upper-case C{log_on_success} flags.
    @ivar logOnFailure: upper-case C{log_on_failure} flags.
    @ivar sink: where lines go, or L{None} (no C{log_type}: no lines).
    @ivar mapToIPv4: render IPv4-mapped addresses as IPv4 (opt-in).
    """

    __slots__ = (
        "serviceId",
        "logOnSuccess",
        "logOnFailure",
        "sink",
        "mapToIPv4",
        "_log",
        "_always",
    )

    def __init__(
        self,
        serviceId: str,
        logOnSuccess: AbstractSet[str],
        logOnFailure: AbstractSet[str],
        sink: Optional[LogSink],
        *,
        mapToIPv4: bool = False,
        logger: Optional[Logger] = None,
    ) -> None:
        self.serviceId = serviceId
        self.logOnSuccess = frozenset(logOnSuccess)
        self.logOnFailure = frozenset(logOnFailure)
        self.sink = sink
        self.mapToIPv4 = mapToIPv4
        self._log = logger if logger is not None else _SERVICE_LOGGER
        self._always = logger is not None

    @classmethod
    def fromConfig(
        cls,
        config: ServiceConfig,
        sink: Optional[LogSink],
        *,
        mapToIPv4: bool = False,
        logger: Optional[Logger] = None,
    ) -> ServiceLog:
        """
        The log of a configured service.

        @param sink: from L{xinetd_twisted.logs.sinks.openSink}, or shared.
        """
        return cls(
            config.serviceId,
            config.logOnSuccess,
            config.logOnFailure,
            sink,
            mapToIPv4=mapToIPv4,
            logger=logger,
        )

    def _emit(
        self,
        event: str,
        line: Optional[str],
        peer: Peer,
        level: LogLevel = LogLevel.info,
        **fields: object,
    ) -> None:
        if line is not None and self.sink is not None:
            self.sink.write(line)
        if not (self._always or _serviceEvents["enabled"]):
            return
        values: Dict[str, object] = dict.fromkeys(_EVENT_FIELDS)
        values.update(fields)
        values["event"] = event
        values["service"] = self.serviceId
        values["line"] = line
        if peer is not None:
            values["peer"] = renderAddress(peer, self.mapToIPv4)
            values["peer_port"] = _peerPort(peer)
        values[SERVICE_EVENT] = True
        self._log.emit(
            level,
            "{line}" if line is not None else "{event}: {service}",
            **values,
        )

    def start(self, pid: int, peer: Peer) -> None:
        """
        A server was started (pid 0: handled inline by an internal service).
        """
        if self.sink is None and not (self._always or _serviceEvents["enabled"]):
            return
        line = formatStart(self.serviceId, self.logOnSuccess, pid, peer, self.mapToIPv4)
        self._emit(START, line, peer, pid=pid)

    def exit(
        self,
        pid: int,
        status: Optional[int] = None,
        signal: Optional[int] = None,
        duration: float = 0,
        *,
        peer: Peer = None,
    ) -> None:
        """
        A forked server was reaped (or an in-process connection ended).

        @param status: exit code, when it exited.
        @param signal: signal number, when a signal killed it.
        @param duration: seconds it ran (see L{wallDuration}).
        @param peer: the client it served, for the structured event
            (xinetd's EXIT line has no address).
        """
        if self.sink is None and not (self._always or _serviceEvents["enabled"]):
            return
        line = formatExit(
            self.serviceId, self.logOnSuccess, pid, status, signal, duration
        )
        self._emit(
            EXIT,
            line,
            peer,
            pid=pid,
            status=status if signal is None else None,
            signal=signal,
            duration=int(duration),
        )

    def exitFromReason(
        self, pid: int, reason: Failure, duration: float, *, peer: Peer = None
    ) -> None:
        """
        L{exit} with the status taken from C{ProcessProtocol.processEnded}'s
        reason (L{ProcessDone} or L{ProcessTerminated}).
        """
        if self.sink is None and not (self._always or _serviceEvents["enabled"]):
            return
        status: Optional[int] = 0
        signal: Optional[int] = None
        value = reason.value
        if isinstance(value, ProcessTerminated):
            status, signal = value.exitCode, value.signal
            if signal is not None:
                status = None
        self.exit(pid, status=status, signal=signal, duration=duration, peer=peer)

    def fail(self, reason: str, peer: Peer) -> None:
        """
        A connection was refused before any server ran.

        @param reason: xinetd's reason word (L{formatFail}).
        """
        line = formatFail(
            self.serviceId, self.logOnFailure, reason, peer, self.mapToIPv4
        )
        self._emit(FAIL, line, peer, LogLevel.warn, reason=reason)

    def userid(self, text: str, *, peer: Peer = None) -> None:
        """
        identd identified the client's user (C{text} as after C{USERID :});
        control characters are escaped in the line and the event alike.
        """
        self._emit(
            USERID,
            formatUserid(self.serviceId, text),
            peer,
            userid=printable(text),
        )

    def noid(self, peer: Peer, reason: str) -> None:
        """
        The ident query failed for C{reason} (see L{formatNoid}).
        """
        line = formatNoid(self.serviceId, peer, reason, self.mapToIPv4)
        self._emit(USERID, line, peer, reason=reason)

    def identified(self, result: IdentResult, peer: Peer) -> None:
        """
        Log what L{xinetd_twisted.protocols.ident.queryIdent} found: USERID or NOID.
        """
        if result.userid is not None:
            self.userid(result.userid, peer=peer)
        else:
            self.noid(peer, result.noid or "system error")

    def traffic(self, bytesIn: int, bytesOut: int, *, peer: Peer = None) -> None:
        """
        A redirected connection ended having moved these byte counts.
        """
        line = formatTraffic(self.serviceId, self.logOnSuccess, bytesIn, bytesOut)
        self._emit(TRAFFIC, line, peer, bytes_in=bytesIn, bytes_out=bytesOut)


def _isoTime(when: object) -> Optional[str]:
    if not isinstance(when, (int, float)):
        return None
    stamp = datetime.fromtimestamp(when, timezone.utc)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _levelName(level: object) -> str:
    return level.name if isinstance(level, type(LogLevel.info)) else "info"


def structuredEvent(event: Mapping[str, Any]) -> Dict[str, Any]:
    """
    The documented shape of one L{twisted.logger} event (docs/logging.md):
    a service event becomes exactly L{SCHEMA_FIELDS}, anything else
    exactly L{DAEMON_FIELDS}; nothing of Twisted's internals (loggers,
    sources, format strings) is kept.

    @param event: a L{twisted.logger} event.
    @return: a dictionary ready for L{json.dumps}.
    """
    time = _isoTime(event.get("log_time"))
    level = _levelName(event.get("log_level"))
    if event.get(SERVICE_EVENT):
        result: Dict[str, Any] = {"time": time, "level": level}
        for key in _EVENT_FIELDS:
            value = event.get(key)
            if value is not None and not isinstance(value, (str, int, float)):
                value = str(value)
            result[key] = value
        return result
    text = formatEvent(dict(event))
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        text = f"{text}\n{failure.getTraceback()}".rstrip("\n")
    return {
        "time": time,
        "level": level,
        "namespace": event.get("log_namespace"),
        "text": text,
    }


@implementer(ILogObserver)
class JsonLinesObserver:
    """
    Writes each event as one line of JSON in the shape of
    L{structuredEvent}.

    @ivar _out: the text stream written to (line-buffered, or flushed after
        each line).
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: Mapping[str, Any]) -> None:
        # ensure_ascii: an identd's undecodable bytes (surrogates) stay
        # representable whatever the stream's encoding.
        self._out.write(json.dumps(structuredEvent(event)) + "\n")
        self._out.flush()


def openAppending(path: str, mode: str, encoding: str, buffering: int) -> IO[str]:
    """
    L{open} for a log file the root daemon appends to: through
    L{openLogFile} (no symbolic link, regular files only).
    """
    return os.fdopen(openLogFile(path), mode, encoding=encoding, buffering=buffering)


def jsonLogger(
    environ: Optional[Mapping[str, str]] = None,
    stdout: Optional[IO[str]] = None,
    opener: Callable[..., IO[str]] = openAppending,
) -> ILogObserver:
    """
    A JSON-lines observer for C{twistd --logger=xinetd_twisted.logs.jsonLogger}.

    Every event (ours and Twisted's) becomes one JSON object per line
    (L{structuredEvent}, docs/logging.md), appended (line-buffered) to the
    file named by C{$XINETD_TWISTED_JSON_LOG}, or written to standard
    output when that is unset or C{-}.

    @param environ: the environment (default L{os.environ}).
    @param stdout: the standard output stream (default L{sys.stdout}).
    @param opener: opens the file (L{openAppending}; injectable for tests).
    """
    env = os.environ if environ is None else environ
    path = env.get(JSON_LOG_ENVIRONMENT, "-") or "-"
    if path == "-":
        out: IO[str] = sys.stdout if stdout is None else stdout
    else:
        out = opener(path, "a", encoding="utf-8", buffering=1)
    # Asking for the JSON stream is asking for the service events in it.
    enableServiceEvents(True)
    return JsonLinesObserver(out)
