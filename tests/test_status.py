"""
Tests for L{xinetd_twisted.status}: the table read from a real metrics page
(served by another process: urllib blocks) and from the daemon's own dump
text.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, parse, service
from xinetd_twisted import cli
from xinetd_twisted.daemon.dump import formatDump
from xinetd_twisted.daemon.metrics import Metrics
from xinetd_twisted.status import (
    ServiceStatus,
    StatusError,
    formatTable,
    fromDump,
    fromMetrics,
    main,
    metricsURL,
    readTail,
)


def traffic(metrics: Metrics) -> Metrics:
    metrics.listening("echo", "[::]:7/tcp")
    metrics.listening("tftp", "0.0.0.0:69/udp")
    for _ in range(4):
        metrics.connection("echo")
    metrics.refused("echo", "address")
    metrics.refused("echo", "cps")
    metrics.refused("echo", "cps")
    metrics.connection("tftp")
    metrics.serverStarted("tftp")
    metrics.refused("gone", "time")
    return metrics


EXPECTED = [
    ServiceStatus("echo", "[::]:7/tcp", running=0, connections=4, refusals=3),
    ServiceStatus("gone", refusals=1),
    ServiceStatus("tftp", "0.0.0.0:69/udp", running=1, connections=1),
]


class MetricsTextTests(SynchronousTestCase):
    def test_fromMetrics(self) -> None:
        """Each service's address, running servers, connections and refusals (summed)."""
        text = traffic(Metrics()).render()[0].decode()
        self.assertEqual(fromMetrics(text), EXPECTED)

    def test_notMetrics(self) -> None:
        """A page that is not the exposition format is a StatusError."""
        self.assertRaises(StatusError, fromMetrics, "<html>\n")

    def test_otherMetricsIgnored(self) -> None:
        """Families without a service label are ignored."""
        text = "# TYPE up gauge\nup 1\n" + traffic(Metrics()).render()[0].decode()
        self.assertEqual(fromMetrics(text), EXPECTED)

    def test_url(self) -> None:
        """HOST:PORT and URLs without a path get /metrics."""
        self.assertEqual(metricsURL("127.0.0.1:9100"), "http://127.0.0.1:9100/metrics")
        self.assertEqual(metricsURL("http://[::1]:9100"), "http://[::1]:9100/metrics")
        self.assertEqual(metricsURL("http://h:1/x/y"), "http://h:1/x/y")

    def test_endpointURL(self) -> None:
        """The daemon's own --metrics endpoint is accepted (wildcards mean loopback)."""
        for endpoint, url in (
            ("tcp:9100:interface=127.0.0.2", "http://127.0.0.2:9100/metrics"),
            ("tcp:port=9100", "http://127.0.0.1:9100/metrics"),
            ("tcp6:9100:interface=\\:\\:1", "http://[::1]:9100/metrics"),
            ("tcp6:port=9100:interface=\\:\\:", "http://[::1]:9100/metrics"),
        ):
            self.assertEqual(metricsURL(endpoint), url, endpoint)

    def test_endpointWithoutPort(self) -> None:
        """An endpoint without a port is a StatusError."""
        self.assertRaises(StatusError, metricsURL, "tcp:interface=127.0.0.1")

    def test_table(self) -> None:
        """A heading, then one aligned line per service."""
        self.assertEqual(
            formatTable(EXPECTED),
            textwrap.dedent(
                """\
                SERVICE  ADDRESS         RUNNING  CONNECTIONS  REFUSALS
                echo     [::]:7/tcp            0            4         3
                gone     -                     0            0         1
                tftp     0.0.0.0:69/udp        1            1         0
                """
            ),
        )


def fakeServer() -> Any:
    """
    What L{formatDump} reads of a SuperServer: two services, one of them
    with a running server, and one removed service still draining.
    """
    (echo,) = parse(service(EXTERNAL, name="echo")).services
    (cat,) = parse(service(EXTERNAL.replace("4000", "4001"), name="cat")).services

    def runtime(config: Any, spec: Any, connections: int, refused: int, running: Any):
        return SimpleNamespace(
            serviceId=config.serviceId,
            spec=spec,
            connections=connections,
            refused=refused,
            servers=running,
            retrying=[],
            service=config,
            active=True,
            kindName="ProgramKind",
            reactivationPending=False,
        )

    child = SimpleNamespace(peer="127.0.0.1", started=0.0)
    spec = SimpleNamespace(describe=lambda: "0.0.0.0:4000/tcp")
    runtimes = {
        "echo": runtime(echo, spec, 7, 2, {1234: child}),
        "cat": runtime(cat, None, 0, 0, {}),
    }
    draining = [runtime(cat, spec, 3, 0, {99: child, 98: child})]
    draining[0].serviceId = "old"
    policy = SimpleNamespace(
        processLimit=SimpleNamespace(running=1, limit=None),
        sensorList=SimpleNamespace(entries=lambda: [("10.0.0.1", float("inf"))]),
    )
    return SimpleNamespace(
        context=SimpleNamespace(policy=policy),
        configPath="/etc/xinetd.conf",
        runtimes=runtimes,
        draining=draining,
    )


