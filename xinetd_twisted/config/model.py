# -*- test-case-name: tests.test_config_reader -*-
"""
The immutable configuration model: what a parsed and checked xinetd.conf means.

Everything here is a frozen value.  The parser (L{xinetd_twisted.config.parser})
builds these; the runtime (L{xinetd_twisted.daemon.superserver}) only reads them.  Nothing in
this module knows about sockets, processes or the reactor.
"""

from __future__ import annotations

import enum
import operator
from typing import (
    TYPE_CHECKING,
    Any,
    FrozenSet,
    Generic,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import attr

from xinetd_twisted.records import plainRepr


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class Location:
    """
    Where a value was written.

    @ivar path: the file, as the user named it (or as includedir built it).
    @ivar line: 1-based line number; 0 when the value was implied, not written.
    """

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


class Severity(enum.Enum):
    """
    How bad a L{Problem} is, in xinetd's words.
    """

    WARNING = "warning"  # line ignored, service kept
    ERROR = "error"  # the service is dropped
    FATAL = "fatal"  # the whole configuration is refused (defaults errors)


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class Problem:
    """
    One thing wrong with a configuration, with its location.

    Renders as C{FILE:LINE: service S: attribute A: message}; the C{service}
    and C{attribute} parts are left out when they do not apply.

    @ivar location: where it was found.
    @ivar severity: what it cost.
    @ivar message: human-readable explanation.
    @ivar service: the service id (or C{"defaults"}), if any.
    @ivar attribute: the attribute name, if any.
    """

    location: Location
    severity: Severity
    message: str
    service: Optional[str] = None
    attribute: Optional[str] = None

    def __str__(self) -> str:
        parts = [str(self.location)]
        if self.service is not None:
            parts.append(f"service {self.service}")
        if self.attribute is not None:
            parts.append(f"attribute {self.attribute}")
        parts.append(f"{self.severity.value}: {self.message}")
        return ": ".join(parts)


class ConfigError(Exception):
    """
    The configuration cannot be used at all (unreadable main file, a bad value
    in C{defaults}).  Carries every problem found so far.
    """

    def __init__(self, problems: Tuple[Problem, ...]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class UnreadableConfig(ConfigError):
    """
    The main configuration file cannot be opened or read at all (it is
    missing, or the daemon may not read it).

    @ivar path: the file.
    @ivar reason: why, in the system's words (C{strerror}).
    """

    def __init__(self, problems: Tuple[Problem, ...], path: str, reason: str) -> None:
        super().__init__(problems)
        self.path = path
        self.reason = reason


# --- value types ---------------------------------------------------------


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class SyslogLog:
    """
    C{log_type = SYSLOG facility [level]}.

    @ivar facility: lower-case facility name (C{daemon}, C{local3}, ...).
    @ivar level: lower-case level name, default C{info}.
    """

    facility: str
    level: str = "info"


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class FileLog:
    """
    C{log_type = FILE path [soft [hard]]}.

    @ivar path: the log file.
    @ivar softLimit: bytes, or L{None} for no limit.
    @ivar hardLimit: bytes, or L{None} for no limit (xinetd: soft + 1%,
        clamped to [5 KiB, 20 KiB] above soft, when only soft is given).
    """

    path: str
    softLimit: Optional[int] = None
    hardLimit: Optional[int] = None


LogType = Union[SyslogLog, FileLog]


class AddressKind(enum.Enum):
    """
    The forms an C{only_from}/C{no_access} word can take (reference 4.5).
    """

    NETWORK = "network"  # numeric address + prefix length (covers wildcards)
    HOST = "host"  # a host name, matched by reverse lookup
    DOMAIN = "domain"  # ".example.com": suffix match on the reverse name


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class AddressEntry:
    """
    One parsed address word.

    @ivar word: the word as written.
    @ivar kind: which form it is.
    @ivar family: C{socket.AF_INET} or C{socket.AF_INET6} for NETWORK;
        0 for names.
    @ivar network: packed network address (4 or 16 bytes) for NETWORK,
        C{b""} otherwise.
    @ivar prefixLength: mask length for NETWORK.
    @ivar name: lower-case host name or domain suffix (with its leading dot).
    @ivar addresses: for HOST, the numeric addresses the name resolved to when
        the configuration was loaded.
    """

    word: str
    kind: AddressKind
    family: int = 0
    network: bytes = b""
    prefixLength: int = 0
    name: str = ""
    addresses: Tuple[str, ...] = ()


# Rlimit names, in xinetd's spelling, mapped to the resource module's.
RLIMIT_NAMES: Mapping[str, str] = {
    "rlimit_as": "RLIMIT_AS",
    "rlimit_cpu": "RLIMIT_CPU",
    "rlimit_data": "RLIMIT_DATA",
    "rlimit_files": "RLIMIT_NOFILE",
    "rlimit_rss": "RLIMIT_RSS",
    "rlimit_stack": "RLIMIT_STACK",
}

UNLIMITED = -1
"""
Used in integer fields where xinetd accepts C{UNLIMITED} and the field is not
optional (rlimits): the value means RLIM_INFINITY.
"""


_V = TypeVar("_V")


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class ServiceExtras:
    """
    The fields of a L{ServiceConfig} that most services leave unset (each
    described there), apart: services written alike hold one record of
    them, and a service is half the size and made in half the time.
    """

    v6only: Optional[bool] = None
    groups: bool = False
    supplementaryGroups: Tuple[int, ...] = ()
    nice: Optional[int] = None
    umask: Optional[int] = None
    env: Tuple[str, ...] = ()
    passenv: Optional[Tuple[str, ...]] = None
    rpcVersion: Optional[Tuple[int, int]] = None
    rpcNumber: Optional[int] = None
    banner: Optional[str] = None
    bannerSuccess: Optional[str] = None
    bannerFail: Optional[str] = None
    denyTime: int = 0
    rlimits: Tuple[Tuple[str, int], ...] = ()
    libwrap: Optional[str] = None
    chroot: Optional[str] = None
    maxDuration: Optional[int] = None
    perSourceCps: Optional[Tuple[int, int]] = None
    noNewPrivileges: bool = False
    tlsCertificate: Optional[str] = None
    tlsKey: Optional[str] = None
    tlsClientCA: Optional[str] = None
    proxyProtocol: Optional[Tuple[AddressEntry, ...]] = None
    listenPath: Optional[str] = None
    socketOwner: Optional[str] = None
    socketUid: Optional[int] = None
    socketGid: Optional[int] = None
    socketMode: int = 0o666


NO_EXTRAS = ServiceExtras()
"""The extras of a service that sets none of them."""

_EXTRA_FIELDS = frozenset(a.name for a in attr.fields(ServiceExtras))


class _Extra(property, Generic[_V]):
    """
    A field of L{ServiceConfig} kept in its L{ServiceConfig.extras}: a
    property read in C (by C{operator.attrgetter}), typed for mypy.
    """

    def __init__(self, name: str) -> None:
        super().__init__(operator.attrgetter("extras." + name))
        self._name = name

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self._name:
            raise TypeError(f"{name} would read extras.{self._name}")

    if TYPE_CHECKING:

        def __get__(  # type: ignore[override]
            self, instance: Any, owner: Optional[type] = None
        ) -> _V: ...


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False, init=False)
class ServiceConfig:
    """
    One service after parsing, defaults, implied values and validation.

    Field names follow xinetd's attribute names in camelCase.  Optional fields
    are L{None} when the attribute was neither written nor implied.

    @ivar name: the word after C{service}.
    @ivar serviceId: the C{id} attribute (defaults to C{name}); the unique key.
    @ivar location: the C{service} line.
    @ivar socketType: C{stream}, C{dgram}, C{raw} or C{seqpacket}.
    @ivar protocol: lower-case protocol name (C{tcp}, C{udp}, ...).
    @ivar wait: C{wait = yes}.
    @ivar types: upper-case C{type} words (INTERNAL, UNLISTED, RPC, TCPMUX,
        TCPMUXPLUS, SPECIAL).
    @ivar flags: upper-case C{flags} words (NAMEINARGS, NODELAY, IPV4, IPV6,
        ...).  Note IPv4/IPv6 are stored upper-cased.
    @ivar port: the port, explicit or from /etc/services; L{None} only for
        services that need none (TCPMUX sub-services, RPC).
    @ivar family: C{socket.AF_INET} or C{socket.AF_INET6}.
    @ivar bind: numeric bind address, or L{None} for all addresses.
    @ivar v6only: the documented intent of C{v6only}: L{True} = IPV6_V6ONLY
        on, L{False} = off; L{None} = not written (dual-stack).
    @ivar user: the C{user} value as written, or L{None}.
    @ivar uid: resolved uid, or L{None} when no user was given.
    @ivar group: the C{group} value as written, or L{None}.
    @ivar gid: resolved gid (the group's, else the user's primary gid; a
        numeric user gives gid = the same number), or L{None}.
    @ivar groups: C{groups = yes}.
    @ivar supplementaryGroups: with C{groups = yes} and a user, the user's
        group list (resolved at load time); otherwise C{()}, meaning the
        child's supplementary groups are cleared.
    @ivar server: absolute path of the program, or L{None}.
    @ivar serverArgs: C{server_args} words.
    @ivar argv: the child's argv as xinetd builds it (basename(server) +
        server_args, or server_args verbatim with NAMEINARGS).
    @ivar instances: L{None} = UNLIMITED.
    @ivar perSource: L{None} = UNLIMITED.
    @ivar cps: C{(max, waitSeconds)}; C{(50, 10)} by default, C{max} 0 = off.
    @ivar maxLoad: L{None} = off.
    @ivar nice: relative nice increment, or L{None}.
    @ivar umask: the C{umask} attribute or L{None} (the runtime then uses the
        daemon's umask | 022).
    @ivar env: C{NAME=value} strings from C{env}.
    @ivar passenv: variable names, or L{None} when C{passenv} was never set
        (then the child gets the daemon's whole environment).
    @ivar onlyFrom: L{None} = not set (everyone); C{()} = set and empty
        (nobody).
    @ivar noAccess: L{None} or entries.
    @ivar accessTimes: L{None} = always; else C{((startMinute, endMinute),
        ...)} in minutes after local midnight, bounds inclusive.
    @ivar logType: L{SyslogLog}, L{FileLog} or L{None} (no service logging).
    @ivar logOnSuccess: upper-case flags (PID HOST USERID EXIT DURATION
        TRAFFIC).
    @ivar logOnFailure: upper-case flags (HOST USERID ATTEMPT).
    @ivar rpcVersion: C{(low, high)} or L{None}.
    @ivar rpcNumber: or L{None}.
    @ivar redirect: C{(numericHost, port)} or L{None}.
    @ivar banner: path or L{None}; likewise bannerSuccess, bannerFail.
    @ivar denyTime: minutes; C{-1} = FOREVER; C{0} = NEVER (default).
    @ivar rlimits: C{((resourceName, value), ...)} with resourceName as in
        L{RLIMIT_NAMES} values (C{"RLIMIT_NOFILE"}) and value bytes/seconds
        or L{UNLIMITED}.  Only the limits written in the configuration.
    @ivar libwrap: the C{libwrap} name override, or L{None}.
    @ivar chroot: the C{chroot} directory (our extension), or L{None}.
    @ivar locations: attribute name (lower-case, as written in xinetd) ->
        where it was set, for messages about values.
    @ivar maxDuration: C{max_duration} (our extension): seconds a server or
        in-process connection may last, or L{None} for no limit.
    @ivar perSourceCps: C{per_source_cps} (our extension): C{(rate, wait)},
        or L{None} for no per-source rate limit.
    @ivar noNewPrivileges: C{no_new_privileges} (our extension): the server
        runs with PR_SET_NO_NEW_PRIVS (setuid programs cannot gain
        privileges).
    @ivar tlsCertificate: C{tls_certificate} (our extension): the absolute
        path of a PEM chain served by TLS in front of the service, or
        L{None} for plaintext.
    @ivar tlsKey: C{tls_key}: the PEM private key's path (the certificate
        file when not written), or L{None} without TLS.
    @ivar tlsClientCA: C{tls_client_ca}: PEM CA certificates a client's
        certificate must be signed by, or L{None} (no client certificate).
    @ivar proxyProtocol: C{proxy_protocol}: the trusted proxies whose
        connections begin with a PROXY v1/v2 header, or L{None}.
    @ivar listenPath: C{listen_path} (our extension): the UNIX-domain
        socket the service listens on instead of a port, or L{None}.
    @ivar socketOwner: C{socket_owner} as written (C{USER[:GROUP]}), or
        L{None}: the socket file keeps the daemon's user and group.
    @ivar socketUid: the socket file's owner from C{socket_owner}, or L{None}.
    @ivar socketGid: the socket file's group from C{socket_owner}, or L{None}
        (left as created).
    @ivar socketMode: C{socket_mode}, the socket file's permissions.
    @ivar extras: the fields above that most services leave unset, from
        C{v6only} to C{socketMode} but C{locations} and those read for
        every connection (L{ServiceExtras}).
    """

    name: str
    serviceId: str
    location: Location
    socketType: str
    protocol: str
    wait: bool
    types: frozenset = frozenset()
    flags: frozenset = frozenset()
    port: Optional[int] = None
    family: int = 10  # socket.AF_INET6
    bind: Optional[str] = None
    user: Optional[str] = None
    uid: Optional[int] = None
    group: Optional[str] = None
    gid: Optional[int] = None
    server: Optional[str] = None
    serverArgs: Tuple[str, ...] = ()
    argv: Tuple[str, ...] = ()
    instances: Optional[int] = None
    perSource: Optional[int] = None
    cps: Tuple[int, int] = (50, 10)
    maxLoad: Optional[float] = None
    onlyFrom: Optional[Tuple[AddressEntry, ...]] = None
    noAccess: Optional[Tuple[AddressEntry, ...]] = None
    accessTimes: Optional[Tuple[Tuple[int, int], ...]] = None
    logType: Optional[LogType] = None
    logOnSuccess: frozenset = frozenset()
    logOnFailure: frozenset = frozenset()
    redirect: Optional[Tuple[str, int]] = None
    locations: Mapping[str, Location] = attr.ib(factory=dict, eq=False, hash=False)
    extras: ServiceExtras = NO_EXTRAS

    # The fields most services leave unset, read from L{extras}.
    v6only = _Extra[Optional[bool]]("v6only")
    groups = _Extra[bool]("groups")
    supplementaryGroups = _Extra[Tuple[int, ...]]("supplementaryGroups")
    nice = _Extra[Optional[int]]("nice")
    umask = _Extra[Optional[int]]("umask")
    env = _Extra[Tuple[str, ...]]("env")
    passenv = _Extra[Optional[Tuple[str, ...]]]("passenv")
    rpcVersion = _Extra[Optional[Tuple[int, int]]]("rpcVersion")
    rpcNumber = _Extra[Optional[int]]("rpcNumber")
    banner = _Extra[Optional[str]]("banner")
    bannerSuccess = _Extra[Optional[str]]("bannerSuccess")
    bannerFail = _Extra[Optional[str]]("bannerFail")
    denyTime = _Extra[int]("denyTime")
    rlimits = _Extra[Tuple[Tuple[str, int], ...]]("rlimits")
    libwrap = _Extra[Optional[str]]("libwrap")
    chroot = _Extra[Optional[str]]("chroot")
    maxDuration = _Extra[Optional[int]]("maxDuration")
    perSourceCps = _Extra[Optional[Tuple[int, int]]]("perSourceCps")
    noNewPrivileges = _Extra[bool]("noNewPrivileges")
    tlsCertificate = _Extra[Optional[str]]("tlsCertificate")
    tlsKey = _Extra[Optional[str]]("tlsKey")
    tlsClientCA = _Extra[Optional[str]]("tlsClientCA")
    proxyProtocol = _Extra[Optional[Tuple[AddressEntry, ...]]]("proxyProtocol")
    listenPath = _Extra[Optional[str]]("listenPath")
    socketOwner = _Extra[Optional[str]]("socketOwner")
    socketUid = _Extra[Optional[int]]("socketUid")
    socketGid = _Extra[Optional[int]]("socketGid")
    socketMode = _Extra[int]("socketMode")

    @classmethod
    def ofFields(cls, values: Sequence[Any]) -> ServiceConfig:
        """
        The service whose fields are C{values}, in L{SERVICE_FIELDS}' order
        (L{extras} last), made without matching names.
        """
        service = object.__new__(cls)
        service.__attrs_init__(*values)
        return service

    def __init__(
        self, *args: Any, extras: ServiceExtras = NO_EXTRAS, **fields: Any
    ) -> None:
        """
        Every field by name, as if L{extras} were not apart (those of
        L{ServiceExtras} go there), or the others by position.
        """
        if not _EXTRA_FIELDS.isdisjoint(fields):
            rare = {name: fields.pop(name) for name in _EXTRA_FIELDS & fields.keys()}
            extras = attr.evolve(extras, **rare)
        fields["extras"] = extras
        self.__attrs_init__(*args, **fields)

    @property
    def isInternal(self) -> bool:
        """
        Served by a builtin, not by a program.
        """
        return "INTERNAL" in self.types

    @property
    def configFile(self) -> str:
        """
        The file that defines this service (the path as the loader names it
        in problems and in L{Config.filesWithErrors}; an inetd.conf for a
        service read from one).
        """
        return self.location.path

    @property
    def isTcpmuxSubservice(self) -> bool:
        """
        Reached only through the tcpmux multiplexer, with no socket of its own.
        """
        return bool(self.types & {"TCPMUX", "TCPMUXPLUS"})


SERVICE_FIELDS: Tuple[str, ...] = tuple(
    str(a.alias) for a in attr.fields(ServiceConfig) if a.init
)
"""The arguments of L{ServiceConfig}, in their positional order."""
_serviceValues = operator.attrgetter(*SERVICE_FIELDS)


def evolveService(service: ServiceConfig, **changes: Any) -> ServiceConfig:
    """
    C{attr.evolve(service, **changes)}, the unchanged fields read in one
    call instead of one Python step each (once per service per load: with a
    thousand services C{attr.evolve} was a tenth of a load).
    """
    values = dict(zip(SERVICE_FIELDS, _serviceValues(service), strict=True))
    values.update(changes)
    return ServiceConfig(**values)


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Config:
    """
    A whole configuration: the services that will run and what went wrong.

    @ivar services: services that passed every check, in file order.
    @ivar problems: every warning and error, in the order found.
    @ivar files: every file that was read (main file first), for reload.
    @ivar dropped: ids of the services dropped because of an error, in the
        order found (services thrown away by C{disable = yes} or the
        C{enabled}/C{disabled} lists are not listed), including services
        a broken entry swallowed.
    @ivar filesWithErrors: every file in which an ERROR was found (the
        paths as L{Problem} locations and L{ServiceConfig.configFile} name
        them), the file of every dropped service, and the files that were
        named but not read because of an error (a missing include, an
        include line inside a broken entry).  A reload should not take a
        service's absence from one of these files as its removal.
    @ivar droppedServices: lower-case ids of the services whose block had
        an error and was dropped: L{dropped}, lower-cased.  As far as the
        parser can tell, this includes every C{service NAME} line (or its
        C{id}) that a broken entry swallowed.  An id may also be in
        L{services} (a duplicate dropped while the first one runs).
    """

    services: Tuple[ServiceConfig, ...]
    problems: Tuple[Problem, ...] = ()
    files: Tuple[str, ...] = ()
    dropped: Tuple[str, ...] = ()
    filesWithErrors: FrozenSet[str] = frozenset()
    droppedServices: FrozenSet[str] = frozenset()

    def count(self, severity: Severity) -> int:
        """
        How many problems of C{severity} were found.
        """
        return sum(1 for p in self.problems if p.severity is severity)
