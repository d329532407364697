# -*- test-case-name: tests.test_spawn_helper,tests.test_spawn_watchdog -*-
"""
L{Channel}: a socket from the daemon to one spawn helper (the root helper or
one sub-helper), as a reactor descriptor with its own send queue and
back-pressure, and the L{IChannelOwner} it reports to.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, List, Optional, Set, Tuple

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from xinetd_twisted.readiness import waiting
from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.interfaces import CredentialKey

_log = Logger(namespace="xinetd_twisted.spawn")

_SEND_FLAGS = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
_READ_BATCH = 64
_RECV_FLAGS = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
_ANC_SIZE = socket.CMSG_SPACE(_wire.MAX_EVENTS_PER_MESSAGE * 4)
_packFd = struct.Struct("i").pack
"""
One descriptor as C{SCM_RIGHTS} data (a C int in native order).
"""


class IChannelOwner(Interface):
    """
    What a L{Channel} tells about its peer.
    """

    def eventReceived(channel: Channel, event: tuple, fds: List[int]) -> None:
        """
        The peer reported C{event}; C{fds} are the descriptors still unclaimed
        in its message (take one with C{fds.pop(0)}; the rest are closed).
        """

    def channelLost(channel: Channel, why: str) -> None:
        """
        The socket failed or the peer closed it.
        """

    def queueChanged(channel: Channel, backedUp: bool) -> None:
        """
        Messages started to wait on C{channel} (or it has caught up).
        """

    def waitingOn(channel: Channel) -> None:
        """
        A spawn now waits for C{channel}'s peer to answer.
        """


@implementer(IReadDescriptor, IWriteDescriptor)
class Channel:
    """
    A socket to the root helper (C{subId} L{None}) or straight to one
    sub-helper, as a reactor descriptor, with its own send queue.

    @ivar queue: C{(message, fd or -1, requestId or 0)} waiting for the
        peer to read its socket.
    @ivar templates: template ids registered on this channel (sub-helpers).
    @ivar key: the L{CredentialKey} of the sub-helper's children (L{None}
        for the root helper's channel).
    @ivar subPid: the sub-helper's pid (L{None} for the root helper).
    @ivar requests: ids of the spawns this peer has not answered yet.
    @ivar progress: when the peer last said something, or last became
        busy (L{reactor.seconds}).
    @ivar watchdog: the pending stuck check on this peer, if any.
    @ivar stuck: found stuck and being killed: no new spawns.
    @ivar retired: found idle and being ended: no new spawns (those of its
        credentials go through the root helper, which starts another).
    @ivar orphaned: its root helper died: it only reports and signals the
        children it started, until they have all ended.
    """

    def __init__(
        self,
        reactor: Any,
        owner: IChannelOwner,
        sock: socket.socket,
        subId: Optional[int],
        key: Optional[CredentialKey] = None,
        subPid: Optional[int] = None,
    ) -> None:
        self._reactor = reactor
        self._owner = owner
        self.sock = sock
        self.subId = subId
        self.key = key
        self.subPid = subPid
        self.queue: List[Tuple[bytes, int, int]] = []
        self.templates: Set[int] = set()
        self.requests: Set[int] = set()
        self.progress = 0.0
        self.watchdog: Any = None
        self.closed = False
        self.stuck = False
        self.retired = False
        self.orphaned = False

    def busy(self) -> bool:
        """
        Whether spawns are waiting on this peer.
        """
        return bool(self.requests or self.queue)

    def describe(self) -> str:
        """
        Name the peer for a log line.
        """
        if self.subId is None:
            return "the spawn helper"
        uid, gid, _groups = self.key or (None, None, None)
        return f"the spawn sub-helper {self.subPid} (uid {uid}, gid {gid})"

    def awaitAnswer(self, requestId: int) -> None:
        """
        Make this peer the one that must answer spawn C{requestId}.
        """
        if not (self.requests or self.queue):  # busy() from now on
            self.progress = self._reactor.seconds()
        self.requests.add(requestId)
        self._owner.waitingOn(self)

    # --- sending --------------------------------------------------------

    def send(self, data: bytes, fd: int, requestId: int = 0) -> bool:
        """
        Send or queue a message; L{False} when the channel is lost (and the
        message was neither sent nor queued).
        """
        if self.closed:
            return False
        if not self.queue:
            try:
                self._sendNow(data, fd)
                return True
            except BlockingIOError:
                pass
            except OSError as e:
                self._owner.channelLost(
                    self, f"send failed: {os.strerror(e.errno or 0)}"
                )
                return False
        # The caller closes its fd when we return: keep our own copy.
        if not self.busy():
            self.progress = self._reactor.seconds()
        self.queue.append((data, os.dup(fd) if fd >= 0 else -1, requestId))
        if len(self.queue) == 1:
            self._reactor.addWriter(self)
            self._owner.queueChanged(self, True)
        self._owner.waitingOn(self)
        return True

    def _sendNow(self, data: bytes, fd: int) -> None:
        if fd >= 0:
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, _packFd(fd))
            self.sock.sendmsg([data], [rights], _SEND_FLAGS)
        else:
            self.sock.send(data, _SEND_FLAGS)

    def flush(self) -> None:
        """
        Send what waits in the queue, as far as the peer takes it.
        """
        while self.queue:
            data, fd, _requestId = self.queue[0]
            try:
                self._sendNow(data, fd)
            except BlockingIOError:
                return
            except OSError as e:
                self._owner.channelLost(
                    self, f"send failed: {os.strerror(e.errno or 0)}"
                )
                return
            del self.queue[0]
            if fd >= 0:
                os.close(fd)
        self._reactor.removeWriter(self)
        self._owner.queueChanged(self, False)

    def dropQueue(self) -> List[int]:
        """
        Forget the unsent messages; return their request ids.
        """
        unsent = []
        for _data, fd, requestId in self.queue:
            if fd >= 0:
                os.close(fd)
            if requestId:
                unsent.append(requestId)
        if self.queue:
            self.queue = []
            self._reactor.removeWriter(self)
            self._owner.queueChanged(self, False)
        return unsent

    def close(self) -> List[int]:
        """
        Close the socket; return the request ids of the unsent spawns.
        """
        if self.closed:
            return []
        self.closed = True
        self._reactor.removeReader(self)
        self._reactor.removeWriter(self)
        self.sock.close()
        if self.watchdog is not None and self.watchdog.active():
            self.watchdog.cancel()
        self.watchdog = None
        return self.dropQueue()

    # --- receiving ------------------------------------------------------

    def readEvents(self) -> bool:
        """
        Handle up to a batch of messages; L{True} if more may be waiting.
        """
        sock = self.sock
        owner = self._owner
        fileno = sock.fileno()
        for n in range(_READ_BATCH):
            if self.closed:
                return False
            if n and not waiting(fileno):
                return False
            try:
                data, anc, _flags, _addr = sock.recvmsg(
                    _wire.MAX_MESSAGE, _ANC_SIZE, _RECV_FLAGS
                )
            except BlockingIOError:
                return False
            except OSError as e:
                owner.channelLost(self, f"receive failed: {os.strerror(e.errno or 0)}")
                return False
            fds: List[int] = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(payload) - len(payload) % 4
                    fds.extend(memoryview(payload)[:n].cast("i"))
            if not data:
                owner.channelLost(self, "the helper closed its socket")
                return False
            self.progress = self._reactor.seconds()
            try:
                for event in _wire.decode(data):
                    try:
                        owner.eventReceived(self, event, fds)
                    except Exception:
                        # A process protocol's bug must not take the channel
                        # (and every other child's reports) down with it.
                        _log.failure("spawn helper event {event!r}", event=event)
            finally:
                for fd in fds:
                    os.close(fd)
        return True

    def drain(self) -> None:
        """
        Handle everything a dead helper left in the socket.
        """
        for _ in range(10000):
            if not self.readEvents():
                return

    # --- IReadDescriptor, IWriteDescriptor -------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "SpawnHelper" if self.subId is None else "SpawnSubHelper"

    def doRead(self) -> None:
        self.readEvents()  # a true return would mean "lost"

    def doWrite(self) -> None:
        self.flush()

    def connectionLost(self, reason: Failure) -> None:
        self._owner.channelLost(self, "socket lost")


__all__ = ["Channel", "IChannelOwner"]
