# -*- test-case-name: tests.test_daemon_notify -*-
"""
systemd's readiness protocol (C{sd_notify}) without libsystemd: one
datagram of C{NAME=value} lines to the AF_UNIX socket named by
C{$NOTIFY_SOCKET} (a leading C{@} names the abstract namespace), and the
watchdog ping every C{$WATCHDOG_USEC / 2}.

Sending never blocks and never raises: a supervisor that went away or a
full socket buffer is logged once per episode (until a datagram gets
through again), and the daemon carries on.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Mapping, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
"""
The variables that pass sockets (L{xinetd_twisted.daemon.activation});
unset once read, so that nothing the daemon starts believes it was
activated.
"""

SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
) + LISTEN_VARIABLES
"""
The variables systemd gives the daemon itself: none of them is meant for
the servers it starts (a child that inherited C{NOTIFY_SOCKET} could tell
systemd the daemon is stopping).
"""

Address = str | bytes


def notifyAddress(value: str) -> Optional[Address]:
    """
    The C{sendto} address of a C{$NOTIFY_SOCKET} value: a path, or for
    C{@name} the abstract name C{\\0name}; L{None} for anything else
    (systemd's C{vsock:} addresses, a relative path, an empty value).
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    return None


def watchdogInterval(environ: Mapping[str, str], pid: int) -> Optional[float]:
    """
    Seconds between two C{WATCHDOG=1} pings (half of C{$WATCHDOG_USEC}), or
    L{None} when systemd asks for none, or asks another process
    (C{$WATCHDOG_PID} set to a pid that is not C{pid}).
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdogPid = environ.get("WATCHDOG_PID")
    if watchdogPid is not None:
        try:
            if int(watchdogPid) != pid:
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


def _oneLine(text: str) -> str:
    # A newline would start a new assignment in the datagram.
    return " ".join(text.splitlines())


class SystemdNotifier:
    """
    Tells systemd what the daemon is doing.  Built with L{fromEnvironment};
    when C{$NOTIFY_SOCKET} is unset every method does nothing.

    @ivar enabled: whether datagrams are sent at all.
    @ivar interval: seconds between watchdog pings, or L{None}.
    """

    log = Logger()

    def __init__(
        self,
        address: Optional[Address],
        reactor: IReactorTime,
        interval: Optional[float] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        @param address: the C{sendto} address (see L{notifyAddress}), or
            L{None} for a notifier that sends nothing.
        @param reactor: schedules the watchdog pings.
        @param interval: seconds between watchdog pings, or L{None}.
        @param monotonic: C{CLOCK_MONOTONIC} in seconds, for
            C{MONOTONIC_USEC}.
        """
        self._address = address
        self._reactor = reactor
        self.interval = interval if address is not None else None
        self._monotonic = monotonic
        self._socket: Optional[socket.socket] = None
        self._failing = False
        self._watchdog: Optional[LoopingCall] = None

    @classmethod
    def fromEnvironment(
        cls,
        environ: Mapping[str, str],
        reactor: IReactorTime,
        pid: Optional[int] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> SystemdNotifier:
        """
        The notifier systemd asked for through C{environ} (C{os.environ}).

        @param pid: our pid, compared with C{$WATCHDOG_PID}; default
            C{os.getpid()}.
        """
        value = environ.get("NOTIFY_SOCKET", "")
        address = notifyAddress(value)
        if value and address is None:
            cls.log.warn(
                "NOTIFY_SOCKET={value!r} is not a path or an abstract name; "
                "not notifying systemd",
                value=value,
            )
        interval = watchdogInterval(environ, os.getpid() if pid is None else pid)
        return cls(address, reactor, interval, monotonic)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    # --- the messages ------------------------------------------------------

    def ready(self, status: str) -> bool:
        """
        C{READY=1} with C{STATUS=status}: every service is bound (also after
        a reload, failed or not).
        """
        return self.notify("READY=1", "STATUS=" + _oneLine(status))

    def reloading(self) -> bool:
        """
        C{RELOADING=1} and C{MONOTONIC_USEC} in one datagram (what
        C{Type=notify-reload} requires); send L{ready} when done.
        """
        usec = int(self._monotonic() * 1_000_000)
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """
        C{STOPPING=1}: the daemon is shutting down.
        """
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """
        C{STATUS=text}: a free-form line that C{systemctl status} shows.
        """
        return self.notify("STATUS=" + _oneLine(text))

    def watchdog(self) -> bool:
        """
        One C{WATCHDOG=1} ping.
        """
        return self.notify("WATCHDOG=1")

    # --- the watchdog ------------------------------------------------------

    def startWatchdog(self) -> None:
        """
        Ping now and then every L{interval} seconds; nothing when systemd
        set no watchdog for us or it already runs.
        """
        if self.interval is None or self._watchdog is not None:
            return
        self._watchdog = LoopingCall(self.watchdog)
        self._watchdog.clock = self._reactor
        self._watchdog.start(self.interval, now=True)

    def stopWatchdog(self) -> None:
        """
        Stop pinging (before L{stopping}: a daemon that stops must not look
        alive).
        """
        if self._watchdog is not None:
            watchdog, self._watchdog = self._watchdog, None
            watchdog.stop()

    # --- sending -----------------------------------------------------------

    def notify(self, *assignments: str) -> bool:
        """
        Send C{assignments} (C{NAME=value} strings) as one datagram.

        @return: whether it was sent; C{False} when disabled or on an error
            (logged, once until a send succeeds again).
        """
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as e:
            if not self._failing:
                self._failing = True
                self.log.warn(
                    "cannot notify systemd at {address!r}: {error}",
                    address=self._address,
                    error=e.strerror or str(e),
                )
            return False
        if self._failing:
            self._failing = False
            self.log.info("notifying systemd works again")
        return True

    def close(self) -> None:
        """
        Stop the watchdog and close the socket (a later message opens it
        again).
        """
        self.stopWatchdog()
        if self._socket is not None:
            sock, self._socket = self._socket, None
            sock.close()

    def __repr__(self) -> str:
        extra: Any = self._address if self._address is not None else "disabled"
        return f"<SystemdNotifier {extra!r} interval={self.interval}>"
