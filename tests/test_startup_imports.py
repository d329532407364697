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
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.protocols.names import ReverseResolver
from xinetd_twisted.service.context import ResolverOnFirstUse
from xinetd_twisted.service.factory import plainSocket


def projectRoot() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Imported only when a configuration needs them.
LAZY = ("xinetd_twisted.builtins.stream", "twisted.protocols.policies")

# Imported only when a configuration needs them: a daemon built for
# program services alone (and hosts files without rules) loads none.
FEATURES = (
    "xinetd_twisted.spawn.helper",
    "xinetd_twisted.policy.hostsaccess",
    "xinetd_twisted.daemon.metrics",
    "xinetd_twisted.daemon.activation",
    "xinetd_twisted.daemon.rpc",
    "xinetd_twisted.protocols.portmap",
    "xinetd_twisted.protocols.ident",
    "xinetd_twisted.config.tls",
    "xinetd_twisted.config.dump",
    "xinetd_twisted.spawn.schedslice",
    "xinetd_twisted.protocols.names",
    "xinetd_twisted.builtins",
    "xinetd_twisted.listen.wait",
    "xinetd_twisted.policy.times",
    "xinetd_twisted.policy.sourcerate",
    "xinetd_twisted.service.tls",
)

PROGRAM = """
service hello
{
    type        = UNLISTED
    socket_type = stream
    protocol    = tcp
    wait        = no
    user        = nobody
    server      = /bin/true
    bind        = 127.0.0.1
    port        = 1
}
"""


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


def _built(directory: str, hostsAllow: str = "", arguments: str = "") -> str:
    """
    Code that builds, as twistd's plugin does (without starting it), the
    daemon of a configuration with one program service, with
    C{hostsAllow} as its hosts.allow (and an empty hosts.deny) and
    C{arguments} added to its command line.
    """
    paths = {}
    for name, text in (("conf", PROGRAM), ("allow", hostsAllow), ("deny", "")):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "w") as f:
            f.write(text)
    argv = [
        "--config",
        paths["conf"],
        "--hosts-allow",
        paths["allow"],
        "--hosts-deny",
        paths["deny"],
        *arguments.split(),
    ]
    return (
        "import os\n"
        "for name in ('LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'):\n"
        "    os.environ.pop(name, None)\n"
        "from xinetd_twisted.tap import Options, makeService\n"
        "options = Options()\n"
        f"options.parseOptions({argv!r})\n"
        "makeService(options)"
    )


class FeatureImportTests(SynchronousTestCase):
    """
    Building the daemon imports a feature's modules only when its
    configuration uses the feature.
    """

    def test_programServicesLeaveOut(self) -> None:
        """
        A daemon of program services, whose hosts files hold only a
        comment, loads none of L{FEATURES}.
        """
        code = _built(self.mktemp_dir(), "# nothing here\n")
        self.assertEqual(_loaded(code, list(FEATURES)), "[]")

    def test_systemFilesForgotten(self) -> None:
        """
        The daemon built keeps no parsed system file (the services
        database is the largest).
        """
        code = (
            _built(self.mktemp_dir())
            + "\nfrom xinetd_twisted.config import sysfiles"
            + "\nprint(len(sysfiles._cache))"
        )
        self.assertEqual(_loaded(code, []), "0\n[]")

    def test_hostsRules(self) -> None:
        """
        A rule in hosts.allow loads the hosts_access parser.
        """
        code = _built(self.mktemp_dir(), "ALL: 127.0.0.1\n")
        self.assertEqual(
            _loaded(code, ["xinetd_twisted.policy.hostsaccess"]),
            "['xinetd_twisted.policy.hostsaccess']",
        )

    def test_metricsAndSlice(self) -> None:
        """
        C{--metrics} loads the metrics; a scheduler slice other than the
        default loads its bounds' module.
        """
        code = _built(self.mktemp_dir(), "", "--metrics tcp:0 --sched-slice 200")
        names = ["xinetd_twisted.daemon.metrics", "xinetd_twisted.spawn.schedslice"]
        self.assertEqual(_loaded(code, names), str(names))

    def mktemp_dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path


class ResolverOnFirstUseTests(SynchronousTestCase):
    """
    L{ResolverOnFirstUse} makes its resolver when first asked.
    """

    def setUp(self) -> None:
        self.made: List[ReverseResolver] = []

    def make(self) -> ReverseResolver:
        resolver = ReverseResolver(Clock().seconds, {"10.0.0.1": "one.example"})
        self.made.append(resolver)
        return resolver

    def test_onFirstUse(self) -> None:
        """
        Nothing is made before a question; then one resolver answers them
        all.
        """
        names = ResolverOnFirstUse(self.make)
        self.assertEqual(self.made, [])
        self.assertEqual(names.cached("10.0.0.1"), (True, "one.example"))
        self.assertEqual(self.successResultOf(names.lookup("10.0.0.1")), "one.example")
        self.assertEqual(len(self.made), 1)

    def test_stopUnmade(self) -> None:
        """
        Stopping a resolver never asked makes none.
        """
        names = ResolverOnFirstUse(self.make)
        names.stop()
        self.assertEqual(self.made, [])


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
