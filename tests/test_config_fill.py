"""
Tests for defaults merging, enabled/disabled, implied values
(service_fill) and validation (check_entry).
"""

from __future__ import annotations

import os
import socket

import attr
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, messages, parse, service, words
from xinetd_twisted.config.model import (
    ConfigError,
    Location,
    ServiceConfig,
    Severity,
    SyslogLog,
    evolveService,
)

INTERNAL = """\
    type = INTERNAL
    socket_type = stream
    wait = no"""


class DefaultsTests(SynchronousTestCase):
    """
    What defaults give a service, and when.
    """

    def test_copiedOnlyIfSeenEarlier(self) -> None:
        """
        only_from from defaults reaches only services read after it.
        """
        text = (
            service(EXTERNAL, name="early")
            + "defaults\n{\n only_from = 10.0.0.1\n}\n"
            + service(EXTERNAL.replace("4000", "4001"), name="late")
        )
        early, late = parse(text).services
        self.assertIsNone(early.onlyFrom)
        self.assertEqual(words(late.onlyFrom), ["10.0.0.1"])

    def test_filledAfterwards(self) -> None:
        """
        instances, per_source, cps, umask, groups, max_load, bind, log_type
        and log_on_* come from defaults wherever defaults is.
        """
        text = service(EXTERNAL) + (
            "defaults\n{\n instances = 3\n per_source = 2\n cps = 7 8\n umask = 077\n"
            " groups = yes\n max_load = 4\n bind = 127.0.0.1\n log_type = SYSLOG local1\n"
            " log_on_success = PID\n}\n"
        )
        s = parse(text).services[0]
        self.assertEqual(
            (s.instances, s.perSource, s.cps, s.umask, s.groups, s.maxLoad, s.bind),
            (3, 2, (7, 8), 0o77, True, 4.0, "127.0.0.1"),
        )
        self.assertEqual((s.logType, s.logOnSuccess), (SyslogLog("local1"), {"PID"}))

    def test_serviceOverridesDefaults(self) -> None:
        """
        A service's own value wins over defaults.
        """
        text = "defaults\n{\n instances = 3\n}\n" + service(
            EXTERNAL + "\n instances = 9"
        )
        self.assertEqual(parse(text).services[0].instances, 9)

    def test_defaultsEqualsAdds(self) -> None:
        """
        In defaults, = on a list attribute adds.
        """
        text = (
            "defaults\n{\n only_from = 10.0.0.1\n only_from = 10.0.0.2\n}\n"
            + service(EXTERNAL)
        )
        self.assertEqual(
            words(parse(text).services[0].onlyFrom), ["10.0.0.1", "10.0.0.2"]
        )

    def test_servicePlusAndMinusOnCopied(self) -> None:
        """
        A service's += and -= change the copied defaults; = replaces them.
        """
        head = (
            "defaults\n{\n log_on_failure = HOST\n only_from = 10.0.0.1 10.0.0.2\n}\n"
        )
        s = parse(
            head
            + service(EXTERNAL + "\n log_on_failure += USERID\n only_from -= 10.0.0.1")
        ).services[0]
        self.assertEqual(s.logOnFailure, {"HOST", "USERID"})
        self.assertEqual(words(s.onlyFrom), ["10.0.0.2"])
        s = parse(head + service(EXTERNAL + "\n only_from = 10.0.0.9")).services[0]
        self.assertEqual(words(s.onlyFrom), ["10.0.0.9"])

    def test_notInDefaults(self) -> None:
        """
        An attribute not allowed in defaults is a warning there.
        """
        config = parse("defaults\n{\n nice = 3\n}\n" + service(EXTERNAL))
        self.assertEqual(
            messages(config),
            [
                "test.conf:3: service defaults: attribute nice: warning: attribute: nice should not be in default section"
            ],
        )
        self.assertIsNone(config.services[0].nice)

    def test_badDefaultsValueFatal(self) -> None:
        """
        A bad value in defaults refuses the whole configuration.
        """
        with self.assertRaises(ConfigError) as caught:
            parse("defaults\n{\n instances = abc\n}\n" + service(EXTERNAL))
        problem = caught.exception.problems[-1]
        self.assertEqual((problem.severity, problem.location.line), (Severity.FATAL, 3))

    def test_twoLogTypesInDefaultsFatal(self) -> None:
        """
        Two log_type lines in defaults are fatal.
        """
        with self.assertRaises(ConfigError) as caught:
            parse(
                "defaults\n{\n log_type = SYSLOG daemon\n log_type = FILE /tmp/x\n}\n"
            )
        self.assertIn("Cannot set more than one log_type", str(caught.exception))

    def test_v6onlyInDefaults(self) -> None:
        """
        v6only in defaults is applied here, with a warning about xinetd.
        """
        config = parse("defaults\n{\n v6only = yes\n}\n" + service(EXTERNAL))
        self.assertTrue(config.services[0].v6only)
        self.assertIn("v6only in defaults: xinetd ignores it", messages(config)[0])

    def test_enabled(self) -> None:
        """
        enabled keeps only the listed ids, case-insensitively.
        """
        text = (
            "defaults\n{\n enabled = B\n}\n"
            + service(EXTERNAL, name="a")
            + service(EXTERNAL.replace("4000", "4001"), name="b")
        )
        self.assertEqual([s.name for s in parse(text).services], ["b"])

    def test_disabled(self) -> None:
        """
        disabled removes the listed ids (matching the id, not the name).
        """
        text = "defaults\n{\n disabled = other\n}\n" + service(
            EXTERNAL + "\n id = other", name="a"
        )
        config = parse(text)
        self.assertEqual((config.services, config.dropped), ((), ()))

    def test_emptyEnabled(self) -> None:
        """
        enabled with no ids disables everything.
        """
        self.assertEqual(
            parse("defaults\n{\n enabled =\n}\n" + service(EXTERNAL)).services, ()
        )


