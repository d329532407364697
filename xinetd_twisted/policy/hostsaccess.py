# -*- test-case-name: tests.test_policy_hostsaccess -*-
"""
C{/etc/hosts.allow} and C{/etc/hosts.deny} as tcp_wrappers reads them
(hosts_access(5)), without the C library: xinetd's C{libwrap} check
(reference 4.5), done in the parent before anything is started.

Files are parsed once per configuration load into rules; a service asks
L{HostsAccess.forDaemon} once for its daemon name (L{libwrapName}) and then
matches each connection against the few rules that name selects.

Supported: C{daemon_list : client_list [: option ...]}, comments, backslash
continuation, lists split on blanks and commas, C{EXCEPT} (nested),
C{ALL}, C{LOCAL}, C{KNOWN}, C{UNKNOWN}, C{PARANOID}, C{.domain} suffixes,
C{net.} prefixes, exact names and addresses, C{*}/C{?} wildcards,
C{n.n.n.n/m.m.m.m}, C{n.n.n.n/len}, C{[v6]} and C{[v6]/len}; the options
C{allow} and C{deny} (they set the rule's verdict), and C{twist} (treated as
C{deny}: the real server never runs under tcpd either).

Not supported, with a L{Problem} naming file:line: C{@netgroup},
C{/file} lists, C{user@host}, C{daemon@host}; such a pattern takes the value
that keeps the rule fail-closed (it matches in a denying rule, not in an
allowing one, the other way round under an odd number of C{EXCEPT}s).  Other
options (C{spawn}, C{severity}, C{banners}, C{setenv}, ...) are ignored with
a warning.

Names come from the caller, who gets them from
L{xinetd_twisted.protocols.names.ReverseResolver}: forward-confirmed, as
libwrap's, so a name whose forward lookup does not give the client's address
back arrives here as unknown (L{None}).  Host name, C{.domain} and wildcard
patterns then do not match, and C{PARANOID} does.  C{PARANOID} also matches
a client with no name at all (libwrap: only a mismatch), which is the
stricter reading for the usual C{ALL: PARANOID} in hosts.deny.
"""

from __future__ import annotations

import re
import socket
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attr

from xinetd_twisted.config.model import Location, Problem, Severity
from xinetd_twisted.policy.addresses import Peer
from xinetd_twisted.policy.libwrap import LIBWRAP, libwrapName, readHostsFiles
from xinetd_twisted.records import plainRepr

__all__ = ["LIBWRAP", "DaemonAccess", "HostsAccess", "libwrapName", "parseHostsFile"]

_SEPARATORS = re.compile(r"[,\s]+")
_NUMERIC_CHARS = frozenset("0123456789./")

# (peer, peerAddressText, name or None) -> bool
_Matcher = Callable[[Optional[Peer], str, Optional[str]], bool]


def _stringMatch(token: str, text: str) -> bool:
    """
    tcpd's string_match; C{token} is lower-case, C{text} lower-case.
    """
    if token.startswith("."):
        return len(text) > len(token) and text.endswith(token)
    if token.endswith("."):
        return text.startswith(token)
    return token == text


def _hostnameKnown(name: Optional[str]) -> bool:
    return name is not None and name not in ("unknown", "paranoid")


