"""
Tests for L{xinetd_twisted.policy.hostsaccess}.
"""

from __future__ import annotations

import os
from typing import List, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import ServiceConfig, Severity
from xinetd_twisted.policy.addresses import Peer
from xinetd_twisted.policy.hostsaccess import HostsAccess, libwrapName, parseHostsFile
from xinetd_twisted.policy.libwrap import loadHostsAccess
from xinetd_twisted.protocols.names import ReverseResolver

from .test_protocols_names import FakeDNS


def rules(allow: str = "", deny: str = "") -> HostsAccess:
    allowRules, p1 = parseHostsFile("hosts.allow", allow, True)
    denyRules, p2 = parseHostsFile("hosts.deny", deny, False)
    return HostsAccess(allowRules, denyRules, p1 + p2)


def allowed(
    access: HostsAccess, daemon: str, host: Optional[str], name: Optional[str] = None
) -> bool:
    peer = Peer.fromHost(host) if host is not None else None
    return access.forDaemon(daemon).allowed(peer, name)


class DecisionOrderTests(SynchronousTestCase):
    def test_noFiles(self) -> None:
        """No rules grants everyone."""
        self.assertTrue(allowed(rules(), "in.fingerd", "10.0.0.1"))

    def test_allowBeforeDeny(self) -> None:
        """A match in hosts.allow grants even when hosts.deny denies ALL."""
        access = rules("in.fingerd: 10.0.0.1\n", "ALL: ALL\n")
        self.assertTrue(allowed(access, "in.fingerd", "10.0.0.1"))
        self.assertFalse(allowed(access, "in.fingerd", "10.0.0.2"))
        self.assertFalse(allowed(access, "sshd", "10.0.0.1"))

    def test_denyOnly(self) -> None:
        """A hosts.deny match denies; no match grants."""
        access = rules(deny="ALL: 10.0.0.0/255.0.0.0\n")
        self.assertFalse(allowed(access, "x", "10.9.9.9"))
        self.assertTrue(allowed(access, "x", "11.0.0.1"))

    def test_options(self) -> None:
        """allow/deny options set a rule's verdict in either file."""
        access = rules("ALL: 10.0.0.1: DENY\nALL: ALL: allow\n")
        self.assertFalse(allowed(access, "x", "10.0.0.1"))
        self.assertTrue(allowed(access, "x", "10.0.0.2"))

    def test_twistDenies(self) -> None:
        """twist is treated as deny, with a warning naming file:line."""
        access = rules("\n\nALL: ALL: twist /bin/echo no\n")
        self.assertFalse(allowed(access, "x", "10.0.0.1"))
        self.assertEqual(str(access.problems[0].location), "hosts.allow:3")

    def test_otherOptionsIgnored(self) -> None:
        """Unsupported options are ignored with a warning."""
        access = rules(deny="ALL: 10.0.0.1: spawn /bin/true: severity auth.info\n")
        self.assertFalse(allowed(access, "x", "10.0.0.1"))
        self.assertEqual(
            [p.severity for p in access.problems], [Severity.WARNING, Severity.WARNING]
        )


