# -*- test-case-name: tests.test_config_inetdconf -*-
"""
inetd.conf as real files contain it (openbsd-inetd and netkit syntax), read
into xinetd service blocks.

Each usable line becomes a L{Block} of attribute lines located at
C{inetd.conf:LINE}, written the way xinetd's C{-inetd_compat} reader fills
a service (NAMEINARGS argv, C{REUSE} and C{NOLIBWRAP} flags, C{groups =
yes}); everything else comes from the xinetd C{defaults} block when the
loader applies these blocks after the xinetd files.  The same blocks,
printed, are what C{xinetd-twisted convert} writes, so the daemon and the
converter cannot disagree.

What xinetd gets wrong here and we do not: C{wait.N}/C{nowait.N} (xinetd
makes the service nowait), C{user:group}, tcp6/udp6/tcp46/udp46, C{host:}
prefixes, internal services on TCP (xinetd names them C{-dgram}) and the
internal discard (xinetd refuses it).
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import attr

from xinetd_twisted.config.builtins import INETD_INTERNALS
from xinetd_twisted.config.files import FileRefused, readConfigFile
from xinetd_twisted.config.model import ConfigError, Location, Problem, Severity
from xinetd_twisted.config.parser import Block, Line
from xinetd_twisted.config.sysfiles import Services, isNumber

PROTOCOLS: Dict[str, Tuple[str, str]] = {
    "tcp": ("tcp", "4"),
    "tcp4": ("tcp", "4"),
    "tcp6": ("tcp", "6"),
    "tcp46": ("tcp", "46"),
    "udp": ("udp", "4"),
    "udp4": ("udp", "4"),
    "udp6": ("udp", "6"),
    "udp46": ("udp", "46"),
}
"""inetd protocol word -> (xinetd protocol, address families).  Plain
C{tcp}/C{udp} are IPv4 only, as in inetd (files that serve IPv6 too carry a
second C{tcp6} line, which would collide with a dual-stack C{tcp})."""

RATE_INTERVAL = 60
"""inetd's C{.max} counts invocations in this many seconds."""

RATE_PAUSE = 600
"""Seconds inetd leaves a service off after C{.max} was exceeded."""

REAL_DAEMON_DIR = "/usr/sbin"
"""Where tcpd looks for a daemon named without a path (Debian's build)."""


@attr.s(frozen=True, auto_attribs=True)
class InetdService:
    """
    One usable inetd.conf line.

    @ivar block: the line as an xinetd service block.
    @ivar baseId: the id before it was made unique within the file; an
        xinetd service with this id hides the line.
    @ivar text: the line as written.
    """

    block: Block
    baseId: str
    text: str


@attr.s(frozen=True, auto_attribs=True)
class InetdConf:
    """
    An inetd.conf file read.

    @ivar services: usable lines, in file order.
    @ivar problems: every line that could not be used (ERROR) and every
        remark about a line that is used (WARNING).
    """

    services: Tuple[InetdService, ...]
    problems: Tuple[Problem, ...]


class _Refused(Exception):
    """
    The line cannot be honoured; the message says why.
    """


def readInetdConf(path: str, services: Services) -> InetdConf:
    """
    Read the inetd.conf at C{path}; a missing file is one ERROR.

    @raise ConfigError: the file is not an inetd.conf at all (unreadable,
        not a regular file, not text, too large), as for an xinetd file.
    """
    try:
        text = readConfigFile(path).text
    except FileRefused as e:
        if not e.missing:
            raise ConfigError((e.problem,)) from None
        problem = Problem(
            Location(path, 0), Severity.ERROR, f"cannot read inetd.conf: {e.reason}"
        )
        return InetdConf((), (problem,))
    return parseInetdConf(text, path, services)