class ImpliedTests(SynchronousTestCase):
    """
    service_fill's implied values.
    """

    def test_protocolFromSocketType(self) -> None:
        """
        socket_type stream implies protocol tcp, and the port is looked up.
        """
        s = parse(service(INTERNAL, name="echo")).services[0]
        self.assertEqual((s.protocol, s.port, s.family), ("tcp", 7, socket.AF_INET6))

    def test_socketTypeFromProtocol(self) -> None:
        """
        protocol udp implies socket_type dgram.
        """
        s = parse(
            service("type = INTERNAL\n protocol = udp\n wait = yes", name="daytime")
        ).services[0]
        self.assertEqual((s.socketType, s.port), ("dgram", 13))

    def test_serviceAlias(self) -> None:
        """
        Aliases in the services file count.
        """
        s = parse(service(INTERNAL, name="sink")).services
        self.assertEqual(s, ())  # sink is an alias of discard, but no builtin sink

    def test_ipv6Flag(self) -> None:
        """
        flags IPv6 chooses AF_INET6; both flags mean IPv6.
        """
        s = parse(service(EXTERNAL + "\n flags = IPv4 IPv6")).services[0]
        self.assertEqual((s.family, s.flags), (socket.AF_INET6, {"IPV6"}))

    def test_bindHostnameFamily(self) -> None:
        """
        A bind host name picks the address of the family asked for.
        """
        s = parse(service(EXTERNAL + "\n bind = localhost\n flags = IPv4")).services[0]
        self.assertEqual((s.bind, s.family), ("127.0.0.1", socket.AF_INET))

    def test_redirectForcesServer(self) -> None:
        """
        redirect replaces the server with /bin/true.
        """
        s = parse(service(EXTERNAL + "\n redirect = 127.0.0.1 80")).services[0]
        self.assertEqual((s.server, s.argv), ("/bin/true", ("true",)))

    def test_identClearsUserid(self) -> None:
        """
        USERID is cleared on the tcp port 113 service, with a warning.
        """
        config = parse(
            service(EXTERNAL.replace("4000", "113") + "\n log_on_success = USERID PID")
        )
        self.assertEqual(config.services[0].logOnSuccess, {"PID"})
        self.assertIn("clearing USERID option from log_on_success", messages(config)[0])


