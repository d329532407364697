"""
Tests for L{xinetd_twisted.logs.sinks}: FILE logs with limits, syslog datagrams.
"""

from __future__ import annotations

import calendar
import fcntl
import os
import shutil
import socket
import stat
import tempfile
import time
from typing import Any, List, cast

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import ILogObserver, Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from xinetd_twisted.config.model import FileLog, Location, SyslogLog
from xinetd_twisted.logs.sinks import (
    FileLogSink,
    ILogSink,
    SyslogConnection,
    SyslogSink,
    defaultHardLimit,
    fileTimestamp,
    openSink,
    syslogTimestamp,
)

# 2026-01-05 04:08:09 UTC: single-digit month and day.
WHEN = float(calendar.timegm((2026, 1, 5, 4, 8, 9, 0, 0, 0)))


def useUTC(case: SynchronousTestCase) -> None:
    """
    Run the test with TZ=UTC so local time is predictable.
    """
    old = os.environ.get("TZ")

    def restore() -> None:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    os.environ["TZ"] = "UTC"
    time.tzset()
    case.addCleanup(restore)


def capture() -> tuple:
    events: List[dict] = []
    return Logger(observer=cast(ILogObserver, events.append)), events


class TimestampTests(SynchronousTestCase):
    """
    Tests for the two timestamp formats.
    """

    def setUp(self) -> None:
        useUTC(self)

    def test_fileTimestamp(self) -> None:
        """FILE logs use YY/M/D@HH:MM:SS, month and day not zero-padded."""
        self.assertEqual(fileTimestamp(WHEN), "26/1/5@04:08:09")

    def test_fileTimestampTwoDigits(self) -> None:
        """Two-digit months and days are written as they are."""
        when = calendar.timegm((2005, 11, 26, 23, 59, 1, 0, 0, 0))
        self.assertEqual(fileTimestamp(when), "05/11/26@23:59:01")

    def test_syslogTimestamp(self) -> None:
        """Syslog uses Mmm dd hh:mm:ss with the day padded by a space."""
        self.assertEqual(syslogTimestamp(WHEN), "Jan  5 04:08:09")


class HardLimitTests(SynchronousTestCase):
    """
    Tests for L{defaultHardLimit}.
    """

    def test_smallSoftLimit(self) -> None:
        """Below 500 KiB the extra is the 5 KiB minimum."""
        self.assertEqual(defaultHardLimit(1000), 1000 + 5 * 1024)

    def test_middleSoftLimit(self) -> None:
        """Between the bounds the extra is 1% of soft."""
        self.assertEqual(defaultHardLimit(1024 * 1024), 1024 * 1024 + 10485)

    def test_largeSoftLimit(self) -> None:
        """Above 2 MiB the extra is the 20 KiB maximum."""
        self.assertEqual(defaultHardLimit(10**8), 10**8 + 20 * 1024)


