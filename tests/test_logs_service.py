"""
Tests for L{xinetd_twisted.logs.service}: xinetd's line formats and the structured
events.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Callable, List, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import ILogObserver, Logger, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Location, ServiceConfig
from xinetd_twisted.logs.service import (
    DAEMON_FIELDS,
    JSON_LOG_ENVIRONMENT,
    SCHEMA_FIELDS,
    SERVICE_NAMESPACE,
    ServiceLog,
    enableServiceEvents,
    formatExit,
    formatFail,
    formatNoid,
    formatStart,
    formatTraffic,
    formatUserid,
    jsonLogger,
    printable,
    renderAddress,
    structuredEvent,
    wallDuration,
)
from xinetd_twisted.logs.sinks import FileLogSink
from xinetd_twisted.protocols.ident import IdentResult, parseResponse

V4 = IPv4Address("TCP", "127.0.0.1", 40000)
MAPPED = IPv6Address("TCP", "::ffff:127.0.0.1", 40001)
V6 = IPv6Address("TCP", "::1", 40002)
ALL_SUCCESS = frozenset({"PID", "HOST", "EXIT", "DURATION"})


class RenderAddressTests(SynchronousTestCase):
    """
    Tests for L{renderAddress}.
    """

    def test_ipv4(self) -> None:
        """An IPv4 client is written as its dotted quad."""
        self.assertEqual(renderAddress(V4), "127.0.0.1")

    def test_mappedKept(self) -> None:
        """An IPv4 client of a dual-stack socket keeps its ::ffff: form."""
        self.assertEqual(renderAddress(MAPPED), "::ffff:127.0.0.1")

    def test_mappedToIPv4(self) -> None:
        """With the opt-in, a mapped address is written as plain IPv4."""
        self.assertEqual(renderAddress(MAPPED, mapToIPv4=True), "127.0.0.1")

    def test_ipv6NotMapped(self) -> None:
        """The opt-in leaves real IPv6 addresses alone."""
        self.assertEqual(renderAddress(V6, mapToIPv4=True), "::1")

    def test_none(self) -> None:
        """No address (stream wait) is written <no address>."""
        self.assertEqual(renderAddress(None), "<no address>")

    def test_string(self) -> None:
        """A numeric host string is written as given."""
        self.assertEqual(renderAddress("10.0.0.1"), "10.0.0.1")

    def test_invalid(self) -> None:
        """Something that is not an IP address is <invalid address>."""
        self.assertEqual(renderAddress(object()), "<invalid address>")  # type: ignore[arg-type]


class FormatTests(SynchronousTestCase):
    """
    Tests for the line formatters, one per rule of reference 6.2.
    """

    def test_startEmptyFlags(self) -> None:
        """No START line when log_on_success is empty."""
        self.assertIsNone(formatStart("s", frozenset(), 12, V4))

    def test_startBare(self) -> None:
        """A flag other than PID/HOST gives a bare START line."""
        self.assertEqual(formatStart("s", frozenset({"EXIT"}), 12, V4), "START: s")

    def test_startPid(self) -> None:
        """PID adds pid=."""
        self.assertEqual(
            formatStart("s", frozenset({"PID"}), 12, V4), "START: s pid=12"
        )

    def test_startHost(self) -> None:
        """HOST adds from= after pid=."""
        self.assertEqual(
            formatStart("s", frozenset({"PID", "HOST"}), 0, MAPPED),
            "START: s pid=0 from=::ffff:127.0.0.1",
        )

    def test_startNoAddress(self) -> None:
        """Stream wait services have from=<no address>."""
        self.assertEqual(
            formatStart("s", frozenset({"HOST"}), 3, None), "START: s from=<no address>"
        )

    def test_exitNeedsExitOrDuration(self) -> None:
        """No EXIT line without EXIT or DURATION."""
        self.assertIsNone(formatExit("s", frozenset({"PID", "HOST"}), 5, 0))

    def test_exitStatus(self) -> None:
        """EXIT gives status=, then pid= with PID."""
        self.assertEqual(
            formatExit("cpsvc", frozenset({"EXIT", "PID"}), 30518, status=0),
            "EXIT: cpsvc status=0 pid=30518",
        )

    def test_exitSignal(self) -> None:
        """A killed server has signal= instead of status=."""
        self.assertEqual(
            formatExit("probe", ALL_SUCCESS, 9504, status=None, signal=13, duration=0),
            "EXIT: probe signal=13 pid=9504 duration=0(sec)",
        )

    def test_exitDurationOnly(self) -> None:
        """DURATION alone gives neither status nor pid."""
        self.assertEqual(
            formatExit("s", frozenset({"DURATION"}), 5, status=3, duration=7.9),
            "EXIT: s duration=7(sec)",
        )

    def test_exitAll(self) -> None:
        """All flags: status, pid, duration in that order."""
        self.assertEqual(
            formatExit("probe", ALL_SUCCESS, 9285, status=3, duration=0),
            "EXIT: probe status=3 pid=9285 duration=0(sec)",
        )

    def test_failEmptyFlags(self) -> None:
        """No FAIL line when log_on_failure is empty."""
        self.assertIsNone(formatFail("s", frozenset(), "address", V4))

    def test_failAttempt(self) -> None:
        """ATTEMPT alone gives a bare FAIL line."""
        self.assertEqual(
            formatFail("s", frozenset({"ATTEMPT"}), "time", V4), "FAIL: s time"
        )

    def test_failHost(self) -> None:
        """HOST adds from= after the reason."""
        self.assertEqual(
            formatFail("s", frozenset({"HOST"}), "connections per second", V6),
            "FAIL: s connections per second from=::1",
        )

    def test_userid(self) -> None:
        """USERID carries the ident text verbatim."""
        self.assertEqual(
            formatUserid("idsvc", "UNIX : alice"), "USERID: idsvc UNIX : alice"
        )

    def test_noid(self) -> None:
        """NOID carries the address and the reason."""
        self.assertEqual(
            formatNoid("s", MAPPED, "no server"), "NOID: s ::ffff:127.0.0.1 no server"
        )

    def test_trafficNeedsFlag(self) -> None:
        """No TRAFFIC line without the TRAFFIC flag."""
        self.assertIsNone(formatTraffic("s", frozenset({"PID"}), 1, 2))

    def test_traffic(self) -> None:
        """TRAFFIC counts bytes in and out."""
        self.assertEqual(
            formatTraffic("r", frozenset({"TRAFFIC"}), 10, 200),
            "TRAFFIC: r in=10(bytes) out=200(bytes)",
        )

    def test_wallDuration(self) -> None:
        """Durations are differences of whole-second clock readings."""
        self.assertEqual(wallDuration(10.9, 11.1), 1)
        self.assertEqual(wallDuration(10.1, 10.9), 0)


class RecordingSink:
    """
    A sink that records the lines it is given.
    """

    def __init__(self) -> None:
        self.lines: List[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def makeLog(
    success: frozenset = ALL_SUCCESS,
    failure: frozenset = frozenset({"HOST"}),
    sink: object = None,
    **kw: object,
) -> tuple:
    events: list = []
    log = ServiceLog(
        "svc",
        success,
        failure,
        sink,  # type: ignore[arg-type]
        logger=Logger(
            namespace=SERVICE_NAMESPACE, observer=cast(ILogObserver, events.append)
        ),
        **kw,  # type: ignore[arg-type]
    )
    return log, events


class ServiceLogTests(SynchronousTestCase):
    """
    Tests for L{ServiceLog}.
    """

    def test_startLineAndEvent(self) -> None:
        """start() writes the START line and emits a start event."""
        sink = RecordingSink()
        log, events = makeLog(sink=sink)
        log.start(77, MAPPED)
        self.assertEqual(sink.lines, ["START: svc pid=77 from=::ffff:127.0.0.1"])
        [event] = events
        self.assertEqual(event["event"], "start")
        self.assertEqual(event["service"], "svc")
        self.assertEqual(event["pid"], 77)
        self.assertEqual(event["peer"], "::ffff:127.0.0.1")
        self.assertEqual(event["peer_port"], 40001)
        self.assertEqual(event["line"], sink.lines[0])
        self.assertEqual(formatEvent(event), sink.lines[0])

    def test_mapToIPv4(self) -> None:
        """The opt-in rendering applies to lines and events alike."""
        sink = RecordingSink()
        log, events = makeLog(sink=sink, mapToIPv4=True)
        log.fail("address", MAPPED)
        self.assertEqual(sink.lines, ["FAIL: svc address from=127.0.0.1"])
        self.assertEqual(events[0]["peer"], "127.0.0.1")

    def test_noSinkStillEmits(self) -> None:
        """A service without log_type writes nothing but still emits events."""
        log, events = makeLog(sink=None)
        log.start(1, V4)
        log.exit(1, status=0, duration=2)
        self.assertEqual([e["event"] for e in events], ["start", "exit"])
        self.assertEqual(events[1]["line"], "EXIT: svc status=0 pid=1 duration=2(sec)")

    def test_noLineStillEmits(self) -> None:
        """An event xinetd would not log is emitted with line None."""
        sink = RecordingSink()
        log, events = makeLog(success=frozenset(), sink=sink)
        log.start(1, V4)
        self.assertEqual(sink.lines, [])
        self.assertIsNone(events[0]["line"])
        self.assertEqual(formatEvent(events[0]), "start: svc")

    def test_exitFields(self) -> None:
        """exit() carries status, signal and whole-second duration."""
        log, events = makeLog(sink=RecordingSink())
        log.exit(9, signal=15, duration=3.7)
        e = events[0]
        self.assertEqual(
            (e["event"], e["pid"], e["status"], e["signal"], e["duration"]),
            ("exit", 9, None, 15, 3),
        )
        self.assertEqual(e["line"], "EXIT: svc signal=15 pid=9 duration=3(sec)")

    def test_exitFromReasonDone(self) -> None:
        """A ProcessDone reason is status=0."""
        sink = RecordingSink()
        log, _ = makeLog(sink=sink)
        log.exitFromReason(4, Failure(ProcessDone(0)), 1)
        self.assertEqual(sink.lines, ["EXIT: svc status=0 pid=4 duration=1(sec)"])

    def test_exitFromReasonExitCode(self) -> None:
        """A ProcessTerminated with an exit code is status=N."""
        sink = RecordingSink()
        log, _ = makeLog(sink=sink)
        log.exitFromReason(4, Failure(ProcessTerminated(exitCode=3)), 0)
        self.assertEqual(sink.lines, ["EXIT: svc status=3 pid=4 duration=0(sec)"])

    def test_exitFromReasonSignal(self) -> None:
        """A ProcessTerminated by a signal is signal=N."""
        sink = RecordingSink()
        log, _ = makeLog(sink=sink)
        log.exitFromReason(4, Failure(ProcessTerminated(signal=9)), 0)
        self.assertEqual(sink.lines, ["EXIT: svc signal=9 pid=4 duration=0(sec)"])

    def test_failEvent(self) -> None:
        """fail() carries the reason and the peer."""
        sink = RecordingSink()
        log, events = makeLog(sink=sink)
        log.fail("per_source_limit", V4)
        self.assertEqual(sink.lines, ["FAIL: svc per_source_limit from=127.0.0.1"])
        self.assertEqual(
            (events[0]["event"], events[0]["reason"], events[0]["peer"]),
            ("fail", "per_source_limit", "127.0.0.1"),
        )

    def test_useridAndNoid(self) -> None:
        """userid() and noid() write USERID and NOID lines."""
        sink = RecordingSink()
        log, events = makeLog(sink=sink)
        log.userid("UNIX : alice")
        log.noid(V4, "timeout")
        self.assertEqual(
            sink.lines,
            ["USERID: svc UNIX : alice", "NOID: svc 127.0.0.1 timeout"],
        )
        self.assertEqual(events[0]["userid"], "UNIX : alice")
        self.assertEqual(events[1]["reason"], "timeout")

    def test_identified(self) -> None:
        """identified() turns ident results into USERID and NOID lines."""
        sink = RecordingSink()
        log, _ = makeLog(sink=sink)
        log.identified(IdentResult(userid="UNIX : bob"), V4)
        log.identified(IdentResult(noid="bad response"), MAPPED)
        self.assertEqual(
            sink.lines,
            ["USERID: svc UNIX : bob", "NOID: svc ::ffff:127.0.0.1 bad response"],
        )

    def test_traffic(self) -> None:
        """traffic() writes TRAFFIC only with the flag, but always emits."""
        sink = RecordingSink()
        log, events = makeLog(success=frozenset({"TRAFFIC"}), sink=sink)
        log.traffic(5, 6)
        quiet, quietEvents = makeLog(sink=sink)
        quiet.traffic(7, 8)
        self.assertEqual(sink.lines, ["TRAFFIC: svc in=5(bytes) out=6(bytes)"])
        self.assertEqual(
            (quietEvents[0]["bytes_in"], quietEvents[0]["bytes_out"]), (7, 8)
        )

    def test_fromConfig(self) -> None:
        """fromConfig() takes the id and flags of a ServiceConfig."""
        config = ServiceConfig(
            name="echo",
            serviceId="echo-stream",
            location=Location("x.conf", 1),
            socketType="stream",
            protocol="tcp",
            wait=False,
            logOnSuccess=frozenset({"HOST"}),
            logOnFailure=frozenset({"ATTEMPT"}),
        )
        sink = RecordingSink()
        log = ServiceLog.fromConfig(config, sink)
        log.start(1, V4)
        log.fail("time", V4)
        self.assertEqual(
            sink.lines, ["START: echo-stream from=127.0.0.1", "FAIL: echo-stream time"]
        )

    def test_defaultNamespace(self) -> None:
        """Without an injected logger, events go to the global publisher once enabled."""
        observer = EventLoggingObserver.createWithCleanup(
            cast(Any, self), globalLogPublisher
        )
        enableServiceEvents(True)
        self.addCleanup(enableServiceEvents, False)
        log = ServiceLog("g", ALL_SUCCESS, frozenset(), None)
        log.start(2, V4)
        self.assertEqual(len(observer), 1)
        self.assertEqual(observer[0]["log_namespace"], SERVICE_NAMESPACE)
        self.assertEqual(observer[0]["event"], "start")

    def test_sinklessExitEventsOnceEnabled(self) -> None:
        """
        Without a sink, EXIT (also from a process reason) still reaches the
        global publisher once events are enabled, and nothing does while
        they are off.
        """
        observer = EventLoggingObserver.createWithCleanup(
            cast(Any, self), globalLogPublisher
        )
        log = ServiceLog("g", ALL_SUCCESS, frozenset(), None)
        enableServiceEvents(False)
        log.start(2, V4)
        log.exit(2, status=0)
        log.exitFromReason(2, Failure(ProcessDone(0)), 1.0)
        self.assertEqual(len(observer), 0)
        enableServiceEvents(True)
        self.addCleanup(enableServiceEvents, False)
        log.exit(2, status=0)
        log.exitFromReason(2, Failure(ProcessTerminated(exitCode=3)), 1.0)
        self.assertEqual([e["event"] for e in observer], ["exit", "exit"])
        self.assertEqual(observer[1]["status"], 3)


class ServiceEventsSwitchTests(SynchronousTestCase):
    """
    Tests for L{enableServiceEvents}.
    """

    def test_offByDefault(self) -> None:
        """
        Without an injected logger and unless enabled, no event reaches the
        global publisher; the xinetd line still reaches the sink.
        """
        enableServiceEvents(False)
        observer = EventLoggingObserver.createWithCleanup(
            cast(Any, self), globalLogPublisher
        )
        sink = RecordingSink()
        ServiceLog("g", ALL_SUCCESS, frozenset(), sink).start(2, V4)
        self.assertEqual(len(observer), 0)
        self.assertEqual(sink.lines, ["START: g pid=2 from=127.0.0.1"])

    def test_jsonLoggerEnables(self) -> None:
        """
        Making the JSON observer turns the service events on.
        """
        self.addCleanup(enableServiceEvents, False)
        jsonLogger({}, stdout=io.StringIO())
        observer = EventLoggingObserver.createWithCleanup(
            cast(Any, self), globalLogPublisher
        )
        ServiceLog("g", ALL_SUCCESS, frozenset(), None).start(2, V4)
        self.assertEqual(len(observer), 1)


class JsonLoggerTests(SynchronousTestCase):
    """
    Tests for L{jsonLogger}.
    """

    def setUp(self) -> None:
        # jsonLogger turns the global service events on: undo it.
        self.addCleanup(enableServiceEvents, False)

    def test_stdout(self) -> None:
        """Without the variable, events are JSON lines on standard output."""
        out = io.StringIO()
        observer = jsonLogger({}, stdout=out)
        log = ServiceLog(
            "j", ALL_SUCCESS, frozenset(), None, logger=Logger(observer=observer)
        )
        log.start(3, V4)
        log.exit(3, status=1, duration=0)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual(first["event"], "start")
        self.assertEqual(first["line"], "START: j pid=3 from=127.0.0.1")

    def test_file(self) -> None:
        """With the variable set, events are appended to that file."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('{"old": 1}\n')
        opened: list = []

        def opener(*args: object, **kwargs: object) -> object:
            f = open(*args, **kwargs)  # type: ignore[call-overload]
            opened.append(f)
            self.addCleanup(f.close)
            return f

        observer = jsonLogger({JSON_LOG_ENVIRONMENT: path}, opener=opener)  # type: ignore[arg-type]
        log = ServiceLog(
            "j", ALL_SUCCESS, frozenset(), None, logger=Logger(observer=observer)
        )
        log.fail("address", V4)
        # Line-buffered: the line is on disk without a flush.
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(opened), 1)
        self.assertEqual(json.loads(lines[0]), {"old": 1})
        self.assertEqual(json.loads(lines[1])["reason"], "address")


