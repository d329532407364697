"""
Tests for L{xinetd_twisted.policy.addresses}.
"""

from __future__ import annotations

import socket

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import AddressEntry, AddressKind
from xinetd_twisted.policy.addresses import AddressList, Peer, normaliseHost
from xinetd_twisted.protocols.names import ReverseResolver

from .test_protocols_names import FakeDNS


def net(text: str, prefixLength: int) -> AddressEntry:
    """
    A NETWORK entry for C{text/prefixLength}.
    """
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return AddressEntry(
        word=f"{text}/{prefixLength}",
        kind=AddressKind.NETWORK,
        family=family,
        network=socket.inet_pton(family, text),
        prefixLength=prefixLength,
    )


def host(name: str, *addresses: str) -> AddressEntry:
    """
    A HOST entry resolved at load time to C{addresses}.
    """
    return AddressEntry(
        word=name, kind=AddressKind.HOST, name=name, addresses=addresses
    )


def domain(suffix: str) -> AddressEntry:
    """
    A DOMAIN entry.
    """
    return AddressEntry(word=suffix, kind=AddressKind.DOMAIN, name=suffix)


def peer(text: str) -> Peer:
    p = Peer.fromHost(text)
    assert p is not None
    return p


class PeerTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        """An IPv4 address keeps its text as key and gets a mapped IPv6 value."""
        p = peer("10.1.2.3")
        self.assertEqual((p.key, p.v4, p.v6), ("10.1.2.3", 0x0A010203, 0xFFFF0A010203))

    def test_mapped(self) -> None:
        """An IPv4-mapped IPv6 address is keyed and valued as the IPv4 address."""
        p = peer("::ffff:10.1.2.3")
        self.assertEqual(
            (p.key, p.v4, p.host), ("10.1.2.3", 0x0A010203, "::ffff:10.1.2.3")
        )

    def test_ipv6(self) -> None:
        """A true IPv6 address has no IPv4 value."""
        p = peer("2001:db8::1")
        self.assertIsNone(p.v4)
        self.assertEqual(p.key, "2001:db8::1")

    def test_zone(self) -> None:
        """A link-local zone suffix is ignored."""
        self.assertEqual(peer("fe80::1%eth0").key, "fe80::1")

    def test_notAddress(self) -> None:
        """Text that is not a numeric address gives None."""
        self.assertIsNone(Peer.fromHost("<no address>"))
        self.assertIsNone(Peer.fromHost("example.com"))
        self.assertIsNone(Peer.fromHost("1::2::3"))

    def test_normaliseHost(self) -> None:
        """normaliseHost strips only the IPv4-mapped prefix."""
        self.assertEqual(normaliseHost("::ffff:1.2.3.4"), "1.2.3.4")
        self.assertEqual(normaliseHost("::FFFF:1.2.3.4"), "1.2.3.4")
        self.assertEqual(normaliseHost("::1"), "::1")
        self.assertEqual(normaliseHost("1.2.3.4"), "1.2.3.4")


