"""
Tests for the attribute table and value parsers: every attribute, every
operator, and the errors each can give, with their locations.
"""

from __future__ import annotations

import os
import socket

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, messages, parse, service, words
from xinetd_twisted.config.attributes import ATTRIBUTES
from xinetd_twisted.config.model import (
    UNLIMITED,
    AddressKind,
    FileLog,
    ServiceConfig,
    Severity,
    SyslogLog,
)


def one(extra: str, body: str = EXTERNAL) -> ServiceConfig:
    config = parse(service(body + "\n" + extra))
    assert len(config.services) == 1, [str(p) for p in config.problems]
    return config.services[0]


class TableTests(SynchronousTestCase):
    """
    The table itself.
    """

    def test_everyXinetdAttribute(self) -> None:
        """
        Every attribute of xinetd 2.3.15 plus ours (chroot, TLS, PROXY) has
        a row.
        """
        expected = set(
            "id type flags socket_type protocol wait user group groups server "
            "server_args instances per_source cps max_load nice umask env passenv "
            "only_from no_access access_times log_type log_on_success log_on_failure "
            "rpc_version rpc_number port redirect bind interface banner "
            "banner_success banner_fail disable deny_time rlimit_as rlimit_cpu "
            "rlimit_data rlimit_files rlimit_rss rlimit_stack v6only libwrap chroot "
            "enabled disabled max_duration per_source_cps no_new_privileges".split()
        )
        expected |= {"tls_certificate", "tls_key", "tls_client_ca", "proxy_protocol"}
        # Our extension: UNIX-domain sockets.
        expected |= {"listen_path", "socket_owner", "socket_mode"}
        self.assertEqual(set(ATTRIBUTES), expected)

    def test_defaultsAttributes(self) -> None:
        """
        Exactly xinetd's defaults attributes are allowed in defaults.
        """
        allowed = {n for n, row in ATTRIBUTES.items() if row.defaultsCount is not None}
        self.assertEqual(
            allowed,
            set(
                "log_type log_on_success log_on_failure disabled enabled no_access "
                "only_from instances passenv banner bind interface per_source groups "
                "banner_success banner_fail cps max_load v6only umask "
                "max_duration per_source_cps no_new_privileges".split()
            ),
        )