HOSTILE = "UNIX : alice\nFAIL: svc address from=10.0.0.1\r\x00\x1b[2J"


class ControlCharacterTests(SynchronousTestCase):
    """
    An identd's reply never writes raw control bytes or a second line.
    """

    def test_printable(self) -> None:
        """C0, DEL and C1 controls are written as \\xHH; other text is kept."""
        self.assertEqual(
            printable("a\nb\rc\x00d\x1be\x7ff\x9bg\\h \u00e9"),
            "a\\x0ab\\x0dc\\x00d\\x1be\\x7ff\\x9bg\\h \u00e9",
        )

    def test_rawC1Bytes(self) -> None:
        """Raw bytes 0x80-0x9f (carried as surrogates) are escaped too."""
        text = b"a\x9bb\xff".decode("utf-8", "surrogateescape")
        self.assertEqual(
            printable(text).encode("utf-8", "surrogateescape"), b"a\\x9bb\xff"
        )

    def test_useridLine(self) -> None:
        """
        A USERID with LF, CR, NUL and ESC is one line without control
        bytes, in the sink and in the event.
        """
        sink = RecordingSink()
        log, events = makeLog(sink=sink)
        log.userid(HOSTILE)
        expected = "UNIX : alice\\x0aFAIL: svc address from=10.0.0.1\\x0d\\x00\\x1b[2J"
        self.assertEqual(sink.lines, ["USERID: svc " + expected])
        self.assertEqual(events[0]["userid"], expected)
        self.assertEqual(events[0]["line"], sink.lines[0])

    def test_identReplyToFile(self) -> None:
        """
        A reply with a bare LF and CR, parsed as xinetd does and written to
        a FILE log, adds exactly one line to the file.
        """
        reply = b"40000,23:USERID:UNIX:alice\nFAIL: svc\rx\x1b[0m"
        text = parseResponse(reply, 40000, 23)
        assert text is not None
        path = self.mktemp()
        sink = FileLogSink(path, "svc", now=lambda: 0)
        self.addCleanup(sink.close)
        log, _ = makeLog(sink=sink)
        log.identified(IdentResult(userid=text), V4)
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(data.count(b"\n"), 1)
        self.assertNotIn(b"\r", data)
        self.assertNotIn(b"\x1b", data)
        self.assertTrue(data.endswith(b"UNIX:alice\\x0aFAIL: svc\\x0dx\\x1b[0m\n"))

    def test_identReplyJSON(self) -> None:
        """The JSON event of such a reply is one line too."""
        out = io.StringIO()
        log = ServiceLog(
            "j",
            ALL_SUCCESS,
            frozenset(),
            None,
            logger=Logger(observer=jsonLogger({}, stdout=out)),
        )
        self.addCleanup(enableServiceEvents, False)
        log.userid(HOSTILE, peer=V4)
        [line] = out.getvalue().splitlines()
        self.assertNotIn("\\u001b", line)
        self.assertIn("\\\\x1b", line)