class CheckTests(SynchronousTestCase):
    """
    check_entry: each failure drops just that service, with a location.
    """

    def assertDropped(self, text: str, message: str, line: int | None = None) -> None:
        config = parse(text)
        self.assertEqual(config.services, ())
        errors = [p for p in config.problems if p.severity is Severity.ERROR]
        self.assertEqual(len(errors), 1, messages(config))
        self.assertIn(message, errors[0].message)
        if line is not None:
            self.assertEqual(errors[0].location.line, line)

    def test_missingWait(self) -> None:
        """
        wait is required.
        """
        self.assertDropped(
            service(EXTERNAL.replace("wait = no", "")),
            "Service svc missing attribute wait",
        )

    def test_missingUser(self) -> None:
        """
        user is required for external services, even redirected ones.
        """
        body = EXTERNAL.replace("user = root", "").replace(
            "server = /bin/cat", "redirect = 127.0.0.1 80"
        )
        self.assertDropped(service(body), "missing attribute user")

    def test_missingServer(self) -> None:
        """
        An external service needs a server.
        """
        self.assertDropped(
            service(EXTERNAL.replace("server = /bin/cat", "")),
            "Must specify a server in svc",
        )

    def test_sensorNeedsServer(self) -> None:
        """
        A SENSOR service still needs a server, not a user.
        """
        body = "socket_type = stream\n wait = no\n flags = SENSOR\n type = UNLISTED\n port = 4000"
        self.assertDropped(service(body), "Must specify a server")
        s = parse(service(body + "\n server = /bin/true")).services[0]
        self.assertEqual(s.types, {"UNLISTED", "INTERNAL"})

    def test_serverNotExecutable(self) -> None:
        """
        The server must exist and be executable.
        """
        self.assertDropped(
            service(EXTERNAL.replace("/bin/cat", "/nonexistent")),
            "Could not stat server /nonexistent",
            7,
        )
        self.assertDropped(
            service(EXTERNAL.replace("/bin/cat", "/etc/passwd")), "is not executable"
        )

    def test_chroot(self) -> None:
        """
        With chroot the server is looked for inside the directory.
        """
        root = FilePath(self.mktemp())
        root.child("bin").makedirs()
        root.child("bin").child("srv").setContent(b"#!/bin/sh\n")
        os.chmod(root.child("bin").child("srv").path, 0o755)
        body = EXTERNAL.replace("/bin/cat", "/bin/srv")
        s = parse(service(body + f"\n chroot = {root.path}")).services[0]
        self.assertEqual((s.server, s.chroot), ("/bin/srv", root.path))
        self.assertDropped(
            service(EXTERNAL + f"\n chroot = {root.path}"), "Could not stat server"
        )
        self.assertDropped(
            service(EXTERNAL + "\n chroot = /nonexistent"),
            "chroot directory /nonexistent does not exist",
        )

    def test_unknownInternal(self) -> None:
        """
        The servers/services internals no longer exist.
        """
        body = (
            "type = INTERNAL UNLISTED\n socket_type = stream\n wait = no\n port = 9099"
        )
        self.assertDropped(
            service(body, name="servers"), "No such internal service: servers/stream"
        )

    def test_unlistedNeedsPort(self) -> None:
        """
        An UNLISTED service needs a port.
        """
        self.assertDropped(
            service(EXTERNAL.replace("port = 4000", "")),
            "Unlisted service: svc must have a port entry",
        )

    def test_notInServices(self) -> None:
        """
        A listed service must be in the services file.
        """
        body = EXTERNAL.replace("type = UNLISTED", "")
        self.assertDropped(
            service(body),
            "service/protocol combination not in /etc/services: svc/tcp",
            4,
        )
        self.assertDropped(
            service(body.replace("port = 4000", "")),
            "Port not specified and can't find service: svc",
        )

    def test_wrongListedPort(self) -> None:
        """
        A listed service's port must match the services file.
        """
        self.assertDropped(
            service(INTERNAL + "\n port = 8", name="echo"),
            "Service echo expects port 7, not 8",
            6,
        )

    def test_redirectRules(self) -> None:
        """
        redirect needs stream nowait without NAMEINARGS.
        """
        body = EXTERNAL + "\n redirect = 127.0.0.1 80"
        self.assertDropped(
            service(body.replace("wait = no", "wait = yes")), "must not wait"
        )
        self.assertDropped(
            service(body + "\n flags = NAMEINARGS\n server_args = x"),
            "should not have NAMEINARGS",
        )

    def test_trafficWithoutRedirect(self) -> None:
        """
        TRAFFIC logging needs redirect.
        """
        self.assertDropped(
            service(EXTERNAL + "\n log_on_success = TRAFFIC"),
            "should not have TRAFFIC flag set",
        )

    def test_nameinargsInternal(self) -> None:
        """
        NAMEINARGS on an internal service is an error.
        """
        self.assertDropped(
            service(INTERNAL + "\n flags = NAMEINARGS", name="echo"),
            "is INTERNAL and has NAMEINARGS",
        )

    def test_nameinargsWithoutArgs(self) -> None:
        """
        NAMEINARGS needs server_args.
        """
        self.assertDropped(
            service(EXTERNAL + "\n flags = NAMEINARGS"),
            "Must specify server args if using NAMEINARGS",
        )

    def test_tcpmuxRules(self) -> None:
        """
        TCPMUX services must be UNLISTED; they need no port.
        """
        body = EXTERNAL.replace("port = 4000", "")
        s = parse(service(body.replace("UNLISTED", "UNLISTED TCPMUX"))).services[0]
        self.assertIsNone(s.port)
        self.assertTrue(s.isTcpmuxSubservice)
        self.assertDropped(
            service(body.replace("UNLISTED", "TCPMUX")), "should have UNLISTED in type"
        )

    def test_dgramNowait(self) -> None:
        """
        dgram + wait = no is an error for programs, allowed for internals.
        """
        body = EXTERNAL.replace("stream", "dgram").replace("tcp", "udp")
        self.assertDropped(service(body), "has socket_type dgram, but does not wait")
        s = parse(
            service("type = INTERNAL\n socket_type = dgram\n wait = no", name="echo")
        ).services
        self.assertEqual(len(s), 1)

    def test_interceptCleared(self) -> None:
        """
        INTERCEPT on a nowait service is cleared with a warning.
        """
        config = parse(service(EXTERNAL + "\n flags = INTERCEPT"))
        self.assertEqual(config.services[0].flags, frozenset())
        self.assertIn(
            "Multi-threaded services cannot be intercepted", messages(config)[0]
        )

    def test_duplicateId(self) -> None:
        """
        A second service with the same id is dropped, naming the first.
        """
        text = service(EXTERNAL, name="a") + service(
            EXTERNAL.replace("4000", "4001") + "\n id = A", name="b"
        )
        config = parse(text)
        self.assertEqual([s.name for s in config.services], ["a"])
        self.assertEqual(
            messages(config),
            [
                "test.conf:20: service A: attribute id: error: service: b id: A not unique or is a duplicate of the service at test.conf:1 - DISABLING"
            ],
        )

    def test_duplicatePortWithoutBind(self) -> None:
        """
        Same port and protocol without bind is detected at load time.
        """
        config = parse(service(EXTERNAL, name="a") + service(EXTERNAL, name="b"))
        self.assertEqual([s.name for s in config.services], ["a"])
        self.assertIn(
            "is unique but its identical to service: a id: a at test.conf:1",
            messages(config)[0],
        )

    def test_noOverlap(self) -> None:
        """
        Different bind addresses, protocols, or v6only against IPv4 coexist.
        """
        udp = (
            EXTERNAL.replace("stream", "dgram")
            .replace("tcp", "udp")
            .replace("wait = no", "wait = yes")
        )
        text = (
            service(EXTERNAL + "\n bind = 127.0.0.1", name="a")
            + service(EXTERNAL + "\n bind = 127.0.0.2", name="b")
            + service(udp, name="c")
        )
        self.assertEqual(len(parse(text).services), 3)
        text = service(EXTERNAL + "\n flags = IPv4", name="a") + service(
            EXTERNAL + "\n v6only = yes", name="b"
        )
        self.assertEqual(len(parse(text).services), 2)

    def test_overlapDualStack(self) -> None:
        """
        A dual-stack wildcard overlaps an IPv4 address on the same port.
        """
        text = service(EXTERNAL + "\n bind = 127.0.0.1", name="a") + service(
            EXTERNAL, name="b"
        )
        self.assertEqual([s.name for s in parse(text).services], ["a"])

    def test_notRootOtherUser(self) -> None:
        """
        A non-root daemon cannot run services as another user.
        """
        config = parse(
            service(EXTERNAL.replace("user = root", "user = 4242")), isRoot=False
        )
        self.assertEqual(config.services, ())
        self.assertIn(
            "daemon is not root: cannot run as user 4242", messages(config)[0]
        )

    def test_notRootOwnUser(self) -> None:
        """
        A non-root daemon may run services as itself.
        """
        body = EXTERNAL.replace("user = root", f"user = {os.geteuid()}")
        self.assertEqual(len(parse(service(body), isRoot=False).services), 1)


