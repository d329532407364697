"""
A L{HelperSpawner} on a fake clock whose helpers are played by the test:
the test holds the other ends of the real sockets, reads what the daemon
sends and writes the helpers' events.
"""

from __future__ import annotations

import array
import marshal
import os
import socket
from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn.helperspawner import HelperSpawner
from xinetd_twisted.spawn.interfaces import ChildSetup

NOBODY = ChildSetup(
    "/bin/true", ("true",), uid=65534, gid=65534, supplementaryGroups=()
)
OTHER = ChildSetup("/bin/true", ("true",), uid=1, gid=1, supplementaryGroups=())


class FakeHelperTransport:
    """
    The root helper process's transport: nothing runs.
    """

    pid = 4242

    def __init__(self) -> None:
        self.signals: List[Any] = []

    def signalProcess(self, signal: Any) -> None:
        self.signals.append(signal)


class ProcessReactor(MemoryReactorClock):
    """
    Keeps the helper's end of the control socket for the test.

    @ivar helperEnd: the root helper's end of the control socket.
    """

    helperEnd: Optional[socket.socket] = None
    helperProtocol: Any = None
    launched = 0

    def startHelper(
        self, reactor: Any, proto: Any, argv: Any, environment: Any, fd: int
    ) -> Any:
        """
        Play L{startHelperProcess}: keep the helper's end of its socket.
        """
        self.helperEnd = socket.socket(fileno=os.dup(fd))
        self.helperProtocol = proto
        self.launched += 1
        self.helperTransport = FakeHelperTransport()
        return self.helperTransport


class FakeProtocol:
    """
    The process protocol of a spawn: it only needs a transport.
    """

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def processExited(self, reason: Any) -> None:
        self.exited = reason

    def processEnded(self, reason: Any) -> None:
        self.ended = reason


def messages(sock: socket.socket) -> List[tuple]:
    """
    Every message waiting on the helper's end C{sock}, decoded.
    """
    found = []
    for _ in range(10000):
        try:
            data, _anc, _f, _a = sock.recvmsg(65536, 1024, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return found
        found.append(marshal.loads(data))
    return found


class FakeHelperCase(SynchronousTestCase):
    """
    A started L{HelperSpawner} on L{ProcessReactor}, its root helper ready.

    @ivar helper: the root helper's end of the control socket.
    @ivar changes: the pressure reports, C{(key, backedUp)}.
    @ivar logged: every log event.
    """

    spawnerArguments: dict = {}

    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        # One lane unless a case asks for more: the fakes answer one
        # sub-helper per credential set.
        arguments = {"lanes": 1, **self.spawnerArguments}
        self.spawner = HelperSpawner(self.reactor, **arguments)
        self.spawner._reaper.becomeSubreaper = lambda: None  # type: ignore[method-assign]
        self.spawner._launcher.startProcess = self.reactor.startHelper
        self.spawner.start()
        helper = self.reactor.helperEnd
        assert helper is not None
        self.helper = helper
        self.addCleanup(self.helper.close)
        self.addCleanup(self.spawner.stop)
        self.changes: List[Tuple[Any, bool]] = []
        self.spawner.observePressure(lambda key, up: self.changes.append((key, up)))
        self.logged: List[dict] = []
        globalLogPublisher.addObserver(self.logged.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)  # type: ignore[arg-type]
        self.tell([("r", 1)])

    def tell(self, events: list, fds: Tuple[int, ...] = ()) -> None:
        """
        Send helper events on the control socket and let the spawner read.
        """
        rights = []
        if fds:
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        self.helper.sendmsg([marshal.dumps(events)], rights)
        assert self.spawner._control is not None
        self.spawner._control.doRead()

    def tellSub(self, sub: socket.socket, subId: int, events: list) -> None:
        """
        Send events from sub-helper C{subId} (its end C{sub}) and let the
        spawner read them.
        """
        sub.sendmsg([marshal.dumps(events)])
        self.spawner._subs[subId].doRead()

    def spawn(self, setup: ChildSetup, proto: Any = None) -> Deferred:
        """
        Spawn C{setup} on a connection of which nothing is kept.
        """
        a, b = socket.socketpair()
        try:
            d = self.spawner.spawn(proto or FakeProtocol(), setup, b.fileno(), ())
        finally:
            a.close()
            b.close()
        return d

    def handOver(self, subId: int, request: tuple) -> socket.socket:
        """
        Play the root helper handing over new sub-helper C{subId} for the
        template of C{request} (a C{"S"} it was sent); return the
        sub-helper's end of its socket to the daemon.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(ours.close)
        self.tell([("c", subId, request[2], True, 1000 + subId)], (theirs.fileno(),))
        theirs.close()
        return ours

    def routedSub(self, setup: ChildSetup, subId: int, pid: int = 0) -> socket.socket:
        """
        Spawn C{setup} once through the root helper, which hands over a new
        sub-helper's socket, and have the child started (pid C{pid}, or
        C{2000 + subId}); return the sub-helper's end.
        """
        d = self.spawn(setup)
        [request] = [m for m in messages(self.helper) if m[0] == "S"]
        ours = self.handOver(subId, request)
        self.tellSub(ours, subId, [("s", request[1], pid or 2000 + subId)])
        self.successResultOf(d)
        return ours
