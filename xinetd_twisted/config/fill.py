# -*- test-case-name: tests.test_config_fill -*-
"""
After the whole configuration is read: implied values and defaults
(xinetd's C{service_fill}), then validation (C{check_entry}), one service
at a time in file order.  A failure drops just that service.
"""

from __future__ import annotations

import os
import pwd
import socket
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attr

from xinetd_twisted.config.attributes import Settings
from xinetd_twisted.config.build import ServiceDraft
from xinetd_twisted.config.builtins import BUILTINS
from xinetd_twisted.config.listening import (
    ListeningProblem,
    checkListening,
    listeningFields,
)
from xinetd_twisted.config.model import (
    RLIMIT_NAMES,
    Location,
    Problem,
    ServiceConfig,
    Severity,
)
from xinetd_twisted.config.sysfiles import Services

IDENT_PORT = 113


class Drop(Exception):
    """
    The service cannot run: C{(message, attribute)}.
    """

    def __init__(self, message: str, attribute: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.attribute = attribute


@attr.s(auto_attribs=True)
class Environment:
    """
    What filling and checking consult besides the configuration.
    """

    services: Services
    rpc: Mapping[str, int]
    environ: Mapping[str, str]
    isRoot: bool


@attr.s(auto_attribs=True)
class Filler:
    """
    Turns drafts into L{ServiceConfig}s, keeping only services that pass.
    """

    env: Environment
    defaults: Settings
    problems: List[Problem] = attr.ib(factory=list)
    services: List[ServiceConfig] = attr.ib(factory=list)
    _byId: Dict[str, ServiceConfig] = attr.ib(factory=dict)
    _byPort: Dict[Tuple[Optional[int], str], List[ServiceConfig]] = attr.ib(
        factory=dict
    )
    dropped: List[str] = attr.ib(factory=list)
    _byPath: Dict[str, ServiceConfig] = attr.ib(factory=dict)

    def add(self, draft: ServiceDraft) -> None:
        """
        Fill and check one draft; on failure report and drop it.
        """
        warnings: List[Tuple[str, Optional[str]]] = []
        try:
            service = self._fill(draft, warnings)
            service = self._check(draft, service, warnings)
        except Drop as e:
            self._report(draft, Severity.ERROR, e.message, e.attribute)
            self.dropped.append(draft.serviceId)
            return
        finally:
            for message, attribute in warnings:
                self._report(draft, Severity.WARNING, message, attribute)
        self.services.append(service)
        self._byId[service.serviceId.lower()] = service
        self._byPort.setdefault((service.port, service.protocol), []).append(service)
        if service.listenPath is not None:
            self._byPath[service.listenPath] = service

    def _report(self, draft, severity, message, attribute) -> None:
        location = draft.settings.locations.get(attribute, draft.block.location)
        self.problems.append(
            Problem(location, severity, message, draft.serviceId, attribute)
        )

    # --- service_fill ---------------------------------------------------

    def _fill(self, draft: ServiceDraft, warnings) -> ServiceConfig:
        s = draft.settings
        v = dict(s.values)
        spec = set(s.specified)
        d = self.defaults
        name = draft.block.name
        types = frozenset(v.get("type", frozenset()))
        flags = set(v.get("flags", frozenset()))
        internal = "INTERNAL" in types

        if "redirect" in spec:
            v["server"] = "/bin/true"
            spec.add("server")
        serverArgs = tuple(v.get("server_args", ()))
        argv: Tuple[str, ...] = ()
        if not internal:
            if v.get("server") is None:
                raise Drop(f"Must specify a server in {name}", "server")
            if "NAMEINARGS" in flags:
                if "server_args" not in spec:
                    raise Drop(
                        "Must specify server args if using NAMEINARGS flag", "flags"
                    )
                argv = serverArgs
            else:
                argv = (os.path.basename(v["server"]),) + serverArgs
            if v.get("chroot") is None and not os.path.isabs(v["server"]):
                # xinetd checks a relative server against its start-up
                # directory but execs it from "/" (it chdirs after the first
                # load), so relative servers break; we anchor them once.
                v["server"] = os.path.abspath(v["server"])

        def fromDefaults(key: str, fallback: Any) -> Any:
            if key in spec:
                return v[key]
            return d.values[key] if key in d.specified else fallback

        # bind: a host name with several addresses is chosen by family.
        bindValue = fromDefaults("bind", None)
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

        socketType = v.get("socket_type")
        protocol = v.get("protocol")
        if protocol is None and socketType is not None:
            protocol = {"stream": "tcp", "dgram": "udp"}.get(socketType)
            if protocol is not None:
                spec.add("protocol")
        if socketType is None and protocol is not None:
            socketType = {"tcp": "stream", "udp": "dgram"}.get(protocol)
            if socketType is not None:
                spec.add("socket_type")

        mux = bool(types & {"TCPMUX", "TCPMUXPLUS"})
        port = v.get("port")
        unixSocket = "listen_path" in spec  # our extension: no port at all
        if unixSocket:
            bind = None
        if port is None and not mux and "RPC" not in types and not unixSocket:
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
        supplementary: Tuple[int, ...] = ()
        groups = fromDefaults("groups", False)
        if user is not None:
            uid, gid = user[1], user[2]
        if group is not None:
            gid = group[1]
        if groups and user is not None:
            supplementary = _groupList(user[0], uid, gid)

        locations: Dict[str, Location] = dict(s.locations)
        rlimits = tuple(
            (RLIMIT_NAMES[key], v[key])
            for key in sorted(RLIMIT_NAMES)
            if key in spec and v[key] != 0
        )
        return ServiceConfig(
            name=name,
            serviceId=v.get("id", name),
            location=draft.block.location,
            socketType=socketType or "",
            protocol=protocol or "",
            wait=bool(v.get("wait", False)),
            types=types,
            flags=frozenset(flags),
            port=port,
            family=family,
            bind=bind,
            v6only=fromDefaults("v6only", None),
            user=user[0] if user else None,
            uid=uid,
            group=group[0] if group else None,
            gid=gid,
            groups=bool(groups),
            supplementaryGroups=supplementary,
            server=v.get("server"),
            serverArgs=serverArgs,
            argv=argv,
            instances=fromDefaults("instances", None),
            perSource=fromDefaults("per_source", None),
            cps=fromDefaults("cps", (50, 10)),
            maxLoad=fromDefaults("max_load", None),
            nice=v.get("nice"),
            umask=fromDefaults("umask", None),
            env=tuple(v.get("env", ())),
            passenv=tuple(passenv) if passenv is not None else None,
            onlyFrom=v.get("only_from"),
            noAccess=v.get("no_access"),
            accessTimes=v.get("access_times"),
            logType=fromDefaults("log_type", None),
            logOnSuccess=frozenset(fromDefaults("log_on_success", frozenset())),
            logOnFailure=frozenset(fromDefaults("log_on_failure", frozenset())),
            rpcVersion=v.get("rpc_version"),
            rpcNumber=v.get("rpc_number"),
            redirect=v.get("redirect"),
            banner=v.get("banner"),
            bannerSuccess=v.get("banner_success"),
            bannerFail=v.get("banner_fail"),
            denyTime=v.get("deny_time", 0),
            rlimits=rlimits,
            libwrap=v.get("libwrap"),
            chroot=v.get("chroot"),
            locations=locations,
            **listeningFields(v),  # type: ignore[arg-type]
        )

    # --- check_entry ----------------------------------------------------

    def _check(self, draft: ServiceDraft, sc: ServiceConfig, warnings) -> ServiceConfig:
        spec = draft.settings.specified
        name, sid = sc.name, sc.serviceId
        self._checkDuplicate(sc)

        flags = set(sc.flags)
        types = set(sc.types)
        if "INTERCEPT" in flags and ("INTERNAL" in types or not sc.wait):
            what = "Internal" if "INTERNAL" in types else "Multi-threaded"
            warnings.append(
                (
                    f"{what} services cannot be intercepted: {sid}; INTERCEPT cleared",
                    "flags",
                )
            )
            flags.discard("INTERCEPT")
        if "SENSOR" in flags:
            types.add("INTERNAL")
        if "INTERNAL" in types:
            builtin = "sensor" if "SENSOR" in flags else name.lower()
            if (builtin, sc.socketType) not in BUILTINS:
                raise Drop(
                    f"No such internal service: {name}/{sc.socketType} - DISABLING",
                    "type",
                )
        if "LABELED" in flags:
            if (
                "INTERNAL" in types
                or sc.socketType != "stream"
                or sc.wait
                or sc.redirect
            ):
                raise Drop(
                    f"labeled networking needs an external stream nowait service: {sid}",
                    "flags",
                )
        if types & {"TCPMUX", "TCPMUXPLUS"}:
            if "UNLISTED" not in types:
                raise Drop(
                    f"Service: {name} (tcpmux) should have UNLISTED in type.", "type"
                )
            if sc.protocol != "tcp":
                raise Drop(
                    f"Service: {name} (tcpmux) should have tcp in protocol.", "protocol"
                )
        rpcNumber = sc.rpcNumber
        if "RPC" in types and "UNLISTED" not in types:
            rpcNumber = self.env.rpc.get(name.lower())
            if rpcNumber is None:
                raise Drop(f"unknown RPC service: {name}", "type")
        elif "UNLISTED" not in types and sc.listenPath is None:
            if not sc.protocol:
                raise Drop(
                    f"A protocol or a socket_type must be specified for service: {name}."
                )
            listed = self.env.services.port(name, sc.protocol)
            if listed is None:
                raise Drop(
                    "service/protocol combination not in /etc/services: "
                    f"{name}/{sc.protocol}",
                    "protocol" if "protocol" in spec else None,
                )
            if sc.port is not None and sc.port != listed:
                raise Drop(
                    f"Service {name} expects port {listed}, not {sc.port}", "port"
                )
        if sc.redirect is not None:
            if sc.socketType != "stream":
                raise Drop(
                    f"Only tcp sockets are supported for redirected service {name}",
                    "redirect",
                )
            if sc.wait:
                raise Drop(f"Redirected service {name} must not wait", "redirect")
            if "NAMEINARGS" in flags:
                raise Drop(
                    f"Redirected service {name} should not have NAMEINARGS flag set",
                    "flags",
                )
        elif "TRAFFIC" in sc.logOnSuccess:
            raise Drop(
                f"Service {name} should not have TRAFFIC flag set since its not redirected",
                "log_on_success",
            )
        if "NAMEINARGS" in flags:
            if "INTERNAL" in types:
                raise Drop(
                    f"Service {name} is INTERNAL and has NAMEINARGS flag set", "flags"
                )
            if "server_args" not in spec:
                raise Drop(
                    f"Service {name} has NAMEINARGS flag set and no server_args",
                    "flags",
                )
        if sc.socketType == "dgram" and not sc.wait and "INTERNAL" not in types:
            raise Drop(
                f"Service {name} has socket_type dgram, but does not wait", "wait"
            )
        try:
            checkListening(sc, spec, self.env.isRoot, self._byPath, warnings)
        except ListeningProblem as e:
            raise Drop(e.message, e.attribute) from None
        self._checkRequired(sc, spec, types, warnings)
        if "INTERNAL" not in types:
            self._checkServer(sc)
            self._checkCredentials(sc)
        if "RPC" in types:
            # Checked last, so that the RPC attributes are still checked.
            raise Drop(
                f"Service {sid} is an RPC service: RPC (portmap registration) "
                "is not supported - DISABLING",
                "type",
            )
        logOnSuccess, logOnFailure = sc.logOnSuccess, sc.logOnFailure
        if sc.port == IDENT_PORT and sc.protocol == "tcp":
            for label, mask in (
                ("log_on_success", logOnSuccess),
                ("log_on_failure", logOnFailure),
            ):
                if "USERID" in mask:
                    warnings.append(
                        (f"{sid} service: clearing USERID option from {label}", label)
                    )
            logOnSuccess = logOnSuccess - {"USERID"}
            logOnFailure = logOnFailure - {"USERID"}
        return attr.evolve(
            sc,
            types=frozenset(types),
            flags=frozenset(flags),
            rpcNumber=rpcNumber,
            logOnSuccess=logOnSuccess,
            logOnFailure=logOnFailure,
        )

    def _checkRequired(self, sc: ServiceConfig, spec, types, warnings) -> None:
        must = ["socket_type", "wait"]
        if "INTERNAL" not in types:
            must += ["user", "server"]
            if not self.env.isRoot and "user" not in spec:
                # Our extension: an unprivileged daemon can only run servers
                # as itself, so naming that user adds nothing.
                must.remove("user")
                warnings.append(
                    (
                        f"Service {sc.serviceId} has no user; the daemon is not "
                        "root, so it runs as the daemon's user (xinetd would "
                        "drop the service)",
                        "user",
                    )
                )
            if "UNLISTED" in types:
                must += (
                    ["protocol"]
                    if types & {"TCPMUX", "TCPMUXPLUS"} or sc.listenPath
                    else ["protocol", "port"]
                )
        if "RPC" in types:
            must = [a for a in must if a != "port"] + ["protocol", "rpc_version"]
            if "UNLISTED" in types:
                must.append("rpc_number")
        elif sc.redirect is not None:
            must = [a for a in must if a != "server"]
        filled = set(spec)
        if sc.protocol:
            filled.add("protocol")
        if sc.socketType:
            filled.add("socket_type")
        if sc.redirect is not None:
            filled.add("server")
        missing = [a for a in dict.fromkeys(must) if a not in filled]
        if missing:
            raise Drop(
                "; ".join(
                    f"Service {sc.serviceId} missing attribute {a}" for a in missing
                )
                + " - DISABLING"
            )

    def _checkServer(self, sc: ServiceConfig) -> None:
        if sc.redirect is not None or sc.server is None:
            return
        path = sc.server
        if sc.chroot is not None:
            if not os.path.isdir(sc.chroot):
                raise Drop(f"chroot directory {sc.chroot} does not exist", "chroot")
            path = os.path.join(sc.chroot, sc.server.lstrip("/"))
        if not os.path.isfile(path):
            raise Drop(f"Could not stat server {path}", "server")
        if not os.access(path, os.X_OK):
            raise Drop(f"Server {path} is not executable", "server")

    def _checkCredentials(self, sc: ServiceConfig) -> None:
        if self.env.isRoot:
            return
        if sc.uid is not None and sc.uid != os.geteuid():
            raise Drop(f"daemon is not root: cannot run as user {sc.user}", "user")
        if sc.group is not None and sc.gid != os.getegid():
            raise Drop(f"daemon is not root: cannot run as group {sc.group}", "group")

    def _checkDuplicate(self, sc: ServiceConfig) -> None:
        # Indexed: a linear scan made 1000 services take half a second.
        other = self._byId.get(sc.serviceId.lower())
        if other is not None:
            raise Drop(
                f"service: {sc.name} id: {sc.serviceId} not unique or is a "
                f"duplicate of the service at {other.location} - DISABLING",
                "id" if "id" in sc.locations else None,
            )
        for other in self._byPort.get((sc.port, sc.protocol), ()):
            if _overlaps(sc, other):
                raise Drop(
                    f"service: {sc.name} id: {sc.serviceId} is unique but its identical "
                    f"to service: {other.name} id: {other.serviceId} at {other.location} "
                    f"(same port {sc.port}/{sc.protocol} and overlapping bind address) "
                    "- DISABLING"
                )


def _coverage(sc: ServiceConfig) -> Tuple[Optional[str], Optional[str]]:
    """
    (IPv4 part, IPv6 part) a socket would occupy: an address, C{"*"} for
    all, or L{None} for nothing.
    """
    if sc.family == socket.AF_INET:
        return (sc.bind or "*", None)
    if sc.bind is None or sc.bind == "::":
        return (None if sc.v6only else "*", "*")
    return (None, sc.bind)


def _overlaps(a: ServiceConfig, b: ServiceConfig) -> bool:
    if a.port is None or b.port is None or a.port != b.port:
        return False
    if a.protocol != b.protocol or a.isTcpmuxSubservice or b.isTcpmuxSubservice:
        return False
    for x, y in zip(_coverage(a), _coverage(b), strict=True):
        if x is not None and y is not None and (x == "*" or y == "*" or x == y):
            return True
    return False


def _groupList(user: str, uid: Optional[int], gid: Optional[int]) -> Tuple[int, ...]:
    """
    The supplementary groups initgroups() would give C{user}.
    """
    name = user
    if user.isdigit():
        try:
            name = pwd.getpwuid(int(user)).pw_name
        except KeyError:
            return ()
    try:
        return tuple(os.getgrouplist(name, gid if gid is not None else 0))
    except OSError:
        return ()
