"""
Tests for L{xinetd_twisted.daemon.notify}: the datagrams are read from a
socket the test binds, as systemd would read them.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xinetd_twisted.daemon.notify import (
    SYSTEMD_VARIABLES,
    SystemdNotifier,
    notifyAddress,
    watchdogInterval,
)


def shortPath(case: SynchronousTestCase) -> str:
    """
    A socket path in a new directory under /tmp (trial's own directory may
    be longer than a socket address allows), removed after the test.
    """
    directory = tempfile.mkdtemp(prefix="xt-notify-", dir="/tmp")
    case.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "notify")


class Supervisor:
    """
    The systemd side: a datagram socket bound at a path or an abstract name.
    """

    def __init__(self, case: SynchronousTestCase, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        case.addCleanup(self.sock.close)
        if abstract:
            name = f"xinetd-twisted-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.value = "@" + name
        else:
            self.value = shortPath(case)
            self.sock.bind(self.value)
        self.sock.setblocking(False)

    def received(self) -> List[List[str]]:
        """
        Every datagram queued so far, each as its lines.
        """
        datagrams = []
        for _ in range(1000):
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            datagrams.append(data.decode("utf-8").split("\n"))
        return datagrams


class NotifyCollector(DatagramProtocol):
    """
    The systemd side on the real reactor, for tests that run a daemon:
    bind it with L{listen}, give the daemon C{NOTIFY_SOCKET=collector.path},
    then wait for a message with L{waitFor}.

    @ivar messages: every datagram received, each as its lines.
    """

    def __init__(self) -> None:
        self.path = ""
        self.messages: List[List[str]] = []
        self._waiting: List[Tuple[str, Deferred[List[str]]]] = []

    @classmethod
    def listen(cls, case: TestCase) -> NotifyCollector:
        collector = cls()
        collector.path = shortPath(case)
        port = reactor.listenUNIXDatagram(collector.path, collector)
        case.addCleanup(port.stopListening)
        return collector

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        lines = datagram.decode("utf-8", "replace").split("\n")
        self.messages.append(lines)
        for entry in list(self._waiting):
            if entry[0] in lines:
                self._waiting.remove(entry)
                entry[1].callback(lines)

    def waitFor(self, assignment: str, timeout: float = 30) -> Deferred[List[str]]:
        """
        The first datagram holding C{assignment} (e.g. C{"READY=1"}), at
        once when one already came; fails after C{timeout} seconds.
        """
        for lines in self.messages:
            if assignment in lines:
                return succeed(lines)
        d: Deferred[List[str]] = Deferred()
        self._waiting.append((assignment, d))
        return d.addTimeout(timeout, reactor)


def notifierFor(
    supervisor: Optional[Supervisor],
    clock: Optional[Clock] = None,
    extra: Optional[Dict[str, str]] = None,
    pid: int = 4242,
) -> SystemdNotifier:
    environ = dict(extra or {})
    if supervisor is not None:
        environ["NOTIFY_SOCKET"] = supervisor.value
    clock = clock or Clock()
    return SystemdNotifier.fromEnvironment(
        environ, clock, pid=pid, monotonic=lambda: 12.5
    )


def monotonicMicroseconds() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def capture(notifier: SystemdNotifier) -> List[Dict[str, Any]]:
    events: List[Dict[str, Any]] = []
    notifier.log = Logger(observer=events.append)
    return events


class MessageTests(SynchronousTestCase):
    def test_readyWithStatus(self) -> None:
        """ready() sends READY=1 and STATUS= in one datagram."""
        supervisor = Supervisor(self)
        notifier = notifierFor(supervisor)
        self.addCleanup(notifier.close)
        self.assertTrue(notifier.ready("3 services"))
        self.assertEqual(supervisor.received(), [["READY=1", "STATUS=3 services"]])

    def test_abstractNamespace(self) -> None:
        """A NOTIFY_SOCKET starting with @ reaches the abstract name."""
        supervisor = Supervisor(self, abstract=True)
        notifier = notifierFor(supervisor)
        self.addCleanup(notifier.close)
        notifier.stopping()
        self.assertEqual(supervisor.received(), [["STOPPING=1"]])

    def test_reloadingOneDatagram(self) -> None:
        """reloading() sends RELOADING=1 and MONOTONIC_USEC from the clock together."""
        supervisor = Supervisor(self)
        notifier = notifierFor(supervisor)
        self.addCleanup(notifier.close)
        notifier.reloading()
        self.assertEqual(
            supervisor.received(), [["RELOADING=1", "MONOTONIC_USEC=12500000"]]
        )

    def test_realMonotonicClock(self) -> None:
        """By default MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds."""
        supervisor = Supervisor(self)
        notifier = SystemdNotifier.fromEnvironment(
            {"NOTIFY_SOCKET": supervisor.value}, Clock()
        )
        self.addCleanup(notifier.close)
        before = monotonicMicroseconds()
        notifier.reloading()
        after = monotonicMicroseconds()
        [[_, usec]] = supervisor.received()
        self.assertTrue(before <= int(usec.split("=")[1]) <= after)

    def test_statusOneLine(self) -> None:
        """A status text with newlines stays one STATUS= assignment."""
        supervisor = Supervisor(self)
        notifier = notifierFor(supervisor)
        self.addCleanup(notifier.close)
        notifier.status("reload failed:\nbad file")
        self.assertEqual(supervisor.received(), [["STATUS=reload failed: bad file"]])

    def test_unsetIsNoOp(self) -> None:
        """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
        notifier = notifierFor(None)
        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.ready("1 service"))
        self.assertFalse(notifier.reloading())
        self.assertFalse(notifier.stopping())
        notifier.startWatchdog()
        notifier.stopWatchdog()
        notifier.close()

    def test_systemdVariables(self) -> None:
        """SYSTEMD_VARIABLES names what the daemon must not pass to servers."""
        self.assertEqual(
            set(SYSTEMD_VARIABLES),
            {
                "NOTIFY_SOCKET",
                "WATCHDOG_USEC",
                "WATCHDOG_PID",
                "LISTEN_FDS",
                "LISTEN_PID",
                "LISTEN_FDNAMES",
            },
        )


