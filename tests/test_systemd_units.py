"""
Tests for conf/systemd/: the units say what docs/install.md promises, and
C{systemd-analyze verify} accepts them once C{ExecStart} names an installed
twistd (this test's) and the man pages of C{Documentation=} are installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = os.path.join(ROOT, "conf", "systemd")
MAN = os.path.join(ROOT, "docs", "man")
SERVICE = "xinetd-twisted.service"
ACTIVATED = "xinetd-twisted-activated.service"
SOCKET = "xinetd-twisted-activated.socket"
INSTALLED_TWISTD = "/opt/xinetd-twisted/bin/twistd"

Unit = Dict[str, List[Tuple[str, str]]]


def readUnit(name: str) -> Unit:
    """
    A unit file as sections of (key, value) pairs, in order (keys may
    repeat in systemd units).
    """
    unit: Unit = {}
    section: Optional[List[Tuple[str, str]]] = None
    with open(os.path.join(UNITS, name), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = unit.setdefault(line[1:-1], [])
                continue
            assert section is not None, line
            key, _, value = line.partition("=")
            section.append((key.strip(), value.strip()))
    return unit


def shipped(name: str) -> str:
    with open(os.path.join(UNITS, name), encoding="utf-8") as f:
        return f.read()


def values(unit: Unit, section: str, key: str) -> List[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str:
    [only] = values(unit, section, key)
    return only


class ContentTests(SynchronousTestCase):
    def test_files(self) -> None:
        """conf/systemd holds the plain unit and the socket-activation pair."""
        self.assertEqual(
            sorted(n for n in os.listdir(UNITS) if not n.startswith(".")),
            sorted([SERVICE, ACTIVATED, SOCKET]),
        )

    def test_services(self) -> None:
        """Both services: notify, SIGHUP reload, servers outlive a stop, restart on failure, watchdog."""
        for name in (SERVICE, ACTIVATED):
            unit = readUnit(name)
            self.assertEqual(value(unit, "Service", "Type"), "notify", name)
            self.assertEqual(
                value(unit, "Service", "ExecStart"),
                f"{INSTALLED_TWISTD} -n --pidfile= xinetd --config /etc/xinetd.conf",
            )
            self.assertEqual(
                value(unit, "Service", "ExecReload"), "/bin/kill -HUP $MAINPID"
            )
            self.assertEqual(value(unit, "Service", "KillMode"), "process")
            self.assertEqual(value(unit, "Service", "Restart"), "on-failure")
            self.assertEqual(value(unit, "Service", "WatchdogSec"), "30")
            self.assertIn("xinetd.service", value(unit, "Unit", "Conflicts").split())

    def test_socketPair(self) -> None:
        """The socket names a service id, starts the activated service, which takes it."""
        socketUnit = readUnit(SOCKET)
        self.assertTrue(values(socketUnit, "Socket", "ListenStream"))
        self.assertEqual(
            value(socketUnit, "Socket", "FileDescriptorName"), "echo-stream"
        )
        self.assertEqual(value(socketUnit, "Socket", "Service"), ACTIVATED)
        service = readUnit(ACTIVATED)
        self.assertIn(SOCKET, value(service, "Service", "Sockets").split())
        self.assertIn(SOCKET, value(service, "Unit", "Requires").split())


class VerifyTests(SynchronousTestCase):
    """
    C{systemd-analyze verify} on a copy whose ExecStart is this
    environment's twistd.
    """

    def setUp(self) -> None:
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            raise self.skipTest(
                "systemd-analyze not installed (Debian package systemd)"
            )
        self.twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.access(self.twistd, os.X_OK):
            raise self.skipTest(f"no twistd beside {sys.executable}")
        self.directory = tempfile.mkdtemp(prefix="xt-units-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.env = dict(os.environ)
        if shutil.which("man") is not None:
            # Documentation=man:... is checked with man(1): install the
            # pages the way pip does, under a share/man tree.
            manTree = os.path.join(self.directory, "man")
            for page, sub in (
                ("xinetd-twisted.8", "man8"),
                ("xinetd-twisted.conf.5", "man5"),
            ):
                os.makedirs(os.path.join(manTree, sub), exist_ok=True)
                shutil.copy(os.path.join(MAN, page), os.path.join(manTree, sub, page))
            self.env["MANPATH"] = manTree + ":"
            self.manOption: List[str] = []
        else:
            self.manOption = ["--man=no"]
        probe = self.write("probe.service", "[Service]\nExecStart=/bin/true\n")
        result = self.verify([probe])
        if result[0] != 0:
            raise self.skipTest(f"systemd-analyze verify cannot run here: {result[1]}")

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def installed(self, name: str) -> str:
        """
        A copy of unit C{name} as if installed: ExecStart names our twistd.
        """
        return self.write(name, shipped(name).replace(INSTALLED_TWISTD, self.twistd))

    def verify(self, paths: List[str]) -> Tuple[int, str]:
        assert self.analyze is not None
        result = subprocess.run(
            [self.analyze, "verify", *self.manOption, *paths],
            capture_output=True,
            timeout=120,
            cwd=self.directory,
            env=self.env,
        )
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        return result.returncode, output

    def test_units(self) -> None:
        """The three units pass systemd-analyze verify with nothing to say about them."""
        paths = [self.installed(n) for n in (SERVICE, SOCKET, ACTIVATED)]
        code, output = self.verify(paths)
        ours = [line for line in output.splitlines() if "xinetd-twisted" in line]
        self.assertEqual((code, ours), (0, []), output)

    def test_mistakesSeen(self) -> None:
        """A misspelt setting in the unit is reported: the check can fail."""
        text = shipped(SERVICE).replace(INSTALLED_TWISTD, self.twistd)
        path = self.write(SERVICE, text.replace("Type=notify", "Type=notifyy"))
        code, output = self.verify([path])
        self.assertIn("notifyy", output)

    def test_uninstalledBinarySeen(self) -> None:
        """The shipped ExecStart is refused where /opt/xinetd-twisted is not installed."""
        if os.path.exists(INSTALLED_TWISTD):
            raise self.skipTest(f"{INSTALLED_TWISTD} is installed here")
        path = self.write(SERVICE, shipped(SERVICE))
        code, output = self.verify([path])
        self.assertNotEqual(code, 0)
        self.assertIn(INSTALLED_TWISTD, output)
