"""
Tests for the command line of the twistd plugin (L{xinetd_twisted.tap.Options}):
C{--strict}, C{--helper-idle}, C{--sched-slice}, C{--version}, and a
configuration that cannot be used.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import twistdCommand
from tests.test_config_support import EXTERNAL, service
from xinetd_twisted import __version__
from xinetd_twisted.spawn.helperspawner import IDLE_TIMEOUT
from xinetd_twisted.tap import DEFAULT_SCHED_SLICE, Options, makeService

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OptionsTests(SynchronousTestCase):
    """
    L{Options} loads the configuration as the daemon will.
    """

    def write(self, data: bytes) -> str:
        path = FilePath(self.mktemp())
        path.setContent(data)
        os.chmod(path.path, 0o644)
        return path.path

    def test_strict(self) -> None:
        """
        C{--strict} sets C{strict} and loads strictly: the service with a
        warning is not loaded.
        """
        path = self.write(service(EXTERNAL + "\n only_frm = 127.0.0.1").encode())
        self.patch(sys, "stderr", io.StringIO())
        lenient = Options()
        lenient.parseOptions(["--config", path])
        strict = Options()
        strict.parseOptions(["--config", path, "--strict"])
        self.assertEqual(
            (
                lenient["strict"],
                len(lenient["loadedConfig"].services),
                strict["strict"],
                strict["loadedConfig"].services,
                strict["loadedConfig"].dropped,
            ),
            (False, 1, True, (), ("svc",)),
        )

    def test_helperIdle(self) -> None:
        """
        C{--helper-idle SECONDS} becomes the helper spawner's idle timeout
        for sub-helpers; without it the spawner's default holds.
        """
        path = self.write(service(EXTERNAL).encode())
        given = Options()
        given.parseOptions(["--config", path, "--helper-idle", "2.5"])
        default = Options()
        default.parseOptions(["--config", path])
        self.assertEqual(
            (
                makeService(given).context.spawner.idleTimeout,  # type: ignore[attr-defined]
                makeService(default).context.spawner.idleTimeout,  # type: ignore[attr-defined]
            ),
            (2.5, IDLE_TIMEOUT),
        )

    def test_helperIdleNegative(self) -> None:
        """
        A negative C{--helper-idle} is a usage error.
        """
        path = self.write(service(EXTERNAL).encode())
        with self.assertRaises(UsageError):
            Options().parseOptions(["--config", path, "--helper-idle", "-1"])

    def test_schedSlice(self) -> None:
        """
        C{--sched-slice MICROSECONDS} (default 0: none) is the slice the
        helper spawner's root helper is started to give.
        """
        path = self.write(service(EXTERNAL).encode())
        slices = []
        for extra in ([], ["--sched-slice", "100"], ["--sched-slice", "2000"]):
            options = Options()
            options.parseOptions(["--config", path, *extra])
            spawner = makeService(options).context.spawner  # type: ignore[attr-defined]
            slices.append(spawner._launcher.schedSlice)
        self.assertEqual(slices, [DEFAULT_SCHED_SLICE, 100, 2000])
        self.assertEqual(DEFAULT_SCHED_SLICE, 0)

    def test_schedSliceBounds(self) -> None:
        """
        A slice the kernel would clamp (below 100 us, above 100 ms) or a
        negative one is a usage error.
        """
        path = self.write(service(EXTERNAL).encode())
        for value in ("50", "100001", "-1"):
            with self.assertRaises(UsageError):
                Options().parseOptions(["--config", path, "--sched-slice", value])

    def test_version(self) -> None:
        """
        C{--version} prints C{xinetd-twisted VERSION} and exits 0.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as raised:
            Options().parseOptions(["--version"])
        self.assertEqual(
            (raised.exception.code, out.getvalue()),
            (0, f"xinetd-twisted {__version__}\n"),
        )

    def test_missingConfig(self) -> None:
        """
        A missing configuration is one line, not a usage error.
        """
        with self.assertRaises(SystemExit) as raised:
            Options().parseOptions(["--config", "/nonexistent"])
        self.assertEqual(
            raised.exception.code,
            "twistd: cannot read /nonexistent: No such file or directory",
        )

    def test_refusedConfig(self) -> None:
        """
        A refused configuration prints its problems and exits non-zero.
        """
        path = self.write(b"defaults\n{\n instances = x\n}\n")
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as raised:
            Options().parseOptions(["--config", path])
        self.assertEqual(
            raised.exception.code, f"twistd: configuration {path} refused (see above)"
        )
        self.assertIn(
            f"{path}:3: service defaults: attribute instances: fatal:", err.getvalue()
        )


class TwistdTests(SynchronousTestCase):
    """
    The real twistd.
    """

    def twistd(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=ROOT)
        return subprocess.run(
            [*twistdCommand(), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )

    def test_missingConfig(self) -> None:
        """
        C{twistd -n xinetd --config /nonexistent} prints one line and exits
        non-zero (it used to print twistd's whole usage).
        """
        result = self.twistd("-n", "--pidfile=", "xinetd", "--config", "/nonexistent")
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (1, "", "twistd: cannot read /nonexistent: No such file or directory\n"),
        )

    def test_version(self) -> None:
        """
        C{twistd xinetd --version} prints the plugin's version.
        """
        result = self.twistd("xinetd", "--version")
        self.assertEqual(
            (result.returncode, result.stdout), (0, f"xinetd-twisted {__version__}\n")
        )
