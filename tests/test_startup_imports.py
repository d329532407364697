"""
What importing the daemon loads: modules only some configurations need
are imported on first use, not at every start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import List

from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.service.factory import plainSocket


def projectRoot() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Imported only when a configuration needs them.
LAZY = ("xinetd_twisted.builtins.stream", "twisted.protocols.policies")


def _loaded(code: str, names: List[str]) -> str:
    """
    Run C{code} in a fresh interpreter and give which of C{names} it
    loaded, as printed by that interpreter.
    """
    probe = (
        f"{code}\nimport sys\nprint(sorted(n for n in {names!r} if n in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        timeout=60,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": projectRoot()},
    )
    if result.returncode != 0:
        raise AssertionError(result.stderr.decode())
    return result.stdout.decode().strip()


class StartupImportTests(SynchronousTestCase):
    """
    The daemon's start-up imports leave out what its configuration may not
    use, and the public names still resolve.
    """

    def test_daemonLeavesOut(self) -> None:
        """
        Importing the twistd plugin's modules loads none of L{LAZY}.
        """
        code = (
            "import xinetd_twisted.tap, xinetd_twisted.daemon.superserver,"
            " xinetd_twisted.spawn.helperspawner"
        )
        self.assertEqual(_loaded(code, list(LAZY)), "[]")

    def test_streamBuiltinsOnUse(self) -> None:
        """
        The stream side of L{xinetd_twisted.builtins} is imported when one
        of its names is used.
        """
        code = (
            "from xinetd_twisted.builtins import InternalStreamFactory,"
            " STREAM_PROTOCOLS, streamFactory\n"
            "from twisted.internet.task import Clock\n"
            "assert isinstance(streamFactory('echo', 'e', Clock()),"
            " InternalStreamFactory)\n"
            "assert 'echo' in STREAM_PROTOCOLS"
        )
        self.assertEqual(
            _loaded(code, ["xinetd_twisted.builtins.stream"]),
            "['xinetd_twisted.builtins.stream']",
        )


class PlainSocketTests(SynchronousTestCase):
    """
    L{plainSocket} gives a transport's socket unless something transforms
    the stream, also now that it does not import the wrappers' module.
    """

    def test_plainTransport(self) -> None:
        """
        A transport whose handle is a socket gives it.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)

        class Transport:
            def getHandle(self) -> socket.socket:
                return sock

        self.assertIs(plainSocket(Transport()), sock)

    def test_wrapper(self) -> None:
        """
        A L{ProtocolWrapper} (the PROXY header's) gives none.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)

        class Wrapper(ProtocolWrapper):
            def getHandle(self) -> socket.socket:
                return sock

        wrapper = Wrapper(WrappingFactory(Factory()), Protocol())
        self.assertIsNone(plainSocket(wrapper))
