# -*- test-case-name: tests.test_config_attributes -*-
"""
Value parsers: the words after an attribute's operator to a typed value.

Each parser takes the words and a L{ParseContext} and returns the value, or
raises C{ValueError} with a message naming the bad word (the service is then
dropped, or the configuration refused when the line is in C{defaults}).
Remarks that keep the value are passed to L{ParseContext.warn}.
"""

from __future__ import annotations

import grp
import pwd
import re
import socket
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import attr

from xinetd_twisted.config.addresses import AddressError, Resolver, parseAddress
from xinetd_twisted.config.model import UNLIMITED, AddressEntry, FileLog, SyslogLog
from xinetd_twisted.config.sysfiles import Services, isNumber
from xinetd_twisted.records import plainRepr

TYPES = frozenset({"RPC", "INTERNAL", "UNLISTED", "TCPMUX", "TCPMUXPLUS", "SPECIAL"})
FLAGS = frozenset(
    {
        "REUSE",
        "INTERCEPT",
        "NORETRY",
        "IDONLY",
        "NAMEINARGS",
        "NODELAY",
        "KEEPALIVE",
        "NOLIBWRAP",
        "SENSOR",
        "IPV4",
        "IPV6",
        "LABELED",
        "FREEBIND",
        "REUSEPORT",
    }
)
SOCKET_TYPES = ("stream", "dgram", "raw", "seqpacket")
SUCCESS_FLAGS = frozenset({"PID", "HOST", "USERID", "EXIT", "DURATION", "TRAFFIC"})
FAILURE_FLAGS = frozenset({"HOST", "USERID", "ATTEMPT", "RECORD"})
FACILITIES = (
    "daemon auth authpriv user mail lpr news uucp ftp "
    "local0 local1 local2 local3 local4 local5 local6 local7"
).split()
LEVELS = "emerg alert crit err warning notice info debug".split()


@plainRepr
@attr.s(auto_attribs=True, repr=False)
class ParseContext:
    """
    What value parsers may consult, and where they leave remarks.

    @ivar resolve: host name -> numeric addresses (cached for the load).
    @ivar networks: network name -> dotted network.
    @ivar protocols: protocol name -> number.
    @ivar services: the services database (redirect port names).
    @ivar warnings: remarks made while parsing the current line.
    """

    resolve: Resolver
    networks: Mapping[str, str]
    protocols: Mapping[str, int]
    services: Services
    warnings: List[str] = attr.ib(factory=list)
    users: Dict[str, Tuple[int, int]] = attr.ib(factory=dict)
    groups: Dict[str, int] = attr.ib(factory=dict)

    def warn(self, message: str) -> None:
        """
        Record a remark about a value that is kept.
        """
        self.warnings.append(message)


Parser = Callable[[Sequence[str], ParseContext], object]


def _one(words: Sequence[str]) -> str:
    return words[0]


def word(words: Sequence[str], ctx: ParseContext) -> str:
    """
    One word kept as written (id, server, banner, libwrap, chroot).
    """
    return words[0]


def words(words: Sequence[str], ctx: ParseContext) -> Tuple[str, ...]:
    """
    Any number of words kept as written (server_args, passenv, env ids).
    """
    return tuple(words)


def yesNo(words: Sequence[str], ctx: ParseContext) -> bool:
    """
    C{yes} or C{no}, any case.
    """
    value = words[0].lower()
    if value not in ("yes", "no"):
        raise ValueError(f"bad value {words[0]}: expected yes or no")
    return value == "yes"


def v6only(words: Sequence[str], ctx: ParseContext) -> bool:
    """
    C{v6only}: xinetd turns IPV6_V6ONLY on for any written value; we follow
    the value and say so when it is C{no}.
    """
    value = yesNo(words, ctx)
    if not value:
        ctx.warn("v6only = no: xinetd would turn IPV6_V6ONLY on; we keep it off")
    return value


