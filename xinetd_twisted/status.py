# -*- test-case-name: tests.test_status -*-
"""
C{xinetd-twisted status}: one line per service (listening address, running
servers, connections, refusals), read from a running daemon's metrics page
(C{--metrics}) or from its SIGUSR1 state dump (C{--dump}).

A plain client: it blocks on one HTTP request with a timeout, which is
fine here and nowhere in the daemon.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Dict, Iterable, List, Optional, TextIO

import attr

from xinetd_twisted.daemon.dump import END_OF_DUMP

DEFAULT_DUMP = "/var/run/xinetd-twisted.dump"
TIMEOUT = 10.0
MAX_BYTES = 16 * 1024 * 1024
NO_ADDRESS = "-"
REMOVED = " (removed)"
"""Appended to a service id that is gone from the configuration but still
has servers running (the dump lists those apart)."""

_DUMP_HEADER = "xinetd-twisted Version "


class StatusError(Exception):
    """
    The status could not be read; the message says why.
    """


@attr.s(frozen=True, auto_attribs=True)
class ServiceStatus:
    """
    What C{status} prints about one service.

    @ivar serviceId: the service's C{id}.
    @ivar address: where it listens, or L{NO_ADDRESS}.
    @ivar running: servers running now.
    @ivar connections: connections handed over since the daemon started.
    @ivar refusals: connections refused, all reasons together.
    """

    serviceId: str
    address: str = NO_ADDRESS
    running: int = 0
    connections: int = 0
    refusals: int = 0


def fromMetrics(text: str) -> List[ServiceStatus]:
    """
    The services of a metrics page (Prometheus text format), sorted by id.

    @raise StatusError: when the text is not the exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    found: Dict[str, ServiceStatus] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                serviceId = sample.labels.get("service")
                if serviceId is None:
                    continue
                value = int(sample.value)
                s = found.get(serviceId) or ServiceStatus(serviceId)
                if sample.name == "xinetd_service_listening" and value:
                    s = attr.evolve(s, address=sample.labels.get("address", NO_ADDRESS))
                elif sample.name == "xinetd_servers_running":
                    s = attr.evolve(s, running=value)
                elif sample.name == "xinetd_connections_total":
                    s = attr.evolve(s, connections=value)
                elif sample.name == "xinetd_refusals_total":
                    s = attr.evolve(s, refusals=s.refusals + value)
                found[serviceId] = s
    except ValueError as e:
        raise StatusError(f"not a metrics page: {e}") from None
    return [found[k] for k in sorted(found)]


def lastDump(text: str) -> str:
    """
    The last complete dump of a dump file (each SIGUSR1 appends one).

    @raise StatusError: when the file holds no complete dump.
    """
    end = text.rfind(END_OF_DUMP)
    start = text.rfind(_DUMP_HEADER, 0, max(end, 0))
    if end < 0 or start < 0:
        raise StatusError("no complete dump in the file (send the daemon SIGUSR1)")
    return text[start:end]


def readTail(path: str, size: int = MAX_BYTES) -> str:
    """
    The last C{size} bytes of the dump file (each SIGUSR1 makes it longer;
    only the last dump matters).
    """
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - size))
        return f.read(size).decode("utf-8", "replace")


def fromDump(text: str) -> List[ServiceStatus]:
    """
    The services of the last dump in C{text}, in the dump's order.

    A service block is its C{Service = ID} line and the lines indented by
    one tab after it (deeper ones list servers and the configuration).
    """
    statuses: List[ServiceStatus] = []
    current: Optional[ServiceStatus] = None
    for line in lastDump(text).splitlines() + [""]:
        if line.startswith("\t"):
            if current is not None and not line.startswith("\t\t"):
                name, _, value = line.strip().partition(" = ")
                current = _withDumpField(current, name, value)
            continue
        if current is not None:
            statuses.append(current)
            current = None
        if line.startswith("Service = "):
            current = ServiceStatus(line[len("Service = ") :].strip())
    return statuses


def _withDumpField(status: ServiceStatus, name: str, value: str) -> ServiceStatus:
    if name == "State" and value.startswith("removed"):
        return attr.evolve(status, serviceId=status.serviceId + REMOVED)
    if name == "Socket" and value != "(none)":
        return attr.evolve(status, address=value)
    if not value.isdigit():
        return status
    if name == "Connections":
        return attr.evolve(status, connections=int(value))
    if name == "Refused":
        return attr.evolve(status, refusals=int(value))
    if name == "Running servers":
        return attr.evolve(status, running=int(value))
    return status