class SharedValuesTests(SynchronousTestCase):
    """
    Services written alike hold one object per equal value.
    """

    def test_equalValuesShared(self) -> None:
        """
        Two services with the same socket type, server, arguments, types and
        flags share those values.
        """
        body = EXTERNAL + "\n server_args = -x"
        text = service(body, name="a") + service(body.replace("4000", "4001"), name="b")
        a, b = parse(text).services
        for field in ("socketType", "server", "serverArgs", "argv", "types", "flags"):
            self.assertIs(getattr(a, field), getattr(b, field), field)
        self.assertIs(a.logOnSuccess, b.logOnSuccess)

    def test_differentValuesKept(self) -> None:
        """
        Sharing never gives a service another's different value.
        """
        text = service(EXTERNAL + "\n server_args = -x", name="a") + service(
            EXTERNAL.replace("4000", "4001") + "\n server_args = -y\n flags = IPV4",
            name="b",
        )
        a, b = parse(text).services
        self.assertEqual((a.serverArgs, b.serverArgs), (("-x",), ("-y",)))
        self.assertEqual((a.flags, b.flags), (frozenset(), {"IPV4"}))
        self.assertEqual(a.port, 4000)
        self.assertEqual(b.port, 4001)

    def test_locationsCompact(self) -> None:
        """
        A service's locations answer as a mapping of attribute to
        L{Location}, and services written alike share the attribute names.
        """
        text = service(EXTERNAL, name="a") + service(
            EXTERNAL.replace("4000", "4001"), name="b"
        )
        a, b = parse(text).services
        self.assertEqual(a.locations["port"], Location("test.conf", 9))
        self.assertEqual(b.locations.get("port"), Location("test.conf", 19))
        self.assertIn("server", a.locations)
        self.assertNotIn("banner", a.locations)
        self.assertIsNone(a.locations.get("banner"))
        self.assertIs(a.locations.get("banner", a.location), a.location)
        self.assertRaises(KeyError, lambda: a.locations["banner"])
        self.assertEqual(list(a.locations), list(b.locations))
        self.assertIs(a.locations.names, b.locations.names)

    def test_evolveService(self) -> None:
        """
        L{evolveService} is C{attr.evolve}: every other field kept.
        """
        (a,) = parse(service(EXTERNAL + "\n server_args = -x", name="a")).services
        changed = evolveService(a, port=5, flags=frozenset({"IPV4"}))
        self.assertEqual(changed, attr.evolve(a, port=5, flags=frozenset({"IPV4"})))
        self.assertEqual(evolveService(a), a)
        self.assertEqual(changed.serverArgs, ("-x",))

    def test_checkedChangeShared(self) -> None:
        """
        A value the checker changes (INTERCEPT cleared on a service that
        does not wait) is the changed one, shared with the services that
        had it as written.
        """
        body = EXTERNAL + "\n flags = INTERCEPT"
        text = (
            service(body, name="a")
            + service(body.replace("4000", "4001"), name="b")
            + service(EXTERNAL.replace("4000", "4002"), name="c")
        )
        config = parse(text)
        a, b, c = config.services
        self.assertEqual(a.flags, frozenset())
        self.assertIs(a.flags, b.flags)
        self.assertIs(a.flags, c.flags)
        self.assertEqual(
            len([m for m in messages(config) if "INTERCEPT cleared" in m]), 2
        )

    def test_uncheckedKept(self) -> None:
        """
        A service the checker changes nothing in keeps every filled value.
        """
        (a,) = parse(service(EXTERNAL + "\n log_on_success = PID", name="a")).services
        self.assertEqual(a.logOnSuccess, frozenset({"PID"}))
        self.assertEqual(a.argv[0], os.path.basename(a.server))