class AddressTests(SynchronousTestCase):
    def test_path(self) -> None:
        """An absolute path is used as it is."""
        self.assertEqual(notifyAddress("/run/systemd/notify"), "/run/systemd/notify")

    def test_abstract(self) -> None:
        """@name becomes the abstract address NUL name."""
        self.assertEqual(notifyAddress("@x/y"), b"\0x/y")

    def test_unsupported(self) -> None:
        """vsock:, relative paths, a bare @ and an empty value give no address."""
        for value in ("vsock:2:1234", "notify", "@", ""):
            self.assertIsNone(notifyAddress(value), value)

    def test_unsupportedWarns(self) -> None:
        """An unusable NOTIFY_SOCKET gives a disabled notifier (and a warning)."""
        events: List[Dict[str, Any]] = []
        self.patch(SystemdNotifier, "log", Logger(observer=events.append))
        notifier = SystemdNotifier.fromEnvironment({"NOTIFY_SOCKET": "x"}, Clock())
        self.assertFalse(notifier.enabled)
        self.assertEqual(len(events), 1)
        self.assertFalse(notifier.ready("x"))


class ErrorTests(SynchronousTestCase):
    def test_noListenerLoggedOnce(self) -> None:
        """Sending to a socket nobody listens on fails quietly, logged once per episode."""
        path = shortPath(self)
        notifier = SystemdNotifier.fromEnvironment({"NOTIFY_SOCKET": path}, Clock())
        self.addCleanup(notifier.close)
        events = capture(notifier)
        self.assertFalse(notifier.ready("x"))
        self.assertFalse(notifier.stopping())
        self.assertEqual(len(events), 1)
        self.assertIn("cannot notify systemd", events[0]["log_format"])
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(listener.close)
        listener.bind(path)
        self.assertTrue(notifier.status("back"))
        self.assertEqual(len(events), 2)
        listener.close()
        os.unlink(path)
        self.assertFalse(notifier.status("gone again"))
        self.assertEqual(len(events), 3)

    def test_fullBufferNeverBlocks(self) -> None:
        """A supervisor that does not read makes sends fail (EAGAIN), never block."""
        supervisor = Supervisor(self)
        supervisor.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        notifier = notifierFor(supervisor)
        self.addCleanup(notifier.close)
        events = capture(notifier)
        results = [notifier.status("x" * 512) for _ in range(2000)]
        self.assertIn(False, results)
        self.assertEqual(len(events), 1)


