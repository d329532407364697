"""
Tests for L{xinetd_twisted.protocols.names}.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.protocols.names import (
    ReverseResolver,
    parseHosts,
    parseHostsForward,
)


class FakeDNS:
    """
    Answers PTR, A and AAAA queries from tables, recording what was asked;
    an unknown name never answers (the Deferred is returned unfired) or
    fails.  With C{forward} unset, every PTR answer maps back.
    """

    def __init__(
        self,
        table: dict,
        failUnknown: bool = True,
        forward: Optional[Dict[str, List[str]]] = None,
    ) -> None:
        self.table = table
        self.failUnknown = failUnknown
        self.asked: List[Any] = []
        self.pending: List[Deferred] = []
        if forward is None:
            forward = {}
            for pointer, name in table.items():
                address = _fromPointer(pointer)
                forward.setdefault(name.lower().rstrip("."), []).append(address)
        self.forward = forward

    def _answer(self, name: str, records: List[Any]) -> Deferred:
        if records:
            return succeed((records, [], []))
        if self.failUnknown:
            return fail(dns.DomainError(name))
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def lookupPointer(self, name: str, timeout: Any = None) -> Deferred:
        self.asked.append((name, timeout))
        records = []
        if name in self.table:
            records.append(
                dns.RRHeader(
                    name=name, type=dns.PTR, payload=dns.Record_PTR(self.table[name])
                )
            )
        return self._answer(name, records)

    def _lookup(self, name: str, timeout: Any, version: int) -> Deferred:
        self.asked.append((name, timeout))
        records = [
            dns.RRHeader(
                name=name,
                type=dns.A if version == 4 else dns.AAAA,
                payload=dns.Record_A(a) if version == 4 else dns.Record_AAAA(a),
            )
            for a in self.forward.get(name, [])
            if ipaddress.ip_address(a).version == version
        ]
        return self._answer(name, records)

    def lookupAddress(self, name: str, timeout: Any = None) -> Deferred:
        return self._lookup(name, timeout, 4)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> Deferred:
        return self._lookup(name, timeout, 6)


def _fromPointer(pointer: str) -> str:
    labels = pointer.split(".")
    if pointer.endswith(".in-addr.arpa"):
        return ".".join(reversed(labels[:4]))
    nibbles = "".join(reversed(labels[:32]))
    return str(ipaddress.ip_address(int(nibbles, 16)))


class ParseHostsTests(SynchronousTestCase):
    """
    Tests for L{parseHosts}.
    """

    def test_firstNameWins(self) -> None:
        """
        Each address maps to the first name of its first line, lower-case;
        comments and junk are ignored.
        """
        table = parseHosts(
            "# comment\n127.0.0.1\tLocalhost loopback\n127.0.0.1 other\n"
            "::1 ip6-localhost # trailing\nnot-an-address name\n\n"
        )
        self.assertEqual(table, {"127.0.0.1": "localhost", "::1": "ip6-localhost"})


class ReverseResolverTests(SynchronousTestCase):
    """
    Tests for L{ReverseResolver}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.dns = FakeDNS({"4.3.2.10.in-addr.arpa": "Host.Example.COM."})
        self.resolver = ReverseResolver(
            self.clock.seconds, {"127.0.0.1": "localhost"}, self.dns
        )

    def test_hostsFileFirst(self) -> None:
        """
        An address in /etc/hosts is answered from it, without DNS, also for
        its IPv4-mapped form.
        """
        self.assertEqual(
            self.successResultOf(self.resolver.lookup("127.0.0.1")), "localhost"
        )
        self.assertEqual(
            self.successResultOf(self.resolver.lookup("::ffff:127.0.0.1")), "localhost"
        )
        self.assertEqual(self.dns.asked, [])

    def test_dnsPointer(self) -> None:
        """
        Other addresses are looked up as PTR records with a short timeout;
        the name is lower-case without the final dot.
        """
        d = self.resolver.lookup("10.2.3.4")
        self.assertEqual(self.successResultOf(d), "host.example.com")
        self.assertEqual(self.dns.asked[0], ("4.3.2.10.in-addr.arpa", (1, 2)))

    def test_failureIsUnknown(self) -> None:
        """
        A failed lookup gives L{None} (name rules do not match), never an
        error.
        """
        self.assertIsNone(self.successResultOf(self.resolver.lookup("10.9.9.9")))

    def test_cachedForAMinute(self) -> None:
        """
        Answers, including "no name", are cached for 60 seconds.
        """
        self.resolver.lookup("10.2.3.4")
        self.resolver.lookup("10.9.9.9")
        self.assertEqual(self.resolver.cached("10.2.3.4"), (True, "host.example.com"))
        self.assertEqual(self.resolver.cached("10.9.9.9"), (True, None))
        self.clock.advance(61)
        self.assertEqual(self.resolver.cached("10.2.3.4"), (False, None))

    def test_notAnAddress(self) -> None:
        """
        Something that is not an address (stream wait has none) has no
        name, and nothing is asked.
        """
        self.assertEqual(self.resolver.cached("<no address>"), (True, None))
        self.assertIsNone(self.successResultOf(self.resolver.lookup("<no address>")))
        self.assertEqual(self.dns.asked, [])

    def test_noDNS(self) -> None:
        """
        Without a DNS resolver, names come from /etc/hosts only.
        """
        resolver = ReverseResolver(self.clock.seconds, {}, None)
        self.assertIsNone(self.successResultOf(resolver.lookup("10.2.3.4")))

    def test_ipv6Pointer(self) -> None:
        """
        IPv6 addresses are asked under ip6.arpa.
        """
        self.resolver.lookup("2001:db8::1")
        self.assertTrue(self.dns.asked[-1][0].endswith(".8.b.d.0.1.0.0.2.ip6.arpa"))


