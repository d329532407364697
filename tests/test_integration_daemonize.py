"""
The daemon started the way an init script starts it: daemonized by twistd,
with a pidfile and a logfile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import PROBE, REPO, fetch, freePort, twistdCommand, waitForPort


class DaemonizeTests(TestCase):
    """
    C{twistd --pidfile P --logfile L xinetd --config C}.
    """

    def test_pidfileLogfileAndChildUmask(self) -> None:
        """
        twistd daemonizes (the command returns at once), writes the pidfile,
        logs to the logfile and removes the pidfile on SIGTERM; children get
        the umask the daemon was started with | 022, not the 077 twistd sets
        when it daemonizes.
        """
        if not os.access("/usr/bin/python3", os.X_OK):
            raise SkipTest("no /usr/bin/python3 for the probe")
        directory = tempfile.mkdtemp(prefix="xt-daemonize-")
        os.chmod(directory, 0o755)
        self.addCleanup(shutil.rmtree, directory, True)
        probe = os.path.join(directory, "probe.py")
        shutil.copy(PROBE, probe)
        os.chmod(probe, 0o755)
        port = freePort()
        user = "\tuser = nobody\n" if os.geteuid() == 0 else ""
        config = os.path.join(directory, "xinetd.conf")
        with open(config, "w") as f:
            f.write(
                f"service probe\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
                "\tsocket_type = stream\n\twait = no\n\tbind = 127.0.0.1\n"
                f"\tserver = /usr/bin/python3\n\tserver_args = -I -S {probe}\n{user}}}\n"
            )
        pidfile = os.path.join(directory, "xinetd.pid")
        logfile = os.path.join(directory, "xinetd.log")
        env = dict(os.environ, PYTHONPATH=REPO)
        old = os.umask(0o002)
        try:
            done = subprocess.run(
                twistdCommand()
                + [
                    "--pidfile",
                    pidfile,
                    "--logfile",
                    logfile,
                    "xinetd",
                    "--config",
                    config,
                ],
                cwd=REPO,
                env=env,
                timeout=30,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
        finally:
            os.umask(old)
        self.assertEqual(done.returncode, 0, done.stderr)
        deadline = time.monotonic() + 20
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_kill, pid)
        waitForPort("127.0.0.1", port)
        report = json.loads(fetch("127.0.0.1", port))
        self.assertEqual(report["umask"], 0o022)
        os.kill(pid, signal.SIGTERM)
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(pidfile))
        with open(logfile) as f:
            self.assertIn("Started working: 1 available service(s)", f.read())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
