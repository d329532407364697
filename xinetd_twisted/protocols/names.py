# -*- test-case-name: tests.test_protocols_names -*-
"""
Forward-confirmed reverse lookups of client addresses that never block
the reactor.

xinetd matches host names in C{only_from}/C{no_access} and hosts.allow by a
reverse lookup of the client, done synchronously (the whole daemon waits on
DNS), and believes the PTR record: whoever runs the reverse zone of his own
addresses can name them C{www.trusted.example}.  We look in /etc/hosts
first, then ask DNS for the PTR record through L{twisted.names} with a
short timeout, and then, as libwrap does, look the name up forward (in
/etc/hosts, else its A or AAAA records): the name is the client's only if
the client's address is among the answers.  On a mismatch, a timeout or a
failure the name is unknown, so name entries do not match and hosts.allow's
C{PARANOID} does.  Results are cached for a minute, so a busy client costs
one lookup.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Optional,
    Set,
    Tuple,
)

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 4096
"""
Bounded cache: past this many entries it is emptied (cheap, and a flood of
distinct addresses cannot grow memory).
"""


def _plain(host: str) -> Optional[str]:
    """
    The address in canonical form, IPv4-mapped IPv6 as IPv4; L{None} when
    it is not an address.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def _hostsEntries(text: str) -> Iterator[Tuple[str, List[str]]]:
    """
    The (address, lower-case names) of each /etc/hosts line.
    """
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        address = _plain(words[0]) if len(words) >= 2 else None
        if address is not None:
            yield address, [name.lower().rstrip(".") for name in words[1:]]


def parseHosts(text: str) -> Dict[str, str]:
    """
    /etc/hosts: address -> its first (canonical) name, lower-case, as
    getnameinfo() would answer from the file.
    """
    names: Dict[str, str] = {}
    for address, aliases in _hostsEntries(text):
        names.setdefault(address, aliases[0])
    return names


def parseHostsForward(text: str) -> Dict[str, FrozenSet[str]]:
    """
    /etc/hosts the other way: every name (canonical or alias), lower-case,
    -> the addresses listed for it, as gethostbyname() finds them there.
    """
    found: Dict[str, Set[str]] = {}
    for address, aliases in _hostsEntries(text):
        for name in aliases:
            found.setdefault(name, set()).add(address)
    return {name: frozenset(addresses) for name, addresses in found.items()}


def _addresses(result: Any) -> Iterable[str]:
    """
    The addresses of the A and AAAA records in a L{twisted.names} answer.
    """
    # twisted.names costs the daemon ~0.5 MB: only a lookup needs it.
    from twisted.names import dns

    answers = result[0] if isinstance(result, tuple) else ()
    for record in answers:
        payload = getattr(record, "payload", None)
        if isinstance(payload, dns.Record_A):
            yield payload.dottedQuad()
        elif isinstance(payload, dns.Record_AAAA):
            yield socket.inet_ntop(socket.AF_INET6, payload.address)


