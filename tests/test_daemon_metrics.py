"""
Tests for L{xinetd_twisted.daemon.metrics}: scraped over real TCP on
127.0.0.1 and read back with prometheus_client's own parser (and with
promtool when it is installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, Dict, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from xinetd_twisted.daemon.metrics import IMetrics, Metrics, NullMetrics

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """
    Every sample of an exposition: (name, sorted labels) -> value.
    """
    from prometheus_client.parser import text_string_to_metric_families

    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@inlineCallbacks
def scrape(port: int, host: str = "127.0.0.1") -> Any:
    """
    GET /metrics on the real reactor; fires with L{samples} of the page.
    For daemon tests: C{(yield scrape(port))[("xinetd_connections_total",
    (("service", "echo"),))]}.
    """
    url = f"http://{host}:{port}/metrics".encode()
    response = yield Agent(reactor).request(b"GET", url)
    body = yield readBody(response)
    if response.code != 200:
        raise AssertionError(f"GET {url!r}: HTTP {response.code}")
    return samples(body.decode("utf-8"))


def busy() -> Metrics:
    """
    Metrics after a little traffic on two services.
    """
    metrics = Metrics()
    metrics.listening("echo", "tcp [::]:7")
    metrics.listening("tftp", "udp 0.0.0.0:69")
    for _ in range(3):
        metrics.connection("echo")
    metrics.connection("tftp")
    metrics.refused("echo", "address")
    metrics.refused("echo", "address")
    metrics.refused("echo", "instances")
    metrics.serverStarted("tftp")
    metrics.serverStarted("tftp")
    metrics.serverExited("tftp")
    metrics.spawnDuration(0.002)
    metrics.spawnDuration(0.004)
    metrics.reloaded(True)
    metrics.reloaded(False)
    metrics.reloaded(True)
    return metrics


class RenderTests(SynchronousTestCase):
    def setUp(self) -> None:
        body, self.contentType = busy().render()
        self.text = body.decode("utf-8")
        self.samples = samples(self.text)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def test_connections(self) -> None:
        """xinetd_connections_total counts connection() per service."""
        self.assertEqual(self.value("xinetd_connections_total", service="echo"), 3)
        self.assertEqual(self.value("xinetd_connections_total", service="tftp"), 1)

    def test_refusals(self) -> None:
        """xinetd_refusals_total counts per service and FAIL reason."""
        self.assertEqual(
            self.value("xinetd_refusals_total", service="echo", reason="address"), 2
        )
        self.assertEqual(
            self.value("xinetd_refusals_total", service="echo", reason="instances"), 1
        )

    def test_servers(self) -> None:
        """Running servers go up and down; exits only up."""
        self.assertEqual(self.value("xinetd_servers_running", service="tftp"), 1)
        self.assertEqual(self.value("xinetd_server_exits_total", service="tftp"), 1)

    def test_idleServiceShown(self) -> None:
        """A listening service has its series at 0 before any traffic."""
        self.assertEqual(self.value("xinetd_servers_running", service="echo"), 0)
        self.assertEqual(self.value("xinetd_server_exits_total", service="echo"), 0)

    def test_spawnHistogram(self) -> None:
        """Spawn durations go to a histogram in seconds."""
        self.assertEqual(self.value("xinetd_spawn_duration_seconds_count"), 2)
        self.assertAlmostEqual(self.value("xinetd_spawn_duration_seconds_sum"), 0.006)
        self.assertEqual(
            self.value("xinetd_spawn_duration_seconds_bucket", le="0.0025"), 1
        )

    def test_bucketBounds(self) -> None:
        """A duration equal to a bound counts in that bucket; a huge one only in +Inf."""
        metrics = Metrics()
        metrics.spawnDuration(0.001)
        metrics.spawnDuration(60.0)
        found = samples(metrics.render()[0].decode())
        bucket = "xinetd_spawn_duration_seconds_bucket"
        self.assertEqual(found[(bucket, (("le", "0.0005"),))], 0)
        self.assertEqual(found[(bucket, (("le", "0.001"),))], 1)
        self.assertEqual(found[(bucket, (("le", "2.5"),))], 1)
        self.assertEqual(found[(bucket, (("le", "+Inf"),))], 2)

    def test_reloads(self) -> None:
        """Reloads are counted by result."""
        self.assertEqual(self.value("xinetd_reloads_total", result="success"), 2)
        self.assertEqual(self.value("xinetd_reloads_total", result="failure"), 1)

    def test_reloadsStartAtZero(self) -> None:
        """Both reload results exist before any reload."""
        fresh = samples(Metrics().render()[0].decode("utf-8"))
        self.assertEqual(fresh[("xinetd_reloads_total", (("result", "failure"),))], 0)
        self.assertEqual(fresh[("xinetd_reloads_total", (("result", "success"),))], 0)

    def test_listening(self) -> None:
        """The address of each service is an info-style gauge at 1."""
        self.assertEqual(
            self.value(
                "xinetd_service_listening", service="echo", address="tcp [::]:7"
            ),
            1,
        )

    def test_helpAndType(self) -> None:
        """Every family has HELP and TYPE lines."""
        for name in (
            "xinetd_connections_total",
            "xinetd_refusals_total",
            "xinetd_servers_running",
            "xinetd_server_exits_total",
            "xinetd_spawn_duration_seconds",
            "xinetd_reloads_total",
            "xinetd_service_listening",
        ):
            self.assertIn(f"# HELP {name} ", self.text)
            self.assertIn(f"# TYPE {name} ", self.text)

    def test_contentType(self) -> None:
        """Without an Accept header the page is Prometheus text 0.0.4."""
        self.assertTrue(self.contentType.startswith("text/plain; version=0.0.4"))

    def test_openMetrics(self) -> None:
        """An OpenMetrics Accept header gets OpenMetrics."""
        body, contentType = busy().render("application/openmetrics-text")
        self.assertTrue(contentType.startswith("application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_promtool(self) -> None:
        """promtool check metrics finds no problem, lint included."""
        promtool = shutil.which("promtool")
        if promtool is None:
            raise self.skipTest("promtool not installed (Debian package prometheus)")
        result = subprocess.run(
            [promtool, "check", "metrics"],
            input=self.text.encode("utf-8"),
            capture_output=True,
            timeout=60,
        )
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr), (0, b"", b"")
        )


class ListeningTests(SynchronousTestCase):
    def addresses(self, metrics: Metrics) -> Dict[str, str]:
        found = {}
        for (name, labels), value in samples(metrics.render()[0].decode()).items():
            if name == "xinetd_service_listening":
                found[dict(labels)["service"]] = dict(labels)["address"]
                self.assertEqual(value, 1)
        return found

    def test_newAddressReplaces(self) -> None:
        """listening() again with another address replaces the old one."""
        metrics = Metrics()
        metrics.listening("echo", "tcp [::]:7")
        metrics.listening("echo", "tcp 127.0.0.1:7")
        self.assertEqual(self.addresses(metrics), {"echo": "tcp 127.0.0.1:7"})

    def test_removed(self) -> None:
        """removed() drops the address but keeps the counters."""
        metrics = Metrics()
        metrics.listening("echo", "tcp [::]:7")
        metrics.connection("echo")
        metrics.removed("echo")
        metrics.removed("echo")
        self.assertEqual(self.addresses(metrics), {})
        found = samples(metrics.render()[0].decode())
        self.assertEqual(found[("xinetd_connections_total", (("service", "echo"),))], 1)

    def test_ownRegistry(self) -> None:
        """The metrics never go to prometheus_client's global registry."""
        from prometheus_client import REGISTRY, generate_latest

        Metrics().connection("echo")
        self.assertNotIn(b"xinetd_", generate_latest(REGISTRY))

    def test_twoInstances(self) -> None:
        """Two Metrics in one process do not clash."""
        first, second = Metrics(), Metrics()
        first.connection("echo")
        found = samples(second.render()[0].decode())
        self.assertNotIn(("xinetd_connections_total", (("service", "echo"),)), found)

    def test_interface(self) -> None:
        """Metrics and NullMetrics both provide IMetrics."""
        self.assertTrue(verifyObject(IMetrics, Metrics()))
        null = NullMetrics()
        self.assertTrue(verifyObject(IMetrics, null))
        null.connection("echo")
        null.refused("echo", "address")
        null.serverStarted("echo")
        null.serverExited("echo")
        null.spawnDuration(1.0)
        null.reloaded(True)
        null.listening("echo", "x")
        null.removed("echo")

    def test_lazyImports(self) -> None:
        """Importing the module loads neither prometheus_client nor twisted.web."""
        code = (
            "import sys, xinetd_twisted.daemon.metrics as m\n"
            "m.NullMetrics().connection('x')\n"
            "print(sorted(n for n in sys.modules"
            " if n.startswith(('prometheus_client', 'twisted.web'))))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            timeout=60,
            cwd=os.getcwd(),
            env={**os.environ, "PYTHONPATH": projectRoot()},
        )
        self.assertEqual((result.stdout, result.stderr), (b"[]\n", b""))