class ValueTests(SynchronousTestCase):
    """
    Each attribute's value lands in its typed field.
    """

    def test_id(self) -> None:
        """
        id replaces the name as the key.
        """
        self.assertEqual(one("id = other").serviceId, "other")

    def test_typeAndFlags(self) -> None:
        """
        type and flags words are upper-cased sets.
        """
        s = one("flags = nodelay KeepAlive IPv4")
        self.assertEqual(s.flags, {"NODELAY", "KEEPALIVE", "IPV4"})
        self.assertEqual(s.types, {"UNLISTED"})
        self.assertEqual(s.family, socket.AF_INET)

    def test_badFlag(self) -> None:
        """
        An unknown flag drops the service, located at the flags line.
        """
        config = parse(service(EXTERNAL + "\n flags = DISABLE"))
        self.assertEqual(config.services, ())
        self.assertEqual(
            messages(config),
            [
                "test.conf:10: service svc: attribute flags: error: bad flag: DISABLE; "
                "Error parsing attribute flags - DISABLING SERVICE"
            ],
        )

    def test_userGroup(self) -> None:
        """
        user/group resolve to ids; a numeric user gives gid = the same number.
        """
        s = one("", EXTERNAL.replace("user = root", "user = 1234"))
        self.assertEqual((s.uid, s.gid), (1234, 1234))
        s = one("group = root")
        self.assertEqual((s.user, s.uid, s.group, s.gid), ("root", 0, "root", 0))

    def test_unknownUser(self) -> None:
        """
        An unknown user drops the service.
        """
        config = parse(
            service(EXTERNAL.replace("user = root", "user = no-such-user-x"))
        )
        self.assertEqual(config.services, ())
        self.assertIn("unknown user: no-such-user-x", messages(config)[0])

    def test_groupsYes(self) -> None:
        """
        groups = yes resolves the user's group list at load time.
        """
        s = one("groups = yes")
        self.assertTrue(s.groups)
        self.assertEqual(s.supplementaryGroups, tuple(os.getgrouplist("root", 0)))

    def test_serverArgs(self) -> None:
        """
        argv is basename(server) + server_args.
        """
        self.assertEqual(one("server_args = -n x").argv, ("cat", "-n", "x"))

    def test_nameinargs(self) -> None:
        """
        With NAMEINARGS the first server_args word is argv[0].
        """
        s = one("flags = NAMEINARGS\n server_args = tcpd -n")
        self.assertEqual(s.argv, ("tcpd", "-n"))

    def test_nameinargsAfterServerArgs(self) -> None:
        """
        NAMEINARGS after server_args works here, with a warning about xinetd.
        """
        config = parse(
            service(EXTERNAL + "\n server_args = tcpd -n\n flags = NAMEINARGS")
        )
        self.assertEqual(config.services[0].argv, ("tcpd", "-n"))
        self.assertIn(
            "xinetd would start the server with an empty argv", messages(config)[0]
        )

    def test_limits(self) -> None:
        """
        instances/per_source take numbers or UNLIMITED.
        """
        s = one("instances = 4\n per_source = UNLIMITED")
        self.assertEqual((s.instances, s.perSource), (4, None))

    def test_badInstances(self) -> None:
        """
        A non-number drops the service.
        """
        config = parse(service(EXTERNAL + "\n instances = abc"))
        self.assertEqual(config.services, ())
        self.assertIn("bad number: abc", messages(config)[0])

    def test_cpsMaxLoadNiceUmask(self) -> None:
        """
        cps, max_load, nice and umask parse to their types.
        """
        s = one("cps = 5 2\n max_load = 2.5\n nice = -3\n umask = 027")
        self.assertEqual((s.cps, s.maxLoad, s.nice, s.umask), ((5, 2), 2.5, -3, 0o27))

    def test_badUmask(self) -> None:
        """
        umask must be octal.
        """
        config = parse(service(EXTERNAL + "\n umask = 8"))
        self.assertEqual(config.services, ())

    def test_envPassenv(self) -> None:
        """
        env words and passenv names are kept in order.
        """
        s = one("env = A=1 B=2\n env += C=3\n passenv = PATH")
        self.assertEqual((s.env, s.passenv), (("A=1", "B=2", "C=3"), ("PATH",)))

    def test_envMinusIsError(self) -> None:
        """
        env -= drops the service.
        """
        config = parse(service(EXTERNAL + "\n env -= A=1"))
        self.assertEqual(config.services, ())
        self.assertIn("-= cannot be used with env", messages(config)[0])

    def test_envWithoutEquals(self) -> None:
        """
        An env word without NAME= is an error.
        """
        self.assertEqual(parse(service(EXTERNAL + "\n env = FOO")).services, ())

    def test_passenvUndefined(self) -> None:
        """
        A passenv name missing from the daemon's environment is a warning.
        """
        config = parse(service(EXTERNAL + "\n passenv = NOPE"), environ={"X": "1"})
        self.assertEqual(len(config.services), 1)
        self.assertIn("undefined environment variable NOPE", messages(config)[0])

    def test_accessTimes(self) -> None:
        """
        access_times are minute ranges, bounds inclusive.
        """
        s = one("access_times = 2:00-8:59 12:00-23:59")
        self.assertEqual(s.accessTimes, ((120, 539), (720, 1439)))

    def test_accessTimes24(self) -> None:
        """
        24:00 as an end is accepted with a warning about xinetd.
        """
        config = parse(service(EXTERNAL + "\n access_times = 12:00-24:00"))
        self.assertEqual(config.services[0].accessTimes, ((720, 1439),))
        self.assertIn(
            "xinetd would reject hour 24", messages(config, Severity.WARNING)[0]
        )

    def test_accessTimesBad(self) -> None:
        """
        Hours above 23 elsewhere, and start after end, are errors.
        """
        for value in ("25:00-26:00", "10:00-09:00", "10-11"):
            self.assertEqual(
                parse(service(EXTERNAL + "\n access_times = " + value)).services, ()
            )

    def test_logType(self) -> None:
        """
        SYSLOG and FILE log types, with the implied hard limit.
        """
        self.assertEqual(
            one("log_type = SYSLOG local3").logType, SyslogLog("local3", "info")
        )
        self.assertEqual(
            one("log_type = syslog DAEMON notice").logType,
            SyslogLog("daemon", "notice"),
        )
        self.assertEqual(
            one("log_type = FILE /tmp/l 100K").logType,
            FileLog("/tmp/l", 102400, 102400 + 1024 * 5),
        )
        self.assertEqual(
            one("log_type = FILE /tmp/l 10M 11M").logType,
            FileLog("/tmp/l", 10 << 20, 11 << 20),
        )

    def test_logTypeBad(self) -> None:
        """
        A bad facility drops the service.
        """
        config = parse(service(EXTERNAL + "\n log_type = SYSLOG kernel"))
        self.assertIn("bad syslog facility: kernel", messages(config)[0])

    def test_logFlags(self) -> None:
        """
        log_on_success/log_on_failure flags, with += and -=.
        """
        s = one(
            "log_on_success = PID HOST\n log_on_success += EXIT\n log_on_success -= PID\n log_on_failure = host"
        )
        self.assertEqual((s.logOnSuccess, s.logOnFailure), ({"HOST", "EXIT"}, {"HOST"}))

    def test_rpc(self) -> None:
        """
        rpc_version ranges and rpc_number.
        """
        body = EXTERNAL.replace("UNLISTED", "RPC UNLISTED").replace("port = 4000", "")
        config = parse(service(body + "\n rpc_version = 2-4\n rpc_number = 300000"))
        self.assertEqual(messages(config), [])
        [rpc] = config.services
        self.assertEqual((rpc.rpcVersion, rpc.rpcNumber), ((2, 4), 300000))
        # No port: any free one, registered with rpcbind.
        self.assertEqual(rpc.port, 0)
        bad = parse(service(body + "\n rpc_version = 4-2\n rpc_number = 300000"))
        self.assertIn("bad rpc_version: 4-2", messages(bad)[0])

    def test_listedRpc(self) -> None:
        """
        A listed RPC service takes its program number from the rpc file;
        one not there is dropped.
        """
        body = EXTERNAL.replace("UNLISTED", "RPC").replace("port = 4000", "")
        config = parse(service(body + "\n rpc_version = 1", name="rusersd"))
        self.assertEqual(messages(config), [])
        self.assertEqual(config.services[0].rpcNumber, 100002)
        config = parse(service(body + "\n rpc_version = 1", name="nosuchrpc"))
        self.assertIn("unknown RPC service: nosuchrpc", messages(config)[0])

    def test_port(self) -> None:
        """
        Ports above 65535 are errors.
        """
        self.assertEqual(parse(service(EXTERNAL.replace("4000", "70000"))).services, ())

    def test_redirect(self) -> None:
        """
        redirect resolves now; the port may be a tcp service name; the
        server becomes /bin/true.
        """
        body = EXTERNAL.replace("server = /bin/cat", "")
        s = one("redirect = 127.0.0.1 telnet", body)
        self.assertEqual((s.redirect, s.server), (("127.0.0.1", 23), "/bin/true"))

    def test_redirectCount(self) -> None:
        """
        redirect with one value is a warning and the line is ignored.
        """
        config = parse(service(EXTERNAL + "\n redirect = 127.0.0.1"))
        self.assertIn(
            "expects 2 values and 1 values were specified", messages(config)[0]
        )
        self.assertIsNone(config.services[0].redirect)

    def test_bind(self) -> None:
        """
        bind and interface set the address and the family.
        """
        s = one("bind = 127.0.0.1")
        self.assertEqual((s.bind, s.family), ("127.0.0.1", socket.AF_INET))
        s = one("interface = ::1")
        self.assertEqual((s.bind, s.family), ("::1", socket.AF_INET6))

    def test_bindTwoValuesIsError(self) -> None:
        """
        Two bind addresses drop the service (xinetd would bind everything).
        """
        config = parse(service(EXTERNAL + "\n bind = 127.0.0.1 127.0.0.2"))
        self.assertEqual(config.services, ())
        self.assertIn(
            "xinetd would ignore the line and bind every address", messages(config)[0]
        )

    def test_banners(self) -> None:
        """
        banner, banner_success and banner_fail are paths.
        """
        s = one("banner = /a\n banner_success = /b\n banner_fail = /c")
        self.assertEqual((s.banner, s.bannerSuccess, s.bannerFail), ("/a", "/b", "/c"))

    def test_denyTime(self) -> None:
        """
        deny_time minutes, FOREVER and NEVER.
        """
        self.assertEqual(one("deny_time = 60").denyTime, 60)
        self.assertEqual(one("deny_time = forever").denyTime, -1)
        self.assertEqual(one("deny_time = NEVER").denyTime, 0)

    def test_rlimits(self) -> None:
        """
        rlimits take K/M and UNLIMITED; 0 means not set.
        """
        s = one(
            "rlimit_as = 64M\n rlimit_cpu = 10\n rlimit_data = UNLIMITED\n "
            "rlimit_files = 1K\n rlimit_rss = 0\n rlimit_stack = 8M"
        )
        self.assertEqual(
            s.rlimits,
            (
                ("RLIMIT_AS", 64 << 20),
                ("RLIMIT_CPU", 10),
                ("RLIMIT_DATA", UNLIMITED),
                ("RLIMIT_NOFILE", 1024),
                ("RLIMIT_STACK", 8 << 20),
            ),
        )

    def test_v6only(self) -> None:
        """
        v6only = yes/no is kept as written; no warns about xinetd.
        """
        self.assertTrue(one("v6only = yes").v6only)
        config = parse(service(EXTERNAL + "\n v6only = no"))
        self.assertFalse(config.services[0].v6only)
        self.assertIn("xinetd would turn IPV6_V6ONLY on", messages(config)[0])

    def test_libwrapChroot(self) -> None:
        """
        libwrap and chroot are kept.
        """
        s = one("libwrap = foo\n chroot = /")
        self.assertEqual((s.libwrap, s.chroot), ("foo", "/"))

    def test_addresses(self) -> None:
        """
        only_from/no_access words become entries of every form.
        """
        s = one(
            "only_from = 10.0.0.0 10.1.2.3/16 ::1 128.138.{10,20} .example.com localhost loopback testnet"
        )
        entries = s.onlyFrom
        assert entries is not None
        kinds = [(e.word, e.kind, e.prefixLength) for e in entries]
        self.assertEqual(
            kinds,
            [
                ("10.0.0.0", AddressKind.NETWORK, 8),
                ("10.1.2.3/16", AddressKind.NETWORK, 16),
                ("::1", AddressKind.NETWORK, 128),
                ("128.138.{10,20}", AddressKind.NETWORK, 24),
                ("128.138.{10,20}", AddressKind.NETWORK, 24),
                (".example.com", AddressKind.DOMAIN, 0),
                ("localhost", AddressKind.HOST, 0),
                ("loopback", AddressKind.NETWORK, 8),
                ("testnet", AddressKind.NETWORK, 16),
            ],
        )
        self.assertIn("127.0.0.1", entries[6].addresses)
        self.assertEqual(entries[4].network, bytes([128, 138, 20, 0]))

    def test_addressBadWord(self) -> None:
        """
        A word that is no address is reported and left out; the service stays.
        """
        config = parse(service(EXTERNAL + "\n only_from = 127.0.0.1 # x"))
        self.assertEqual(words(config.services[0].onlyFrom), ["127.0.0.1"])
        self.assertEqual(
            messages(config),
            [
                "test.conf:10: service svc: attribute only_from: warning: failed to parse #: word ignored",
                "test.conf:10: service svc: attribute only_from: warning: failed to parse x: word ignored",
            ],
        )

    def test_addressComma(self) -> None:
        """
        A comma outside braces drops the service.
        """
        self.assertEqual(
            parse(service(EXTERNAL + "\n only_from = 1.2.3.4,5.6.7.8")).services, ()
        )

    def test_emptyOnlyFrom(self) -> None:
        """
        only_from with no value means nobody.
        """
        self.assertEqual(one("only_from =").onlyFrom, ())

    def test_listOperators(self) -> None:
        """
        = replaces, += adds, -= removes on list attributes.
        """
        s = one(
            "only_from = 10.0.0.1\n only_from += 10.0.0.2 10.0.0.3\n only_from -= 10.0.0.2\n no_access = 1.2.3.4\n no_access = 5.6.7.8"
        )
        self.assertEqual(words(s.onlyFrom), ["10.0.0.1", "10.0.0.3"])
        self.assertEqual(words(s.noAccess), ["5.6.7.8"])