class ServiceExtrasTests(SynchronousTestCase):
    """
    The fields most services leave unset are kept apart, in
    L{ServiceConfig.extras}, and read as the service's own.
    """

    def _service(self, **fields: object) -> ServiceConfig:
        (base,) = parse(service(EXTERNAL, name="a")).services
        return attr.evolve(base, **fields)

    def test_byName(self) -> None:
        """
        A field of the extras given by name is read back from the service
        and kept in its extras; the others stay at their defaults.
        """
        changed = self._service(tlsCertificate="/c.pem", umask=0o22)
        self.assertEqual((changed.tlsCertificate, changed.umask), ("/c.pem", 0o22))
        self.assertEqual(changed.extras.umask, 0o22)
        self.assertIsNone(changed.listenPath)
        self.assertEqual(changed.socketMode, 0o666)

    def test_equality(self) -> None:
        """
        Services that differ only in a field of their extras differ.
        """
        a, b = self._service(nice=1), self._service(nice=2)
        self.assertNotEqual(a, b)
        self.assertEqual(a, self._service(nice=1))
        self.assertEqual(hash(a), hash(self._service(nice=1)))

    def test_evolveKeepsExtras(self) -> None:
        """
        Changing another field keeps the extras; L{evolveService} takes
        fields of the extras too.
        """
        a = self._service(nice=3)
        self.assertEqual(attr.evolve(a, port=1).nice, 3)
        self.assertEqual(evolveService(a, port=1, umask=0o77).extras.umask, 0o77)
        self.assertEqual(evolveService(a, port=1, umask=0o77).nice, 3)

    def test_unknownField(self) -> None:
        """
        A field no service has is refused, as before the split.
        """
        self.assertRaises(TypeError, self._service, nosuchfield=1)

    def test_writtenAlikeShareOne(self) -> None:
        """
        Services that write none of the extras hold one record of them,
        the values from defaults in it.
        """
        config = parse(
            "defaults\n{\n umask = 027\n max_duration = 60\n v6only = yes\n}\n"
            + service(EXTERNAL, name="a")
            + service(EXTERNAL.replace("4000", "4001"), name="b")
        )
        a, b = config.services
        self.assertIs(a.extras, b.extras)
        self.assertEqual((a.umask, a.maxDuration, a.v6only), (0o27, 60, True))

    def test_plainAsWritten(self) -> None:
        """
        The shared record is what a service writing an extra attribute at
        its default value gets.
        """
        config = parse(
            "defaults\n{\n umask = 027\n per_source_cps = 5 6\n"
            " no_new_privileges = yes\n}\n"
            + service(EXTERNAL, name="a")
            + service(EXTERNAL.replace("4000", "4001") + "\n deny_time = 0", name="b")
        )
        a, b = config.services
        self.assertEqual(a.extras, b.extras)
        self.assertIsNot(a.extras, b.extras)
        self.assertEqual(a.perSourceCps, (5, 6))
        self.assertTrue(a.noNewPrivileges)

    def test_groupsFromDefaults(self) -> None:
        """
        C{groups = yes} in defaults gives each service its own user's
        groups, not one shared record.
        """
        config = parse(
            "defaults\n{\n groups = yes\n}\n"
            + service(EXTERNAL, name="a")
            + service(
                EXTERNAL.replace("4000", "4001").replace("root", "nobody"), name="b"
            )
        )
        a, b = config.services
        self.assertTrue(a.groups)
        self.assertEqual(
            a.supplementaryGroups, tuple(os.getgrouplist("root", a.gid or 0))
        )
        self.assertEqual(
            b.supplementaryGroups, tuple(os.getgrouplist("nobody", b.gid or 0))
        )