def parseInetdConf(text: str, path: str, services: Services) -> InetdConf:
    """
    Read inetd.conf text as if it were the file C{path}.

    @param services: the services database, to tell a listed service name
        from one that cannot be given a port.
    """
    found: List[InetdService] = []
    problems: List[Problem] = []
    usedIds: Dict[str, int] = {}
    defaultHost: Optional[str] = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        location = Location(path, number)
        if len(fields) == 1 and fields[0].endswith(":"):
            # openbsd-inetd: a bare "host:" is the bind address of the
            # lines that follow; "*:" returns to every address.
            host = _unbracket(fields[0][:-1])
            defaultHost = None if host in ("", "*") else host
            continue
        remarks: List[str] = []
        try:
            block, baseId = _convert(fields, location, defaultHost, services, remarks)
        except _Refused as e:
            problems.append(
                Problem(location, Severity.ERROR, f"{e}; line not used: {line.strip()}")
            )
            continue
        serviceId = _uniqueId(baseId, fields[2], number, usedIds)
        if serviceId != baseId:
            block = _withId(block, serviceId)
            remarks.append(
                f"id {baseId} is already used by an earlier line; this one is {serviceId}"
            )
        for remark in remarks:
            problems.append(Problem(location, Severity.WARNING, remark, serviceId))
        found.append(InetdService(block, baseId, line.strip()))
    return InetdConf(tuple(found), tuple(problems))


def _uniqueId(baseId: str, protocol: str, number: int, usedIds: Dict[str, int]) -> str:
    """
    C{baseId}, or when an earlier line took it, C{baseId-PROTOCOL}, or else
    C{baseId-lineN}: openbsd-inetd files often serve one service on C{tcp}
    and C{tcp6} lines, and xinetd ids must be unique.
    """
    for candidate in (baseId, f"{baseId}-{protocol}", f"{baseId}-line{number}"):
        if candidate.lower() not in usedIds:
            usedIds[candidate.lower()] = number
            return candidate
    raise AssertionError("a line number is unique")  # pragma: no cover


def _withId(block: Block, serviceId: str) -> Block:
    lines = [line for line in block.lines if getattr(line, "name", None) != "id"]
    idLine = Line.at("id", "=", (serviceId,), block.location)
    return attr.evolve(block, lines=(idLine, *lines))