class ParseHostsForwardTests(SynchronousTestCase):
    """
    Tests for L{parseHostsForward}.
    """

    def test_namesAndAliases(self) -> None:
        """Every name and alias maps to all its addresses, lower-case."""
        table = parseHostsForward(
            "10.0.0.1 Gate gate.lan. # c\n10.0.0.2 gate\n::ffff:10.0.0.3 x\nbad y\n"
        )
        self.assertEqual(
            table,
            {
                "gate": frozenset({"10.0.0.1", "10.0.0.2"}),
                "gate.lan": frozenset({"10.0.0.1"}),
                "x": frozenset({"10.0.0.3"}),
            },
        )


class ForwardConfirmationTests(SynchronousTestCase):
    """
    A PTR name counts only when it maps back to the client's address.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: List[dict] = []
        ReverseResolver.log = Logger(observer=cast(ILogObserver, self.events.append))
        self.addCleanup(setattr, ReverseResolver, "log", Logger())

    def resolver(self, dnsServer: FakeDNS, **kw: Any) -> ReverseResolver:
        return ReverseResolver(self.clock.seconds, {}, dnsServer, **kw)

    def test_forwardConfirmed(self) -> None:
        """A name whose A records include the client is its name."""
        fake = FakeDNS(
            {"4.3.2.10.in-addr.arpa": "www.trusted.example"},
            forward={"www.trusted.example": ["10.9.9.9", "10.2.3.4"]},
        )
        d = self.resolver(fake).lookup("10.2.3.4")
        self.assertEqual(self.successResultOf(d), "www.trusted.example")
        self.assertEqual(fake.asked[1], ("www.trusted.example", (1, 2)))

    def test_fakePointer(self) -> None:
        """
        A PTR record naming a host whose addresses do not include the
        client gives no name (cached), and a warning.
        """
        fake = FakeDNS(
            {"4.3.2.10.in-addr.arpa": "www.trusted.example"},
            forward={"www.trusted.example": ["192.0.2.1"]},
        )
        resolver = self.resolver(fake)
        self.assertIsNone(self.successResultOf(resolver.lookup("10.2.3.4")))
        self.assertEqual(resolver.cached("10.2.3.4"), (True, None))
        self.assertEqual(resolver.mismatches, 1)
        self.assertIn("does not map back", formatEvent(self.events[0]))

    def test_forwardFails(self) -> None:
        """A name that does not resolve forward gives no name."""
        fake = FakeDNS({"4.3.2.10.in-addr.arpa": "ghost.example"}, forward={})
        self.assertIsNone(self.successResultOf(self.resolver(fake).lookup("10.2.3.4")))

    def test_forwardTimesOut(self) -> None:
        """A forward lookup that never answers leaves the name unknown (pending)."""
        fake = FakeDNS(
            {"4.3.2.10.in-addr.arpa": "slow.example"}, failUnknown=False, forward={}
        )
        resolver = self.resolver(fake)
        d = resolver.lookup("10.2.3.4")
        self.assertNoResult(d)
        self.assertEqual(resolver.cached("10.2.3.4"), (False, None))
        fake.pending[0].errback(dns.DNSQueryTimeoutError(None))
        self.assertIsNone(self.successResultOf(d))

    def test_ipv6Forward(self) -> None:
        """An IPv6 client's name is confirmed by AAAA records."""
        pointer = ipaddress.ip_address("2001:db8::1").reverse_pointer
        fake = FakeDNS(
            {pointer: "six.example"},
            forward={"six.example": ["10.0.0.1", "2001:db8::1"]},
        )
        d = self.resolver(fake).lookup("2001:db8::1")
        self.assertEqual(self.successResultOf(d), "six.example")

    def test_mappedClientUsesA(self) -> None:
        """An IPv4-mapped client is confirmed by A records."""
        fake = FakeDNS({"4.3.2.10.in-addr.arpa": "host.example"})
        d = self.resolver(fake).lookup("::ffff:10.2.3.4")
        self.assertEqual(self.successResultOf(d), "host.example")

    def test_hostsFileForward(self) -> None:
        """
        A DNS name listed in /etc/hosts is confirmed there, without DNS:
        a name the file gives other addresses does not count.
        """
        fake = FakeDNS({"4.3.2.10.in-addr.arpa": "gate.lan"})
        resolver = self.resolver(
            fake, forward=parseHostsForward("192.168.1.1 gate.lan\n")
        )
        self.assertIsNone(self.successResultOf(resolver.lookup("10.2.3.4")))
        self.assertEqual(len(fake.asked), 1)