class _Compiler:
    """
    Turns one file's text into rules, collecting problems.
    """

    def __init__(self, path: str, verdict: bool) -> None:
        self.path = path
        self.defaultVerdict = verdict
        self.problems: List[Problem] = []

    def problem(self, line: int, severity: Severity, message: str) -> None:
        self.problems.append(Problem(Location(self.path, line), severity, message))

    # --- lists and EXCEPT ---

    def compileList(
        self,
        tokens: Sequence[str],
        compileOne: Callable[[str, bool], Tuple[_Matcher, bool]],
        verdict: bool,
        depth: int = 0,
    ) -> Tuple[_Matcher, bool]:
        """
        C{items [EXCEPT list]} -> (matcher, usesName).  C{verdict} and the
        EXCEPT C{depth} decide the fail-closed value of unsupported patterns.
        """
        items: List[_Matcher] = []
        usesName = False
        rest: Optional[Sequence[str]] = None
        for index, token in enumerate(tokens):
            if token.upper() == "EXCEPT":
                rest = tokens[index + 1 :]
                break
            failClosed = (not verdict) != (depth % 2 == 1)
            matcher, names = compileOne(token, failClosed)
            items.append(matcher)
            usesName = usesName or names
        any_ = tuple(items)

        def anyMatch(peer: Optional[Peer], addr: str, name: Optional[str]) -> bool:
            for m in any_:
                if m(peer, addr, name):
                    return True
            return False

        if rest is None:
            return anyMatch, usesName
        exceptMatch, exceptNames = self.compileList(
            rest, compileOne, verdict, depth + 1
        )

        def withExcept(peer: Optional[Peer], addr: str, name: Optional[str]) -> bool:
            return anyMatch(peer, addr, name) and not exceptMatch(peer, addr, name)

        return withExcept, usesName or exceptNames

    # --- patterns ---

    def unsupported(
        self, line: int, what: str, failClosed: bool
    ) -> Tuple[_Matcher, bool]:
        self.problem(
            line,
            Severity.ERROR,
            f"{what} is not supported; the pattern "
            f"{'matches every' if failClosed else 'matches no'} client "
            "so the rule fails closed",
        )
        return (lambda peer, addr, name: failClosed), False

    def daemonPattern(self, line: int) -> Callable[[str, bool], Tuple[_Matcher, bool]]:
        def compileOne(token: str, failClosed: bool) -> Tuple[_Matcher, bool]:
            if "@" in token:
                return self.unsupported(line, f"daemon pattern {token!r}", failClosed)
            word = token.lower()
            if word == "all":
                return (lambda peer, addr, name: True), False
            # The daemon name travels in the "addr" slot: see forDaemon.
            return (lambda peer, addr, name: _stringMatch(word, addr)), False

        return compileOne

    def clientPattern(self, line: int) -> Callable[[str, bool], Tuple[_Matcher, bool]]:
        def compileOne(token: str, failClosed: bool) -> Tuple[_Matcher, bool]:
            return self._client(line, token, failClosed)

        return compileOne

    def _client(self, line: int, token: str, failClosed: bool) -> Tuple[_Matcher, bool]:
        word = token.lower()
        if token.startswith("@"):
            return self.unsupported(line, f"netgroup {token!r}", failClosed)
        if token.startswith("/"):
            return self.unsupported(line, f"pattern file {token!r}", failClosed)
        if "@" in token:
            return self.unsupported(line, f"user@host pattern {token!r}", failClosed)
        if word == "all":
            return (lambda peer, addr, name: True), False
        if word == "known":
            return (
                lambda peer, addr, name: peer is not None and _hostnameKnown(name)
            ), True
        if word == "local":
            return (
                lambda peer, addr, name: (
                    _hostnameKnown(name) and "." not in (name or ".")
                )
            ), True
        if word == "paranoid":
            return (lambda peer, addr, name: name is None or name == "paranoid"), True
        if token.startswith("["):
            return self._v6(line, token, failClosed)
        if "/" in token:
            return self._v4(line, token, failClosed)
        isAddress = not (set(word) - _NUMERIC_CHARS)
        if "*" in word or "?" in word:
            regex = re.compile(
                "".join(
                    ".*" if c == "*" else "." if c == "?" else re.escape(c)
                    for c in word
                )
                + r"\Z"
            )

            def wildcard(peer: Optional[Peer], addr: str, name: Optional[str]) -> bool:
                if regex.match(addr):
                    return True
                return name is not None and regex.match(name) is not None

            return wildcard, True
        if isAddress:
            return (lambda peer, addr, name: _stringMatch(word, addr)), False

        def named(peer: Optional[Peer], addr: str, name: Optional[str]) -> bool:
            if _stringMatch(word, addr):
                return True
            return _stringMatch(word, name if name is not None else "unknown")

        return named, True

    def _v4(self, line: int, token: str, failClosed: bool) -> Tuple[_Matcher, bool]:
        netText, maskText = token.split("/", 1)
        try:
            net = int.from_bytes(socket.inet_pton(socket.AF_INET, netText), "big")
            if maskText.isdigit():
                length = int(maskText)
                if length > 32:
                    raise ValueError(maskText)
                mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            else:
                mask = int.from_bytes(socket.inet_pton(socket.AF_INET, maskText), "big")
        except (OSError, ValueError):
            self.problem(
                line, Severity.WARNING, f"bad net/mask pattern {token!r}: never matches"
            )
            return (lambda peer, addr, name: False), False
        if net & ~mask & 0xFFFFFFFF:
            self.problem(
                line,
                Severity.WARNING,
                f"net/mask pattern mismatch {token!r}: never matches",
            )

        def masked(peer: Optional[Peer], addr: str, name: Optional[str]) -> bool:
            return peer is not None and peer.v4 is not None and peer.v4 & mask == net

        return masked, False

    def _v6(self, line: int, token: str, failClosed: bool) -> Tuple[_Matcher, bool]:
        match = re.fullmatch(r"\[([^\]]+)\](?:/(\d+))?", token)
        try:
            if match is None:
                raise ValueError(token)
            net = int.from_bytes(
                socket.inet_pton(socket.AF_INET6, match.group(1)), "big"
            )
            length = int(match.group(2)) if match.group(2) else 128
            if length > 128:
                raise ValueError(token)
        except (OSError, ValueError):
            self.problem(
                line, Severity.WARNING, f"bad IPv6 pattern {token!r}: never matches"
            )
            return (lambda peer, addr, name: False), False
        mask = ((1 << 128) - 1) ^ ((1 << (128 - length)) - 1)
        net &= mask

        def masked(peer: Optional[Peer], addr: str, name: Optional[str]) -> bool:
            return peer is not None and peer.v6 & mask == net

        return masked, False


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class HostsRule:
    """
    One C{daemon_list : client_list [: options]} line.

    @ivar location: the line where the rule starts.
    @ivar allow: the verdict when the rule matches.
    @ivar daemons: the daemon list matcher (called with the daemon name).
    @ivar clients: the client list matcher.
    @ivar usesName: the client list looks at the client's host name.
    """

    location: Location
    allow: bool
    daemons: _Matcher
    clients: _Matcher
    usesName: bool


