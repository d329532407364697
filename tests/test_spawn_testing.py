"""
Tests for L{xinetd_twisted.spawn.testing}, the spawner spy.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from xinetd_twisted.spawn.interfaces import ChildSetup, ISpawner, SpawnError
from xinetd_twisted.spawn.testing import spawnerSpy

SETUP = ChildSetup("/bin/x", ("x",))


class _Recorder(ProcessProtocol):
    def __init__(self) -> None:
        self.events: List[Any] = []

    def makeConnection(self, transport: Any) -> None:
        self.events.append(("connected", transport.pid))

    def processExited(self, reason: Any) -> None:
        self.events.append(("exited", type(reason.value)))

    def processEnded(self, reason: Any) -> None:
        self.events.append(("ended", type(reason.value), reason.value.exitCode))


class SpawnerSpyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.spawner, self.records = spawnerSpy()

    def test_interface(self) -> None:
        """The spy provides ISpawner."""
        verifyObject(ISpawner, self.spawner)

    def test_records(self) -> None:
        """Each spawn is recorded with its arguments and an unfired Deferred."""
        proto = _Recorder()
        d = self.spawner.spawn(proto, SETUP, 0, (("REMOTE_HOST", "h"),))
        [record] = self.records
        self.assertEqual(
            (
                record.processProtocol,
                record.setup,
                record.socketFD,
                record.extraEnvironment,
            ),
            (proto, SETUP, 0, (("REMOTE_HOST", "h"),)),
        )
        self.assertNoResult(d)

    def test_startedAndEnded(self) -> None:
        """started() connects and fires; ended() reports exit then end."""
        proto = _Recorder()
        d = self.spawner.spawn(proto, SETUP, 0, ())
        transport = self.records[0].started(77)
        self.assertIs(self.successResultOf(d), transport)
        self.records[0].ended(3 << 8)
        self.assertEqual(
            proto.events,
            [
                ("connected", 77),
                ("exited", ProcessTerminated),
                ("ended", ProcessTerminated, 3),
            ],
        )
        self.assertIsNone(transport.pid)

    def test_endedCleanly(self) -> None:
        """Status 0 is ProcessDone."""
        proto = _Recorder()
        self.spawner.spawn(proto, SETUP, 0, ())
        self.records[0].started(1)
        self.records[0].ended(0)
        self.assertEqual(proto.events[-1], ("ended", ProcessDone, 0))

    def test_failed(self) -> None:
        """failed() fails the Deferred with SpawnError."""
        d = self.spawner.spawn(_Recorder(), SETUP, 0, ())
        self.records[0].failed()
        self.failureResultOf(d, SpawnError)

    def test_checksArguments(self) -> None:
        """Wrong argument types are refused as the real interface would."""
        self.assertRaises(TypeError, self.spawner.spawn, object(), SETUP, 0, ())
        self.assertRaises(TypeError, self.spawner.spawn, _Recorder(), ("x",), 0, ())
        self.assertRaises(TypeError, self.spawner.spawn, _Recorder(), SETUP, "0", ())
        self.assertRaises(
            TypeError, self.spawner.spawn, _Recorder(), SETUP, 0, (("A", 1),)
        )
        self.assertRaises(OSError, self.spawner.spawn, _Recorder(), SETUP, 999999, ())

    def test_signalChild(self) -> None:
        """signalChild calls are recorded."""
        self.spawner.signalChild(5, 15)
        self.assertEqual(self.spawner.signalled, [(5, 15)])
