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
from typing import Any, Dict, List, Optional, Tuple

import attr

from xinetd_twisted.config.attributes import Settings
from xinetd_twisted.config.build import STRICT_SUFFIX, ServiceDraft
from xinetd_twisted.config.check import Drop, Environment, ServiceChecker
from xinetd_twisted.config.extensions import checkExtensions
from xinetd_twisted.config.front import FRONT_ATTRIBUTES, FrontError, fillFront
from xinetd_twisted.config.listening import listeningFields
from xinetd_twisted.config.model import (
    RLIMIT_NAMES,
    Problem,
    ServiceConfig,
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
        spec = set(draft.specified)
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
        if port is None and "RPC" in types:
            # As xinetd: an RPC service binds any free port, then registers
            # it with rpcbind.
            port = 0

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

        rlimits = tuple(
            (RLIMIT_NAMES[key], v[key])
            for key in _RLIMIT_KEYS
            if key in spec and v[key] != 0
        )
        fields: Dict[str, Any] = dict(
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
            locations=draft.locations,
            maxDuration=fromDefaults("max_duration", None),
            perSourceCps=fromDefaults("per_source_cps", None),
            noNewPrivileges=bool(fromDefaults("no_new_privileges", False)),
            **listeningFields(v),
        )
        # Equal values of services written alike as one object each.
        self.checker.shared.share(fields)
        return ServiceConfig(**fields)


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
