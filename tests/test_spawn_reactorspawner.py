"""
Tests for L{xinetd_twisted.spawn.reactorspawner.ReactorSpawner}.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, List

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from xinetd_twisted.spawn.interfaces import ChildSetup, ISpawner, SpawnError
from xinetd_twisted.spawn.reactorspawner import ReactorSpawner

from .test_spawn_helper import PROBE, PYTHON


class _RecordingReactor:
    """
    Records spawnProcess calls and the umask in force during each.
    """

    def __init__(self) -> None:
        self.calls: List[dict] = []

    def spawnProcess(self, proto: Any, executable: str, args: Any, **kw: Any) -> Any:
        umask = os.umask(0)
        os.umask(umask)
        self.calls.append(dict(kw, executable=executable, args=args, umask=umask))

        class T:
            pid = 4242

        return T()


def _plain(**kw: Any) -> ChildSetup:
    kw.setdefault("newSession", False)
    return ChildSetup("/bin/x", ("x", "-a"), (("A", "1"),), **kw)


class ReactorSpawnerUnitTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """ReactorSpawner provides ISpawner."""
        verifyObject(ISpawner, ReactorSpawner(_RecordingReactor()))

    def test_refusesWhatItCannotHonour(self) -> None:
        """newSession, nice, chroot and foreign rlimits fail with SpawnError."""
        spawner = ReactorSpawner(_RecordingReactor())
        for setup in (
            _plain(newSession=True),
            _plain(nice=3),
            _plain(chroot="/srv"),
            _plain(rlimits=((7, 3, 3),)),
        ):
            self.failureResultOf(
                spawner.spawn(ProcessProtocol(), setup, 0, ()), SpawnError
            )

    def test_exactGroupsWithUidRefusedWhenRoot(self) -> None:
        """A root daemon cannot give an exact group list with a uid (initgroups)."""
        if os.getuid() != 0:
            raise self.skipTest("needs root")
        spawner = ReactorSpawner(_RecordingReactor())
        setup = _plain(uid=65534, gid=65534, supplementaryGroups=())
        self.failureResultOf(spawner.spawn(ProcessProtocol(), setup, 0, ()), SpawnError)

    def test_lenientIgnores(self) -> None:
        """lenient=True spawns anyway."""
        fake = _RecordingReactor()
        spawner = ReactorSpawner(fake, lenient=True)
        d = spawner.spawn(ProcessProtocol(), _plain(newSession=True, nice=3), 5, ())
        self.assertEqual(self.successResultOf(d).pid, 4242)

    def test_arguments(self) -> None:
        """fds 0-2 are the socket, the env is explicit, umask set only during the call."""
        fake = _RecordingReactor()
        before = os.umask(0o022)
        os.umask(before)
        ReactorSpawner(fake).spawn(
            ProcessProtocol(), _plain(umask=0o027), 9, (("REMOTE_HOST", "h"),)
        )
        after = os.umask(before)
        self.assertEqual(after, before)
        [call] = fake.calls
        self.assertEqual(call["childFDs"], {0: 9, 1: 9, 2: 9})
        self.assertEqual(call["env"], {"A": "1", "REMOTE_HOST": "h"})
        self.assertEqual(
            (call["umask"], call["path"], call["args"]), (0o027, "/", ["x", "-a"])
        )
        self.assertNotIn("uid", call)


class _Ended(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.reason = reason
        self.ended.callback(self)


class ReactorSpawnerRealTests(TestCase):
    @defer.inlineCallbacks
    def test_realChild(self):
        """A real child gets the socket on 0-2, the exact environment and the umask."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        proto = _Ended()
        setup = ChildSetup(
            PYTHON, (PYTHON, PROBE), (("A", "1"),), umask=0o027, newSession=False
        )
        yield ReactorSpawner(reactor).spawn(
            proto, setup, theirs.fileno(), (("REMOTE_HOST", "h"),)
        )
        theirs.close()
        reason = (yield proto.ended).reason
        self.assertIsInstance(reason.value, ProcessDone)
        info = json.loads(ours.recv(65536))
        self.assertEqual(info["env"], {"A": "1", "REMOTE_HOST": "h"})
        self.assertEqual((info["umask"], info["fds"]), (0o027, [0, 1, 2]))
        self.assertEqual(info["stdio"]["1"]["type"], "SOCK_STREAM")
