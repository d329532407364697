"""
Integration tests with the real C{twistd -n xinetd}: an included file
that is not a configuration refuses the reload, and the running services
go on being served; the daemon's C{--strict}.
"""

from __future__ import annotations

import os
import signal

from tests.daemon import fetch, freePort
from tests.test_integration_life import HOST, LifeTestCase, shService, waitUntil


class NotConfigurationReloadTests(LifeTestCase):
    """
    SIGHUP with an included file replaced by something else.
    """

    def start(self) -> tuple:
        """
        A daemon whose one service lives in an included file: (daemon,
        port, included path).
        """
        port = freePort()
        included = os.path.abspath(self.mktemp())
        with open(included, "w") as f:
            f.write(shService("svc", port, self.script("echo up")))
        d = self.daemon(f"include {included}\n")
        d.start(waitFor=(HOST, port))
        return d, port, included

    def reload(self, daemon) -> None:
        daemon.signal(signal.SIGHUP)
        waitUntil(
            lambda: (
                "Reconfigured:" in daemon.log()
                or "reconfiguration failed" in daemon.log()
            )
        )

    def test_binaryInclude(self) -> None:
        """
        An included file turned binary refuses the reload, naming the file:
        the service still answers (it used to reload as no services).
        """
        d, port, included = self.start()
        with open(included, "wb") as f:
            f.write(b"\x7fELF\x02\x01\x01\x00" * 64)
        self.reload(d)
        self.assertIn("reconfiguration failed", d.log())
        self.assertIn(f"{included}:1", d.log())
        self.assertEqual(fetch(HOST, port), b"up\n")

    def test_fifoInclude(self) -> None:
        """
        An included file replaced by a FIFO refuses the reload at once (the
        daemon used to hang in open()).
        """
        d, port, included = self.start()
        os.unlink(included)
        os.mkfifo(included)
        self.reload(d)
        self.assertIn("is not a regular file (it is a FIFO)", d.log())
        self.assertEqual(fetch(HOST, port), b"up\n")


class StrictDaemonTests(LifeTestCase):
    """
    C{twistd xinetd --strict}.
    """

    def test_warningNotServed(self) -> None:
        """
        With --strict a service with a warning is not started; the others
        are.
        """
        port, other = freePort(), freePort()
        text = shService(
            "warned", port, self.script("echo no"), extra="only_frm = 127.0.0.1"
        ) + shService("clean", other, self.script("echo yes"))
        d = self.daemon(text, ["--strict"])
        d.start(waitFor=(HOST, other))
        self.assertIn("did you mean only_from?", d.log())
        self.assertEqual(fetch(HOST, other), b"yes\n")
        with self.assertRaises(OSError):
            fetch(HOST, port)
