"""
Tests for L{xinetd_twisted.logs.service}: xinetd's line formats and the structured
events.
"""

from __future__ import annotations

import io
import json
from typing import Any, List, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import ILogObserver, Logger, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Location, ServiceConfig
from xinetd_twisted.logs.service import (
    JSON_LOG_ENVIRONMENT,
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
    renderAddress,
    wallDuration,
)
from xinetd_twisted.protocols.ident import IdentResult

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
        self.assertEqual(event["peerPort"], 40001)
        self.assertEqual(event["xinetdLine"], sink.lines[0])
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
        self.assertEqual(
            events[1]["xinetdLine"], "EXIT: svc status=0 pid=1 duration=2(sec)"
        )

    def test_noLineStillEmits(self) -> None:
        """An event xinetd would not log is emitted with xinetdLine None."""
        sink = RecordingSink()
        log, events = makeLog(success=frozenset(), sink=sink)
        log.start(1, V4)
        self.assertEqual(sink.lines, [])
        self.assertIsNone(events[0]["xinetdLine"])
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
        self.assertEqual(e["xinetdLine"], "EXIT: svc signal=15 pid=9 duration=3(sec)")

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
            (quietEvents[0]["bytesIn"], quietEvents[0]["bytesOut"]), (7, 8)
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
        self.assertEqual(first["xinetdLine"], "START: j pid=3 from=127.0.0.1")

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
