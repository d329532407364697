# -*- test-case-name: tests.test_config_attributes -*-
"""
The attribute table: one row per xinetd attribute, and how a written line
changes a service (or the defaults) under xinetd's rules for operators,
value counts and repeated attributes.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Set

import attr

from xinetd_twisted.config import extensions as ext
from xinetd_twisted.config import listening
from xinetd_twisted.config import values as v
from xinetd_twisted.config.model import Location
from xinetd_twisted.config.parser import Line
from xinetd_twisted.records import plainRepr

LIST = -2
"""Any number of values; C{+=}/C{-=} allowed; may repeat."""
VARARGS = -1
"""Any number of values; C{=} only, once."""


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Attribute:
    """
    One row of the table.

    @ivar name: the attribute as written in xinetd.conf (lower-case).
    @ivar key: where the value is stored (C{interface} shares C{bind}'s).
    @ivar count: exact number of values, or L{VARARGS} / L{LIST}.
    @ivar parse: the value parser (L{xinetd_twisted.config.values}).
    @ivar defaultsCount: the count inside C{defaults}, or L{None} when the
        attribute is not allowed there.
    @ivar inService: allowed in a service block.
    """

    name: str
    key: str
    count: int
    parse: v.Parser
    defaultsCount: Optional[int] = None
    inService: bool = True

    def isList(self, inDefaults: bool) -> bool:
        """
        Whether C{+=}/C{-=} apply (and C{=} in defaults means C{+=}).
        """
        return (self.defaultsCount if inDefaults else self.count) == LIST


def _row(name, count, parse, defaultsCount=None, key=None, inService=True):
    return Attribute(name, key or name, count, parse, defaultsCount, inService)


_ROWS = [
    _row("id", 1, v.word),
    _row("type", VARARGS, v.types),
    _row("flags", VARARGS, v.flags),
    _row("socket_type", 1, v.socketType),
    _row("protocol", 1, v.protocol),
    _row("wait", 1, v.yesNo),
    _row("user", 1, v.user),
    _row("group", 1, v.group),
    _row("groups", 1, v.yesNo, 1),
    _row("server", 1, v.word),
    _row("server_args", VARARGS, v.words),
    _row("instances", 1, v.limit, 1),
    _row("per_source", 1, v.limit, 1),
    _row("cps", 2, v.cps, 2),
    _row("max_load", 1, v.maxLoad, 1),
    _row("nice", 1, v.nice),
    _row("umask", 1, v.umask, 1),
    _row("env", LIST, v.env),
    _row("passenv", LIST, v.words, LIST),
    _row("only_from", LIST, v.addresses, LIST),
    _row("no_access", LIST, v.addresses, LIST),
    _row("access_times", VARARGS, v.accessTimes),
    _row("log_type", VARARGS, v.logType, LIST),
    _row("log_on_success", LIST, v.successFlags, LIST),
    _row("log_on_failure", LIST, v.failureFlags, LIST),
    _row("rpc_version", 1, v.rpcVersion),
    _row("rpc_number", 1, v.number),
    _row("port", 1, v.port),
    _row("redirect", 2, v.redirect),
    _row("bind", 1, v.bind, 1),
    _row("interface", 1, v.bind, 1, key="bind"),
    _row("banner", 1, v.word, 1),
    _row("banner_success", 1, v.word, 1),
    _row("banner_fail", 1, v.word, 1),
    _row("disable", 1, v.yesNo),
    _row("deny_time", 1, v.denyTime),
    _row("rlimit_as", 1, v.rlimit),
    _row("rlimit_cpu", 1, v.rlimit),
    _row("rlimit_data", 1, v.rlimit),
    _row("rlimit_files", 1, v.rlimit),
    _row("rlimit_rss", 1, v.rlimit),
    _row("rlimit_stack", 1, v.rlimit),
    _row("v6only", 1, v.v6only, 1),
    _row("libwrap", 1, v.word),
    _row("chroot", 1, v.word),
    _row("enabled", LIST, v.ids, LIST, inService=False),
    _row("disabled", LIST, v.ids, LIST, inService=False),
    # Our extensions (issue 10): per-connection time and per-source rate limits.
    _row("max_duration", 1, ext.maxDuration, 1),
    _row("per_source_cps", 2, ext.perSourceCps, 2),
    _row("no_new_privileges", 1, v.yesNo, 1),
    # TLS in front of a stream service, the PROXY header (our extensions).
    _row("tls_certificate", 1, v.word),
    _row("tls_key", 1, v.word),
    _row("tls_client_ca", 1, v.word),
    _row("proxy_protocol", LIST, v.addresses),
    # UNIX-domain sockets (our extension: config/listening.py)
    _row("listen_path", 1, listening.listenPath),
    _row("socket_owner", 1, listening.socketOwner),
    _row("socket_mode", 1, listening.socketMode),
]

ATTRIBUTES: Mapping[str, Attribute] = {row.name: row for row in _ROWS}
"""Every attribute we read, by its written name."""

COPIED_AT_PARSE = (
    "log_on_success",
    "log_on_failure",
    "only_from",
    "no_access",
    "passenv",
    "access_times",
    "banner",
    "banner_success",
    "banner_fail",
)
"""Defaults copied into a service when its block starts (only those seen
earlier apply); the others are filled after the whole configuration."""

WARN_ERRORS = frozenset({"bind"})
"""Attributes whose wrong value count is an error here (xinetd silently
ignores the line and binds every address)."""


class LineOutcome:
    """
    What applying one line did, for the caller's messages.
    """

    APPLIED = "applied"
    IGNORED = "ignored"  # warning given, line ignored
    FAILED = "failed"  # value did not parse
    BADCOUNT = "badcount"  # wrong value count on an attribute where that is an error


@plainRepr
@attr.s(auto_attribs=True, repr=False)
class Settings:
    """
    The attributes of one block while it is read: values by key, the line
    that set each, and which were written in this block (copied defaults
    do not count as written).
    """

    values: Dict[str, Any] = attr.ib(factory=dict)
    lines: Dict[str, Line] = attr.ib(factory=dict)
    specified: Set[str] = attr.ib(factory=set)

    @property
    def locations(self) -> Dict[str, Location]:
        """
        Where each value was set.
        """
        return {key: line.location for key, line in self.lines.items()}

    def copyFrom(self, defaults: "Settings", keys) -> None:
        """
        Copy C{keys} that C{defaults} has (xinetd's parse-time fill).
        """
        for key in keys:
            if key in defaults.specified:
                self.values[key] = defaults.values[key]
                self.lines[key] = defaults.lines[key]


def combine(old: Any, new: Any, op: str) -> Any:
    """
    Apply a list operator to a stored value (a tuple or frozenset).
    """
    if op == "=":
        return new
    if isinstance(new, frozenset):
        base = old if old is not None else frozenset()
        return base | new if op == "+=" else base - new
    base = old if old is not None else ()
    if op == "+=":
        return base + tuple(x for x in new if x not in base)
    return tuple(x for x in base if x not in new)
