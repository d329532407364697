# -*- test-case-name: tests.test_logs_sinks -*-
"""
Where a service's xinetd log lines go: a file with size limits, or syslog.

xinetd writes one service log line either to a file (C{log_type = FILE path
[soft [hard]]}) or through syslog(3) (C{log_type = SYSLOG facility
[level]}).  L{FileLogSink} and L{SyslogSink} reproduce the bytes a log reader
sees in both cases (reference 6.1).  Neither ever blocks the reactor for long:
file writes are plain appends (as every Twisted file logger does) and syslog
datagrams are sent non-blocking and dropped (and counted) when the syslog
daemon cannot keep up.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from typing import Callable, List, Optional, Protocol, Union

from twisted.logger import Logger
from zope.interface import Interface, implementer

from xinetd_twisted.config.model import FileLog, Location, SyslogLog

LOG_EXTRA_MIN = 5 * 1024
"""
xinetd's smallest gap between a soft limit and its implied hard limit.
"""

LOG_EXTRA_MAX = 20 * 1024
"""
xinetd's largest gap between a soft limit and its implied hard limit.
"""

LOG_FILE_MODE = 0o644

# syslog(3) numeric codes (RFC 3164 / <syslog.h>).
SYSLOG_FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}

SYSLOG_LEVELS = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "err": 3,
    "warning": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}

SYSLOG_PROBLEM = "xinetd_syslog_problem"
"""
Event key marking the daemon's warning that syslog cannot be reached: an
observer sending the daemon's messages to syslog skips such events.
"""

# glibc formats the syslog timestamp in the C locale whatever LC_TIME says.
_MONTHS = (
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()  # noqa: SIM905
)

_daemonLog = Logger(namespace="xinetd_twisted.logs.service")


def defaultHardLimit(softLimit: int) -> int:
    """
    The hard limit xinetd implies when only a soft limit is written: soft
    plus 1% of soft, the extra clamped to [5 KiB, 20 KiB] (src/parsers.c).

    @param softLimit: the soft limit in bytes.
    @return: the hard limit in bytes.
    """
    extra = min(max(softLimit // 100, LOG_EXTRA_MIN), LOG_EXTRA_MAX)
    return softLimit + extra


def fileTimestamp(when: float) -> str:
    """
    xinetd's FILE log prefix, without the trailing C{": "}:
    C{YY/M/D@HH:MM:SS} in local time, month and day not zero-padded.

    @param when: seconds since the epoch.
    """
    tm = time.localtime(when)
    return (
        f"{tm.tm_year % 100:02d}/{tm.tm_mon}/{tm.tm_mday}"
        f"@{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    )


def syslogTimestamp(when: float) -> str:
    """
    The RFC 3164 timestamp glibc's syslog(3) writes: C{Mmm dd hh:mm:ss} in
    local time, the day padded with a space.

    @param when: seconds since the epoch.
    """
    tm = time.localtime(when)
    return (
        f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    )


def _encode(text: str) -> bytes:
    # surrogateescape gives back the exact bytes an identd sent us.
    return text.encode("utf-8", "surrogateescape")


class RefusedFile(OSError):
    """
    A path the daemon will not write to: a symbolic link, or not a regular
    file.

    @ivar why: what is wrong with it, for the daemon's log line.
    """

    def __init__(self, path: str, why: str) -> None:
        super().__init__(errno.EPERM, why, path)
        self.why = why


_LOG_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | os.O_NOFOLLOW
    | os.O_NONBLOCK
    | os.O_CLOEXEC
)


def _checkDirectories(path: str) -> None:
    """
    Refuse C{path} when one of its directories is a symbolic link that
    neither root nor the daemon's user owns.
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefixes: List[str] = []
    # Bounded by the number of components.
    while directory not in prefixes and len(prefixes) < 256:
        prefixes.append(directory)
        directory = os.path.dirname(directory)
    for prefix in reversed(prefixes):
        try:
            found = os.lstat(prefix)
        except OSError:
            return  # the open reports it
        if stat.S_ISLNK(found.st_mode) and found.st_uid not in (0, os.geteuid()):
            raise RefusedFile(
                path, f"{prefix} is a symbolic link of uid {found.st_uid}"
            )


def openLogFile(path: str) -> int:
    """
    Open (creating it 0644 if needed) a log file the way a root daemon
    must: never through a symbolic link (one planted in a world-writable
    directory would make root write wherever it points), never a FIFO or a
    device (O_NONBLOCK: a FIFO cannot hang the open), only a regular file.

    A directory on the way may be a symbolic link only if root (or the
    daemon's own user) owns it (C{/var/run -> /run}): one another user made
    in C{/tmp} would steer root too.

    @param path: the file.
    @return: a close-on-exec descriptor open for appending.
    @raise RefusedFile: the path is a symbolic link or not a regular file,
        or a directory on the way is another user's symbolic link.
    @raise OSError: the file cannot be opened.
    """
    _checkDirectories(path)
    try:
        fd = os.open(path, _LOG_OPEN_FLAGS | os.O_EXCL, LOG_FILE_MODE)
    except FileExistsError:
        try:
            fd = os.open(path, _LOG_OPEN_FLAGS, LOG_FILE_MODE)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise RefusedFile(path, "it is a symbolic link") from None
            if e.errno == errno.ENXIO:
                # A FIFO nobody reads: O_NONBLOCK made the open fail at once.
                raise RefusedFile(path, "it is not a regular file") from None
            raise
    else:
        # twistd daemonizes with umask 077; xinetd's logs are 0644.
        try:
            os.fchmod(fd, LOG_FILE_MODE)
        except OSError:
            os.close(fd)
            raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefusedFile(path, "it is not a regular file")
    except OSError:
        os.close(fd)
        raise
    return fd


