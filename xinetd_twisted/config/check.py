# -*- test-case-name: tests.test_config_fill -*-
"""
Validation of a filled service (xinetd's C{check_entry}): required
attributes, the server program, credentials, duplicates, files another user
could change.  A failure (L{Drop}) drops just that service.
"""

from __future__ import annotations

import os
import socket
from typing import AbstractSet, Any, Dict, List, Mapping, Optional, Tuple

import attr

from xinetd_twisted.config.builtins import BUILTINS
from xinetd_twisted.config.draft import ServiceDraft
from xinetd_twisted.config.files import writableByOthers
from xinetd_twisted.config.listening import ListeningProblem, checkListening
from xinetd_twisted.config.model import ServiceConfig, evolveService
from xinetd_twisted.config.sharing import SharedValues
from xinetd_twisted.config.sysfiles import Services
from xinetd_twisted.records import plainRepr

IDENT_PORT = 113

_MUX = frozenset({"TCPMUX", "TCPMUXPLUS"})


class Drop(Exception):
    """
    The service cannot run: C{(message, attribute)}.
    """

    def __init__(self, message: str, attribute: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.attribute = attribute


@plainRepr
@attr.s(auto_attribs=True, repr=False)
class Environment:
    """
    What filling and checking consult besides the configuration.
    """

    services: Services
    rpc: Mapping[str, int]
    environ: Mapping[str, str]
    isRoot: bool
    warnWritable: bool = False


class FileChecks:
    """
    What the file system says of a service's server and banners, asked
    once per load: a thousand services running one program stat it once.
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._servers: Dict[str, Tuple[bool, bool]] = {}
        self._status: Dict[str, Optional[os.stat_result]] = {}

    def checkServer(self, sc: ServiceConfig, warnings) -> None:
        if sc.redirect is not None or sc.server is None:
            return
        path = sc.server
        if sc.chroot is not None:
            if not os.path.isdir(sc.chroot):
                raise Drop(f"chroot directory {sc.chroot} does not exist", "chroot")
            path = os.path.join(sc.chroot, sc.server.lstrip("/"))
        isFile, executable = self._serverFacts(path)
        if not isFile:
            raise Drop(f"Could not stat server {path}", "server")
        if not executable:
            raise Drop(f"Server {path} is not executable", "server")
        self._checkWritable(path, "server", "server", warnings)

    def _serverFacts(self, path: str) -> Tuple[bool, bool]:
        """
        Whether C{path} is a file, and executable, found once per load.
        """
        facts = self._servers.get(path)
        if facts is None:
            isFile = os.path.isfile(path)
            facts = (isFile, isFile and os.access(path, os.X_OK))
            self._servers[path] = facts
        return facts

    def _statOnce(self, path: str) -> Optional[os.stat_result]:
        """
        C{os.stat(path)} once per load, or L{None} when it fails.
        """
        if path not in self._status:
            try:
                self._status[path] = os.stat(path)
            except (OSError, ValueError):
                self._status[path] = None
        return self._status[path]

    def checkBanners(self, sc: ServiceConfig, warnings) -> None:
        for attribute, path in (
            ("banner", sc.banner),
            ("banner_success", sc.bannerSuccess),
            ("banner_fail", sc.bannerFail),
        ):
            if path is not None:
                self._checkWritable(path, attribute, "banner", warnings)

    def _checkWritable(self, path: str, attribute: str, what: str, warnings) -> None:
        """
        Warn when a root daemon would use a file another user can change.
        """
        if not self.env.warnWritable:
            return
        status = self._statOnce(path)
        if status is None:
            return  # a missing banner is the runtime's concern
        why = writableByOthers(status)
        if why is not None:
            warnings.append(
                (
                    f"{what} {path} is {why}: another user could change what "
                    "the root daemon runs or sends",
                    attribute,
                )
            )


class ServiceChecker:
    """
    Checks services one at a time, in file order, against those already
    kept (ids and ports are indexed: a linear scan made 1000 services take
    half a second).

    @ivar shared: the values of the services of this load, one object per
        equal value (the filler shares each service's as it makes it).
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.shared = SharedValues()
        self._files = FileChecks(env)
        self._byId: Dict[str, ServiceConfig] = {}
        self._byPort: Dict[Tuple[Optional[int], str], List[ServiceConfig]] = {}
        self._byPath: Dict[str, ServiceConfig] = {}

    def accepted(self, service: ServiceConfig) -> None:
        """
        C{service} passed and is kept: later ones must not duplicate it.
        """
        self._byId[service.serviceId.lower()] = service
        self._byPort.setdefault((service.port, service.protocol), []).append(service)
        if service.listenPath is not None:
            self._byPath[service.listenPath] = service

    def check(self, draft: ServiceDraft, sc: ServiceConfig, warnings) -> ServiceConfig:
        """
        Validate a filled service as xinetd's C{check_entry} does; warnings
        are appended to C{warnings}.

        @raise Drop: when the service cannot run.
        """
        spec = draft.specified
        name, sid = sc.name, sc.serviceId
        self._checkDuplicate(sc)

        # The service's own sets, copied only to be changed.
        flags: AbstractSet[str] = sc.flags
        types: AbstractSet[str] = sc.types
        if "INTERCEPT" in flags and ("INTERNAL" in types or not sc.wait):
            what = "Internal" if "INTERNAL" in types else "Multi-threaded"
            warnings.append(
                (
                    f"{what} services cannot be intercepted: {sid}; INTERCEPT cleared",
                    "flags",
                )
            )
            flags = flags - {"INTERCEPT"}
        if "SENSOR" in flags:
            types = types | {"INTERNAL"}
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
        if not types.isdisjoint(_MUX):
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
            self._files.checkServer(sc, warnings)
            self._checkCredentials(sc)
        self._files.checkBanners(sc, warnings)
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
        if (
            types is sc.types
            and flags is sc.flags
            and logOnSuccess is sc.logOnSuccess
            and logOnFailure is sc.logOnFailure
            and rpcNumber == sc.rpcNumber
        ):
            return sc
        # The filler shared sc's values already: a copy only for a change.
        changes: Dict[str, Any] = {}
        for field, value in (
            ("types", types),
            ("flags", flags),
            ("logOnSuccess", logOnSuccess),
            ("logOnFailure", logOnFailure),
        ):
            if value != getattr(sc, field):
                changes[field] = self.shared(frozenset(value))
        if rpcNumber != sc.rpcNumber:
            changes["rpcNumber"] = rpcNumber
        return evolveService(sc, **changes) if changes else sc

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
                    if not types.isdisjoint(_MUX) or sc.listenPath
                    else ["protocol", "port"]
                )
        if "RPC" in types:
            must = [a for a in must if a != "port"] + ["protocol", "rpc_version"]
            if "UNLISTED" in types:
                must.append("rpc_number")
        elif sc.redirect is not None:
            must = [a for a in must if a != "server"]
        missing = [a for a in dict.fromkeys(must) if a not in spec]
        if not missing:
            return
        implied = set()
        if sc.protocol:
            implied.add("protocol")
        if sc.socketType:
            implied.add("socket_type")
        if sc.redirect is not None:
            implied.add("server")
        missing = [a for a in missing if a not in implied]
        if missing:
            raise Drop(
                "; ".join(
                    f"Service {sc.serviceId} missing attribute {a}" for a in missing
                )
                + " - DISABLING"
            )

    def _checkCredentials(self, sc: ServiceConfig) -> None:
        if self.env.isRoot:
            return
        if sc.uid is not None and sc.uid != os.geteuid():
            raise Drop(f"daemon is not root: cannot run as user {sc.user}", "user")
        if sc.group is not None and sc.gid != os.getegid():
            raise Drop(f"daemon is not root: cannot run as group {sc.group}", "group")

    def _checkDuplicate(self, sc: ServiceConfig) -> None:
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
    if a.port is None or b.port is None or a.port != b.port or a.port == 0:
        # Port 0 (RPC): each binds a free port of its own.
        return False
    if a.protocol != b.protocol or a.isTcpmuxSubservice or b.isTcpmuxSubservice:
        return False
    for x, y in zip(_coverage(a), _coverage(b), strict=True):
        if x is not None and y is not None and (x == "*" or y == "*" or x == y):
            return True
    return False