def emitted(call: Callable[[ServiceLog], None]) -> dict:
    """
    The structured form of the one event C{call} makes a L{ServiceLog} emit.
    """
    log, events = makeLog(sink=RecordingSink())
    call(log)
    [event] = events
    return structuredEvent(event)


class SchemaTests(SynchronousTestCase):
    """
    The documented JSON shape of events (docs/logging.md).
    """

    def test_startKeys(self) -> None:
        """A start event has exactly the schema's keys, in order."""
        record = emitted(lambda log: log.start(7, V4))
        self.assertEqual(tuple(record), SCHEMA_FIELDS)
        self.assertEqual(
            (record["event"], record["pid"], record["peer"], record["peer_port"]),
            ("start", 7, "127.0.0.1", 40000),
        )
        self.assertEqual(record["level"], "info")

    def test_exitCarriesPeer(self) -> None:
        """exit(peer=...) fills peer and peer_port; status and duration too."""
        record = emitted(lambda log: log.exit(7, status=2, duration=3.5, peer=V6))
        self.assertEqual(tuple(record), SCHEMA_FIELDS)
        self.assertEqual(
            (record["peer"], record["peer_port"], record["status"], record["duration"]),
            ("::1", 40002, 2, 3),
        )

    def test_exitFromReasonCarriesPeer(self) -> None:
        """exitFromReason(peer=...) passes the peer on, signal without status."""
        record = emitted(
            lambda log: log.exitFromReason(
                7, Failure(ProcessTerminated(signal=9)), 1, peer="10.0.0.1"
            )
        )
        self.assertEqual(
            (record["peer"], record["signal"], record["status"]), ("10.0.0.1", 9, None)
        )

    def test_peerPortFromPair(self) -> None:
        """A (host, port) pair as getpeername() gives it fills peer_port."""
        record = emitted(lambda log: log.fail("address", ("10.1.2.3", 5555)))
        self.assertEqual(
            (record["peer"], record["peer_port"], record["reason"], record["level"]),
            ("10.1.2.3", 5555, "address", "warn"),
        )

    def test_noPeerIsNull(self) -> None:
        """Without an address (wait mode), peer and peer_port are null."""
        record = emitted(lambda log: log.start(7, None))
        self.assertEqual((record["peer"], record["peer_port"]), (None, None))

    def test_noidIsUseridEvent(self) -> None:
        """A NOID is a userid event with no userid and the reason."""
        record = emitted(lambda log: log.noid(V4, "timeout"))
        self.assertEqual(
            (record["event"], record["userid"], record["reason"]),
            ("userid", None, "timeout"),
        )

    def test_traffic(self) -> None:
        """A traffic event carries bytes_in, bytes_out and the peer."""
        record = emitted(lambda log: log.traffic(5, 6, peer=V4))
        self.assertEqual(
            (record["event"], record["bytes_in"], record["bytes_out"], record["peer"]),
            ("traffic", 5, 6, "127.0.0.1"),
        )

    def test_time(self) -> None:
        """time is RFC 3339 in UTC."""
        event = {"log_time": 0.5, "log_format": "x", "log_namespace": "n"}
        self.assertEqual(structuredEvent(event)["time"], "1970-01-01T00:00:00.500000Z")

    def test_daemonEvent(self) -> None:
        """
        Other events have exactly time, level, namespace and text; nothing
        of the logger, its source or the format string.
        """
        events: List[dict] = []
        Logger(namespace="xinetd_twisted.daemon", observer=events.append).error(
            "service {service}: bad {thing!r}", service="echo", thing=object()
        )
        record = structuredEvent(events[0])
        self.assertEqual(tuple(record), DAEMON_FIELDS)
        self.assertEqual(record["level"], "error")
        self.assertEqual(record["namespace"], "xinetd_twisted.daemon")
        self.assertTrue(record["text"].startswith("service echo: bad <object"))

    def test_failureText(self) -> None:
        """A logged failure's traceback is part of the text."""
        events: List[dict] = []
        try:
            raise ZeroDivisionError("no")
        except ZeroDivisionError:
            Logger(observer=events.append).failure("oops")
        record = structuredEvent(events[0])
        self.assertTrue(record["text"].startswith("oops\nTraceback"))
        self.assertIn("ZeroDivisionError", record["text"])

    def test_jsonLines(self) -> None:
        """
        jsonLogger writes one object per line, no Twisted internals, for
        service and daemon events alike.
        """
        self.addCleanup(enableServiceEvents, False)
        out = io.StringIO()
        observer = jsonLogger({}, stdout=out)
        log = ServiceLog(
            "j", ALL_SUCCESS, frozenset(), None, logger=Logger(observer=observer)
        )
        log.start(3, V4)
        Logger(observer=observer).info("hello {who}", who="world")
        first, second = (json.loads(line) for line in out.getvalue().splitlines())
        self.assertEqual(tuple(first), SCHEMA_FIELDS)
        self.assertEqual(tuple(second), DAEMON_FIELDS)
        self.assertEqual(second["text"], "hello world")
        self.assertNotIn("log_logger", out.getvalue())

    def test_jsonFileNoSymlink(self) -> None:
        """The default opener refuses a symbolic link as the JSON log."""
        self.addCleanup(enableServiceEvents, False)
        path = self.mktemp()
        target = os.path.abspath(self.mktemp())
        os.symlink(target, path)
        self.assertRaises(OSError, jsonLogger, {JSON_LOG_ENVIRONMENT: path})
        self.assertFalse(os.path.lexists(target))
