"""
Tests for L{xinetd_twisted.protocols.names}.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.protocols.names import ReverseResolver, parseHosts


class FakeDNS:
    """
    Answers PTR queries from a table, recording what was asked; an unknown
    name never answers (the Deferred is returned unfired) or fails.
    """

    def __init__(self, table: dict, failUnknown: bool = True) -> None:
        self.table = table
        self.failUnknown = failUnknown
        self.asked: List[Any] = []
        self.pending: List[Deferred] = []

    def lookupPointer(self, name: str, timeout: Any = None) -> Deferred:
        self.asked.append((name, timeout))
        if name in self.table:
            record = dns.RRHeader(
                name=name, type=dns.PTR, payload=dns.Record_PTR(self.table[name])
            )
            return succeed(([record], [], []))
        if self.failUnknown:
            return fail(dns.DomainError(name))
        d: Deferred = Deferred()
        self.pending.append(d)
        return d


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
        self.assertEqual(self.dns.asked, [("4.3.2.10.in-addr.arpa", (1, 2))])

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