def _upperSet(words: Sequence[str], allowed: frozenset, what: str) -> frozenset:
    result = set()
    for w in words:
        if w.upper() not in allowed:
            raise ValueError(f"bad {what}: {w}")
        result.add(w.upper())
    return frozenset(result)


def types(words: Sequence[str], ctx: ParseContext) -> frozenset:
    """
    C{type} words, upper-cased.
    """
    return _upperSet(words, TYPES, "type")


def flags(words: Sequence[str], ctx: ParseContext) -> frozenset:
    """
    C{flags} words, upper-cased (C{IPv4} -> C{IPV4}).
    """
    return _upperSet(words, FLAGS, "flag")


def successFlags(words: Sequence[str], ctx: ParseContext) -> frozenset:
    """
    C{log_on_success} flags.
    """
    return _upperSet(words, SUCCESS_FLAGS, "log_on_success flag")


def failureFlags(words: Sequence[str], ctx: ParseContext) -> frozenset:
    """
    C{log_on_failure} flags (C{RECORD} is accepted and has no effect, as in
    xinetd).
    """
    return _upperSet(words, FAILURE_FLAGS, "log_on_failure flag")


def socketType(words: Sequence[str], ctx: ParseContext) -> str:
    """
    C{stream dgram raw seqpacket}.
    """
    if words[0].lower() not in SOCKET_TYPES:
        raise ValueError(f"bad socket type: {words[0]}")
    return words[0].lower()


def protocol(words: Sequence[str], ctx: ParseContext) -> str:
    """
    A protocol listed in the protocols file, lower-cased.
    """
    if words[0].lower() not in ctx.protocols:
        raise ValueError(f"protocol {words[0]} not in the protocols file")
    return words[0].lower()


INT_MAX = 2**31 - 1
"""The largest C{int} xinetd stores a count in; beyond it C{strtol} fails
and so does the attribute."""

ID_MAX = 2**32 - 2
"""The largest uid or gid (2**32 - 1 is C{(uid_t) -1}, "no change")."""

RLIM_MAX = 2**63 - 1
"""The largest resource limit or file size we accept (bytes or seconds)."""

_DECIMAL = re.compile(r"[+-]?[0-9]+\Z")
_OCTAL = re.compile(r"[0-7]+\Z")
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{1,2})\Z")


def integer(text: str, low: int = 0, high: int = INT_MAX) -> int:
    """
    A decimal integer (ASCII digits, an optional sign) within bounds, or
    C{ValueError}.  Values beyond C{high} (by default a C int) are errors,
    as C{strtol} overflowing is in xinetd.
    """
    if not _DECIMAL.match(text):
        raise ValueError(f"bad number: {text}")
    # A bounded length first: int() of a huge digit string is slow.
    if len(text) > 30:
        raise ValueError(f"number out of range: {text}")
    value = int(text, 10)
    if value < low or value > high:
        raise ValueError(f"number out of range: {text}")
    return value


def limit(words: Sequence[str], ctx: ParseContext) -> Optional[int]:
    """
    C{instances}/C{per_source}: a count or C{UNLIMITED} (L{None}).
    """
    if words[0].upper() == "UNLIMITED":
        return None
    return integer(words[0])


def port(words: Sequence[str], ctx: ParseContext) -> int:
    """
    A port number 0-65535.
    """
    return integer(words[0], 0, 65535)


def number(words: Sequence[str], ctx: ParseContext) -> int:
    """
    A non-negative integer (rpc_number).
    """
    return integer(words[0])


def nice(words: Sequence[str], ctx: ParseContext) -> int:
    """
    A nice increment (may be negative).
    """
    return integer(words[0], -40, 40)


def cps(words: Sequence[str], ctx: ParseContext) -> Tuple[int, int]:
    """
    C{cps = max waitSeconds}.
    """
    return (integer(words[0]), integer(words[1]))


