"""
Tests for L{xinetd_twisted.logs.daemonsyslog}: the daemon's own messages to syslog.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from typing import Any, Dict, List, cast

from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.logs.daemonsyslog import DaemonSyslogObserver
from xinetd_twisted.logs.service import SERVICE_NAMESPACE
from xinetd_twisted.logs.sinks import SyslogConnection


class DaemonSyslogObserverTests(SynchronousTestCase):
    """
    L{DaemonSyslogObserver} sends daemon messages, not service lines.
    """

    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.path = os.path.join(directory, "log")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.server.bind(self.path)
        self.server.settimeout(2)
        self.addCleanup(self.server.close)
        self.connection = SyslogConnection(
            self.path,
            now=lambda: time.mktime((2026, 11, 26, 4, 8, 9, 0, 0, -1)),
            getpid=lambda: 42,
        )
        self.addCleanup(self.connection.disconnect)
        self.observer = DaemonSyslogObserver(self.connection, "local3")

    def test_levelAndFacility(self) -> None:
        """
        An error from the daemon goes out at the facility with level err,
        tagged xinetd[PID].
        """
        log = Logger(
            namespace="xinetd_twisted.daemon.superserver", observer=self.observer
        )
        log.error("Service {s} failed to start", s="echo")
        data = self.server.recv(1024)
        self.assertEqual(
            data, b"<155>Nov 26 04:08:09 xinetd[42]: Service echo failed to start"
        )

    def test_serviceLinesSkipped(self) -> None:
        """
        Service START/EXIT/FAIL events are not daemon messages.
        """
        self.observer(
            {
                "log_namespace": SERVICE_NAMESPACE,
                "log_level": LogLevel.info,
                "log_format": "START: x",
            }
        )
        self.observer(
            {"log_namespace": "x", "log_level": LogLevel.warn, "log_format": "careful"}
        )
        self.assertEqual(self.server.recv(1024)[:5], b"<156>")

    def test_badFacility(self) -> None:
        """
        An unknown facility is refused.
        """
        self.assertRaises(ValueError, DaemonSyslogObserver, self.connection, "bogus")


class DaemonOptionTests(SynchronousTestCase):
    """
    C{twistd xinetd --syslog-facility} on the real daemon.
    """

    def test_startMessageReachesSyslog(self) -> None:
        """
        The daemon's start-up message arrives at the syslog socket with the
        facility asked for, and service lines of a SYSLOG service too.
        """
        from tests.daemon import Daemon, fetch, freePort
        from tests.test_logs_daemon import daytime

        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "log")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(10)
        self.addCleanup(server.close)
        port = freePort()
        daemon = Daemon(
            daytime(port, "\tlog_type = SYSLOG local5 notice\n", success="HOST"),
            extraArgs=["--syslog-facility", "daemon", "--syslog-path", path],
        )
        self.addCleanup(daemon.cleanup)
        daemon.start(waitFor=("127.0.0.1", port))
        fetch("127.0.0.1", port)
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen.append(server.recv(4096))
            if any(b"START: daytime" in d for d in seen) and any(
                b"Started working" in d for d in seen
            ):
                break
        started = [d for d in seen if b"Started working" in d]
        self.assertTrue(started and started[0].startswith(b"<30>"), seen)
        self.assertTrue(
            any(
                d.startswith(b"<173>") and d.endswith(b"START: daytime from=127.0.0.1")
                for d in seen
            ),
            seen,
        )


class NoSyslogTests(SynchronousTestCase):
    """
    C{--syslog-facility} without a syslog socket.
    """

    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, directory)
        self.path = os.path.join(directory, "log")
        self.seen: List[Dict[str, Any]] = []
        # The daemon's log as twistd has it: the syslog observer and a file.
        self.publisher = LogPublisher()
        self.publisher.addObserver(cast(ILogObserver, self.seen.append))
        self.connection = SyslogConnection(
            self.path, daemonLog=Logger(namespace="sinks", observer=self.publisher)
        )
        self.addCleanup(self.connection.disconnect)
        self.publisher.addObserver(DaemonSyslogObserver(self.connection, "daemon"))
        self.log = Logger(namespace="daemon", observer=self.publisher)

    def warnings(self) -> List[str]:
        return [formatEvent(e) for e in self.seen if "syslog socket" in formatEvent(e)]

    def test_oneWarningPerOutage(self) -> None:
        """
        Many messages while the socket is missing give one warning, with no
        recursion and no observer disabled.
        """
        for n in range(20):
            self.log.info("message {n}", n=n)
        self.assertEqual(len(self.warnings()), 1, self.warnings())
        self.assertEqual(
            [e for e in self.seen if "Temporarily disabling" in formatEvent(e)], []
        )
        self.assertEqual(self.connection.dropped, 20)

    def test_warningNotSentToSyslog(self) -> None:
        """
        The warning itself is not handed to the syslog connection.
        """
        self.log.info("first")
        self.assertEqual(self.connection.dropped, 1)

    def test_newOutageWarnsAgain(self) -> None:
        """
        After syslog came back, a second outage is warned about again.
        """
        self.log.info("lost")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(self.path)
        self.log.info("back")
        self.assertEqual(server.recv(1024)[-4:], b"back")
        server.close()
        os.unlink(self.path)
        self.connection.disconnect()
        self.log.info("lost again")
        self.assertEqual(len(self.warnings()), 2, self.warnings())
