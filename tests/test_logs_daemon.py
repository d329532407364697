"""
The real daemon's files and logs: FILE logs and banners it must not follow
or hang on, syslog without a socket, and the JSON log's schema.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Callable, List

from twisted.trial.unittest import SynchronousTestCase

from tests import daemon as daemonModule
from tests.daemon import Daemon, fetch, freePort
from xinetd_twisted.logs.service import (
    DAEMON_FIELDS,
    JSON_LOG_ENVIRONMENT,
    SCHEMA_FIELDS,
)


def waitUntil(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """
    Poll C{condition} every 50 ms until it holds or C{timeout} passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def daytime(port: int, extra: str = "", success: str = "HOST PID EXIT DURATION") -> str:
    """
    An internal daytime service on 127.0.0.1:C{port}, with C{extra}
    attribute lines.
    """
    return f"""
service daytime
{{
	type = INTERNAL UNLISTED
	port = {port}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
	log_on_success = {success}
{extra}}}
"""


class DaemonFilesTests(SynchronousTestCase):
    """
    Files named by the configuration, opened by the root daemon.
    """

    def start(self, port: int, config: Callable[[str], str], **kw: Any) -> Daemon:
        """
        Run the daemon on C{config(directory)}, C{directory} being its own.
        """
        d = Daemon("", **kw)
        self.addCleanup(d.cleanup)
        with open(d.configPath, "w") as f:
            f.write(config(d.directory))
        d.start(waitFor=("127.0.0.1", port))
        return d

    def test_fileLogSymlinkRefused(self) -> None:
        """
        A symlink at a FILE log's path is not followed; the daemon says so
        and serves anyway.
        """
        port = freePort()
        target = os.path.join(os.path.dirname(self.mktemp()), "target")
        target = os.path.abspath(target)

        def config(directory: str) -> str:
            log = os.path.join(directory, "svc.log")
            os.symlink(target, log)
            return daytime(port, f"\tlog_type = FILE {log}\n")

        d = self.start(port, config)
        self.assertTrue(fetch("127.0.0.1", port))
        self.assertFalse(os.path.lexists(target))
        self.assertIn("it is a symbolic link", d.log())

    def test_fifoBannerDoesNotHang(self) -> None:
        """
        A FIFO as banner neither hangs the start nor a reload; the service
        serves without it, and the daemon names the banner.
        """
        port = freePort()

        def config(directory: str) -> str:
            fifo = os.path.join(directory, "banner")
            os.mkfifo(fifo)
            return daytime(port, f"\tbanner = {fifo}\n")

        d = self.start(port, config)
        self.assertTrue(fetch("127.0.0.1", port).endswith(b"\r\n"))
        d.signal(signal.SIGHUP)
        self.assertTrue(
            waitUntil(
                lambda: d.log().count("is not sent: it is not a regular file") >= 2
            ),
            d.log(),
        )
        self.assertTrue(fetch("127.0.0.1", port).endswith(b"\r\n"))

    def test_syslogMissingWarnsOnce(self) -> None:
        """
        With --syslog-facility and no syslog socket, many messages give one
        warning and no recursion.
        """
        port = freePort()
        missing = os.path.abspath(os.path.join(self.mktemp(), "log"))
        d = self.start(
            port,
            lambda directory: daytime(port, "\tlog_type = SYSLOG daemon\n"),
            extraArgs=["--syslog-facility", "daemon", "--syslog-path", missing],
        )
        for _ in range(5):
            fetch("127.0.0.1", port)
        d.signal(signal.SIGHUP)
        # The reload's messages go through the failing syslog too.
        self.assertTrue(waitUntil(lambda: "Reconfigured" in d.log()), d.log())
        log = d.log()
        self.assertEqual(log.count("Cannot send to syslog socket"), 1, log)
        self.assertNotIn("Temporarily disabling", log)
        self.assertNotIn("RecursionError", log)


class JsonLogTests(SynchronousTestCase):
    """
    C{twistd --logger=xinetd_twisted.logs.jsonLogger} on the real daemon.
    """

    def test_schema(self) -> None:
        """
        Every line is one JSON object of one of the two documented shapes,
        without Twisted internals; a connection gives a start event with
        the peer.
        """
        original = daemonModule.twistdCommand
        self.patch(
            daemonModule,
            "twistdCommand",
            lambda: original() + ["--logger=xinetd_twisted.logs.jsonLogger"],
        )
        port = freePort()
        d = Daemon(daytime(port))
        self.addCleanup(d.cleanup)
        os.environ[JSON_LOG_ENVIRONMENT] = d.logPath
        self.addCleanup(os.environ.pop, JSON_LOG_ENVIRONMENT, None)
        d.start(waitFor=("127.0.0.1", port))
        fetch("127.0.0.1", port)
        self.assertTrue(waitUntil(lambda: '"event": "start"' in d.log()), d.log())
        records: List[dict] = [json.loads(line) for line in d.log().splitlines()]
        self.assertNotIn("log_logger", d.log())
        for record in records:
            self.assertIn(tuple(record), (SCHEMA_FIELDS, DAEMON_FIELDS), record)
        start = [r for r in records if r.get("event") == "start"][0]
        self.assertEqual((start["service"], start["peer"]), ("daytime", "127.0.0.1"))
        self.assertTrue(any("Started working" in r.get("text", "") for r in records))
