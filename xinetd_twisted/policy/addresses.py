# -*- test-case-name: tests.test_policy_addresses -*-
"""
C{only_from} / C{no_access} matching (reference 4.5), compiled once per
service so the per-connection cost is a few integer operations.

A client address is parsed once into a L{Peer}.  IPv4 clients and
IPv4-mapped IPv6 clients (C{::ffff:a.b.c.d}, what a dual-stack socket
reports) are the same peer: they match IPv4 entries through their IPv4 value
and IPv6 entries through their mapped IPv6 value.

Host-name entries match in two ways: by the addresses the name resolved to
when the configuration was loaded (our extension: it needs no DNS at
connection time), and, as xinetd does, by the client's reverse-lookup name
when the caller supplies one (forward-confirmed by
L{xinetd_twisted.protocols.names}: a PTR record alone names nobody).  Domain entries (C{.example.com}) match only a
reverse-lookup name.  L{AddressList.needsName} tells the caller whether a
reverse lookup could change the decision at all.
"""

from __future__ import annotations

import socket
from typing import Dict, FrozenSet, Iterable, Optional, Set, Tuple

import attr

from xinetd_twisted.config.model import AddressEntry, AddressKind
from xinetd_twisted.records import plainRepr

_MAPPED_PREFIX = 0xFFFF << 32
_V4_ALL = (1 << 32) - 1
_V6_ALL = (1 << 128) - 1


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class Peer:
    """
    A client address, parsed once per connection.

    @ivar host: the address as the socket reported it.
    @ivar key: the normalised text (IPv4-mapped addresses as plain IPv4),
        used to key per-source counts and the SENSOR list.
    @ivar v4: the IPv4 value as an int, or L{None} for a true IPv6 client.
    @ivar v6: the IPv6 value as an int (the mapped form for IPv4 clients).
    """

    host: str
    key: str
    v4: Optional[int]
    v6: int

    @classmethod
    def fromHost(cls, host: str) -> Optional[Peer]:
        """
        Parse a numeric address from C{getpeername}; L{None} when C{host} is
        not a numeric IP address (UNIX socket, C{<no address>}).
        """
        if ":" not in host:
            try:
                v4 = int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
            except (OSError, ValueError):
                return None
            return cls(host, host, v4, _MAPPED_PREFIX | v4)
        # Link-local addresses may carry a zone ("fe80::1%eth0").
        bare = host.split("%", 1)[0]
        try:
            v6 = int.from_bytes(socket.inet_pton(socket.AF_INET6, bare), "big")
        except (OSError, ValueError):
            return None
        if v6 >> 32 == 0xFFFF:
            v4 = v6 & _V4_ALL
            return cls(
                host, socket.inet_ntop(socket.AF_INET, v4.to_bytes(4, "big")), v4, v6
            )
        return cls(host, bare, None, v6)


def normaliseHost(host: str) -> str:
    """
    The L{Peer.key} of C{host} without a full parse: strip the IPv4-mapped
    prefix.  Cheap enough for every C{started}/C{ended} call.
    """
    if host[:7].lower() == "::ffff:" and "." in host:
        return host[7:]
    return host


class _NetworkTable:
    """
    Networks of one address family, grouped by prefix length so a lookup is
    one mask-and-set-membership per distinct prefix length.
    """

    __slots__ = ("_byMask",)

    def __init__(self, bits: int, networks: Iterable[Tuple[int, int]]) -> None:
        full = (1 << bits) - 1
        byMask: Dict[int, Set[int]] = {}
        for value, prefixLength in networks:
            prefixLength = max(0, min(bits, prefixLength))
            mask = full ^ ((1 << (bits - prefixLength)) - 1)
            byMask.setdefault(mask, set()).add(value & mask)
        self._byMask: Tuple[Tuple[int, FrozenSet[int]], ...] = tuple(
            (mask, frozenset(values)) for mask, values in byMask.items()
        )

    def __bool__(self) -> bool:
        return bool(self._byMask)

    def match(self, value: int) -> bool:
        for mask, values in self._byMask:
            if value & mask in values:
                return True
        return False


