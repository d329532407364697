"""
Tests for how L{xinetd_twisted.spawn.launcher} starts the helper process:
from its cached bytecode, importing no more than it needs, through
L{xinetd_twisted.spawn.helperprocess.startHelperProcess}.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any, List

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from xinetd_twisted.spawn.helperprocess import startHelperProcess
from xinetd_twisted.spawn.interfaces import ChildSetup, SpawnError
from xinetd_twisted.spawn.launcher import HELPER_PATH, helperArguments

_IMPORTS = """\
import sys, _frozen_importlib as b, _frozen_importlib_external as e
before = set(sys.modules)
spec = e.spec_from_file_location("helper", sys.argv[1])
spec.loader.exec_module(b.module_from_spec(spec))
print(" ".join(sorted(set(sys.modules) - before)))
"""


class HelperStartTests(SynchronousTestCase):
    """
    The helper's command line and what the helper imports.
    """

    def python(self, *argv: str) -> str:
        result = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def test_loadedThroughTheImportSystem(self) -> None:
        """
        The helper file is imported (so its cached bytecode is used and
        written), not run as a script, and its C{main} gets the file and
        the channel's fd number.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        stub = os.path.join(directory, "stub.py")
        with open(stub, "w") as f:
            f.write("def main(argv):\n    print(repr(argv), __name__)\n")
        output = self.python(*helperArguments(stub))
        self.assertEqual(output, f"{[stub, '3']!r} xinetd_twisted_helper\n")
        self.assertEqual(
            os.listdir(os.path.join(directory, "__pycache__")),
            [f"stub.{sys.implementation.cache_tag}.pyc"],
        )
        self.assertEqual(helperArguments()[:2], ["-I", "-S"])
        self.assertEqual(helperArguments()[-2:], [HELPER_PATH, "3"])

    def test_importsOnlyWhatItNeeds(self) -> None:
        """
        The helper imports none of the pure-Python modules above the C
        modules it uses (each would cost memory in it and in every fork).
        """
        imported = set(self.python("-I", "-S", "-c", _IMPORTS, HELPER_PATH).split())
        heavy = {"enum", "socket", "signal", "selectors", "collections", "ctypes"}
        self.assertEqual(imported & heavy, set())
        self.assertIn("_socket", imported)


class _Watcher:
    """
    A process protocol that keeps what L{startHelperProcess} tells it.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred = defer.Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


class StartHelperProcessTests(TestCase):
    """
    L{startHelperProcess} on the real reactor: descriptors, output, end.
    """

    @defer.inlineCallbacks
    def test_keepsOneDescriptorAndReportsTheEnd(self):
        """
        The child has stdin on /dev/null, its output reaches the protocol,
        the kept descriptor is open under its number and no other (the
        daemon's own) is; its wait status is reported once reaped.
        """
        keep, other = os.pipe()
        self.addCleanup(os.close, other)
        script = (
            "import os, sys\n"
            "print(sorted(int(f) for f in os.listdir('/proc/self/fd')))\n"
            "print(os.readlink('/proc/self/fd/0'))\n"
            "sys.exit(3)\n"
        )
        watcher = _Watcher()
        transport = startHelperProcess(
            reactor, watcher, [sys.executable, "-c", script], {}, keep
        )
        os.close(keep)
        self.assertIsInstance(transport.pid, int)
        reason = yield watcher.ended
        self.assertIsInstance(reason, ProcessTerminated)
        self.assertEqual(reason.exitCode, 3)
        self.assertIsNone(transport.pid)
        self.assertRaises(ProcessExitedAlready, transport.signalProcess, "KILL")
        for _ in range(100):  # the pipe's EOF may come after the reaping
            if watcher.output.count(b"\n") >= 2:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        fds, stdin = watcher.output.decode().splitlines()[:2]
        self.assertEqual(stdin, "/dev/null")
        # 0-2, the kept one, and the one listdir itself opens.
        opened = set(json.loads(fds))
        self.assertIn(keep, opened)
        self.assertEqual(len(opened - {0, 1, 2, keep}), 1, opened)

    @defer.inlineCallbacks
    def test_signal(self):
        """
        C{signalProcess} signals the running child.
        """
        keep, other = os.pipe()
        self.addCleanup(os.close, other)
        self.addCleanup(os.close, keep)
        watcher = _Watcher()
        transport = startHelperProcess(reactor, watcher, ["/bin/sleep", "60"], {}, keep)
        transport.signalProcess("KILL")
        reason = yield watcher.ended
        self.assertEqual(reason.signal, signal.SIGKILL)

    def test_cannotStart(self):
        """
        An executable that cannot be run raises L{OSError} and leaves no
        descriptor open.
        """
        before = sorted(os.listdir("/proc/self/fd"))
        keep, other = os.pipe()
        try:
            self.assertRaises(
                OSError,
                startHelperProcess,
                reactor,
                _Watcher(),
                ["/nonexistent/python"],
                {},
                keep,
            )
        finally:
            os.close(keep)
            os.close(other)
        self.assertEqual(sorted(os.listdir("/proc/self/fd")), before)


class LaunchFailureTests(TestCase):
    """
    A helper that cannot be started fails the spawns as one that died.
    """

    @defer.inlineCallbacks
    def test_spawnFails(self):
        from xinetd_twisted.spawn.helperspawner import HelperSpawner

        spawner = HelperSpawner(reactor)
        self.addCleanup(spawner.stop)

        def cannot(*args: Any) -> Any:
            raise FileNotFoundError(2, "No such file or directory")

        spawner._launcher.startProcess = cannot
        logged: List[dict] = []
        globalLogPublisher.addObserver(logged.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)  # type: ignore[arg-type]
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        d = spawner.spawn(
            _Watcher(), ChildSetup("/bin/true", ("true",)), b.fileno(), ()
        )
        b.close()
        yield self.assertFailure(d, SpawnError)
        self.assertFalse(spawner._launcher.running)
        self.assertIn(
            "cannot start the spawn helper",
            [e.get("log_format", "")[:29] for e in logged],
        )