def maxLoad(words: Sequence[str], ctx: ParseContext) -> float:
    """
    A positive load average.
    """
    try:
        value = float(words[0])
    except ValueError:
        raise ValueError(f"bad max_load: {words[0]}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"bad max_load: {words[0]}")
    return value


def umask(words: Sequence[str], ctx: ParseContext) -> int:
    """
    An octal mask 0-0777.
    """
    if not _OCTAL.match(words[0]) or len(words[0]) > 12:
        raise ValueError(f"bad umask: {words[0]}")
    value = int(words[0], 8)
    if not 0 <= value <= 0o777:
        raise ValueError(f"umask out of range: {words[0]}")
    return value


def size(text: str) -> int:
    """
    Bytes with an optional C{K}/C{M} suffix, or C{UNLIMITED}.
    """
    if text.upper() == "UNLIMITED":
        return UNLIMITED
    factor = 1
    if text[-1:].upper() == "K":
        factor, text = 1024, text[:-1]
    elif text[-1:].upper() == "M":
        factor, text = 1024 * 1024, text[:-1]
    return integer(text, 0, RLIM_MAX // factor) * factor


def rlimit(words: Sequence[str], ctx: ParseContext) -> int:
    """
    An rlimit value: number (K/M) or UNLIMITED.
    """
    return size(words[0])


def denyTime(words: Sequence[str], ctx: ParseContext) -> int:
    """
    Minutes, C{FOREVER} (-1) or C{NEVER} (0).
    """
    upper = words[0].upper()
    if upper == "FOREVER":
        return -1
    if upper == "NEVER":
        return 0
    return integer(words[0])


def rpcVersion(words: Sequence[str], ctx: ParseContext) -> Tuple[int, int]:
    """
    C{N} or C{N-M}.
    """
    low, dash, high = words[0].partition("-")
    lowValue = integer(low)
    highValue = integer(high) if dash else lowValue
    if highValue < lowValue:
        raise ValueError(f"bad rpc_version: {words[0]}")
    return (lowValue, highValue)


def user(words: Sequence[str], ctx: ParseContext) -> Tuple[str, int, int]:
    """
    A user name or uid: C{(asWritten, uid, gid)}; a number gives gid = the
    same number, as xinetd does.
    """
    name = words[0]
    if isNumber(name):
        uid = integer(name, 0, ID_MAX)
        return (name, uid, uid)
    if name not in ctx.users:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"unknown user: {name}") from None
        ctx.users[name] = (entry.pw_uid, entry.pw_gid)
    uid, gid = ctx.users[name]
    return (name, uid, gid)


def group(words: Sequence[str], ctx: ParseContext) -> Tuple[str, int]:
    """
    A group name or gid: C{(asWritten, gid)}.
    """
    name = words[0]
    if isNumber(name):
        return (name, integer(name, 0, ID_MAX))
    if name not in ctx.groups:
        try:
            ctx.groups[name] = grp.getgrnam(name).gr_gid
        except KeyError:
            raise ValueError(f"unknown group: {name}") from None
    return (name, ctx.groups[name])


def addresses(words: Sequence[str], ctx: ParseContext) -> Tuple[AddressEntry, ...]:
    """
    An address list; a word that is no address is reported and left out,
    as xinetd does (so an only_from of only bad words lets nobody in).
    """
    result: List[AddressEntry] = []
    for w in words:
        try:
            result.extend(parseAddress(w, ctx.resolve, ctx.networks))
        except AddressError:
            ctx.warn(f"failed to parse {w}: word ignored")
    return tuple(result)


def accessTimes(words: Sequence[str], ctx: ParseContext) -> Tuple[Tuple[int, int], ...]:
    """
    C{HH:MM-HH:MM} intervals in minutes after midnight, bounds inclusive.
    C{24:00} as an end is accepted as the end of the day (xinetd rejects it).
    """
    result = []
    for w in words:
        start, dash, end = w.partition("-")
        if not dash:
            raise ValueError(f"bad access_times interval: {w}")
        startMinute = _clock(start, w, isEnd=False, ctx=ctx)
        endMinute = _clock(end, w, isEnd=True, ctx=ctx)
        if startMinute >= endMinute:
            raise ValueError(f"bad access_times interval: {w} (start must precede end)")
        result.append((startMinute, endMinute))
    return tuple(result)


def _clock(text: str, interval: str, isEnd: bool, ctx: ParseContext) -> int:
    clock = _CLOCK.match(text)
    if clock is None:
        raise ValueError(f"bad access_times interval: {interval}")
    h, m = int(clock.group(1)), int(clock.group(2))
    if isEnd and h == 24 and m == 0:
        ctx.warn(
            f"access_times {interval}: xinetd would reject hour 24 and "
            "disable the service; we read 24:00 as 23:59"
        )
        return 23 * 60 + 59
    if h > 23 or m > 59:
        raise ValueError(f"bad access_times interval: {interval}")
    return h * 60 + m


def logType(words: Sequence[str], ctx: ParseContext) -> object:
    """
    C{SYSLOG facility [level]} or C{FILE path [soft [hard]]}.
    """
    if not words:
        raise ValueError("log_type needs SYSLOG or FILE")
    kind = words[0].upper()
    if kind == "SYSLOG":
        if not 2 <= len(words) <= 3:
            raise ValueError("log_type SYSLOG expects a facility and an optional level")
        facility = words[1].lower()
        if facility not in FACILITIES:
            raise ValueError(f"bad syslog facility: {words[1]}")
        level = words[2].lower() if len(words) == 3 else "info"
        if level not in LEVELS:
            raise ValueError(f"bad syslog level: {words[2]}")
        return SyslogLog(facility, level)
    if kind == "FILE":
        if not 2 <= len(words) <= 4:
            raise ValueError(
                "log_type FILE expects a path and optional soft/hard limits"
            )
        soft = hard = None
        if len(words) >= 3:
            soft = size(words[2])
            if soft == UNLIMITED:
                raise ValueError(f"bad soft limit: {words[2]}")
            # xinetd: hard = soft + 1%, kept between 5 KiB and 20 KiB above soft
            hard = soft + min(max(soft // 100, 5 * 1024), 20 * 1024)
        if len(words) == 4:
            hard = size(words[3])
            if hard == UNLIMITED or soft is None or hard < soft:
                raise ValueError(f"bad hard limit: {words[3]}")
        return FileLog(words[1], soft, hard)
    raise ValueError(f"bad log_type: {words[0]}")


def env(words: Sequence[str], ctx: ParseContext) -> Tuple[str, ...]:
    """
    C{NAME=value} words.
    """
    for w in words:
        if "=" not in w or w.startswith("="):
            raise ValueError(f"env word without NAME=: {w}")
    return tuple(words)


def bind(words: Sequence[str], ctx: ParseContext) -> Tuple[str, Tuple[str, ...]]:
    """
    A bind address: C{(asWritten, numericAddresses)}; a host name keeps
    every address so the family can choose later.
    """
    w = words[0]
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in w else socket.AF_INET, w)
    except OSError:
        found = ctx.resolve(w)
        if not found:
            raise ValueError(f"bad bind address: {w}") from None
        return (w, found)
    return (w, (w,))


def redirect(words: Sequence[str], ctx: ParseContext) -> Tuple[str, int]:
    """
    C{host port}: the host resolved now (first address), the port a number
    or a tcp service name.
    """
    host, portText = words
    found = ctx.resolve(host)
    if ":" in host:
        found = tuple(a for a in found if ":" in a) or found
    if not found:
        raise ValueError(f"cannot resolve redirect host: {host}")
    if isNumber(portText):
        portNumber = integer(portText, 0, 65535)
    else:
        listed = ctx.services.port(portText, "tcp")
        if listed is None:
            raise ValueError(f"bad redirect port: {portText}")
        portNumber = listed
    return (found[0], portNumber)


def ids(words: Sequence[str], ctx: ParseContext) -> Tuple[str, ...]:
    """
    Service ids for C{enabled}/C{disabled}, lower-cased (matched
    case-insensitively).
    """
    return tuple(w.lower() for w in words)