class ILogSink(Interface):
    """
    A destination for one service's (or the defaults') xinetd log lines.
    """

    def write(text: str) -> None:
        """
        Write one line of text (no newline, no timestamp: the sink adds what
        its destination needs).
        """

    def reopen() -> None:  # type: ignore[misc]
        """
        Close and open the destination again (reconfiguration, rotation),
        forgetting any limit that closed it.
        """

    def close() -> None:  # type: ignore[misc]
        """
        Release the destination; later writes are dropped.
        """


class LogSink(Protocol):
    """
    L{ILogSink} for static type checks (mypy does not read zope interfaces).
    """

    def write(self, text: str) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


@implementer(ILogSink)
class FileLogSink:
    """
    C{log_type = FILE}: lines appended as C{YY/M/D@HH:MM:SS: text}.

    Size limits work as xinetd's filelog: the size is read when the file is
    opened and grows with each line written; past the soft limit a warning
    is logged once to the daemon's own log; past the hard limit the log is
    closed until L{reopen}.

    One instance is one xinetd log handle: give each service its own (xinetd
    opens the same path once per service, with separate size accounting),
    except where xinetd shares one handle, which is then one shared instance.

    @ivar path: the file.
    @ivar logId: the name in limit messages (the service id).
    @ivar softLimit: bytes, or L{None} for no size control.
    @ivar hardLimit: bytes; implied from C{softLimit} when not given.
    @ivar size: bytes in the file as far as we know.
    @ivar location: where C{log_type} was written, named in open errors
        (L{None}: not known).
    """

    def __init__(
        self,
        path: str,
        logId: str,
        softLimit: Optional[int] = None,
        hardLimit: Optional[int] = None,
        *,
        now: Callable[[], float] = time.time,
        daemonLog: Logger = _daemonLog,
        location: Optional[Location] = None,
    ) -> None:
        self.path = path
        self.logId = logId
        self.location = location
        self.softLimit = softLimit
        if softLimit is not None and hardLimit is None:
            hardLimit = defaultHardLimit(softLimit)
        self.hardLimit = hardLimit
        self.size = 0
        self._now = now
        self._log = daemonLog
        self._fd: Optional[int] = None
        self._warned = False
        self._failing = False
        self._open()

    @property
    def isOpen(self) -> bool:
        """
        Whether lines are being written (L{False} after the hard limit, an
        open error or L{close}).
        """
        return self._fd is not None

    def fileno(self) -> Optional[int]:
        """
        The open descriptor, or L{None}.
        """
        return self._fd

    def _open(self) -> None:
        where = f"{self.location}: " if self.location is not None else ""
        try:
            fd = openLogFile(self.path)
            self.size = os.fstat(fd).st_size
        except RefusedFile as e:
            self._log.error(
                "{where}Refusing log file {path} of {logId}: {why}",
                where=where,
                path=self.path,
                logId=self.logId,
                why=e.why,
            )
            return
        except OSError as e:
            self._log.error(
                "{where}Cannot open log file {path} of {logId}: {error}",
                where=where,
                path=self.path,
                logId=self.logId,
                error=e.strerror,
            )
            return
        self._fd = fd
        self._checkLimits()

    def write(self, text: str) -> None:
        """
        Append one timestamped line, then apply the size limits.
        """
        if self._fd is None:
            return
        data = _encode(f"{fileTimestamp(self._now())}: {text}\n")
        try:
            view = memoryview(data)
            # A regular file takes the whole write; the loop is for signals.
            for _ in range(8):
                written = os.write(self._fd, view)
                view = view[written:]
                if not view:
                    break
        except OSError as e:
            if not self._failing:
                self._log.error(
                    "Cannot write log file {path} of {logId}: {error}",
                    path=self.path,
                    logId=self.logId,
                    error=e.strerror,
                )
            self._failing = True
            return
        self._failing = False
        self.size += len(data)
        self._checkLimits()

    def _checkLimits(self) -> None:
        if self.softLimit is None or self.hardLimit is None:
            return
        if self.size <= self.softLimit:
            return
        if not self._warned:
            self._warned = True
            self._log.critical(
                "soft limit exceeded on '{logId}'", logId=self.logId, syslogPriority=1
            )
        if self.size <= self.hardLimit:
            return
        self._log.critical(
            "hard limit exceeded on '{logId}'; log closed",
            logId=self.logId,
            syslogPriority=1,
        )
        self._log.error(
            "Size of {logId} log exceeded hard limit",
            logId=self.logId,
            syslogPriority=3,
        )
        self.close()

    def sizeCheck(self) -> None:
        """
        Re-read the size from the file (xinetd does this when a child that
        may have written to the log exits) and apply the limits.
        """
        if self._fd is None:
            return
        try:
            self.size = os.fstat(self._fd).st_size
        except OSError:
            return
        self._checkLimits()

    def reopen(self) -> None:
        """
        Close and open the file again, resetting the limit state.
        """
        self.close()
        self._warned = False
        self._failing = False
        self._open()

    def close(self) -> None:
        """
        Close the file; writes are dropped until L{reopen}.
        """
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class SyslogConnection:
    """
    One non-blocking Unix datagram socket to the syslog daemon, shared by
    every L{SyslogSink}, as xinetd shares its one openlog(3) connection.

    Datagrams are what glibc's syslog(3) sends:
    C{<PRI>Mmm dd hh:mm:ss xinetd[PID]: text}, no trailing newline.

    @ivar path: the syslog socket (C{/dev/log}).
    @ivar ident: the tag (C{xinetd}).
    @ivar dropped: datagrams lost because the socket was full or absent.
    @ivar sent: datagrams sent.
    """

    def __init__(
        self,
        path: str = "/dev/log",
        ident: str = "xinetd",
        *,
        now: Callable[[], float] = time.time,
        getpid: Callable[[], int] = os.getpid,
        daemonLog: Logger = _daemonLog,
    ) -> None:
        self.path = path
        self.ident = ident
        self.dropped = 0
        self.sent = 0
        self._now = now
        self._getpid = getpid
        self._log = daemonLog
        self._socket: Optional[socket.socket] = None
        self._failing = False

    def format(self, priority: int, text: str) -> bytes:
        """
        The datagram for one message.

        @param priority: facility * 8 + level.
        @param text: the message.
        """
        stamp = syslogTimestamp(self._now())
        return _encode(f"<{priority}>{stamp} {self.ident}[{self._getpid()}]: {text}")

    def _connect(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket

    def send(self, priority: int, text: str) -> bool:
        """
        Send one message without blocking.  A full socket drops the message;
        any other error reconnects once (the syslog daemon may have been
        restarted) and drops the message if that fails too.

        @return: whether the datagram was sent.
        """
        data = self.format(priority, text)
        for attempt in range(2):
            try:
                self._connect().send(data)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                    break
                self.disconnect()
                if attempt == 0:
                    continue
                if not self._failing:
                    # Failing first: the warning may come back here through
                    # an observer that sends the daemon's messages to syslog.
                    self._failing = True
                    self._log.warn(
                        "Cannot send to syslog socket {path}: {error}",
                        path=self.path,
                        error=e.strerror,
                        **{SYSLOG_PROBLEM: True},
                    )
                break
            else:
                self.sent += 1
                self._failing = False
                return True
        self.dropped += 1
        return False

    def disconnect(self) -> None:
        """
        Close the socket; the next message connects again.
        """
        if self._socket is not None:
            sock, self._socket = self._socket, None
            sock.close()


@implementer(ILogSink)
class SyslogSink:
    """
    C{log_type = SYSLOG facility [level]}: every line at one priority.

    @ivar connection: the shared L{SyslogConnection}.
    @ivar priority: facility * 8 + level.
    """

    def __init__(
        self, connection: SyslogConnection, facility: str, level: str = "info"
    ) -> None:
        self.connection = connection
        self.priority = SYSLOG_FACILITIES[facility] * 8 + SYSLOG_LEVELS[level]
        self._closed = False

    def write(self, text: str) -> None:
        """
        Send the line as one datagram (dropped after L{close}).
        """
        if not self._closed:
            self.connection.send(self.priority, text)

    def reopen(self) -> None:
        """
        Reconnect on the next line, as xinetd's closelog/openlog on reload.
        """
        self._closed = False
        self.connection.disconnect()

    def close(self) -> None:
        """
        Drop later lines (the shared connection stays).
        """
        self._closed = True


def openSink(
    logId: str,
    logType: Union[SyslogLog, FileLog, None],
    syslog: SyslogConnection,
    *,
    location: Optional[Location] = None,
) -> Optional[LogSink]:
    """
    Build the sink for a service's C{log_type}.

    @param logId: the service id (named in limit messages).
    @param location: where C{log_type} was written (named when the file
        cannot be opened), e.g. C{service.locations.get("log_type")}.
    @param logType: the service's L{SyslogLog}/L{FileLog}, or L{None}.
    @param syslog: the daemon's shared syslog connection.
    @return: a new sink, or L{None} for a service that logs nothing.
    """
    if isinstance(logType, SyslogLog):
        return SyslogSink(syslog, logType.facility, logType.level)
    if isinstance(logType, FileLog):
        return FileLogSink(
            logType.path,
            logId,
            logType.softLimit,
            logType.hardLimit,
            location=location,
        )
    return None