class LineRuleTests(SynchronousTestCase):
    """
    Operators on fixed attributes, counts, unknown and repeated attributes.
    """

    def test_unknownAttribute(self) -> None:
        """
        An unknown attribute (even mdns) is a warning; the service stays.
        """
        config = parse(service(EXTERNAL + "\n mdns = yes"))
        self.assertEqual(len(config.services), 1)
        self.assertEqual(
            messages(config),
            [
                "test.conf:10: service svc: attribute mdns: warning: bad service attribute: mdns"
            ],
        )

    def test_fixedTwiceFirstWins(self) -> None:
        """
        A second fixed attribute is a warning naming the first; first wins.
        """
        config = parse(service(EXTERNAL + "\n nice = 1\n nice = 2"))
        self.assertEqual(config.services[0].nice, 1)
        self.assertEqual(
            messages(config),
            [
                "test.conf:11: service svc: attribute nice: warning: attribute already "
                "set: nice (at test.conf:10); this line is ignored"
            ],
        )

    def test_plusOnFixed(self) -> None:
        """
        += on a fixed attribute is a warning; the line is ignored.
        """
        config = parse(service(EXTERNAL + "\n flags += NODELAY"))
        self.assertEqual(config.services[0].flags, frozenset())
        self.assertIn(
            "operator '+=' cannot be used for attribute 'flags'", messages(config)[0]
        )

    def test_wrongCount(self) -> None:
        """
        A wrong value count is a warning and the line is ignored.
        """
        config = parse(service(EXTERNAL + "\n cps = 1"))
        self.assertEqual(config.services[0].cps, (50, 10))
        self.assertIn(
            "attribute cps expects 2 values and 1 values were specified",
            messages(config)[0],
        )

    def test_disableYes(self) -> None:
        """
        disable = yes throws the entry away silently, even if it is broken.
        """
        config = parse(service("disable = yes\n flags = nonsense"))
        self.assertEqual(
            (config.services, config.problems, config.dropped), ((), (), ())
        )

    def test_disableNo(self) -> None:
        """
        disable = no keeps the service.
        """
        self.assertEqual(len(parse(service(EXTERNAL + "\n disable = no")).services), 1)

    def test_errorThenRestParsed(self) -> None:
        """
        After a bad value the rest of the block is still read and reported.
        """
        config = parse(service(EXTERNAL + "\n nice = x\n bogus = 1"))
        self.assertEqual(len(config.problems), 2)
        self.assertEqual(config.dropped, ("svc",))


