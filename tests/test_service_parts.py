"""
Tests for L{xinetd_twisted.service.parts}: an idle service builds only
what listens, and its other parts, built on first use, behave as if they
had always been there.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, List

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.test_daemon_superserver import (
    ServerHarness,
    _portFreeEverywhere,
    serviceBlock,
)
from xinetd_twisted.daemon.dump import formatDump
from xinetd_twisted.service.parts import BuiltOnRead, isBuilt
from xinetd_twisted.service.program import credentialsFor, setupFor
from xinetd_twisted.service.runtime import ServiceRuntime
from xinetd_twisted.spawn.interfaces import credentialKey

PARTS = ("log", "admission", "children", "front")


def built(runtime: ServiceRuntime) -> List[str]:
    """
    The parts of C{runtime} built so far, and C{"setup"} and C{"factory"}
    once its kind has built them.
    """
    names = [name for name in PARTS if runtime.parts.built(name)]
    names += [n for n in ("setup", "factory") if n in vars(runtime.kind)]
    return names


class _Counted:
    """
    A class with one L{BuiltOnRead} attribute that counts its builds.
    """

    builds = 0

    def _make(self) -> List[int]:
        type(self).builds += 1
        return [type(self).builds]

    value = BuiltOnRead(_make)


class BuiltOnReadTests(SynchronousTestCase):
    """
    L{BuiltOnRead}: built once, on the first read, then an instance
    attribute.
    """

    def test_builtOnFirstRead(self) -> None:
        """
        Nothing is built until the attribute is read; then it is built
        once and the same object is read ever after.
        """
        _Counted.builds = 0
        counted = _Counted()
        self.assertFalse(isBuilt(counted, "value"))
        self.assertEqual(_Counted.builds, 0)
        first = counted.value
        self.assertIs(counted.value, first)
        self.assertEqual(_Counted.builds, 1)
        self.assertTrue(isBuilt(counted, "value"))

    def test_assigned(self) -> None:
        """
        An assigned value counts as built and is never replaced by a build.
        """
        _Counted.builds = 0
        counted = _Counted()
        counted.value = [42]
        self.assertTrue(isBuilt(counted, "value"))
        self.assertEqual((counted.value, _Counted.builds), ([42], 0))

    def test_perInstance(self) -> None:
        """
        Each instance builds its own.
        """
        _Counted.builds = 0
        one, two = _Counted(), _Counted()
        self.assertEqual((one.value, two.value), ([1], [2]))

    def test_class(self) -> None:
        """
        Read on the class, it is the descriptor itself.
        """
        self.assertIsInstance(_Counted.value, BuiltOnRead)


class IdleServiceTests(SynchronousTestCase):
    """
    A service nobody has connected to yet listens with nothing else built.
    """

    def setUp(self) -> None:
        self.port = _portFreeEverywhere()
        self.h = ServerHarness(self, serviceBlock("idle", self.port))
        self.runtime = self.h.server.runtimes["idle"]

    def test_nothingBuilt(self) -> None:
        """
        A bound program service has none of its parts, setup or factory.
        """
        self.assertTrue(self.runtime.active)
        self.assertEqual(built(self.runtime), [])

    def test_countersReadZero(self) -> None:
        """
        Its counters, servers and retries read empty, without building
        anything.
        """
        r = self.runtime
        self.assertEqual(
            (r.connections, r.refused, r.servers, r.retrying), (0, 0, {}, [])
        )
        self.assertEqual(built(r), [])

    def test_dump(self) -> None:
        """
        The dump shows the idle service with zero counts and builds
        nothing.
        """
        text = formatDump(self.h.server, now=0.0, pid=1)
        self.assertIn("Service = idle", text)
        self.assertIn("\tConnections = 0", text)
        self.assertIn("\tRunning servers = 0", text)
        self.assertEqual(built(self.runtime), [])

    def test_credentialsWithoutSetup(self) -> None:
        """
        Back-pressure asks a service its credential set: answered from the
        configuration, the setup not built, and the service paused.
        """
        key = self.runtime.credentials()
        self.assertEqual(built(self.runtime), [])
        self.assertEqual(key, credentialKey(self.runtime.kind.setup))  # type: ignore[union-attr]
        self.h.server.table.pressure(key, True)
        self.assertTrue(self.runtime.paused)

    def test_stopAndEndServers(self) -> None:
        """
        Stopping it and ending its servers build nothing either.
        """
        self.runtime.endServers(9)
        self.runtime.deactivate()
        self.assertFalse(self.runtime.active)
        self.assertEqual(built(self.runtime), [])

    def test_firstConnection(self) -> None:
        """
        The first connection builds what serving it takes, and is counted
        and spawned as on a service that had them from the start.
        """
        record = self.h.connect("idle")
        r = self.runtime
        self.assertEqual(built(r), ["log", "admission", "children", "setup"])
        self.assertEqual(record.setup, r.kind.setup)  # type: ignore[union-attr]
        record.started(4321)
        self.assertEqual((r.connections, list(r.servers)), (1, [4321]))
        record.ended()
        self.assertEqual(r.servers, {})

    def test_builtOnce(self) -> None:
        """
        A built part is a plain attribute from then on: the same object at
        every read.
        """
        admission = self.runtime.parts.admission
        self.assertIs(self.runtime.parts.admission, admission)
        self.assertIs(self.runtime.parts.log, self.runtime.parts.admission._log)

    def test_unknownName(self) -> None:
        """
        A name that is no part is still an L{AttributeError}.
        """
        self.assertRaises(AttributeError, getattr, self.runtime.parts, "nothing")
        self.assertRaises(AttributeError, getattr, self.runtime.kind, "nothing")
        self.assertFalse(self.runtime.parts.built("nothing"))

    def test_stoppedBeforeFirstUse(self) -> None:
        """
        Children built after the service was stopped know it is stopped (a
        failed spawn is not retried then).
        """
        self.runtime.deactivate()
        self.assertFalse(self.runtime.parts.children.active)
        self.runtime.activate()
        self.assertTrue(self.runtime.parts.children.active)

    def test_factoryDoor(self) -> None:
        """
        The factory door is built the first time it is asked for, once.
        """
        factory = self.runtime.factory
        self.assertIsNot(factory, None)
        self.assertIs(self.runtime.factory, factory)
        self.assertIn("factory", built(self.runtime))


class ReloadBeforeUseTests(SynchronousTestCase):
    """
    A reload before a service's first connection: the parts, built later,
    take the new configuration.
    """

    def test_newArguments(self) -> None:
        """
        The first child after the reload gets the reloaded server_args.
        """
        port = _portFreeEverywhere()
        h = ServerHarness(self, serviceBlock("later", port, args="old"))
        runtime = h.server.runtimes["later"]
        h.reload(serviceBlock("later", port, args="new one"))
        self.assertIs(h.server.runtimes["later"], runtime)
        self.assertEqual(built(runtime), [])
        record = h.connect("later")
        self.assertEqual(record.setup.argv[1:], ("new", "one"))

    def test_newAccess(self) -> None:
        """
        The admission built after a reload applies the reloaded only_from.
        """
        port = _portFreeEverywhere()
        h = ServerHarness(self, serviceBlock("later", port))
        runtime = h.server.runtimes["later"]
        h.reload(serviceBlock("later", port, extra="\tonly_from\t= 10.0.0.1\n"))
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        runtime.kind.acceptRaw(theirs.detach(), ("127.0.0.1", 4242))  # type: ignore[union-attr]
        self.assertEqual(len(h.records), 0)
        self.assertEqual((runtime.connections, runtime.refused), (1, 1))

    def test_reloadAfterUse(self) -> None:
        """
        Once built, the setup follows each reload as before.
        """
        port = _portFreeEverywhere()
        h = ServerHarness(self, serviceBlock("used", port, args="old"))
        runtime = h.server.runtimes["used"]
        h.connect("used")
        h.reload(serviceBlock("used", port, args="new"))
        self.assertEqual(runtime.kind.setup.argv[1:], ("new",))  # type: ignore[union-attr]
        self.assertEqual(runtime.connections, 1)


class EagerPartsTests(SynchronousTestCase):
    """
    What must happen when the configuration is loaded still does.
    """

    def test_fileLogOpenedAtStart(self) -> None:
        """
        A service logging to a file opens it at start, before any
        connection, as xinetd does.
        """
        port = _portFreeEverywhere()
        path = self.mktemp()
        h = ServerHarness(
            self, serviceBlock("filed", port, extra=f"\tlog_type\t= FILE {path}\n")
        )
        runtime = h.server.runtimes["filed"]
        self.assertTrue(runtime.parts.built("log"))
        self.assertFalse(runtime.parts.built("admission"))
        self.assertTrue(os.path.exists(path))

    def test_bannersReadAtStart(self) -> None:
        """
        A service with a banner reads it at start (a file it cannot send
        is warned about then), and a later change of the file is seen only
        after a reload, as before.
        """
        port = _portFreeEverywhere()
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"hello\n")
        h = ServerHarness(
            self, serviceBlock("bannered", port, extra=f"\tbanner\t= {path}\n")
        )
        runtime = h.server.runtimes["bannered"]
        self.assertTrue(runtime.parts.built("admission"))
        with open(path, "wb") as f:
            f.write(b"changed\n")
        self.assertEqual(runtime.parts.admission.banners.connect, b"hello\n")

    def test_bannerAddedByReload(self) -> None:
        """
        A reload that gives an unused service a banner reads it then.
        """
        port = _portFreeEverywhere()
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"hello\n")
        h = ServerHarness(self, serviceBlock("later", port))
        runtime = h.server.runtimes["later"]
        h.reload(serviceBlock("later", port, extra=f"\tbanner\t= {path}\n"))
        self.assertTrue(runtime.parts.built("admission"))


class CredentialsTests(SynchronousTestCase):
    """
    L{credentialsFor} is the credential key of the setup it spares.
    """

    def test_sameAsSetup(self) -> None:
        """
        As root or not, with user, group, both or neither, the two agree.
        """
        h = ServerHarness(self, serviceBlock("c", _portFreeEverywhere()))
        runtime = h.server.runtimes["c"]
        cases: List[Dict[str, Any]] = [
            {"uid": None, "gid": None},
            {"uid": 65534, "gid": None},
            {"uid": None, "gid": 65534},
            {"uid": 1, "gid": 2, "supplementaryGroups": (3, 4)},
        ]
        for isRoot in (True, False):
            context = attr.evolve(h.server.context, isRoot=isRoot)
            for fields in cases:
                service = attr.evolve(runtime.service, **fields)
                self.assertEqual(
                    credentialsFor(context, service),
                    credentialKey(setupFor(context, service)),
                    (isRoot, fields),
                )
