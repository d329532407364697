# -*- test-case-name: tests.test_config_dump -*-
"""
Render a service's effective configuration in xinetd.conf syntax, so that
reading the block back gives the same L{ServiceConfig}.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from xinetd_twisted.config.model import (
    RLIMIT_NAMES,
    UNLIMITED,
    AddressEntry,
    FileLog,
    ServiceConfig,
    SyslogLog,
)

_RLIMIT_ATTRIBUTES = {value: key for key, value in RLIMIT_NAMES.items()}


def _limit(value: Optional[int]) -> str:
    return "UNLIMITED" if value is None or value == UNLIMITED else str(value)


def _words(entries: Tuple[AddressEntry, ...]) -> str:
    # A factorized word stands for several entries: write it once.
    return " ".join(dict.fromkeys(entry.word for entry in entries))


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def dumpService(service: ServiceConfig) -> str:
    """
    The C{service NAME { ... }} block for C{service}, every effective value
    written out (values that came from C{defaults} included).
    """
    s = service
    lines: List[Tuple[str, str]] = [("id", s.serviceId)]
    if s.types:
        lines.append(("type", " ".join(sorted(s.types))))
    if s.flags:
        lines.append(("flags", " ".join(sorted(s.flags))))
    lines += [
        ("socket_type", s.socketType),
        ("protocol", s.protocol),
        ("wait", "yes" if s.wait else "no"),
    ]
    if s.port is not None:
        lines.append(("port", str(s.port)))
    if s.bind is not None:
        lines.append(("bind", s.bind))
    if s.v6only is not None:
        lines.append(("v6only", "yes" if s.v6only else "no"))
    if s.user is not None:
        lines.append(("user", s.user))
    if s.group is not None:
        lines.append(("group", s.group))
    lines.append(("groups", "yes" if s.groups else "no"))
    if s.redirect is not None:
        lines.append(("redirect", f"{s.redirect[0]} {s.redirect[1]}"))
    elif s.server is not None:
        lines.append(("server", s.server))
    if s.serverArgs:
        lines.append(("server_args", " ".join(s.serverArgs)))
    lines += [
        ("instances", _limit(s.instances)),
        ("per_source", _limit(s.perSource)),
        ("cps", f"{s.cps[0]} {s.cps[1]}"),
    ]
    if s.maxLoad is not None:
        lines.append(("max_load", repr(s.maxLoad)))
    if s.nice is not None:
        lines.append(("nice", str(s.nice)))
    if s.umask is not None:
        lines.append(("umask", f"{s.umask:03o}"))
    if s.env:
        lines.append(("env", " ".join(s.env)))
    if s.passenv is not None:
        lines.append(("passenv", " ".join(s.passenv)))
    if s.onlyFrom is not None:
        lines.append(("only_from", _words(s.onlyFrom)))
    if s.noAccess is not None:
        lines.append(("no_access", _words(s.noAccess)))
    if s.accessTimes is not None:
        lines.append(
            (
                "access_times",
                " ".join(f"{_clock(a)}-{_clock(b)}" for a, b in s.accessTimes),
            )
        )
    if isinstance(s.logType, SyslogLog):
        lines.append(("log_type", f"SYSLOG {s.logType.facility} {s.logType.level}"))
    elif isinstance(s.logType, FileLog):
        limits = ""
        if s.logType.softLimit is not None:
            limits = f" {s.logType.softLimit} {s.logType.hardLimit}"
        lines.append(("log_type", f"FILE {s.logType.path}{limits}"))
    if s.logOnSuccess:
        lines.append(("log_on_success", " ".join(sorted(s.logOnSuccess))))
    if s.logOnFailure:
        lines.append(("log_on_failure", " ".join(sorted(s.logOnFailure))))
    if s.rpcVersion is not None:
        low, high = s.rpcVersion
        lines.append(("rpc_version", str(low) if low == high else f"{low}-{high}"))
    if s.rpcNumber is not None and "UNLISTED" in s.types:
        lines.append(("rpc_number", str(s.rpcNumber)))
    for attribute, value in (
        ("banner", s.banner),
        ("banner_success", s.bannerSuccess),
        ("banner_fail", s.bannerFail),
        ("libwrap", s.libwrap),
        ("chroot", s.chroot),
    ):
        if value is not None:
            lines.append((attribute, value))
    if s.denyTime:
        lines.append(("deny_time", "FOREVER" if s.denyTime == -1 else str(s.denyTime)))
    for resource, amount in s.rlimits:
        lines.append((_RLIMIT_ATTRIBUTES[resource], _limit(amount)))
    # Our extensions (issue 10).
    if s.maxDuration is not None:
        lines.append(("max_duration", str(s.maxDuration)))
    if s.perSourceCps is not None:
        lines.append(("per_source_cps", f"{s.perSourceCps[0]} {s.perSourceCps[1]}"))
    if s.noNewPrivileges:
        lines.append(("no_new_privileges", "yes"))
    for attribute, value in (
        ("tls_certificate", s.tlsCertificate),
        ("tls_key", s.tlsKey),
        ("tls_client_ca", s.tlsClientCA),
    ):
        if value is not None:
            lines.append((attribute, value))
    if s.proxyProtocol is not None:
        lines.append(("proxy_protocol", _words(s.proxyProtocol)))
    if s.listenPath is not None:
        lines.append(("listen_path", s.listenPath))
        if s.socketOwner is not None:
            lines.append(("socket_owner", s.socketOwner))
        lines.append(("socket_mode", f"{s.socketMode:04o}"))
    body = "".join(f"\t{name:<15} = {value}\n" for name, value in lines)
    return f"service {s.name}\n{{\n{body}}}\n"