class NumberTests(SynchronousTestCase):
    """
    Numbers beyond what xinetd can store are errors, as in xinetd.
    """

    def dropped(self, extra: str) -> str:
        """
        The one error of a service dropped for C{extra}.
        """
        # EXTERNAL has a user: a second user line would only be ignored.
        body = (
            EXTERNAL.replace("    user = root\n", "") if "user" in extra else EXTERNAL
        )
        config = parse(service(body + "\n" + extra))
        self.assertEqual(config.services, (), extra)
        (error,) = messages(config, Severity.ERROR)
        return error

    def test_instancesOverflow(self) -> None:
        """
        C{instances = 99999999999999999999999} drops the service (it used
        to run).
        """
        self.assertIn(
            "number out of range: 99999999999999999999999",
            self.dropped("instances = 99999999999999999999999"),
        )

    def test_intMax(self) -> None:
        """
        The largest C int is accepted, one more is not.
        """
        self.assertEqual(one("per_source = 2147483647").perSource, 2**31 - 1)
        self.dropped("per_source = 2147483648")

    def test_cpsOverflow(self) -> None:
        """
        Both cps numbers are bounded.
        """
        self.dropped("cps = 5 99999999999999999999")

    def test_rlimitOverflow(self) -> None:
        """
        An rlimit beyond 2**63 - 1 bytes (after its suffix) is an error.
        """
        self.assertEqual(
            one("rlimit_as = 8796093022207M").rlimits,
            (("RLIMIT_AS", 8796093022207 * 1024 * 1024),),
        )
        self.dropped("rlimit_as = 8796093022208M")

    def test_uidOverflow(self) -> None:
        """
        A numeric user beyond the uid range is an error.
        """
        self.dropped("user = 99999999999999999999")

    def test_notAsciiDigits(self) -> None:
        """
        Digits that are not ASCII, underscores and octal prefixes are not
        numbers.
        """
        for extra in ("port = \u00b2", "nice = 1_0", "umask = 0o22", "user = \u0663"):
            self.dropped(extra.replace("port", "instances"))

    def test_hugeDigitString(self) -> None:
        """
        A very long number is refused without converting it.
        """
        self.dropped("instances = " + "9" * 5000)
