"""
The daemon under a supervisor and a scraper, for real: sd_notify messages
read from a socket the test binds, and the Prometheus page scraped while
real clients are served and refused.
"""

from __future__ import annotations

import os
import signal
from typing import List

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.daemon import Daemon, fetch, freePort
from tests.test_daemon_metrics import scrape
from tests.test_daemon_notify import NotifyCollector

HOST = "127.0.0.1"


def _config(served: int, denied: int) -> str:
    """
    C{hello} spawns /bin/echo; C{closed}, an internal echo, refuses every
    client by address.
    """
    user = "\tuser = nobody\n" if os.geteuid() == 0 else ""
    common = "\tsocket_type = stream\n\twait = no\n\tbind = 127.0.0.1\n"
    return (
        f"service hello\n{{\n\ttype = UNLISTED\n\tport = {served}\n{common}"
        f"\tserver = /bin/echo\n\tserver_args = hi\n{user}}}\n"
        f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tid = closed\n"
        f"\tport = {denied}\n{common}\tonly_from = 10.9.9.9\n}}\n"
    )


class OpsTests(TestCase):
    def daemon(self, text: str, args: List[str], env: dict) -> Daemon:
        d = Daemon(text, args, environment=env)
        self.addCleanup(d.cleanup)
        return d

    async def untilMessages(self, collector: NotifyCollector, count: int) -> None:
        for _ in range(400):
            if len(collector.messages) >= count:
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"only {collector.messages}")

    async def settled(self, port: int, labels: tuple) -> float:
        """
        The connection count once every server started has exited.
        """
        for _ in range(100):
            page = await scrape(port)
            done = page.get(("xinetd_server_exits_total", labels), 0)
            if page.get(("xinetd_connections_total", labels), 0) == done:
                return done
            await deferLater(reactor, 0.05, lambda: None)
        self.fail("servers never settled")

    async def test_systemdNotify(self) -> None:
        """
        READY=1 with the service count once bound; RELOADING=1 with
        MONOTONIC_USEC in one datagram on SIGHUP, then READY=1; STOPPING=1.
        """
        collector = NotifyCollector.listen(self)
        served, denied = freePort(), freePort()
        d = self.daemon(_config(served, denied), [], {"NOTIFY_SOCKET": collector.path})
        d.start(waitFor=(HOST, served))
        ready = await collector.waitFor("READY=1")
        self.assertIn("STATUS=2 services", ready)
        before = len(collector.messages)
        d.signal(signal.SIGHUP)
        await self.untilMessages(collector, before + 2)
        reloading = collector.messages[before]
        self.assertIn("RELOADING=1", reloading)
        self.assertTrue(any(a.startswith("MONOTONIC_USEC=") for a in reloading))
        self.assertIn("READY=1", collector.messages[before + 1])
        d.stop()
        await collector.waitFor("STOPPING=1")

    async def test_metricsCountWhatHappened(self) -> None:
        """
        --metrics serves counters that match the connections made and
        refused, by service and FAIL reason.
        """
        served, denied, metrics = freePort(), freePort(), freePort()
        d = self.daemon(
            _config(served, denied),
            ["--metrics", f"tcp:{metrics}:interface={HOST}"],
            {},
        )
        d.start(waitFor=(HOST, served))
        hello = (("service", "hello"),)
        # The start-up probe is a connection too: count from what is done.
        base = await self.settled(metrics, hello)
        for _ in range(3):
            self.assertEqual(fetch(HOST, served), b"hi\n")
        for _ in range(2):
            fetch(HOST, denied)
        page = None
        for _ in range(100):
            page = await scrape(metrics)
            if page.get(("xinetd_server_exits_total", hello)) == base + 3:
                break
            await deferLater(reactor, 0.05, lambda: None)
        assert page is not None
        self.assertEqual(page[("xinetd_connections_total", hello)], base + 3)
        self.assertEqual(page[("xinetd_server_exits_total", hello)], base + 3)
        self.assertEqual(page[("xinetd_servers_running", hello)], 0)
        self.assertEqual(
            page[
                (
                    "xinetd_refusals_total",
                    (("reason", "address"), ("service", "closed")),
                )
            ],
            2,
        )
        self.assertEqual(
            page[("xinetd_connections_total", (("service", "closed"),))], 0
        )
        self.assertEqual(page[("xinetd_spawn_duration_seconds_count", ())], base + 3)
        d.signal(signal.SIGHUP)
        for _ in range(100):
            page = await scrape(metrics)
            if page.get(("xinetd_reloads_total", (("result", "success"),))) == 1:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(page[("xinetd_reloads_total", (("result", "success"),))], 1)