def _logicalLines(text: str) -> List[Tuple[int, str]]:
    """
    Join backslash continuations; drop comments and blank lines.
    """
    result: List[Tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        logical = (pending + raw).strip()
        pending = ""
        if logical and not logical.startswith("#"):
            result.append((start, logical))
    if pending.strip() and not pending.strip().startswith("#"):
        result.append((start, pending.strip()))
    return result


def _splitFields(line: str) -> List[str]:
    """
    Split on colons, except inside C{[...]} and after a backslash.
    """
    fields: List[str] = []
    current: List[str] = []
    bracket = 0
    escaped = False
    for c in line:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "[":
            bracket += 1
            current.append(c)
        elif c == "]":
            bracket = max(0, bracket - 1)
            current.append(c)
        elif c == ":" and bracket == 0:
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
    fields.append("".join(current))
    return fields


def parseHostsFile(
    path: str, text: str, allowFile: bool
) -> Tuple[List[HostsRule], List[Problem]]:
    """
    Parse one file's C{text}; C{allowFile} says whether its rules grant
    (C{hosts.allow}) or deny (C{hosts.deny}) by default.
    """
    compiler = _Compiler(path, allowFile)
    rules: List[HostsRule] = []
    for number, line in _logicalLines(text):
        fields = _splitFields(line)
        if len(fields) < 2:
            compiler.problem(
                number, Severity.ERROR, "missing ':' separator; rule ignored"
            )
            continue
        daemonTokens = [t for t in _SEPARATORS.split(fields[0]) if t]
        clientTokens = [t for t in _SEPARATORS.split(fields[1]) if t]
        if not daemonTokens or not clientTokens:
            compiler.problem(
                number, Severity.ERROR, "empty daemon or client list; rule ignored"
            )
            continue
        verdict = allowFile
        for option in fields[2:]:
            option = option.strip()
            keyword = (
                option.split(None, 1)[0].split("=", 1)[0].lower() if option else ""
            )
            if keyword in ("allow", "deny"):
                verdict = keyword == "allow"
            elif keyword == "twist":
                verdict = False
                compiler.problem(
                    number,
                    Severity.WARNING,
                    "option 'twist' is not supported: treated as 'deny'",
                )
            elif keyword:
                compiler.problem(
                    number,
                    Severity.WARNING,
                    f"option {keyword!r} is not supported: ignored",
                )
        daemons, _ = compiler.compileList(
            daemonTokens, compiler.daemonPattern(number), verdict
        )
        clients, usesName = compiler.compileList(
            clientTokens, compiler.clientPattern(number), verdict
        )
        rules.append(
            HostsRule(Location(path, number), verdict, daemons, clients, usesName)
        )
    return rules, compiler.problems


class DaemonAccess:
    """
    The rules that apply to one daemon name, in decision order.

    @ivar needsName: some rule looks at the client's host name, so the
        caller should supply the reverse-lookup name.
    """

    __slots__ = ("_rules", "needsName")

    def __init__(self, rules: Sequence[HostsRule]) -> None:
        self._rules = tuple((rule.clients, rule.allow) for rule in rules)
        self.needsName = any(rule.usesName for rule in rules)

    def __bool__(self) -> bool:
        """
        Whether any rule applies (no rule: every client is granted).
        """
        return bool(self._rules)

    def allowed(self, peer: Optional[Peer], name: Optional[str] = None) -> bool:
        """
        tcpd's decision: first matching rule (hosts.allow, then hosts.deny)
        gives the verdict; no match grants.  C{name} is the reverse-lookup
        name, L{None} when unknown.
        """
        if not self._rules:
            return True
        addr = peer.key if peer is not None else "unknown"
        lowered = name.lower().rstrip(".") if name is not None else None
        for clients, verdict in self._rules:
            if clients(peer, addr, lowered):
                return verdict
        return True


class HostsAccess:
    """
    Parsed C{hosts.allow} and C{hosts.deny}.

    @ivar problems: every problem found while parsing, with file:line.
    """

    def __init__(
        self,
        allowRules: Sequence[HostsRule],
        denyRules: Sequence[HostsRule],
        problems: Sequence[Problem] = (),
    ) -> None:
        self._rules = tuple(allowRules) + tuple(denyRules)
        self.problems = tuple(problems)
        self._cache: Dict[str, DaemonAccess] = {}

    @classmethod
    def fromFiles(
        cls, allowPath: str = "/etc/hosts.allow", denyPath: str = "/etc/hosts.deny"
    ) -> HostsAccess:
        """
        Read and parse both files; a missing file has no rules.
        """
        texts, problems = readHostsFiles(allowPath, denyPath)
        return cls.fromTexts(allowPath, denyPath, texts, problems)

    @classmethod
    def fromTexts(
        cls,
        allowPath: str,
        denyPath: str,
        texts: Tuple[str, str],
        problems: Sequence[Problem] = (),
    ) -> HostsAccess:
        """
        Parse both files' C{texts} (as read from C{allowPath} and
        C{denyPath}), after the C{problems} found reading them.
        """
        allowRules, allowProblems = parseHostsFile(allowPath, texts[0], True)
        denyRules, denyProblems = parseHostsFile(denyPath, texts[1], False)
        return cls(allowRules, denyRules, [*problems, *allowProblems, *denyProblems])

    def forDaemon(self, daemon: str) -> DaemonAccess:
        """
        The rules whose daemon list matches C{daemon}, compiled once.
        """
        cached = self._cache.get(daemon)
        if cached is None:
            lowered = daemon.lower()
            cached = DaemonAccess(
                [rule for rule in self._rules if rule.daemons(None, lowered, None)]
            )
            self._cache[daemon] = cached
        return cached