class FileLogSinkTests(SynchronousTestCase):
    """
    Tests for L{FileLogSink}.
    """

    def setUp(self) -> None:
        useUTC(self)
        self.path = self.mktemp()
        self.daemonLog, self.events = capture()

    def sink(self, soft: Any = None, hard: Any = None) -> FileLogSink:
        s = FileLogSink(
            self.path, "svc", soft, hard, now=lambda: WHEN, daemonLog=self.daemonLog
        )
        self.addCleanup(s.close)
        return s

    def contents(self) -> str:
        with open(self.path) as f:
            return f.read()

    def test_interface(self) -> None:
        """FileLogSink provides ILogSink."""
        self.assertTrue(verifyObject(ILogSink, self.sink()))

    def test_lineFormat(self) -> None:
        """Each line is the timestamp, ': ', the text and a newline."""
        self.sink().write("START: svc pid=1 from=127.0.0.1")
        self.assertEqual(
            self.contents(), "26/1/5@04:08:09: START: svc pid=1 from=127.0.0.1\n"
        )

    def test_appends(self) -> None:
        """Existing content is kept and lines are appended."""
        with open(self.path, "w") as f:
            f.write("old\n")
        self.sink().write("x")
        self.assertEqual(self.contents(), "old\n26/1/5@04:08:09: x\n")

    def test_modeIgnoresUmask(self) -> None:
        """A created log is 0644 even under twistd's 077 umask."""
        old = os.umask(0o077)
        try:
            self.sink()
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o644)

    def test_closeOnExec(self) -> None:
        """The descriptor is close-on-exec, so children never inherit it."""
        fd = self.sink().fileno()
        assert fd is not None
        self.assertTrue(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)

    def test_bytesVerbatim(self) -> None:
        """Undecodable bytes carried as surrogates are written back as bytes."""
        self.sink().write(b"USERID: svc \xff".decode("utf-8", "surrogateescape"))
        with open(self.path, "rb") as f:
            self.assertTrue(f.read().endswith(b"USERID: svc \xff\n"))

    def test_softLimitWarnsOnce(self) -> None:
        """Past the soft limit, one alert is logged and writing goes on."""
        s = self.sink(soft=30, hard=1000)
        for _ in range(3):
            s.write("0123456789")
        messages = [formatEvent(e) for e in self.events]
        self.assertEqual(messages, ["soft limit exceeded on 'svc'"])
        self.assertTrue(s.isOpen)
        self.assertEqual(self.contents().count("\n"), 3)

    def test_hardLimitCloses(self) -> None:
        """Past the hard limit the log is closed and later lines dropped."""
        s = self.sink(soft=10, hard=40)
        s.write("0123456789")  # 28 bytes: over soft
        s.write("0123456789")  # 56 bytes: over hard
        s.write("dropped")
        self.assertFalse(s.isOpen)
        self.assertEqual(self.contents().count("\n"), 2)
        self.assertEqual(
            [formatEvent(e) for e in self.events],
            [
                "soft limit exceeded on 'svc'",
                "hard limit exceeded on 'svc'; log closed",
                "Size of svc log exceeded hard limit",
            ],
        )

    def test_sizeFromExistingFile(self) -> None:
        """The size starts at the file's size, as xinetd's fstat at open."""
        with open(self.path, "w") as f:
            f.write("x" * 100)
        s = self.sink(soft=50, hard=1000)
        self.assertEqual(s.size, 100)
        self.assertEqual(len(self.events), 1)

    def test_reopenAfterRotation(self) -> None:
        """reopen() after the file was moved away starts a fresh log."""
        s = self.sink(soft=10, hard=40)
        s.write("0123456789")
        s.write("0123456789")
        os.rename(self.path, self.path + ".1")
        s.reopen()
        s.write("fresh")
        self.assertTrue(s.isOpen)
        self.assertEqual(self.contents(), "26/1/5@04:08:09: fresh\n")

    def test_reopenStillOverLimit(self) -> None:
        """reopen() of a file still over the hard limit closes it again."""
        s = self.sink(soft=10, hard=40)
        s.write("0123456789")
        s.write("0123456789")
        del self.events[:]
        s.reopen()
        self.assertFalse(s.isOpen)
        self.assertEqual(len(self.events), 3)

    def test_sizeCheck(self) -> None:
        """sizeCheck() sees bytes others appended and applies the limits."""
        s = self.sink(soft=10, hard=10000)
        with open(self.path, "a") as f:
            f.write("y" * 20)
        self.assertEqual(self.events, [])
        s.sizeCheck()
        self.assertEqual(s.size, 20)
        self.assertEqual(len(self.events), 1)

    def test_openError(self) -> None:
        """An unopenable path logs an error and drops lines."""
        self.path = os.path.join(self.mktemp(), "missing", "log")
        s = self.sink()
        s.write("x")
        self.assertFalse(s.isOpen)
        self.assertIn("Cannot open log file", formatEvent(self.events[0]))

    def test_symlinkRefused(self) -> None:
        """
        A symbolic link planted at the log path is not followed: its target
        is neither created nor written, and the refusal names the path.
        """
        target = os.path.abspath(self.mktemp())
        os.symlink(target, self.path)
        s = self.sink()
        s.write("x")
        self.assertFalse(s.isOpen)
        self.assertFalse(os.path.lexists(target))
        self.assertEqual(
            formatEvent(self.events[0]),
            f"Refusing log file {self.path} of svc: it is a symbolic link",
        )

    def test_symlinkToExistingFileRefused(self) -> None:
        """A symbolic link to an existing file leaves that file untouched."""
        target = os.path.abspath(self.mktemp())
        with open(target, "w") as f:
            f.write("secret\n")
        os.symlink(target, self.path)
        self.sink().write("x")
        with open(target) as f:
            self.assertEqual(f.read(), "secret\n")

    def test_fifoRefused(self) -> None:
        """A FIFO at the log path neither hangs the open nor is written."""
        os.mkfifo(self.path)
        s = self.sink()
        self.assertFalse(s.isOpen)
        self.assertIn("not a regular file", formatEvent(self.events[0]))

    def test_fifoWithReaderRefused(self) -> None:
        """A FIFO someone reads is refused too (fstat: not a regular file)."""
        os.mkfifo(self.path)
        reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        s = self.sink()
        s.write("x")
        self.assertFalse(s.isOpen)
        self.assertEqual(os.read(reader, 10), b"")
        self.assertIn("not a regular file", formatEvent(self.events[0]))

    def test_reopenRefusesPlantedSymlink(self) -> None:
        """
        A symbolic link planted after rotation is refused on reopen, and a
        later reopen on a fixed path works again.
        """
        s = self.sink()
        os.rename(self.path, self.path + ".1")
        target = os.path.abspath(self.mktemp())
        os.symlink(target, self.path)
        s.reopen()
        s.write("x")
        self.assertFalse(s.isOpen)
        self.assertFalse(os.path.lexists(target))
        os.unlink(self.path)
        s.reopen()
        s.write("back")
        self.assertEqual(self.contents(), "26/1/5@04:08:09: back\n")

    def test_refusalNamesLocation(self) -> None:
        """Given where log_type was written, the refusal names it first."""
        os.mkfifo(self.path)
        seen = EventLoggingObserver.createWithCleanup(
            cast(Any, self), globalLogPublisher
        )
        openSink(
            "svc",
            FileLog(self.path),
            SyslogConnection(),
            location=Location("/etc/xinetd.d/svc", 9),
        )
        self.assertEqual(
            formatEvent(seen[0]),
            f"/etc/xinetd.d/svc:9: Refusing log file {self.path} of svc: "
            "it is not a regular file",
        )

    def test_otherUsersDirectorySymlinkRefused(self) -> None:
        """
        A directory on the way that is another user's symbolic link is
        refused: nothing is created where it points.
        """
        if os.geteuid() != 0:
            raise SkipTest("lchown to another user needs root")
        elsewhere = os.path.abspath(self.mktemp())
        os.mkdir(elsewhere)
        planted = os.path.abspath(self.mktemp())
        os.symlink(elsewhere, planted)
        os.lchown(planted, 4321, 4321)
        self.path = os.path.join(planted, "svc.log")
        s = self.sink()
        self.assertFalse(s.isOpen)
        self.assertEqual(os.listdir(elsewhere), [])
        self.assertIn(
            f"{planted} is a symbolic link of uid 4321", formatEvent(self.events[0])
        )

    def test_rootDirectorySymlinkFollowed(self) -> None:
        """A directory symlink owned by root (/var/run -> /run) is fine."""
        if os.geteuid() != 0:
            raise SkipTest("the link must be root's")
        elsewhere = os.path.abspath(self.mktemp())
        os.mkdir(elsewhere)
        link = os.path.abspath(self.mktemp())
        os.symlink(elsewhere, link)
        self.path = os.path.join(link, "svc.log")
        self.sink().write("x")
        self.assertEqual(os.listdir(elsewhere), ["svc.log"])

    def test_directoryRefused(self) -> None:
        """A directory at the log path is refused with a log line."""
        os.mkdir(self.path)
        s = self.sink()
        self.assertFalse(s.isOpen)
        self.assertEqual(len(self.events), 1)

    def test_close(self) -> None:
        """close() drops later lines."""
        s = self.sink()
        s.close()
        s.write("x")
        self.assertEqual(self.contents(), "")