def projectRoot() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ScrapeTests(TestCase):
    """
    Real scrapes over TCP on 127.0.0.1.
    """

    @inlineCallbacks
    def serve(self, metrics: Metrics) -> Any:
        port = yield metrics.listen(reactor, "tcp:0:interface=127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def get(self, port: int, path: str, accept: str = "") -> Deferred[Any]:
        headers = Headers({b"Accept": [accept.encode()]} if accept else {})
        url = f"http://127.0.0.1:{port}{path}".encode()
        return Agent(reactor).request(b"GET", url, headers)

    @inlineCallbacks
    def test_scrape(self) -> Any:
        """GET /metrics serves the counters, parsed by prometheus_client."""
        metrics = busy()
        port = yield self.serve(metrics)
        response = yield self.get(port, "/metrics")
        body = yield readBody(response)
        self.assertEqual(response.code, 200)
        [contentType] = response.headers.getRawHeaders(b"content-type")
        self.assertTrue(contentType.startswith(b"text/plain; version=0.0.4"))
        found = samples(body.decode("utf-8"))
        self.assertEqual(found[("xinetd_connections_total", (("service", "echo"),))], 3)

    @inlineCallbacks
    def test_live(self) -> Any:
        """Each scrape shows the counts at that moment."""
        metrics = Metrics()
        port = yield self.serve(metrics)
        metrics.connection("echo")
        first = yield scrape(port)
        metrics.connection("echo")
        second = yield scrape(port)
        key = ("xinetd_connections_total", (("service", "echo"),))
        self.assertEqual((first[key], second[key]), (1, 2))

    @inlineCallbacks
    def test_otherPaths(self) -> Any:
        """Only /metrics exists."""
        port = yield self.serve(Metrics())
        response = yield self.get(port, "/")
        yield readBody(response)
        self.assertEqual(response.code, 404)

    @inlineCallbacks
    def test_openMetricsNegotiated(self) -> Any:
        """A scraper asking for OpenMetrics gets it."""
        port = yield self.serve(busy())
        response = yield self.get(
            port, "/metrics", "application/openmetrics-text; version=1.0.0"
        )
        body = yield readBody(response)
        [contentType] = response.headers.getRawHeaders(b"content-type")
        self.assertTrue(contentType.startswith(b"application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_badEndpoint(self) -> None:
        """A description that is no endpoint raises ValueError."""
        self.assertRaises(ValueError, Metrics().listen, reactor, "nonsense:1")
