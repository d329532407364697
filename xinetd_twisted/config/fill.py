# -*- test-case-name: tests.test_config_fill -*-
"""
After the whole configuration is read: implied values and defaults
(xinetd's C{service_fill}), then validation (C{check_entry}), one service
at a time in file order.  A failure drops just that service.
"""

from __future__ import annotations

import operator
import os
import pwd
import socket
from typing import Any, Dict, List, Optional, Set, Tuple

import attr

from xinetd_twisted.config.attributes import Settings
from xinetd_twisted.config.build import STRICT_SUFFIX
from xinetd_twisted.config.check import Drop, Environment, ServiceChecker
from xinetd_twisted.config.draft import ServiceDraft
from xinetd_twisted.config.extensions import checkExtensions
from xinetd_twisted.config.front import FRONT_ATTRIBUTES, FrontError, fillFront
from xinetd_twisted.config.listening import listeningFields
from xinetd_twisted.config.model import (
    RLIMIT_NAMES,
    SERVICE_FIELDS,
    Problem,
    ServiceConfig,
    ServiceExtras,
    Severity,
)
from xinetd_twisted.config.sysfiles import isNumber
from xinetd_twisted.records import plainRepr

_RLIMIT_KEYS = tuple(sorted(RLIMIT_NAMES))
"""The C{rlimit_*} attributes, in the order a service's limits are kept."""


