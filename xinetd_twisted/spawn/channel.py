# -*- test-case-name: tests.test_spawn_helper -*-
"""
The pieces L{xinetd_twisted.spawn.helperspawner.HelperSpawner} is made of: the
transport of a child a helper started, the protocol watching the root helper
process, a channel (socket) to one helper with its own queue and watchdog
state, and a spawn waiting for its answer.
"""

from __future__ import annotations

import signal as _signal
import socket
from typing import TYPE_CHECKING, Any, List, Optional, Set, Tuple

import attr
from twisted.internet.address import _ProcessAddress
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IProcessTransport,
    IReadDescriptor,
    IWriteDescriptor,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.spawn.interfaces import ChildSetup, CredentialKey

if TYPE_CHECKING:
    from xinetd_twisted.spawn.helperspawner import HelperSpawner

_log = Logger(namespace="xinetd_twisted.spawn")


@implementer(IProcessTransport)
class HelperProcess:
    """
    The transport of one child started by the helper.

    The child has no pipes to the daemon (its fds 0-2 are the client's
    socket), so the stream methods do nothing.

    @ivar pid: the child's pid, L{None} once it has been reaped.
    @ivar setup: the L{ChildSetup} it was started with.
    @ivar channel: the channel of the helper that started it (its parent).
    @ivar adopted: whether the daemon is its parent now (its helper died)
        and reaps and signals it itself.
    """

    def __init__(
        self,
        spawner: HelperSpawner,
        pid: int,
        proto: Any,
        setup: ChildSetup,
        channel: Channel,
    ) -> None:
        self.pid: Optional[int] = pid
        self.setup = setup
        self.proto = proto
        self.channel = channel
        self.adopted = False
        self._spawner = spawner

    def signalProcess(self, signalID: Any) -> None:
        """
        Signal the child (C{"KILL"}, C{"TERM"}, C{"INT"} or a number) through
        the helper, which only signals it while it is unreaped.
        """
        if self.pid is None:
            raise ProcessExitedAlready()
        if isinstance(signalID, str):
            signalID = getattr(_signal, "SIG" + signalID)
        self._spawner.signalChild(self.pid, int(signalID))

    def closeStdin(self) -> None:
        """Nothing to close: the child has no pipe from us."""

    def closeStdout(self) -> None:
        """Nothing to close: the child has no pipe to us."""

    def closeStderr(self) -> None:
        """Nothing to close: the child has no pipe to us."""

    def closeChildFD(self, descriptor: int) -> None:
        """Nothing to close: the child has no pipes to us."""

    def writeToChild(self, childFD: int, data: bytes) -> None:
        """Dropped: the child reads the client's socket, not us."""

    def write(self, data: bytes) -> None:
        """Dropped: the child reads the client's socket, not us."""

    def writeSequence(self, data: Any) -> None:
        """Dropped: the child reads the client's socket, not us."""

    def loseConnection(self) -> None:
        """Nothing to close: the child has no pipes to us."""

    def getPeer(self) -> _ProcessAddress:
        """A process has no network address."""
        return _ProcessAddress()

    def getHost(self) -> _ProcessAddress:
        """A process has no network address."""
        return _ProcessAddress()


class HelperProtocol(ProcessProtocol):
    """
    Watches the helper process itself: logs what it writes to stderr and
    tells the spawner when it is gone.
    """

    def __init__(self, spawner: HelperSpawner) -> None:
        self._spawner = spawner

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            _log.warn("spawn helper: {line}", line=line)

    def processEnded(self, reason: Failure) -> None:
        self._spawner._helperEnded(self, reason)


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
    @ivar stuck: found stuck and being killed: no new spawns.
    @ivar orphaned: its root helper died: it only reports and signals the
        children it started, until they have all ended.
    """

    def __init__(
        self,
        spawner: HelperSpawner,
        sock: socket.socket,
        subId: Optional[int],
        key: Optional[CredentialKey] = None,
        subPid: Optional[int] = None,
    ) -> None:
        self.spawner = spawner
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

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "SpawnHelper" if self.subId is None else "SpawnSubHelper"

    def doRead(self) -> None:
        self.spawner._readEvents(self)  # a true return would mean "lost"

    def doWrite(self) -> None:
        return self.spawner._flushQueue(self)

    def connectionLost(self, reason: Failure) -> None:
        self.spawner._channelLost(self, "socket lost")


@attr.s(auto_attribs=True, slots=True, eq=False)
class SpawnRequest:
    """
    A spawn sent (or queued) and not answered yet.

    @ivar channel: the channel whose peer must answer it: the one it was
        sent on, or the sub-helper the root helper forwarded it to.
    @ivar sentOn: the channel it was sent on.
    """

    requestId: int
    proto: Any
    setup: ChildSetup
    deferred: Deferred
    channel: Channel
    templateId: int
    sentOn: Channel = attr.ib(init=False)

    def __attrs_post_init__(self) -> None:
        self.sentOn = self.channel


__all__ = ["Channel", "HelperProcess", "HelperProtocol", "SpawnRequest"]
