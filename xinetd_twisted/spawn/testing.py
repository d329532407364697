# -*- test-case-name: tests.test_spawn_testing -*-
"""
A spawner spy for tests of code that spawns (in the style of treq's
C{_agentspy}): it checks its arguments as the real L{ISpawner} would, records
every call and lets the test decide when children start and end.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

import attr
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    ISpawner,
    PressureObserver,
    SpawnError,
)
from xinetd_twisted.spawn.status import reasonForStatus


@implementer(IProcessTransport)
@attr.s(auto_attribs=True, eq=False)
class FakeProcessTransport:
    """
    The transport a L{SpawnRecord} hands to its protocol.

    @ivar pid: the fake pid, L{None} once ended.
    @ivar signals: signals sent with L{signalProcess}, in order.
    """

    pid: Optional[int]
    signals: List[Any] = attr.ib(factory=list)

    def signalProcess(self, signalID: Any) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(signalID)

    def closeStdin(self) -> None:
        pass

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        pass

    def writeToChild(self, childFD: int, data: bytes) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data: Any) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


@attr.s(auto_attribs=True, eq=False)
class SpawnRecord:
    """
    One call to L{ISpawner.spawn} on the spy.

    @ivar processProtocol: as passed.
    @ivar setup: as passed.
    @ivar socketFD: as passed (the spy does not keep the descriptor open).
    @ivar extraEnvironment: as passed.
    @ivar deferred: what C{spawn} returned.
    @ivar transport: set by L{started}.
    """

    processProtocol: Any
    setup: ChildSetup
    socketFD: int
    extraEnvironment: Tuple[Tuple[str, str], ...]
    deferred: Deferred
    transport: Optional[FakeProcessTransport] = None

    def started(self, pid: int) -> FakeProcessTransport:
        """
        Make the child exist: C{makeConnection}, then fire the Deferred.
        """
        self.transport = FakeProcessTransport(pid)
        self.processProtocol.makeConnection(self.transport)
        self.deferred.callback(self.transport)
        return self.transport

    def failed(self, message: str = "fork failed", connection: int = -1) -> None:
        """
        Make the spawn fail with L{SpawnError}, giving back C{connection}
        (a descriptor the receiver then owns) if not C{-1}.
        """
        error = SpawnError(message)
        error.connection = connection
        self.deferred.errback(error)

    def ended(self, status: int = 0) -> None:
        """
        Reap the child with raw wait status C{status} (C{code << 8} for an
        exit code, the signal number for a kill).
        """
        assert self.transport is not None, "ended() before started()"
        self.transport.pid = None
        reason: Failure = reasonForStatus(status)
        self.processProtocol.processExited(reason)
        self.processProtocol.processEnded(reason)


@implementer(ISpawner)
@attr.s(auto_attribs=True, eq=False)
class SpawnerSpy:
    """
    An L{ISpawner} that records instead of spawning; see L{spawnerSpy}.

    @ivar signalled: C{(pid, signal)} for every C{signalChild} call.
    @ivar running: between C{start} and C{stop}.
    @ivar givesConnectionBack: what the spy says of itself (see
        L{ISpawner.givesConnectionBack}); a test that sets it gives a
        connection to L{SpawnRecord.failed}.
    @ivar pressureObserver: what C{observePressure} set; a test calls it to
        play a backed-up spawner.
    """

    _records: List[SpawnRecord]
    signalled: List[Tuple[int, int]] = attr.ib(factory=list)
    running: bool = False
    pressureObserver: Optional[PressureObserver] = None
    givesConnectionBack: bool = False

    def spawn(
        self,
        processProtocol: Any,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> Deferred:
        if not IProcessProtocol.providedBy(processProtocol):
            raise TypeError(f"{processProtocol!r} does not provide IProcessProtocol")
        if not isinstance(setup, ChildSetup):
            raise TypeError(f"setup must be a ChildSetup, not {setup!r}")
        if not isinstance(socketFD, int):
            raise TypeError(f"socketFD must be an int, not {socketFD!r}")
        os.fstat(socketFD)  # the real spawner needs it open during the call
        for pair in extraEnvironment:
            name, value = pair
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"environment entries are (str, str): {pair!r}")
        d: Deferred = Deferred()
        self._records.append(
            SpawnRecord(processProtocol, setup, socketFD, tuple(extraEnvironment), d)
        )
        return d

    def signalChild(self, pid: int, signal: int) -> None:
        if not isinstance(pid, int) or not isinstance(signal, int):
            raise TypeError("signalChild(pid: int, signal: int)")
        self.signalled.append((pid, signal))

    def observePressure(self, observer: Optional[PressureObserver]) -> None:
        self.pressureObserver = observer

    def start(self) -> Deferred:
        self.running = True
        return succeed(None)

    def stop(self) -> Deferred:
        self.running = False
        return succeed(None)


def spawnerSpy() -> Tuple[SpawnerSpy, List[SpawnRecord]]:
    """
    Return an L{ISpawner} provider and the list it appends a L{SpawnRecord}
    to for every C{spawn} call; C{signalChild} calls go to its
    C{signalled} list.
    """
    records: List[SpawnRecord] = []
    return SpawnerSpy(records), records