@plainRepr
@attr.s(auto_attribs=True, repr=False)
class Filler:
    """
    Turns drafts into L{ServiceConfig}s, keeping only services that pass.
    """

    env: Environment
    defaults: Settings
    strict: bool = False
    problems: List[Problem] = attr.ib(factory=list)
    services: List[ServiceConfig] = attr.ib(factory=list)
    _checker: Optional[ServiceChecker] = None
    _chosen: Optional[Dict[str, Any]] = None
    _plainExtras: Optional[ServiceExtras] = None
    _servers: Dict[str, Tuple[str, str]] = attr.ib(factory=dict)
    dropped: List[str] = attr.ib(factory=list)
    droppedFiles: List[str] = attr.ib(factory=list)

    def add(self, draft: ServiceDraft) -> None:
        """
        Fill and check one draft; on failure report and drop it (under
        strict, a warning is a failure).
        """
        warnings: List[Tuple[str, Optional[str]]] = []
        try:
            service = self._fill(draft, warnings)
            service = self.checker.check(draft, service, warnings)
            checkExtensions(service, warnings)
            service = _front(draft, service)
        except Drop as e:
            self._report(draft, Severity.ERROR, e.message, e.attribute)
            self._drop(draft)
            return
        finally:
            for message, attribute in warnings:
                if self.strict:
                    self._report(
                        draft, Severity.ERROR, message + STRICT_SUFFIX, attribute
                    )
                else:
                    self._report(draft, Severity.WARNING, message, attribute)
        if self.strict and warnings:
            self._drop(draft)
            return
        self.services.append(service)
        self.checker.accepted(service)

    @property
    def checker(self) -> ServiceChecker:
        """
        Validates filled services (C{check_entry}) and remembers those kept.
        """
        if self._checker is None:
            self._checker = ServiceChecker(self.env)
        return self._checker

    def _drop(self, draft: ServiceDraft) -> None:
        self.dropped.append(draft.serviceId)
        self.droppedFiles.append(draft.block.location.path)

    def _report(self, draft, severity, message, attribute) -> None:
        location = draft.locations.get(attribute, draft.block.location)
        self.problems.append(
            Problem(location, severity, message, draft.serviceId, attribute)
        )

    # --- service_fill ---------------------------------------------------

    def _fill(self, draft: ServiceDraft, warnings) -> ServiceConfig:
        v = draft.valuesByKey()
        spec = draft.specified
        name = draft.block.name
        types = frozenset(v.get("type", ()))
        flags = set(v.get("flags", ()))
        if "redirect" in spec:
            v["server"] = "/bin/true"
        serverArgs = tuple(v.get("server_args", ()))
        argv: Tuple[str, ...] = ()
        if "INTERNAL" not in types:
            argv = self._argv(v, spec, flags, serverArgs, name)
        # The values a service takes from defaults when its block does not
        # write them (xinetd fills them after reading every file).
        chosen = self._fromDefaults
        if not spec.isdisjoint(chosen):
            chosen = dict(chosen)
            for key in spec.intersection(chosen):
                chosen[key] = v[key]
        bind, family = _address(chosen["bind"], flags, name)
        socketType = v.get("socket_type")
        protocol = v.get("protocol")
        if protocol is None and socketType is not None:
            protocol = _PROTOCOL_OF.get(socketType)
        if socketType is None and protocol is not None:
            socketType = _SOCKET_TYPE_OF.get(protocol)
        if "listen_path" in spec:  # our extension: no port at all
            bind = None
        port = self._port(v.get("port"), types, spec, protocol, name)
        passenv = v.get("passenv")
        if passenv is not None:
            for variable in passenv:
                if variable not in self.env.environ:
                    warnings.append(
                        (f"undefined environment variable {variable}", "passenv")
                    )
        user = v.get("user")
        group = v.get("group")
        uid = gid = None
        if user is not None:
            uid, gid = user[1], user[2]
        if group is not None:
            gid = group[1]
        # Every field, in ServiceConfig's order (made positionally below:
        # keyword arguments took half the time of making a service).
        fields: Dict[str, Any] = {
            "name": name,
            "serviceId": v.get("id", name),
            "location": draft.block.location,
            "socketType": socketType or "",
            "protocol": protocol or "",
            "wait": bool(v.get("wait", False)),
            "types": types,
            "flags": frozenset(flags),
            "port": port,
            "family": family,
            "bind": bind,
            "user": user[0] if user else None,
            "uid": uid,
            "group": group[0] if group else None,
            "gid": gid,
            "server": v.get("server"),
            "serverArgs": serverArgs,
            "argv": argv,
            "instances": chosen["instances"],
            "perSource": chosen["per_source"],
            "cps": chosen["cps"],
            "maxLoad": chosen["max_load"],
            "onlyFrom": v.get("only_from"),
            "noAccess": v.get("no_access"),
            "accessTimes": v.get("access_times"),
            "logType": chosen["log_type"],
            "logOnSuccess": frozenset(chosen["log_on_success"]),
            "logOnFailure": frozenset(chosen["log_on_failure"]),
            "redirect": v.get("redirect"),
            "locations": draft.locations,
            "extras": self._extras(draft, v, chosen, user, uid, gid),
        }
        # Equal values of services written alike as one object each.
        self.checker.shared.share(fields)
        return ServiceConfig.ofFields(_inFieldOrder(fields))

    def _extras(self, draft, v, chosen, user, uid, gid) -> ServiceExtras:
        """
        The fields most services leave unset: one record for every service
        of this load that writes none of them.
        """
        groups = chosen["groups"]
        if not groups and _EXTRA_ATTRIBUTES.isdisjoint(draft.names):
            if self._plainExtras is None:
                self._plainExtras = _extrasOf({}, self._fromDefaults, ())
            return self._plainExtras
        supplementary: Tuple[int, ...] = ()
        if groups and user is not None:
            supplementary = _groupList(user[0], uid, gid)
        return self.checker.shared(_extrasOf(v, chosen, supplementary))

    @property
    def _fromDefaults(self) -> Dict[str, Any]:
        """
        For each attribute a service takes from defaults, the value a
        service that does not write it gets: the defaults' or the fallback.
        """
        if self._chosen is None:
            d = self.defaults
            self._chosen = {
                key: d.values[key] if key in d.specified else fallback
                for key, fallback in _FROM_DEFAULTS.items()
            }
        return self._chosen

    def _argv(self, v, spec, flags, serverArgs, name) -> Tuple[str, ...]:
        """
        A program's argv, C{v["server"]} anchored when relative.
        """
        server = v.get("server")
        if server is None:
            raise Drop(f"Must specify a server in {name}", "server")
        if "NAMEINARGS" in flags:
            if "server_args" not in spec:
                raise Drop("Must specify server args if using NAMEINARGS flag", "flags")
            argv = serverArgs
        else:
            argv = (self._paths(server)[0],) + serverArgs
        if v.get("chroot") is None:
            # xinetd checks a relative server against its start-up
            # directory but execs it from "/" (it chdirs after the first
            # load), so relative servers break; we anchor them once.
            v["server"] = self._paths(server)[1]
        return argv

    def _paths(self, server: str) -> Tuple[str, str]:
        """
        C{(basename, absolute path)} of a server, found once per load.
        """
        found = self._servers.get(server)
        if found is None:
            absolute = server if os.path.isabs(server) else os.path.abspath(server)
            found = self._servers[server] = (os.path.basename(server), absolute)
        return found

    def _port(self, port, types, spec, protocol, name) -> Optional[int]:
        """
        The port: written, from the services file, or none (tcpmux
        sub-services, UNIX sockets; 0 for RPC).
        """
        if port is not None:
            return port  # type: ignore[no-any-return]
        mux = not types.isdisjoint(_MUX)
        if not mux and "RPC" not in types and "listen_path" not in spec:
            if "UNLISTED" in types:
                raise Drop(f"Unlisted service: {name} must have a port entry", "port")
            if protocol is None:
                raise Drop(
                    f"Port not specified for service: {name} and no protocol given"
                )
            port = self.env.services.port(name, protocol)
            if port is None:
                raise Drop(
                    f"Port not specified and can't find service: {name} in the "
                    "services file (xinetd: with getservbyname)"
                )
        if port is None and "RPC" in types:
            # As xinetd: an RPC service binds any free port, then registers
            # it with rpcbind.
            port = 0
        return port  # type: ignore[no-any-return]


