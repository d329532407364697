# -*- test-case-name: tests.test_policy_addresses -*-
"""
Address words of C{only_from}, C{no_access} (and the numeric side of
C{bind}/C{redirect}) to L{AddressEntry} values.

Forms, tried in xinetd's order: numeric IPv4 (trailing zero octets are
wildcards) or IPv6, a host name (resolved now, matched later by reverse
lookup), C{addr/len}, factorized C{a.b.{c,d}}, C{.domain} suffixes, and
network names from the networks file.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Dict, List, Mapping, Tuple

from xinetd_twisted.config.model import AddressEntry, AddressKind
from xinetd_twisted.config.sysfiles import isNumber

Resolver = Callable[[str], Tuple[str, ...]]


class AddressError(ValueError):
    """
    A word that is no address at all (xinetd: C{failed to parse W}).
    """


def makeResolver() -> Resolver:
    """
    A caching host-name resolver over C{socket.getaddrinfo}: one load asks
    the resolver at most once per name.
    """
    cache: Dict[str, Tuple[str, ...]] = {}

    def resolve(name: str) -> Tuple[str, ...]:
        if name not in cache:
            try:
                infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
            except (OSError, UnicodeError, ValueError):  # ValueError: a NUL
                cache[name] = ()
            else:
                seen: List[str] = []
                for info in infos:
                    address = str(info[4][0]).split("%", 1)[0]
                    if address not in seen:
                        seen.append(address)
                cache[name] = tuple(seen)
        return cache[name]

    return resolve


def _ipv4Octets(word: str) -> List[int] | None:
    parts = word.split(".")
    if len(parts) != 4 or not all(isNumber(p) and len(p) <= 3 for p in parts):
        return None
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        return None
    return octets


def _wildcardEntry(word: str, octets: List[int]) -> AddressEntry:
    # xinetd: trailing zero octets are wildcards, so 10.0.0.0 is 10/8.
    significant = 4
    while significant and octets[significant - 1] == 0:
        significant -= 1
    return AddressEntry(
        word=word,
        kind=AddressKind.NETWORK,
        family=socket.AF_INET,
        network=bytes(octets),
        prefixLength=8 * significant,
    )


def _numeric(word: str) -> AddressEntry | None:
    octets = _ipv4Octets(word)
    if octets is not None:
        return _wildcardEntry(word, octets)
    if ":" in word:
        try:
            address = ipaddress.IPv6Address(word)
        except ValueError:
            return None
        return AddressEntry(
            word=word,
            kind=AddressKind.NETWORK,
            family=socket.AF_INET6,
            network=address.packed,
            prefixLength=128,
        )
    return None


def _masked(word: str) -> AddressEntry:
    try:
        network = ipaddress.ip_network(word, strict=False)
    except ValueError:
        raise AddressError(word) from None
    return AddressEntry(
        word=word,
        kind=AddressKind.NETWORK,
        family=socket.AF_INET if network.version == 4 else socket.AF_INET6,
        network=network.network_address.packed,
        prefixLength=network.prefixlen,
    )


def _factorized(word: str) -> List[AddressEntry]:
    prefix, _, rest = word.partition("{")
    if not rest.endswith("}") or not prefix.endswith("."):
        raise AddressError(word)
    head = prefix[:-1].split(".")
    if not all(isNumber(p) and int(p) < 256 for p in head) or len(head) > 3:
        raise AddressError(word)
    entries = []
    for item in rest[:-1].split(","):
        item = item.strip()
        if not isNumber(item) or int(item) > 255:
            raise AddressError(word)
        octets = [int(p) for p in head] + [int(item)]
        entries.append(
            AddressEntry(
                word=word,
                kind=AddressKind.NETWORK,
                family=socket.AF_INET,
                network=bytes(octets + [0] * (4 - len(octets))),
                prefixLength=8 * len(octets),
            )
        )
    return entries


def parseAddress(
    word: str, resolve: Resolver, networks: Mapping[str, str]
) -> List[AddressEntry]:
    """
    Parse one address word.

    @param word: the word as written.
    @param resolve: host name -> numeric addresses (empty when unknown).
    @param networks: network name -> dotted IPv4 network.
    @return: the entries it stands for (several for a factorized word).
    @raise AddressError: when no form fits.
    """
    if "{" in word:
        return _factorized(word)
    if "," in word:
        # Unlike an unknown word (ignored), xinetd disables the service.
        raise ValueError(f"comma outside {{}} in address {word}")
    entry = _numeric(word)
    if entry is not None:
        return [entry]
    if "/" in word:
        return [_masked(word)]
    if word.startswith("."):
        if len(word) < 2:
            raise AddressError(word)
        return [AddressEntry(word=word, kind=AddressKind.DOMAIN, name=word.lower())]
    addresses = resolve(word)
    if addresses:
        return [
            AddressEntry(
                word=word, kind=AddressKind.HOST, name=word.lower(), addresses=addresses
            )
        ]
    network = networks.get(word.lower())
    if network is not None:
        octets = _ipv4Octets(network)
        if octets is not None:
            return [_wildcardEntry(word, octets)]
    raise AddressError(word)
