"""
C{rsync --daemon} in inetd mode (it finds the connection on stdin) with a
configuration file the test writes: an rsync pull of a module.
"""

from __future__ import annotations

import os

from tests.daemon import Daemon
from tests.interop import (
    HOST,
    InteropTestCase,
    freePort,
    requireProgram,
    requireRoot,
    run,
)


class RsyncDaemonTests(InteropTestCase):
    """
    rsync's daemon mode, started per connection by the daemon.
    """

    def test_pullModule(self) -> None:
        """
        C{rsync rsync://host:port/mod/ dest/} copies the module's tree.
        """
        requireRoot()
        rsync = requireProgram("/usr/bin/rsync", "rsync")
        port = freePort()
        files = {"a.txt": b"alpha\n", os.path.join("sub", "b.bin"): os.urandom(50000)}

        def build(d: Daemon) -> str:
            tree = os.path.join(d.directory, "module")
            os.makedirs(os.path.join(tree, "sub"))
            for name, data in files.items():
                with open(os.path.join(tree, name), "wb") as f:
                    f.write(data)
                os.chmod(os.path.join(tree, name), 0o644)
            conf = os.path.join(d.directory, "rsyncd.conf")
            with open(conf, "w") as f:
                f.write(
                    "use chroot = no\n"
                    f"log file = {os.path.join(d.directory, 'rsyncd.log')}\n"
                    "[mod]\n"
                    f"\tpath = {tree}\n"
                    "\tread only = yes\n"
                    "\tuid = nobody\n"
                    "\tgid = nogroup\n"
                )
            return self.programService(
                "rsync", port, "root", rsync, server_args=f"--daemon --config={conf}"
            )

        self.startDaemon(build, (HOST, port))
        dest = os.path.join(self.d.directory, "dest")
        result = run([rsync, "-r", f"rsync://{HOST}:{port}/mod/", dest + "/"])
        self.assertEqual(result.returncode, 0, self.explain(result))
        for name, data in files.items():
            with open(os.path.join(dest, name), "rb") as f:
                self.assertEqual(f.read(), data)
        listing = run([rsync, f"rsync://{HOST}:{port}/"])
        self.assertEqual(listing.returncode, 0, self.explain(listing))
        self.assertEqual(listing.stdout.split(), [b"mod"])