def _extrasOf(v, chosen, supplementary) -> ServiceExtras:
    """
    The extras of a service whose block gave C{v}, with C{chosen} the
    values it takes from defaults.
    """
    passenv = v.get("passenv")
    rlimits: Tuple[Tuple[str, int], ...] = tuple(
        (RLIMIT_NAMES[key], v[key]) for key in _RLIMIT_KEYS if key in v and v[key] != 0
    )
    return ServiceExtras(
        v6only=chosen["v6only"],
        groups=bool(chosen["groups"]),
        supplementaryGroups=supplementary,
        nice=v.get("nice"),
        umask=chosen["umask"],
        env=tuple(v.get("env", ())),
        passenv=tuple(passenv) if passenv is not None else None,
        rpcVersion=v.get("rpc_version"),
        rpcNumber=v.get("rpc_number"),
        banner=v.get("banner"),
        bannerSuccess=v.get("banner_success"),
        bannerFail=v.get("banner_fail"),
        denyTime=v.get("deny_time", 0),
        rlimits=rlimits,
        libwrap=v.get("libwrap"),
        chroot=v.get("chroot"),
        maxDuration=chosen["max_duration"],
        perSourceCps=chosen["per_source_cps"],
        noNewPrivileges=bool(chosen["no_new_privileges"]),
        **listeningFields(v),
    )


def _address(bindValue, flags: Set[str], name: str) -> Tuple[Optional[str], int]:
    """
    The bind address and the family: a host name with several addresses is
    chosen by family.  C{IPV4} is dropped from C{flags} when C{IPV6} is
    there too.
    """
    if "IPV4" in flags and "IPV6" in flags:
        flags.discard("IPV4")
    bind: Optional[str] = None
    if bindValue is not None:
        written, found = bindValue
        if "IPV4" in flags or "IPV6" in flags:
            wanted6 = "IPV6" in flags
        elif len(found) == 1:
            wanted6 = ":" in found[0]
        else:
            wanted6 = True  # xinetd: several addresses -> try IPv6 first
        matching = [a for a in found if (":" in a) == wanted6]
        if not matching:
            raise Drop(f"bad address given for: {name} (bind {written})", "bind")
        bind = matching[0]
    if "IPV4" in flags:
        family = socket.AF_INET
    elif "IPV6" in flags:
        family = socket.AF_INET6
    elif bind is not None:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    else:
        family = socket.AF_INET6
    return bind, family


_PROTOCOL_OF = {"stream": "tcp", "dgram": "udp"}
_SOCKET_TYPE_OF = {"tcp": "stream", "udp": "dgram"}
_MUX = frozenset({"TCPMUX", "TCPMUXPLUS"})

_FROM_DEFAULTS: Dict[str, Any] = {
    "bind": None,
    "groups": False,
    "v6only": None,
    "instances": None,
    "per_source": None,
    "cps": (50, 10),
    "max_load": None,
    "umask": None,
    "log_type": None,
    "log_on_success": frozenset(),
    "log_on_failure": frozenset(),
    "max_duration": None,
    "per_source_cps": None,
    "no_new_privileges": False,
}
"""
The attributes a service takes from defaults when it does not write them
(after the whole configuration is read), and the value when defaults does
not either.
"""

_EXTRA_ATTRIBUTES = frozenset(
    {
        "v6only",
        "groups",
        "nice",
        "umask",
        "env",
        "passenv",
        "rpc_version",
        "rpc_number",
        "banner",
        "banner_success",
        "banner_fail",
        "deny_time",
        "libwrap",
        "chroot",
        "max_duration",
        "per_source_cps",
        "no_new_privileges",
        "listen_path",
        "socket_owner",
        "socket_mode",
        *RLIMIT_NAMES,
    }
)
"""
The attributes L{ServiceExtras} is made from (with defaults' values):
a service that writes none of them, nor has C{groups} from defaults, has
the load's plain extras.
"""

_inFieldOrder = operator.itemgetter(*SERVICE_FIELDS)
"""A dict of every field of L{ServiceConfig} to its positional arguments."""


def _front(draft: ServiceDraft, sc: ServiceConfig) -> ServiceConfig:
    """
    TLS and the PROXY header (our extensions, L{xinetd_twisted.config.front}).
    """
    if draft.specified.isdisjoint(FRONT_ATTRIBUTES):
        return sc
    try:
        return fillFront(draft.valuesByKey(), draft.specified, sc)
    except FrontError as e:
        raise Drop(e.message, e.attribute) from None


def _groupList(user: str, uid: Optional[int], gid: Optional[int]) -> Tuple[int, ...]:
    """
    The supplementary groups initgroups() would give C{user}.
    """
    name = user
    if isNumber(user):
        try:
            name = pwd.getpwuid(int(user)).pw_name
        except KeyError:
            return ()
    try:
        return tuple(os.getgrouplist(name, gid if gid is not None else 0))
    except OSError:
        return ()