class DecideTests(SynchronousTestCase):
    def test_noLists(self) -> None:
        """Neither list set allows everyone."""
        self.assertTrue(AddressList(None, None).decide(peer("1.2.3.4")).allowed)

    def test_onlyFromEmpty(self) -> None:
        """only_from set but empty denies everyone."""
        self.assertFalse(AddressList((), None).decide(peer("1.2.3.4")).allowed)

    def test_noAccessEmpty(self) -> None:
        """An empty no_access denies nobody."""
        self.assertTrue(AddressList(None, ()).decide(peer("1.2.3.4")).allowed)

    def test_onlyFromNetwork(self) -> None:
        """only_from allows addresses inside its networks and denies the rest."""
        lst = AddressList((net("10.0.0.0", 8), net("192.168.1.0", 24)), None)
        self.assertTrue(lst.decide(peer("10.200.0.1")).allowed)
        self.assertTrue(lst.decide(peer("192.168.1.77")).allowed)
        self.assertFalse(lst.decide(peer("192.168.2.1")).allowed)
        self.assertFalse(lst.decide(peer("11.0.0.1")).allowed)

    def test_zeroPrefixMatchesAllIPv4(self) -> None:
        """0.0.0.0/0 matches every IPv4 client but no true IPv6 client."""
        lst = AddressList((net("0.0.0.0", 0),), None)
        self.assertTrue(lst.decide(peer("203.0.113.9")).allowed)
        self.assertFalse(lst.decide(peer("2001:db8::1")).allowed)

    def test_mappedMatchesIPv4Entry(self) -> None:
        """An IPv4-mapped client matches IPv4 entries."""
        lst = AddressList((net("127.0.0.1", 32),), None)
        self.assertTrue(lst.decide(peer("::ffff:127.0.0.1")).allowed)
        self.assertFalse(lst.decide(peer("::ffff:127.0.0.2")).allowed)

    def test_ipv4MatchesMappedEntry(self) -> None:
        """An IPv4 client matches an IPv6 entry written in mapped form."""
        lst = AddressList((net("::ffff:10.0.0.0", 104),), None)
        self.assertTrue(lst.decide(peer("10.9.9.9")).allowed)
        self.assertFalse(lst.decide(peer("11.9.9.9")).allowed)

    def test_ipv6Network(self) -> None:
        """IPv6 entries match by prefix; :: /128 matches only ::."""
        lst = AddressList((net("2001:db8::", 32), net("::", 128)), None)
        self.assertTrue(lst.decide(peer("2001:db8:1::5")).allowed)
        self.assertTrue(lst.decide(peer("::")).allowed)
        self.assertFalse(lst.decide(peer("2001:db9::1")).allowed)
        self.assertFalse(lst.decide(peer("::1")).allowed)

    def test_noAccess(self) -> None:
        """An address in no_access is denied, others allowed."""
        lst = AddressList(None, (net("10.0.0.0", 8),))
        self.assertFalse(lst.decide(peer("10.0.0.1")).allowed)
        self.assertTrue(lst.decide(peer("11.0.0.1")).allowed)

    def test_bothMatched(self) -> None:
        """An address in both lists is denied and reported as such."""
        lst = AddressList((net("10.0.0.0", 8),), (net("10.1.0.0", 16),))
        decision = lst.decide(peer("10.1.2.3"))
        self.assertFalse(decision.allowed)
        self.assertTrue(decision.bothMatched)
        self.assertTrue(lst.decide(peer("10.2.0.1")).allowed)
        self.assertFalse(lst.decide(peer("11.0.0.1")).bothMatched)

    def test_hostByLoadTimeAddress(self) -> None:
        """A host entry matches the addresses it resolved to at load time."""
        lst = AddressList((host("gw.example.com", "192.0.2.1", "2001:db8::1"),), None)
        self.assertTrue(lst.decide(peer("::ffff:192.0.2.1")).allowed)
        self.assertTrue(lst.decide(peer("2001:db8::1")).allowed)
        self.assertFalse(lst.decide(peer("192.0.2.2")).allowed)

    def test_hostByName(self) -> None:
        """A host entry matches a reverse-lookup name, case-insensitively."""
        lst = AddressList((host("gw.example.com"),), None)
        self.assertTrue(lst.decide(peer("192.0.2.9"), "GW.Example.com.").allowed)
        self.assertFalse(lst.decide(peer("192.0.2.9"), "other.example.com").allowed)
        self.assertFalse(lst.decide(peer("192.0.2.9"), None).allowed)

    def test_domain(self) -> None:
        """A domain entry matches names ending in the suffix, not the bare domain."""
        lst = AddressList(None, (domain(".example.com"),))
        self.assertFalse(lst.decide(peer("192.0.2.9"), "a.b.example.com").allowed)
        self.assertTrue(lst.decide(peer("192.0.2.9"), "example.com").allowed)
        self.assertTrue(lst.decide(peer("192.0.2.9"), "badexample.com").allowed)
        self.assertTrue(lst.decide(peer("192.0.2.9")).allowed)


class NeedsNameTests(SynchronousTestCase):
    def test_numericOnly(self) -> None:
        """Lists with only numeric entries never need a name."""
        lst = AddressList((net("10.0.0.0", 8),), (net("10.1.0.0", 16),))
        self.assertFalse(lst.needsName(peer("10.0.0.1")))
        self.assertFalse(lst.needsName(peer("11.0.0.1")))

    def test_onlyFromNames(self) -> None:
        """A name matters for only_from names unless a numeric entry already allowed."""
        lst = AddressList((net("10.0.0.0", 8), domain(".example.com")), None)
        self.assertFalse(lst.needsName(peer("10.0.0.1")))
        self.assertTrue(lst.needsName(peer("11.0.0.1")))

    def test_noAccessNames(self) -> None:
        """A name matters for no_access names unless the client is denied anyway."""
        lst = AddressList((net("10.0.0.0", 8),), (domain(".bad.org"),))
        self.assertTrue(lst.needsName(peer("10.0.0.1")))
        self.assertFalse(lst.needsName(peer("11.0.0.1")))
        lst = AddressList(None, (net("10.0.0.0", 8), domain(".bad.org")))
        self.assertFalse(lst.needsName(peer("10.0.0.1")))
        self.assertTrue(lst.needsName(peer("11.0.0.1")))


class ForwardConfirmedNameTests(SynchronousTestCase):
    """
    only_from sees names from the forward-confirming resolver.
    """

    def test_fakePointerDoesNotMatchDomain(self) -> None:
        """A PTR record alone does not match an only_from .domain entry."""
        fake = FakeDNS(
            {"4.3.2.10.in-addr.arpa": "www.trusted.example"},
            forward={"www.trusted.example": ["192.0.2.1"]},
        )
        resolver = ReverseResolver(Clock().seconds, {}, fake)
        name = self.successResultOf(resolver.lookup("10.2.3.4"))
        lists = AddressList((domain(".trusted.example"),), None)
        self.assertFalse(lists.decide(peer("10.2.3.4"), name).allowed)
        self.assertTrue(lists.decide(peer("10.2.3.4"), "www.trusted.example").allowed)