class PatternTests(SynchronousTestCase):
    def test_except(self) -> None:
        """EXCEPT removes matches, nested EXCEPT adds them back."""
        access = rules(
            deny="ALL EXCEPT sshd: 10.0.0.0/8 EXCEPT 10.1.0.0/16 EXCEPT 10.1.1.1\n"
        )
        self.assertFalse(allowed(access, "fingerd", "10.2.0.1"))
        self.assertTrue(allowed(access, "fingerd", "10.1.0.1"))
        self.assertFalse(allowed(access, "fingerd", "10.1.1.1"))
        self.assertTrue(allowed(access, "sshd", "10.2.0.1"))

    def test_lists(self) -> None:
        """Lists are split on commas and blanks."""
        access = rules(deny="a,b c: 10.0.0.1, 10.0.0.2 10.0.0.3\n")
        for daemon in "abc":
            self.assertFalse(allowed(access, daemon, "10.0.0.3"))
        self.assertTrue(allowed(access, "d", "10.0.0.3"))

    def test_netPrefix(self) -> None:
        """'10.1.' matches addresses starting with it."""
        access = rules(deny="ALL: 10.1.\n")
        self.assertFalse(allowed(access, "x", "10.1.200.3"))
        self.assertTrue(allowed(access, "x", "10.10.0.1"))

    def test_cidr(self) -> None:
        """n.n.n.n/len matches by prefix, also for mapped clients."""
        access = rules(deny="ALL: 192.168.0.0/16\n")
        self.assertFalse(allowed(access, "x", "::ffff:192.168.3.4"))
        self.assertTrue(allowed(access, "x", "192.169.0.1"))

    def test_ipv6(self) -> None:
        """[v6]/len and [v6] match IPv6 clients."""
        access = rules(deny="ALL: [2001:db8::]/32, [::1]\n")
        self.assertFalse(allowed(access, "x", "2001:db8::5"))
        self.assertFalse(allowed(access, "x", "::1"))
        self.assertTrue(allowed(access, "x", "2001:db9::5"))

    def test_names(self) -> None:
        """Host names match exactly, .domain by suffix, both case-insensitively."""
        access = rules(deny="ALL: Bad.Example.com .evil.org\n")
        self.assertFalse(allowed(access, "x", "10.0.0.1", "bad.example.com."))
        self.assertFalse(allowed(access, "x", "10.0.0.1", "a.EVIL.org"))
        self.assertTrue(allowed(access, "x", "10.0.0.1", "evil.org"))
        self.assertTrue(allowed(access, "x", "10.0.0.1", None))

    def test_keywords(self) -> None:
        """LOCAL, KNOWN, UNKNOWN and PARANOID look at the host name."""
        for word, cases in [
            ("LOCAL", [("gw", False), ("gw.example.com", True), (None, True)]),
            ("KNOWN", [("gw.example.com", False), (None, True)]),
            ("UNKNOWN", [("gw.example.com", True), (None, False)]),
            ("PARANOID", [("gw.example.com", True), (None, False)]),
        ]:
            access = rules(deny=f"ALL: {word}\n")
            self.assertTrue(access.forDaemon("x").needsName)
            for name, expected in cases:
                self.assertEqual(
                    allowed(access, "x", "10.0.0.1", name), expected, (word, name)
                )

    def test_wildcards(self) -> None:
        """* and ? match addresses and names."""
        access = rules(deny="ALL: 10.0.0.? *.example.com\n")
        self.assertFalse(allowed(access, "x", "10.0.0.7"))
        self.assertTrue(allowed(access, "x", "10.0.0.17"))
        self.assertFalse(allowed(access, "x", "10.9.0.1", "a.example.com"))

    def test_numericNeedsNoName(self) -> None:
        """Rules with only numeric patterns do not ask for a name."""
        access = rules(deny="ALL: 10.0.0.0/8 10.1. [::1] ALL\n")
        self.assertFalse(access.forDaemon("x").needsName)

    def test_daemonPatterns(self) -> None:
        """Daemon names match exactly (case-insensitively) or by ALL."""
        access = rules(deny="In.Fingerd: ALL\n")
        self.assertFalse(allowed(access, "in.fingerd", "10.0.0.1"))
        self.assertTrue(allowed(access, "in.fingerd2", "10.0.0.1"))
        self.assertFalse(access.forDaemon("sshd"))

    def test_unknownAddress(self) -> None:
        """An unknown client address matches ALL and UNKNOWN only."""
        access = rules(deny="ALL: 10.0.0.0/8 UNKNOWN\n")
        self.assertFalse(allowed(access, "x", None))
        access = rules(deny="ALL: 10.0.0.0/8 KNOWN\n")
        self.assertTrue(allowed(access, "x", None, "a.b"))


class GrammarTests(SynchronousTestCase):
    def test_commentsAndContinuation(self) -> None:
        """Comments and blank lines are skipped; a backslash joins lines."""
        access = rules(deny="# comment\n\nALL: 10.0.0.1, \\\n  10.0.0.2\n")
        self.assertFalse(allowed(access, "x", "10.0.0.2"))
        self.assertEqual(access.problems, ())

    def test_missingColon(self) -> None:
        """A line without a client list is an error naming file:line."""
        access = rules(deny="\nALL 10.0.0.1\n")
        self.assertEqual(str(access.problems[0]).split(": ")[0], "hosts.deny:2")
        self.assertEqual(access.problems[0].severity, Severity.ERROR)

    def test_netgroupFailsClosed(self) -> None:
        """@netgroup is reported; it matches everyone in deny, no one in allow."""
        access = rules("ALL: @friends\n", "ALL: @enemies\n")
        self.assertFalse(allowed(access, "x", "10.0.0.1"))
        self.assertEqual(len(access.problems), 2)
        self.assertIn("netgroup '@enemies'", str(access.problems[1]))
        self.assertIn("hosts.deny:1", str(access.problems[1]))

    def test_unsupportedUnderExcept(self) -> None:
        """Under EXCEPT an unsupported pattern takes the opposite value."""
        access = rules(deny="ALL: ALL EXCEPT @trusted\n")
        self.assertFalse(allowed(access, "x", "10.0.0.1"))

    def test_fromFiles(self) -> None:
        """fromFiles reads both files; a missing file has no rules."""
        deny = self.mktemp()
        with open(deny, "w") as f:
            f.write("ALL: 10.0.0.1\n")
        access = HostsAccess.fromFiles(self.mktemp(), deny)
        self.assertFalse(allowed(access, "x", "10.0.0.1"))
        self.assertTrue(allowed(access, "x", "10.0.0.2"))


def service(**kw: object) -> ServiceConfig:
    base: dict = dict(
        name="finger",
        serviceId="finger",
        location=None,
        socketType="stream",
        protocol="tcp",
        wait=False,
    )
    base.update(kw)
    return ServiceConfig(**base)


