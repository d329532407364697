# -*- test-case-name: tests.test_protocols_names -*-
"""
Reverse lookups of client addresses that never block the reactor.

xinetd matches host names in C{only_from}/C{no_access} and hosts.allow by a
reverse lookup of the client, done synchronously (the whole daemon waits on
DNS).  We look in /etc/hosts first, then ask DNS for the PTR record through
L{twisted.names} with a short timeout; on timeout or failure the name is
unknown and name entries do not match, as in xinetd.  Results are cached for
a minute, so a busy client costs one lookup.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, Optional, Tuple

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


def parseHosts(text: str) -> Dict[str, str]:
    """
    /etc/hosts: address -> its first (canonical) name, lower-case, as
    getnameinfo() would answer from the file.
    """
    names: Dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        address = _plain(words[0])
        if address is not None and address not in names:
            names[address] = words[1].lower().rstrip(".")
    return names


class ReverseResolver:
    """
    Client address -> host name, without blocking.

    @ivar _hosts: the /etc/hosts answers.
    @ivar _dns: a L{twisted.names} resolver (anything with
        C{lookupPointer(name, timeout)}), a callable making one on first
        use, or L{None} for no DNS.
    @ivar _cache: address -> (name or None, expiry).
    """

    log = Logger()

    def __init__(
        self,
        seconds: Callable[[], float],
        hosts: Optional[Dict[str, str]] = None,
        dns: Any = None,
        timeout: Tuple[int, ...] = (1, 2),
    ) -> None:
        self._seconds = seconds
        self._hosts = hosts or {}
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
                hosts = parseHosts(f.read())
        except OSError:
            hosts = {}

        def makeDNS() -> Any:
            try:
                from twisted.names.client import Resolver

                return Resolver(resolv=resolvConf, reactor=reactor)
            except Exception:  # no resolv.conf, no servers: names stay unknown
                return None

        return cls(reactor.seconds, hosts, makeDNS)

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
        d.addErrback(lambda _failure: None)
        d.addCallback(remember)
        return d

    def stop(self) -> None:
        """
        Cancel the DNS resolver's timer (it re-reads resolv.conf every
        minute).
        """
        call = getattr(self._dns, "_parseCall", None)
        if call is not None and call.active():
            call.cancel()
