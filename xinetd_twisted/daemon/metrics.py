# -*- test-case-name: tests.test_daemon_metrics -*-
"""
Prometheus metrics of the super-server (C{--metrics ENDPOINT}): what each
service accepted, refused and runs, how long spawning takes, how reloads
went, served as text at C{/metrics} on any Twisted server endpoint.

prometheus_client and twisted.web are imported only when a L{Metrics} is
built: a daemon without C{--metrics} does not pay for them, nor for this
module (L{NullMetrics}, the free stand-in, and L{IMetrics} are in
L{xinetd_twisted.daemon.imetrics}).  The page is rendered in the reactor thread, not
with C{prometheus_client.twisted.MetricsResource}: that one is a
C{WSGIResource} on the reactor's thread pool, and the daemon keeps no
threads (it forks).  The hot path only adds to plain numbers (under a
microsecond per connection); the cost is paid per scrape (about 3 ms for
fifty services).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Dict, Iterator, Tuple

from twisted.internet.defer import Deferred
from zope.interface import implementer

from xinetd_twisted.daemon.imetrics import IMetrics, NullMetrics

__all__ = ["IMetrics", "Metrics", "NullMetrics"]

if TYPE_CHECKING:  # pragma: no cover
    from twisted.internet.interfaces import IListeningPort

SPAWN_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    float("inf"),
)
"""
Seconds from accept to the child's exec: the helper takes about a
millisecond, C{reactor.spawnProcess} of a large daemon tens of them.
"""

SUCCESS = "success"
FAILURE = "failure"


@implementer(IMetrics)
class Metrics:
    """
    The daemon's metrics, in a registry of their own (never
    prometheus_client's global one, so that an application composing the
    super-server keeps its own).

    The counts are plain numbers updated on the hot path (no lock: the
    daemon has one thread) and turned into metric families only when
    scraped.  Every series of a service (connections, running, exits)
    exists, at 0, from the moment it listens, so that a scrape shows idle
    services too.

    @ivar registry: the C{prometheus_client.CollectorRegistry}.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        self._connections: Dict[str, int] = {}
        self._refusals: Dict[Tuple[str, str], int] = {}
        self._running: Dict[str, int] = {}
        self._exits: Dict[str, int] = {}
        self._reloads = {SUCCESS: 0, FAILURE: 0}
        self._addresses: Dict[str, str] = {}
        self._spawnBounds = SPAWN_BUCKETS[:-1]
        self._spawnCounts = [0] * len(SPAWN_BUCKETS)
        self._spawnSum = 0.0
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(self))

    def connection(self, serviceId: str) -> None:
        self._connections[serviceId] = self._connections.get(serviceId, 0) + 1

    def refused(self, serviceId: str, reason: str) -> None:
        key = (serviceId, reason)
        self._refusals[key] = self._refusals.get(key, 0) + 1

    def serverStarted(self, serviceId: str) -> None:
        self._running[serviceId] = self._running.get(serviceId, 0) + 1

    def serverExited(self, serviceId: str) -> None:
        self._running[serviceId] = self._running.get(serviceId, 0) - 1
        self._exits[serviceId] = self._exits.get(serviceId, 0) + 1

    def spawnDuration(self, seconds: float) -> None:
        self._spawnCounts[bisect_left(self._spawnBounds, seconds)] += 1
        self._spawnSum += seconds

    def reloaded(self, success: bool) -> None:
        self._reloads[SUCCESS if success else FAILURE] += 1

    def listening(self, serviceId: str, address: str) -> None:
        self._addresses[serviceId] = address
        for counts in (self._connections, self._running, self._exits):
            counts.setdefault(serviceId, 0)

    def removed(self, serviceId: str) -> None:
        self._addresses.pop(serviceId, None)

    def families(self) -> Iterator[Any]:
        """
        The metric families of the counts now (what a scrape shows).
        """
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        def labelled(family: Any, counts: Dict[Any, int]) -> Any:
            for key, value in sorted(counts.items()):
                family.add_metric(key if isinstance(key, tuple) else (key,), value)
            return family

        yield labelled(
            CounterMetricFamily(
                "xinetd_connections",
                "Connections handed to a server or an in-process handler.",
                labels=["service"],
            ),
            self._connections,
        )
        yield labelled(
            CounterMetricFamily(
                "xinetd_refusals",
                "Connections refused, by xinetd's FAIL reason.",
                labels=["service", "reason"],
            ),
            self._refusals,
        )
        yield labelled(
            GaugeMetricFamily(
                "xinetd_servers_running",
                "Server processes running now.",
                labels=["service"],
            ),
            self._running,
        )
        yield labelled(
            CounterMetricFamily(
                "xinetd_server_exits",
                "Server processes that exited.",
                labels=["service"],
            ),
            self._exits,
        )
        cumulative, buckets = 0, []
        for bound, count in zip(SPAWN_BUCKETS, self._spawnCounts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        yield HistogramMetricFamily(
            "xinetd_spawn_duration_seconds",
            "Seconds from accepting a connection to the server's exec.",
            buckets=buckets,
            sum_value=self._spawnSum,
        )
        yield labelled(
            CounterMetricFamily(
                "xinetd_reloads",
                "Reloads of the configuration, by result.",
                labels=["result"],
            ),
            self._reloads,
        )
        yield labelled(
            GaugeMetricFamily(
                "xinetd_service_listening",
                "1 for each service and the address it listens at.",
                labels=["service", "address"],
            ),
            {key: 1 for key in self._addresses.items()},
        )

    def render(self, accept: str = "") -> Tuple[bytes, str]:
        """
        The exposition for an HTTP C{Accept} header: the body and its
        content type (Prometheus text, or OpenMetrics when asked for).
        """
        from prometheus_client.exposition import choose_encoder

        encoder, contentType = choose_encoder(accept)
        return encoder(self.registry), contentType

    def listen(
        self, reactor: Any, endpointDescription: str
    ) -> Deferred[IListeningPort]:
        """
        Serve L{render} at C{/metrics} on the server endpoint
        C{endpointDescription} (e.g. C{tcp:9100:interface=127.0.0.1}).

        @return: the endpoint's C{listen} Deferred.
        @raise ValueError: when the description is not an endpoint.
        """
        from twisted.internet.endpoints import serverFromString

        endpoint = serverFromString(reactor, endpointDescription)
        return endpoint.listen(_site(self))


class _Collector:
    """
    The registry's view of a L{Metrics}.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self._metrics.families()


def _site(metrics: Metrics) -> Any:
    """
    A twisted.web site with L{Metrics.render} at C{/metrics}, and no access
    log (a scrape every few seconds would fill the journal).
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class MetricsPage(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            accept = request.getHeader(b"accept")
            body, contentType = metrics.render(
                accept.decode("latin-1") if accept else ""
            )
            request.setHeader(b"content-type", contentType.encode("ascii"))
            return body

    class QuietSite(Site):
        noisy = False

        def log(self, request: Any) -> None:
            pass

    root = Resource()
    root.putChild(b"metrics", MetricsPage())
    return QuietSite(root)
