"""
Tests for L{xinetd_twisted.cli}: the C{check} subcommand.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, service
from xinetd_twisted.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CheckTests(SynchronousTestCase):
    """
    C{xinetd-twisted check [--dump] CONFIG}.
    """

    def write(self, text: str) -> str:
        path = FilePath(self.mktemp())
        path.setContent(text.encode())
        # A group-writable file would be a warning for a root daemon.
        os.chmod(path.path, 0o644)
        return path.path

    def check(self, *args: str) -> tuple:
        out = io.StringIO()
        status = main(list(args), out=out, err=out)
        return status, out.getvalue()

    def test_clean(self) -> None:
        """
        A clean configuration: summary only, exit 0.
        """
        path = self.write(
            service(EXTERNAL, name="a")
            + service(EXTERNAL.replace("4000", "4001"), name="b")
        )
        self.assertEqual(
            self.check("check", path),
            (0, "2 services would run: a, b (0 dropped, 0 errors, 0 warnings)\n"),
        )

    def test_warningsOnly(self) -> None:
        """
        Warnings are printed with their location; exit stays 0.
        """
        path = self.write(service(EXTERNAL + "\n bogus = 1", name="a"))
        status, output = self.check("check", path)
        self.assertEqual(status, 0)
        self.assertEqual(
            output,
            f"{path}:10: service a: attribute bogus: warning: bad service attribute: bogus\n"
            "1 service would run: a (0 dropped, 0 errors, 1 warning)\n",
        )

    def test_dropped(self) -> None:
        """
        A dropped service makes the exit status 1.
        """
        path = self.write(
            service(EXTERNAL + "\n nice = x", name="a")
            + service(EXTERNAL.replace("4000", "4001"), name="b")
        )
        status, output = self.check("check", path)
        self.assertEqual(status, 1)
        self.assertTrue(
            output.endswith(
                "1 service would run: b (1 dropped, 1 error, 0 warnings)\n"
            ),
            output,
        )
        self.assertIn(
            f"{path}:10: service a: attribute nice: error: bad number: x", output
        )

    def test_fatal(self) -> None:
        """
        A bad defaults value refuses the configuration: exit 1.
        """
        path = self.write("defaults\n{\n instances = x\n}\n")
        status, output = self.check("check", path)
        self.assertEqual(status, 1)
        self.assertIn(
            f"{path}:3: service defaults: attribute instances: fatal:", output
        )
        self.assertIn("configuration refused", output)

    def test_unreadable(self) -> None:
        """
        A missing file is one line and status 2.
        """
        self.assertEqual(
            self.check("check", "/nonexistent/xinetd.conf"),
            (
                2,
                "xinetd-twisted: cannot read /nonexistent/xinetd.conf: "
                "No such file or directory\n",
            ),
        )

    def test_dump(self) -> None:
        """
        --dump prints each service's effective block after the summary.
        """
        path = self.write(service(EXTERNAL, name="a"))
        status, output = self.check("check", "--dump", path)
        self.assertEqual(status, 0)
        self.assertIn("\nservice a\n{\n\tid              = a\n", output)

    def test_dumpCommand(self) -> None:
        """
        C{dump} prints only the effective blocks, which read back as the
        same services; problems go to standard error.
        """
        path = self.write(
            service(EXTERNAL, name="a")
            + service(EXTERNAL + "\n wait = maybe", name="b")
        )
        out, err = io.StringIO(), io.StringIO()
        status = main(["dump", path], out=out, err=err)
        self.assertEqual(status, 0)
        self.assertTrue(out.getvalue().startswith("service a\n{\n"))
        self.assertNotIn("service b", out.getvalue())
        self.assertIn("attribute wait", err.getvalue())
        again = self.write(out.getvalue())
        self.assertEqual(self.check("check", again)[0], 0)

    def test_checkInetdCompat(self) -> None:
        """
        C{check --inetd-compat FILE} reads the inetd.conf after the xinetd
        files, as the daemon's option does.
        """
        path = self.write("")
        inetd = self.write("echo stream tcp nowait root internal\n")
        status, output = self.check("check", "--inetd-compat", inetd, path)
        self.assertEqual(
            (status, output.splitlines()[-1]),
            (0, "1 service would run: echo-stream (0 dropped, 0 errors, 0 warnings)"),
        )

    def test_subprocess(self) -> None:
        """
        python -m xinetd_twisted.cli check works as a program.
        """
        path = self.write(service(EXTERNAL, name="a") + service(EXTERNAL, name="b"))
        result = subprocess.run(
            [sys.executable, "-m", "xinetd_twisted.cli", "check", path],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1)
        self.assertTrue(
            result.stdout.endswith(
                "1 service would run: a (1 dropped, 1 error, 0 warnings)\n"
            ),
            result.stdout,
        )

    def test_secondDefaults(self) -> None:
        """
        A second defaults block is ignored with an error: every service
        runs, the summary counts the error, and the status agrees (1).
        """
        path = self.write(
            "defaults\n{\n}\ndefaults\n{\n}\n" + service(EXTERNAL, name="a")
        )
        status, output = self.check("check", path)
        self.assertEqual(
            (status, output.splitlines()[-1]),
            (1, "1 service would run: a (0 dropped, 1 error, 0 warnings)"),
        )

    def test_strict(self) -> None:
        """
        C{--strict}: the service with a warning is dropped and the status
        is 1.
        """
        path = self.write(service(EXTERNAL + "\n only_frm = 127.0.0.1", name="a"))
        self.assertEqual(self.check("check", path)[0], 0)
        status, output = self.check("check", "--strict", path)
        self.assertEqual(
            (status, output.splitlines()[-1]),
            (1, "0 services would run (1 dropped, 1 error, 0 warnings)"),
        )
        self.assertIn("did you mean only_from?", output)

    def test_refusedStatus(self) -> None:
        """
        A configuration that is not one at all (a binary include) is
        refused: status 1, and the message says a reload keeps the running
        configuration.
        """
        binary = self.write("")
        FilePath(binary).setContent(b"\x00\x01\x02")
        path = self.write(f"include {binary}\n" + service(EXTERNAL, name="a"))
        status, output = self.check("check", path)
        self.assertEqual(status, 1)
        self.assertIn(f"{binary}:1: fatal: not a configuration file", output)
        self.assertIn("a reload would keep the running configuration", output)

    def test_dumpUnreadable(self) -> None:
        """
        C{dump} of a missing file: one line, status 2.
        """
        out, err = io.StringIO(), io.StringIO()
        status = main(["dump", "/nonexistent"], out=out, err=err)
        self.assertEqual(
            (status, out.getvalue(), err.getvalue()),
            (
                2,
                "",
                "xinetd-twisted: cannot read /nonexistent: No such file or directory\n",
            ),
        )

    def test_version(self) -> None:
        """
        C{--version} prints the name and version.
        """
        from xinetd_twisted import __version__

        result = subprocess.run(
            [sys.executable, "-m", "xinetd_twisted.cli", "--version"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        self.assertEqual(
            (result.returncode, result.stdout), (0, f"xinetd-twisted {__version__}\n")
        )

    def test_brokenPipe(self) -> None:
        """
        C{check --dump CONFIG | head -1} ends without a traceback.
        """
        path = self.write(
            "".join(
                service(EXTERNAL.replace("4000", str(5000 + i)), name=f"s{i}")
                for i in range(400)
            )
        )
        command = (
            f"{sys.executable} -m xinetd_twisted.cli check --dump {path} | head -1"
        )
        result = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        self.assertEqual(
            (result.stdout.startswith("400 services would run"), result.stderr),
            (True, ""),
        )

    def test_fileNameNotUtf8(self) -> None:
        """
        A file name that is not UTF-8 in an includedir is printed as its
        bytes, not as a UnicodeEncodeError traceback.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        bad = os.path.join(os.fsencode(directory.path), b"x\xff")
        with open(bad, "wb") as f:
            f.write(b"service a\n{\n nice = x\n}\n")
        path = self.write(f"includedir {directory.path}\n")
        result = subprocess.run(
            [sys.executable, "-m", "xinetd_twisted.cli", "check", path],
            capture_output=True,
            cwd=ROOT,
            # A strict UTF-8 standard output, as in a UTF-8 locale.
            env=dict(os.environ, PYTHONIOENCODING="utf-8"),
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stderr), (1, b""))
        self.assertIn(b"x\xff:3: service a", result.stdout)