class WatchdogTests(SynchronousTestCase):
    def test_intervalHalf(self) -> None:
        """WATCHDOG_USEC=30000000 gives a ping every 15 s."""
        self.assertEqual(watchdogInterval({"WATCHDOG_USEC": "30000000"}, 1), 15.0)

    def test_otherPid(self) -> None:
        """A WATCHDOG_PID that is not ours means no watchdog for us."""
        environ = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}
        self.assertIsNone(watchdogInterval(environ, 8))
        self.assertEqual(watchdogInterval(environ, 7), 15.0)

    def test_badValues(self) -> None:
        """Unset, zero or malformed WATCHDOG_USEC means no watchdog."""
        for value in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"}):
            self.assertIsNone(watchdogInterval(value, 1), value)
        self.assertIsNone(
            watchdogInterval({"WATCHDOG_USEC": "10", "WATCHDOG_PID": "me"}, 1)
        )

    def test_pings(self) -> None:
        """startWatchdog pings at once and then every WATCHDOG_USEC/2 until stopped."""
        supervisor = Supervisor(self)
        clock = Clock()
        notifier = notifierFor(supervisor, clock, {"WATCHDOG_USEC": "4000000"})
        self.addCleanup(notifier.close)
        notifier.startWatchdog()
        self.assertEqual(supervisor.received(), [["WATCHDOG=1"]])
        clock.advance(1.9)
        self.assertEqual(supervisor.received(), [])
        clock.advance(0.1)
        self.assertEqual(supervisor.received(), [["WATCHDOG=1"]])
        clock.pump([2, 2])
        self.assertEqual(supervisor.received(), [["WATCHDOG=1"], ["WATCHDOG=1"]])
        notifier.stopWatchdog()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)
        self.assertEqual(supervisor.received(), [])

    def test_startTwice(self) -> None:
        """A second startWatchdog does not double the pings."""
        supervisor = Supervisor(self)
        clock = Clock()
        notifier = notifierFor(supervisor, clock, {"WATCHDOG_USEC": "2000000"})
        self.addCleanup(notifier.close)
        notifier.startWatchdog()
        notifier.startWatchdog()
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def startedFor(self, watchdogPid: str) -> tuple[Supervisor, Clock]:
        """
        A watchdog started by pid 4242 with C{WATCHDOG_PID=watchdogPid}.
        """
        supervisor = Supervisor(self)
        clock = Clock()
        environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": watchdogPid}
        notifier = notifierFor(supervisor, clock, environ, pid=4242)
        self.addCleanup(notifier.close)
        notifier.startWatchdog()
        return supervisor, clock

    def test_notOurs(self) -> None:
        """With WATCHDOG_PID set to another process nothing is scheduled."""
        supervisor, clock = self.startedFor("1")
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(supervisor.received(), [])

    def test_ourPid(self) -> None:
        """With WATCHDOG_PID equal to our pid the watchdog runs."""
        supervisor, clock = self.startedFor("4242")
        self.assertEqual(supervisor.received(), [["WATCHDOG=1"]])

    def test_closeStopsWatchdog(self) -> None:
        """close() stops the pings too."""
        supervisor = Supervisor(self)
        clock = Clock()
        notifier = notifierFor(supervisor, clock, {"WATCHDOG_USEC": "2000000"})
        notifier.startWatchdog()
        notifier.close()
        self.assertEqual(clock.getDelayedCalls(), [])


class CollectorTests(TestCase):
    """
    The reactor-driven collector that daemon tests use.
    """

    @inlineCallbacks
    def test_waitFor(self) -> Any:
        """waitFor fires with the datagram that holds the assignment, sent or yet to come."""
        collector = NotifyCollector.listen(self)
        notifier = SystemdNotifier.fromEnvironment(
            {"NOTIFY_SOCKET": collector.path}, reactor
        )
        self.addCleanup(notifier.close)
        notifier.status("starting")
        ready = collector.waitFor("READY=1")
        notifier.ready("2 services")
        self.assertEqual((yield ready), ["READY=1", "STATUS=2 services"])
        again = yield collector.waitFor("STATUS=starting")
        self.assertEqual(again, ["STATUS=starting"])