class DumpTests(SynchronousTestCase):
    def dumpText(self) -> str:
        return formatDump(fakeServer(), now=0.0, pid=1)

    def test_fromDump(self) -> None:
        """The daemon's own dump text gives each service's numbers."""
        self.assertEqual(
            fromDump(self.dumpText()),
            [
                ServiceStatus("cat"),
                ServiceStatus(
                    "echo", "0.0.0.0:4000/tcp", running=1, connections=7, refusals=2
                ),
                ServiceStatus("old (removed)", "0.0.0.0:4000/tcp", 2, 3, 0),
            ],
        )

    def test_lastDump(self) -> None:
        """Of several appended dumps, the last one counts."""
        first = self.dumpText()
        later = first.replace("Connections = 7", "Connections = 8")
        [_, echo, _] = fromDump(first + later)
        self.assertEqual(echo.connections, 8)

    def test_incompleteDump(self) -> None:
        """A file with no complete dump is a StatusError."""
        self.assertRaises(StatusError, fromDump, "")
        self.assertRaises(StatusError, fromDump, self.dumpText()[:-20])

    def test_longFile(self) -> None:
        """Only the end of a long dump file is read, and it holds the last dump."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(self.dumpText() * 50)
        size = len(self.dumpText()) * 2
        self.assertLess(len(readTail(path, size)), size + 1)
        self.assertEqual(fromDump(readTail(path, size)), fromDump(self.dumpText()))

    def test_mainReadsDumpFile(self) -> None:
        """status --dump FILE prints the table of the file's last dump."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(self.dumpText())
        code, out, err = runMain(["--dump", path])
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out.splitlines()[2].split(), ["echo", "0.0.0.0:4000/tcp", "1", "7", "2"]
        )

    def test_missingDumpFile(self) -> None:
        """An unreadable dump file: exit status 1 and the reason."""
        code, out, err = runMain(["--dump", self.mktemp()])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("cannot read", err)


def runMain(argv: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


SERVER = """\
import sys
from twisted.internet import reactor, stdio
from twisted.internet.protocol import Protocol
from tests.test_status import traffic
from xinetd_twisted.daemon.metrics import Metrics

class Stop(Protocol):
    def connectionLost(self, reason):
        reactor.stop()

def listening(port):
    print(port.getHost().port, flush=True)
    stdio.StandardIO(Stop())

traffic(Metrics()).listen(reactor, "tcp:0:interface=127.0.0.1").addCallback(listening)
reactor.run()
"""


class FetchTests(SynchronousTestCase):
    """
    Against a real metrics page, served by a child process that stops when
    its standard input closes.
    """

    def setUp(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": root},
        )
        self.addCleanup(self.stopServer)
        assert self.server.stdout is not None
        self.port = int(self.server.stdout.readline())

    def stopServer(self) -> None:
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.close()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.server.stdout.close()

    def test_metrics(self) -> None:
        """status --metrics HOST:PORT prints the services of a live page."""
        code, out, err = runMain(["--metrics", f"127.0.0.1:{self.port}"])
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, formatTable(EXPECTED))

    def test_cli(self) -> None:
        """xinetd-twisted status is the same command."""
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["status", "--metrics", f"127.0.0.1:{self.port}"], out, err)
        self.assertEqual((code, out.getvalue()), (0, formatTable(EXPECTED)))

    def test_notFound(self) -> None:
        """A URL that is not the metrics page: exit status 1 and the HTTP status."""
        code, out, err = runMain(["--metrics", f"http://127.0.0.1:{self.port}/x"])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("HTTP 404", err)


class FetchErrorTests(SynchronousTestCase):
    def test_refused(self) -> None:
        """Nobody listening: exit status 1 and the reason."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        code, out, err = runMain(["--metrics", f"127.0.0.1:{port}"])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("refused", err.lower())

    def test_timeout(self) -> None:
        """A page that never answers: exit status 1 after --timeout."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        code, out, err = runMain(["--metrics", f"127.0.0.1:{port}", "--timeout", "0.2"])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("timed out", err)

    def test_scheme(self) -> None:
        """Only http and https URLs are fetched."""
        code, out, err = runMain(["--metrics", "file:///etc/passwd"])
        self.assertEqual((code, out), (1, ""))
        self.assertIn("only http", err)