class LibwrapNameTests(SynchronousTestCase):
    def test_server(self) -> None:
        """By default the basename of server."""
        self.assertEqual(
            libwrapName(service(server="/usr/sbin/in.fingerd")), "in.fingerd"
        )

    def test_nameInArgs(self) -> None:
        """With NAMEINARGS the basename of argv[0]."""
        svc = service(
            server="/usr/sbin/tcpd",
            flags=frozenset({"NAMEINARGS"}),
            argv=("/usr/sbin/in.fingerd", "-l"),
        )
        self.assertEqual(libwrapName(svc), "in.fingerd")

    def test_internalAndRedirect(self) -> None:
        """Internal and redirect services use the service name."""
        self.assertEqual(libwrapName(service(types=frozenset({"INTERNAL"}))), "finger")
        self.assertEqual(
            libwrapName(service(redirect=("10.0.0.1", 79), server="/bin/x")), "finger"
        )

    def test_attribute(self) -> None:
        """The libwrap attribute wins."""
        svc = service(server="/usr/sbin/in.fingerd", libwrap="fingerd")
        self.assertEqual(libwrapName(svc), "fingerd")

    def test_nolibwrap(self) -> None:
        """NOLIBWRAP skips the check."""
        svc = service(libwrap="x", flags=frozenset({"NOLIBWRAP"}))
        self.assertIsNone(libwrapName(svc))


class ForwardConfirmedNameTests(SynchronousTestCase):
    """
    Names from L{xinetd_twisted.protocols.names.ReverseResolver} (PTR, then
    forward-confirmed) as hosts.allow sees them.
    """

    def nameOf(self, forward: List[str]) -> Optional[str]:
        """
        The name the resolver gives 10.2.3.4, whose PTR record says
        C{www.trusted.example} and whose forward lookup gives C{forward}.
        """
        fake = FakeDNS(
            {"4.3.2.10.in-addr.arpa": "www.trusted.example"},
            forward={"www.trusted.example": forward},
        )
        resolver = ReverseResolver(Clock().seconds, {}, fake)
        result: Optional[str] = self.successResultOf(resolver.lookup("10.2.3.4"))
        return result

    def test_fakePointerDoesNotMatchDomain(self) -> None:
        """A PTR record alone does not get a client through .trusted.example."""
        access = rules("in.fingerd: .trusted.example\n", "ALL: ALL\n")
        name = self.nameOf(["192.0.2.1"])
        self.assertFalse(allowed(access, "in.fingerd", "10.2.3.4", name))

    def test_confirmedNameMatchesDomain(self) -> None:
        """A name that maps back matches .trusted.example."""
        access = rules("in.fingerd: .trusted.example\n", "ALL: ALL\n")
        name = self.nameOf(["10.2.3.4"])
        self.assertTrue(allowed(access, "in.fingerd", "10.2.3.4", name))

    def test_fakePointerIsParanoid(self) -> None:
        """A name that does not map back makes PARANOID match."""
        access = rules(deny="ALL: PARANOID\n")
        self.assertFalse(allowed(access, "x", "10.2.3.4", self.nameOf(["192.0.2.1"])))
        self.assertTrue(allowed(access, "x", "10.2.3.4", self.nameOf(["10.2.3.4"])))


class LoadHostsAccessTests(SynchronousTestCase):
    """
    L{loadHostsAccess} parses the files only when they may hold a rule.
    """

    def files(self, allow: str, deny: str = "") -> tuple:
        paths = []
        for text in (allow, deny):
            path = self.mktemp()
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        return tuple(paths)

    def test_noRules(self) -> None:
        """
        Blank lines and comments check nothing: no parsed files at all.
        """
        allow, deny = self.files("# a comment\n\n   \n", "#\n")
        self.assertIsNone(loadHostsAccess(allow, deny))
        self.assertIsNone(loadHostsAccess(self.mktemp(), self.mktemp()))

    def test_continuedComment(self) -> None:
        """
        A line that continues a comment is read by the parser (which finds
        no rule in it).
        """
        access = loadHostsAccess(*self.files("# a comment \\\nstill one\n"))
        assert access is not None
        self.assertTrue(allowed(access, "x", "10.0.0.1"))
        self.assertEqual(access.problems, ())

    def test_rules(self) -> None:
        """
        A rule in either file is parsed as L{HostsAccess.fromFiles} parses it.
        """
        allow, deny = self.files("# ok\nin.fingerd: 10.0.0.1\n", "ALL: ALL\n")
        access = loadHostsAccess(allow, deny)
        assert access is not None
        self.assertTrue(allowed(access, "in.fingerd", "10.0.0.1"))
        self.assertFalse(allowed(access, "in.fingerd", "10.0.0.2"))

    def test_unreadable(self) -> None:
        """
        A file that cannot be read is a problem, reported as before.
        """
        (deny,) = self.files("")[1:]
        os.mkdir(deny + ".d")
        access = loadHostsAccess(deny + ".d", deny)
        assert access is not None
        self.assertEqual(
            [(p.location.path, p.severity) for p in access.problems],
            [(deny + ".d", Severity.ERROR)],
        )