def _unbracket(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def _convert(
    fields: Sequence[str],
    location: Location,
    defaultHost: Optional[str],
    services: Services,
    remarks: List[str],
) -> Tuple[Block, str]:
    """
    One inetd.conf line (split into fields) to an xinetd service block and
    its id.
    """
    if len(fields) < 6:
        raise _Refused(
            f"expected at least 6 fields (service socket_type protocol wait "
            f"user server), found {len(fields)}"
        )
    serviceField, socketType, protocolField, waitField, userField, server = fields[:6]
    args = list(fields[6:])
    attributes: List[Tuple[str, Tuple[str, ...]]] = []

    def put(name: str, *values: str) -> None:
        attributes.append((name, values))

    host = defaultHost
    if ":" in serviceField:
        hostPart, serviceField = serviceField.rsplit(":", 1)
        hostPart = _unbracket(hostPart)
        host = None if hostPart == "*" else hostPart
    if not serviceField:
        raise _Refused("no service name after the host")
    protocolWords = protocolField.split(",")
    protocolWord = protocolWords[0].lower()
    if (
        protocolWord.startswith("rpc/")
        or "/" in serviceField
        and not (serviceField.lower().startswith("tcpmux/"))
    ):
        raise _Refused(
            f"RPC services are not supported ({serviceField} {protocolField})"
        )
    for option in protocolWords[1:]:
        raise _Refused(
            f"socket buffer option {option} cannot be honoured (xinetd has no "
            "attribute for SO_SNDBUF/SO_RCVBUF)"
        )
    if protocolWord not in PROTOCOLS:
        raise _Refused(f"protocol {protocolField} is not supported")
    protocol, families = PROTOCOLS[protocolWord]
    socketType = socketType.lower()
    if socketType not in ("stream", "dgram"):
        raise _Refused(f"socket type {socketType} is not supported")
    waitWord, _, rate = waitField.lower().partition(".")
    if waitWord not in ("wait", "nowait"):
        raise _Refused(f"bad value for wait: {waitField} (wait or nowait[.max])")
    cps = _rateToCps(rate, waitField)

    types: List[str] = []
    flags: List[str] = []
    name = serviceField
    mux = ""
    if serviceField.lower().startswith("tcpmux/"):
        name = serviceField[len("tcpmux/") :]
        mux = "TCPMUXPLUS" if name.startswith("+") else "TCPMUX"
        name = name.lstrip("+")
        if not name or protocol != "tcp" or socketType != "stream":
            raise _Refused(f"tcpmux service {serviceField} must be a named tcp stream")
        types += [mux, "UNLISTED"]
    port: Optional[str] = None
    if not mux and services.port(name, protocol) is None:
        if not isNumber(name):
            raise _Refused(
                f"service {name}/{protocol} is not in the services file and is "
                "not a port number"
            )
        port = str(int(name))
        types.append("UNLISTED")

    internal = server.lower() == "internal"
    if internal:
        if name.lower() not in INETD_INTERNALS or port is not None or mux:
            raise _Refused(f"no internal service {name}/{socketType}")
        serviceId = f"{name}-{socketType}"
        types.insert(0, "INTERNAL")
        if args:
            remarks.append(
                f"arguments of an internal service ignored: {' '.join(args)}"
            )
    else:
        serviceId = name
        libwrap: Optional[str] = None
        if os.path.basename(server) == "tcpd":
            # tcpd would check hosts.allow/deny under the daemon's name and
            # exec it; we do the same check ourselves and run the daemon.
            if not args:
                raise _Refused("tcpd without a daemon to run")
            daemon = args[0]
            server = (
                daemon
                if daemon.startswith("/")
                else os.path.join(REAL_DAEMON_DIR, daemon)
            )
            libwrap = os.path.basename(daemon)
            args[0] = libwrap
        else:
            flags.append("NOLIBWRAP")
        if not args:
            args = [os.path.basename(server)]
            remarks.append(
                f"no argv given for {server}; argv[0] is {args[0]} (inetd would "
                "start it with an empty argv)"
            )
        flags = ["REUSE", *flags, "NAMEINARGS"]

    if families == "4":
        flags.insert(0, "IPv4")
    else:
        flags.insert(0, "IPv6")
    if serviceId != name:
        put("id", serviceId)
    if types:
        put("type", *types)
    if flags:
        put("flags", *flags)
    put("socket_type", socketType)
    put("protocol", protocol)
    put("wait", "yes" if waitWord == "wait" else "no")
    user, group = _splitUser(userField)
    put("user", user)
    if group is not None:
        put("group", group)
    put("groups", "yes")
    if not internal:
        put("server", server)
        put("server_args", *args)
        if libwrap is not None:
            put("libwrap", libwrap)
    if port is not None:
        put("port", port)
    if host is not None:
        put("bind", host)
    if families == "6":
        # tcp46 writes no v6only: xinetd's "v6only = no" turns V6ONLY on.
        put("v6only", "yes")
    if cps is not None:
        put("cps", *cps)
    lines = tuple(Line.at(n, "=", values, location) for n, values in attributes)
    return Block("service", name, location, lines), serviceId


def _splitUser(field: str) -> Tuple[str, Optional[str]]:
    """
    C{user}, C{user.group} or C{user:group} (a colon wins, so a user name
    with a dot can still take a group).
    """
    for separator in (":", "."):
        if separator in field:
            user, group = field.split(separator, 1)
            return user, group or None
    return field, None


def _rateToCps(rate: str, waitField: str) -> Optional[Tuple[str, str]]:
    """
    inetd's C{.max} (invocations per minute, then a 10 minute pause) as the
    nearest C{cps}: the per-second rate rounded up, so a steady load inetd
    accepts is never refused, and inetd's pause.
    """
    if not rate:
        return None
    words = rate.split(".")
    if len(words) > 1:
        raise _Refused(
            f"per-source rate in {waitField} cannot be honoured (per_source "
            "limits concurrent servers, not connections per minute)"
        )
    if not isNumber(words[0]) or int(words[0]) < 1:
        raise _Refused(f"bad invocation rate in {waitField}")
    perSecond = math.ceil(int(words[0]) / RATE_INTERVAL)
    return (str(perSecond), str(RATE_PAUSE))


def renderXinetd(conf: InetdConf, source: str) -> str:
    """
    The xinetd.conf text of every usable line, one C{service} block each,
    each preceded by the inetd.conf line it came from.
    """
    out = [
        f"# Converted from {source} by xinetd-twisted convert.",
        "# Values not written here (log_type, instances, cps, ...) come from",
        "# xinetd's defaults, as with xinetd -inetd_compat.",
    ]
    for service in conf.services:
        block = service.block
        out += ["", f"# {block.location.line}: {service.text}", f"service {block.name}"]
        out.append("{")
        for line in block.lines:
            assert isinstance(line, Line)
            out.append(f"\t{line.name:<15} = {' '.join(line.values)}")
        out.append("}")
    return "\n".join(out) + "\n"