class ReverseResolver:
    """
    Client address -> host name, without blocking.

    @ivar _hosts: the /etc/hosts answers (address -> name).
    @ivar _forward: /etc/hosts the other way (name -> addresses), where a
        name from DNS is confirmed first.
    @ivar _dns: a L{twisted.names} resolver (anything with
        C{lookupPointer}, C{lookupAddress} and C{lookupIPV6Address}, each
        C{(name, timeout)}), a callable making one on first use, or
        L{None} for no DNS.
    @ivar _cache: address -> (name or None, expiry).
    @ivar mismatches: names DNS gave that did not map back (counted).
    """

    log = Logger()

    def __init__(
        self,
        seconds: Callable[[], float],
        hosts: Optional[Dict[str, str]] = None,
        dns: Any = None,
        timeout: Tuple[int, ...] = (1, 2),
        forward: Optional[Dict[str, FrozenSet[str]]] = None,
    ) -> None:
        self._seconds = seconds
        self._hosts = hosts or {}
        self._forward = forward or {}
        self.mismatches = 0
        self._dns = dns
        self._timeout = timeout
        self._cache: Dict[str, Tuple[Optional[str], float]] = {}

    @classmethod
    def forReactor(
        cls,
        reactor: Any,
        hostsPath: str = "/etc/hosts",
        resolvConf: str = "/etc/resolv.conf",
    ) -> ReverseResolver:
        """
        A resolver on the system's /etc/hosts and resolv.conf.
        """
        try:
            with open(hostsPath, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""

        def makeDNS() -> Any:
            try:
                from twisted.names.client import Resolver

                return Resolver(resolv=resolvConf, reactor=reactor)
            except Exception:  # no resolv.conf, no servers: names stay unknown
                return None

        return cls(
            reactor.seconds, parseHosts(text), makeDNS, forward=parseHostsForward(text)
        )

    def cached(self, host: str) -> Tuple[bool, Optional[str]]:
        """
        What is known without asking: C{(True, name-or-None)} from
        /etc/hosts or the cache, else C{(False, None)}.
        """
        address = _plain(host)
        if address is None:
            return True, None
        if address in self._hosts:
            return True, self._hosts[address]
        entry = self._cache.get(address)
        if entry is not None and entry[1] > self._seconds():
            return True, entry[0]
        return False, None

    def lookup(self, host: str) -> Deferred:
        """
        The name of C{host}, or L{None} when it has none or the lookup
        failed or timed out.  Never fails.
        """
        known, name = self.cached(host)
        if known:
            return succeed(name)
        if callable(self._dns) and not hasattr(self._dns, "lookupPointer"):
            # Made on first use: twisted.names re-reads resolv.conf on a
            # timer, which a daemon without name rules does not need.
            self._dns = self._dns()
        if self._dns is None:
            return succeed(None)
        address = _plain(host)
        assert address is not None
        pointer = ipaddress.ip_address(address).reverse_pointer
        d = self._dns.lookupPointer(pointer, timeout=self._timeout)

        def found(result: Any) -> Optional[str]:
            answers = result[0] if isinstance(result, tuple) else ()
            for record in answers:
                payload = getattr(record, "payload", None)
                target = getattr(payload, "name", None)
                if target is not None:
                    return str(target).lower().rstrip(".")
            return None

        def remember(name: Optional[str]) -> Optional[str]:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[address] = (name, self._seconds() + CACHE_SECONDS)
            return name

        d.addCallback(found)
        d.addCallback(self._confirm, address)
        d.addErrback(lambda _failure: None)
        d.addCallback(remember)
        return d

    def _confirm(self, name: Optional[str], address: str) -> Any:
        """
        C{name} if it maps back to C{address} (/etc/hosts first, then DNS),
        else L{None}; a L{Deferred} when DNS must be asked.
        """
        if name is None:
            return None
        if name in self._forward:
            return self._matching(name, address, self._forward[name])
        if ipaddress.ip_address(address).version == 4:
            d = self._dns.lookupAddress(name, timeout=self._timeout)
        else:
            d = self._dns.lookupIPV6Address(name, timeout=self._timeout)
        d.addCallback(
            lambda result: self._matching(
                name, address, frozenset(_plain(a) for a in _addresses(result))
            )
        )
        return d

    def _matching(
        self, name: str, address: str, addresses: FrozenSet[Optional[str]]
    ) -> Optional[str]:
        if address in addresses:
            return name
        self.mismatches += 1
        self.log.warn(
            "host name/address mismatch: {address} is named {name}, "
            "which does not map back to it: name unknown",
            address=address,
            name=name,
        )
        return None

    def stop(self) -> None:
        """
        Cancel the DNS resolver's timer (it re-reads resolv.conf every
        minute).
        """
        call = getattr(self._dns, "_parseCall", None)
        if call is not None and call.active():
            call.cancel()