def _numericValue(text: str) -> Optional[Tuple[int, int]]:
    """
    C{(family, int)} for a numeric address string, else L{None}.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return family, int.from_bytes(socket.inet_pton(family, text), "big")
        except (OSError, ValueError):
            continue
    return None


class CompiledList:
    """
    One C{only_from} or C{no_access} list, compiled.

    @ivar hasNames: some entry can only be matched by a reverse-lookup name.
    """

    __slots__ = ("_v4", "_v6", "_hosts", "_domains", "hasNames")

    def __init__(self, entries: Iterable[AddressEntry]) -> None:
        v4: list[Tuple[int, int]] = []
        v6: list[Tuple[int, int]] = []
        hosts: Set[str] = set()
        domains: list[str] = []
        for entry in entries:
            if entry.kind is AddressKind.NETWORK:
                value = int.from_bytes(entry.network, "big")
                if entry.family == socket.AF_INET:
                    v4.append((value, entry.prefixLength))
                else:
                    v6.append((value, entry.prefixLength))
            elif entry.kind is AddressKind.HOST:
                hosts.add(entry.name.lower().rstrip("."))
                for address in entry.addresses:
                    parsed = _numericValue(address.split("%", 1)[0])
                    if parsed is None:
                        continue
                    if parsed[0] == socket.AF_INET:
                        v4.append((parsed[1], 32))
                    else:
                        v6.append((parsed[1], 128))
            else:
                suffix = entry.name.lower().rstrip(".")
                if not suffix.startswith("."):
                    suffix = "." + suffix
                domains.append(suffix)
        self._v4 = _NetworkTable(32, v4)
        self._v6 = _NetworkTable(128, v6)
        self._hosts = frozenset(hosts)
        self._domains = tuple(domains)
        self.hasNames = bool(hosts or domains)

    def matchNumeric(self, peer: Peer) -> bool:
        """
        Whether a numeric entry (or a host entry's load-time address) matches.
        """
        if peer.v4 is not None and self._v4 and self._v4.match(peer.v4):
            return True
        return bool(self._v6) and self._v6.match(peer.v6)

    def matchName(self, name: str) -> bool:
        """
        Whether a host or domain entry matches the reverse-lookup C{name}.
        """
        name = name.lower().rstrip(".")
        if name in self._hosts:
            return True
        for suffix in self._domains:
            if name.endswith(suffix):
                return True
        return False

    def match(self, peer: Peer, name: Optional[str]) -> bool:
        """
        Whether any entry matches C{peer} (with its name, if known).
        """
        if self.matchNumeric(peer):
            return True
        return name is not None and self.hasNames and self.matchName(name)


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class AddressDecision:
    """
    The outcome of an address check.

    @ivar allowed: the connection may proceed.
    @ivar bothMatched: denied because the address is in both lists (xinetd
        logs C{only_from list and no_access list match equally}).
    """

    allowed: bool
    bothMatched: bool = False


ALLOWED = AddressDecision(True)
DENIED = AddressDecision(False)
DENIED_BOTH = AddressDecision(False, True)


class AddressList:
    """
    A service's C{only_from} and C{no_access}, compiled; xinetd's decision.

    C{onlyFrom} L{None} means "not set" (everyone); C{()} means "set and
    empty" (nobody).
    """

    __slots__ = ("_onlyFrom", "_noAccess", "isOpen")

    def __init__(
        self,
        onlyFrom: Optional[Tuple[AddressEntry, ...]],
        noAccess: Optional[Tuple[AddressEntry, ...]],
    ) -> None:
        self._onlyFrom = None if onlyFrom is None else CompiledList(onlyFrom)
        self._noAccess = None if noAccess is None else CompiledList(noAccess)
        self.isOpen = onlyFrom is None and not noAccess

    def needsName(self, peer: Peer) -> bool:
        """
        Whether the reverse-lookup name of C{peer} could change L{decide}'s
        answer, so the caller does DNS only when it matters.
        """
        onlyFrom, noAccess = self._onlyFrom, self._noAccess
        if noAccess is not None and noAccess.matchNumeric(peer):
            return False  # denied whatever the name
        ofMatched = onlyFrom is not None and onlyFrom.matchNumeric(peer)
        if noAccess is not None and noAccess.hasNames:
            # A name could deny, unless nothing the name does can allow.
            return onlyFrom is None or ofMatched or onlyFrom.hasNames
        return onlyFrom is not None and not ofMatched and onlyFrom.hasNames

    def decide(self, peer: Peer, name: Optional[str] = None) -> AddressDecision:
        """
        xinetd's rule: in both lists -> deny (reported), in C{no_access} ->
        deny, C{only_from} set and not matched -> deny, else allow.
        C{name} is the reverse-lookup name, L{None} when unknown.
        """
        if self.isOpen:
            return ALLOWED
        naMatched = self._noAccess is not None and self._noAccess.match(peer, name)
        ofMatched = self._onlyFrom is not None and self._onlyFrom.match(peer, name)
        if naMatched:
            return DENIED_BOTH if ofMatched else DENIED
        if self._onlyFrom is not None and not ofMatched:
            return DENIED
        return ALLOWED