def metricsURL(where: str) -> str:
    """
    The URL to fetch for C{--metrics}: a URL, C{HOST:PORT}, or the
    daemon's own C{--metrics} endpoint (C{tcp:9100:interface=127.0.0.1},
    C{tcp6:port=9100}); C{/metrics} is the path when none is given.

    @raise StatusError: for an endpoint that is not TCP.
    """
    if where.startswith(("tcp:", "tcp6:")):
        return _endpointURL(where)
    if "://" not in where:
        where = "http://" + where
    if "/" not in where.partition("://")[2]:
        where += "/metrics"
    return where


def _endpointURL(description: str) -> str:
    # Twisted's endpoint syntax: ':' separates arguments, '\:' is a colon
    # inside one (an IPv6 interface).
    kind, *words = re.split(r"(?<!\\):", description)
    positional = [w for w in words if "=" not in w]
    named = dict(w.split("=", 1) for w in words if "=" in w)
    port = named.get("port") or (positional[0] if positional else "")
    if not port.isdigit():
        raise StatusError(f"{description}: no port in the endpoint")
    wildcard = "::" if kind == "tcp6" else "0.0.0.0"
    host = named.get("interface", wildcard).replace("\\:", ":")
    if host in ("", "0.0.0.0", "::"):
        host = "::1" if kind == "tcp6" else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def fetch(url: str, timeout: float = TIMEOUT) -> str:
    """
    The body of C{url}, not through any proxy of the environment.

    @raise StatusError: on any failure, with the reason.
    """
    if not url.startswith(("http://", "https://")):
        raise StatusError(f"{url}: only http and https URLs")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise StatusError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise StatusError(f"{url}: {reason}") from None
    if len(body) > MAX_BYTES:
        raise StatusError(f"{url}: more than {MAX_BYTES} bytes")
    return bytes(body).decode("utf-8", "replace")


HEADINGS = ("SERVICE", "ADDRESS", "RUNNING", "CONNECTIONS", "REFUSALS")


def formatTable(statuses: Iterable[ServiceStatus]) -> str:
    """
    The table C{status} prints: a heading, then one line per service.
    """
    rows = [HEADINGS] + [
        (
            s.serviceId,
            s.address,
            str(s.running),
            str(s.connections),
            str(s.refusals),
        )
        for s in statuses
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [
            cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def addArguments(parser: argparse.ArgumentParser) -> None:
    """
    The options of C{status}, on C{parser} (this module's or the CLI's).
    """
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--metrics",
        metavar="URL",
        help="the daemon's metrics page: HOST:PORT, a URL, or the endpoint "
        "given to the daemon's --metrics (tcp:9100:interface=127.0.0.1)",
    )
    source.add_argument(
        "--dump",
        metavar="FILE",
        help=f"read the last SIGUSR1 state dump instead (default {DEFAULT_DUMP} "
        "when --metrics is not given)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT,
        help=f"seconds to wait for the metrics page (default {TIMEOUT:g})",
    )


def run(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print the table; 1 (and the reason on C{err}) when nothing could be read.
    """
    try:
        if options.metrics is not None:
            url = metricsURL(options.metrics)
            statuses = fromMetrics(fetch(url, options.timeout))
        else:
            path = options.dump or DEFAULT_DUMP
            try:
                text = readTail(path)
            except OSError as e:
                raise StatusError(f"{path}: cannot read: {e.strerror}") from None
            statuses = fromDump(text)
    except StatusError as e:
        print(f"xinetd-twisted status: {e}", file=err)
        return 1
    out.write(formatTable(statuses))
    return 0


def main(
    argv: Optional[List[str]] = None,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
) -> int:
    """
    C{xinetd-twisted status [--metrics URL | --dump FILE]}.

    @param argv: arguments after C{status}; default C{sys.argv[1:]}.
    """
    parser = argparse.ArgumentParser(
        prog="xinetd-twisted status",
        description="one line per service of a running daemon",
    )
    addArguments(parser)
    options = parser.parse_args(argv)
    return run(options, out or sys.stdout, err or sys.stderr)