class SyslogTests(SynchronousTestCase):
    """
    Tests for L{SyslogConnection} and L{SyslogSink}, against a Unix datagram
    socket bound in a temporary directory.
    """

    def setUp(self) -> None:
        useUTC(self)
        # Unix socket paths are short; trial's temp dir may be too deep.
        directory = tempfile.mkdtemp(prefix="xt-syslog-")
        self.addCleanup(shutil.rmtree, directory)
        self.path = os.path.join(directory, "log")
        self.server = self.bind()
        self.daemonLog, self.events = capture()
        self.connection = SyslogConnection(
            self.path, now=lambda: WHEN, getpid=lambda: 4242, daemonLog=self.daemonLog
        )
        self.addCleanup(self.connection.disconnect)

    def bind(self) -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(server.close)
        server.bind(self.path)
        server.setblocking(False)
        return server

    def receive(self) -> bytes:
        return self.server.recv(4096)

    def test_interface(self) -> None:
        """SyslogSink provides ILogSink."""
        self.assertTrue(verifyObject(ILogSink, SyslogSink(self.connection, "daemon")))

    def test_datagram(self) -> None:
        """A line is one RFC 3164 datagram as glibc's syslog(3) sends it."""
        SyslogSink(self.connection, "local3", "notice").write("START: echo pid=5")
        self.assertEqual(
            self.receive(), b"<157>Jan  5 04:08:09 xinetd[4242]: START: echo pid=5"
        )

    def test_priorities(self) -> None:
        """PRI is facility * 8 + level with the standard codes."""
        self.assertEqual(SyslogSink(self.connection, "authpriv").priority, 86)
        self.assertEqual(SyslogSink(self.connection, "daemon", "info").priority, 30)
        self.assertEqual(SyslogSink(self.connection, "local7", "debug").priority, 191)
        self.assertEqual(SyslogSink(self.connection, "auth", "emerg").priority, 32)

    def test_reconnect(self) -> None:
        """A restarted syslog daemon (new socket) is reconnected to."""
        sink = SyslogSink(self.connection, "daemon")
        sink.write("one")
        self.assertTrue(self.receive().endswith(b"one"))
        self.server.close()
        os.unlink(self.path)
        self.server = self.bind()
        sink.write("two")
        self.assertTrue(self.receive().endswith(b"two"))
        self.assertEqual((self.connection.sent, self.connection.dropped), (2, 0))

    def test_noServer(self) -> None:
        """Without a syslog socket lines are dropped, counted, warned once."""
        self.server.close()
        os.unlink(self.path)
        sink = SyslogSink(self.connection, "daemon")
        sink.write("a")
        sink.write("b")
        self.assertEqual(self.connection.dropped, 2)
        self.assertEqual(len(self.events), 1)
        self.assertIn("Cannot send to syslog socket", formatEvent(self.events[0]))

    def test_fullSocketDrops(self) -> None:
        """A syslog daemon that does not read makes us drop, never block."""
        sink = SyslogSink(self.connection, "daemon")
        for _ in range(10000):
            sink.write("x" * 200)
            if self.connection.dropped:
                break
        self.assertEqual(self.connection.dropped, 1)
        self.assertGreater(self.connection.sent, 0)
        # Draining the queue lets lines through again.
        for _ in range(self.connection.sent):
            self.receive()
        sink.write("after")
        self.assertTrue(self.receive().endswith(b"after"))

    def test_close(self) -> None:
        """A closed sink sends nothing."""
        sink = SyslogSink(self.connection, "daemon")
        sink.close()
        sink.write("x")
        self.assertRaises(BlockingIOError, self.receive)

    def test_reopen(self) -> None:
        """reopen() reconnects and sends again after close()."""
        sink = SyslogSink(self.connection, "daemon")
        sink.close()
        sink.reopen()
        sink.write("back")
        self.assertTrue(self.receive().endswith(b"back"))


class OpenSinkTests(SynchronousTestCase):
    """
    Tests for L{openSink}.
    """

    def test_none(self) -> None:
        """No log_type, no sink."""
        self.assertIsNone(openSink("s", None, SyslogConnection("/nonexistent")))

    def test_syslog(self) -> None:
        """SYSLOG gives a SyslogSink on the shared connection."""
        connection = SyslogConnection("/nonexistent")
        sink = openSink("s", SyslogLog("local3", "notice"), connection)
        assert isinstance(sink, SyslogSink)
        self.assertIs(sink.connection, connection)
        self.assertEqual(sink.priority, 157)

    def test_file(self) -> None:
        """FILE gives a FileLogSink with the limits and the service id."""
        path = self.mktemp()
        sink = openSink("s", FileLog(path, 100), SyslogConnection("/nonexistent"))
        assert isinstance(sink, FileLogSink)
        self.addCleanup(sink.close)
        self.assertEqual(
            (sink.path, sink.logId, sink.softLimit, sink.hardLimit),
            (path, "s", 100, 100 + 5 * 1024),
        )
