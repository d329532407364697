"""
Tests for L{xinetd_twisted.config.inetdconf} and the inetd.conf step of
L{xinetd_twisted.config.reader.loadConfig}.
"""

from __future__ import annotations

import os
import pwd
import socket
from typing import Dict, Tuple

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.inetdconf import InetdConf, parseInetdConf
from xinetd_twisted.config.model import Config, Severity
from xinetd_twisted.config.parser import Line
from xinetd_twisted.config.reader import loadConfig
from xinetd_twisted.config.sysfiles import readServices

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "config", "inetd")
SERVICES = os.path.join(FIXTURES, "services")


def parse(text: str) -> InetdConf:
    """
    Read inetd.conf text as C{inetd.conf} with the fixture services file.
    """
    return parseInetdConf(text, "inetd.conf", readServices(SERVICES))


def attributes(conf: InetdConf, index: int = 0) -> Dict[str, Tuple[str, ...]]:
    """
    The attribute lines of one converted line, by name.
    """
    result = {}
    for line in conf.services[index].block.lines:
        assert isinstance(line, Line)
        result[line.name] = line.values
    return result


def errors(conf) -> list:
    return [str(p) for p in conf.problems if p.severity is not Severity.WARNING]


class LineTests(SynchronousTestCase):
    """
    One inetd.conf line to xinetd attributes.
    """

    def test_comments(self) -> None:
        """
        Comment lines (update-inetd's C{#<off>#} too) and blank lines are skipped.
        """
        conf = parse("# x\n\n   \n#<off># echo stream tcp nowait root internal\n")
        self.assertEqual((conf.services, conf.problems), ((), ()))

    def test_external(self) -> None:
        """
        An external line gets NAMEINARGS with argv = fields 7.., and the flags
        and groups xinetd's reader gives it.
        """
        conf = parse("ssh stream tcp nowait root /usr/sbin/sshd sshd -i\n")
        self.assertEqual(
            attributes(conf),
            {
                "flags": ("IPv4", "REUSE", "NOLIBWRAP", "NAMEINARGS"),
                "socket_type": ("stream",),
                "protocol": ("tcp",),
                "wait": ("no",),
                "user": ("root",),
                "groups": ("yes",),
                "server": ("/usr/sbin/sshd",),
                "server_args": ("sshd", "-i"),
            },
        )
        self.assertEqual(conf.services[0].block.name, "ssh")
        self.assertEqual(conf.services[0].block.location.line, 1)

    def test_internalIds(self) -> None:
        """
        Internal services get NAME-stream or NAME-dgram by socket type, and
        discard is accepted.
        """
        conf = parse(
            "echo stream tcp nowait root internal\n"
            "echo dgram udp wait root internal\n"
            "discard stream tcp nowait root internal\n"
        )
        self.assertEqual(
            [attributes(conf, i)["id"] for i in range(3)],
            [("echo-stream",), ("echo-dgram",), ("discard-stream",)],
        )
        first = attributes(conf)
        self.assertEqual(first["type"], ("INTERNAL",))
        self.assertEqual(first["flags"], ("IPv4",))
        self.assertNotIn("server", first)

    def test_unknownInternal(self) -> None:
        """
        C{internal} for a service with no builtin is an error naming the line.
        """
        conf = parse("# c\nssh stream tcp nowait root internal\n")
        self.assertEqual(conf.services, ())
        self.assertEqual(len(errors(conf)), 1)
        self.assertIn(
            "inetd.conf:2: error: no internal service ssh/stream", errors(conf)[0]
        )

    def test_tcpd(self) -> None:
        """
        tcpd is dropped: the daemon runs directly, argv[0] is its basename,
        and libwrap checks stay on under that name.
        """
        conf = parse(
            "finger stream tcp nowait nobody /usr/sbin/tcpd /usr/sbin/in.fingerd -w\n"
        )
        found = attributes(conf)
        self.assertEqual(found["server"], ("/usr/sbin/in.fingerd",))
        self.assertEqual(found["server_args"], ("in.fingerd", "-w"))
        self.assertEqual(found["libwrap"], ("in.fingerd",))
        self.assertNotIn("NOLIBWRAP", found["flags"])

    def test_tcpdRelative(self) -> None:
        """
        A daemon named without a path is found where tcpd looks, /usr/sbin.
        """
        conf = parse("finger stream tcp nowait nobody /usr/sbin/tcpd in.fingerd\n")
        self.assertEqual(attributes(conf)["server"], ("/usr/sbin/in.fingerd",))

    def test_userGroup(self) -> None:
        """
        C{user.group} and C{user:group} both set the group.
        """
        conf = parse(
            "talk dgram udp wait nobody.tty /usr/sbin/in.talkd in.talkd\n"
            "ntalk dgram udp wait nobody:tty /usr/sbin/in.ntalkd in.ntalkd\n"
        )
        for i in range(2):
            found = attributes(conf, i)
            self.assertEqual((found["user"], found["group"]), (("nobody",), ("tty",)))

    def test_rate(self) -> None:
        """
        C{.max} (per minute) becomes cps: the per-second rate rounded up and
        inetd's 10 minute pause; the wait word is kept.
        """
        conf = parse(
            "tftp dgram udp wait.10 root /usr/sbin/in.tftpd in.tftpd\n"
            "ssh stream tcp nowait.400 root /usr/sbin/sshd sshd -i\n"
        )
        self.assertEqual(attributes(conf, 0)["cps"], ("1", "600"))
        self.assertEqual(attributes(conf, 0)["wait"], ("yes",))
        self.assertEqual(attributes(conf, 1)["cps"], ("7", "600"))

    def test_badRates(self) -> None:
        """
        A per-source rate cannot be honoured and a rate that is not a
        positive number is wrong: both are errors.
        """
        conf = parse(
            "ssh stream tcp nowait.10.2 root /usr/sbin/sshd sshd\n"
            "ssh stream tcp nowait.x root /usr/sbin/sshd sshd\n"
            "ssh stream tcp nowait.0 root /usr/sbin/sshd sshd\n"
            "ssh stream tcp later root /usr/sbin/sshd sshd\n"
        )
        self.assertEqual(conf.services, ())
        self.assertEqual(
            [p.location.line for p in conf.problems], [1, 2, 3, 4], errors(conf)
        )

    def test_protocols(self) -> None:
        """
        tcp/tcp4 are IPv4, tcp6 is IPv6 only, tcp46 dual stack (no v6only
        written: xinetd's C{v6only = no} would turn V6ONLY on).
        """
        conf = parse(
            "echo stream tcp4 nowait root internal\n"
            "daytime stream tcp6 nowait root internal\n"
            "time dgram udp46 wait root internal\n"
        )
        found = [attributes(conf, i) for i in range(3)]
        self.assertEqual([f["flags"] for f in found], [("IPv4",), ("IPv6",), ("IPv6",)])
        self.assertEqual([f.get("v6only") for f in found], [None, ("yes",), None])
        self.assertEqual(found[2]["protocol"], ("udp",))

    def test_unsupportedProtocols(self) -> None:
        """
        Socket buffer options, unix sockets and unknown socket types are
        errors naming their lines.
        """
        conf = parse(
            "echo stream tcp,sndbuf=1024 nowait root internal\n"
            "/tmp/s stream unix nowait root /bin/cat cat\n"
            "echo rdm tcp nowait root internal\n"
        )
        self.assertEqual(conf.services, ())
        self.assertEqual([p.location.line for p in conf.problems], [1, 2, 3])
        self.assertIn("sndbuf=1024", str(conf.problems[0]))

    def test_hostPrefix(self) -> None:
        """
        C{host:service} binds the service; C{[v6]:} brackets are removed.
        """
        conf = parse(
            "127.0.0.1:echo stream tcp nowait root internal\n"
            "[::1]:echo stream tcp6 nowait root internal\n"
        )
        self.assertEqual(attributes(conf, 0)["bind"], ("127.0.0.1",))
        self.assertEqual(attributes(conf, 1)["bind"], ("::1",))
        self.assertEqual(conf.services[1].block.name, "echo")

    def test_defaultHost(self) -> None:
        """
        A bare C{host:} line binds the lines after it, a line's own prefix
        wins, and C{*:} returns to every address.
        """
        conf = parse(
            "127.0.0.1:\n"
            "echo stream tcp nowait root internal\n"
            "*:discard stream tcp nowait root internal\n"
            "*:\n"
            "daytime stream tcp nowait root internal\n"
        )
        self.assertEqual(
            [attributes(conf, i).get("bind") for i in range(3)],
            [("127.0.0.1",), None, None],
        )

    def test_rpc(self) -> None:
        """
        RPC lines are errors naming the line; the other lines are still used.
        """
        conf = parse(
            "rstatd/1-5 dgram rpc/udp wait nobody /usr/sbin/tcpd /usr/sbin/rpc.rstatd\n"
            "echo stream tcp nowait root internal\n"
        )
        self.assertEqual(len(conf.services), 1)
        self.assertIn(
            "inetd.conf:1: error: RPC services are not supported", errors(conf)[0]
        )

    def test_numericPort(self) -> None:
        """
        A port number in the service field makes an UNLISTED service on it.
        """
        conf = parse("8007 stream tcp nowait nobody /bin/cat cat\n")
        found = attributes(conf)
        self.assertEqual((found["type"], found["port"]), (("UNLISTED",), ("8007",)))

    def test_unknownName(self) -> None:
        """
        A name that is neither in the services file nor a number is an error.
        """
        conf = parse("nosuch stream tcp nowait nobody /bin/cat cat\n")
        self.assertIn("nosuch/tcp is not in the services file", errors(conf)[0])

    def test_sameIdTwice(self) -> None:
        """
        A second line with the same id (tcp and tcp6 pairs) gets the protocol
        appended, with a warning.
        """
        conf = parse(
            "echo stream tcp nowait root internal\necho stream tcp6 nowait root internal\n"
        )
        self.assertEqual(attributes(conf, 1)["id"], ("echo-stream-tcp6",))
        self.assertEqual(conf.services[1].baseId, "echo-stream")
        self.assertEqual([p.severity for p in conf.problems], [Severity.WARNING])

    def test_tooFewFields(self) -> None:
        """
        A line with fewer than six fields is an error.
        """
        conf = parse("echo stream tcp nowait root\n")
        self.assertIn("expected at least 6 fields", errors(conf)[0])

    def test_crlf(self) -> None:
        """
        A CRLF file reads as its LF twin.
        """
        text = "ssh stream tcp nowait root /usr/sbin/sshd sshd -i\n"
        self.assertEqual(
            attributes(parse(text.replace("\n", "\r\n"))), attributes(parse(text))
        )

    def test_tcpmux(self) -> None:
        """
        C{tcpmux/+name} is a TCPMUXPLUS sub-service, C{tcpmux/name} a TCPMUX one.
        """
        conf = parse(
            "tcpmux/+hello stream tcp nowait nobody /bin/echo echo hi\n"
            "tcpmux/bye stream tcp nowait nobody /bin/echo echo bye\n"
        )
        self.assertEqual(conf.services[0].block.name, "hello")
        self.assertEqual(attributes(conf, 0)["type"], ("TCPMUXPLUS", "UNLISTED"))
        self.assertEqual(attributes(conf, 1)["type"], ("TCPMUX", "UNLISTED"))


class NotAsciiDigitTests(SynchronousTestCase):
    """
    Characters that C{str.isdigit} takes and C{int} refuses (they used to
    end in a ValueError traceback).
    """

    def test_servicePort(self) -> None:
        """
        A superscript digit as the service is a line error.
        """
        conf = parse("\u00b2 stream tcp nowait root /bin/cat cat\n")
        self.assertEqual(
            (conf.services, [p.severity for p in conf.problems]),
            ((), [Severity.ERROR]),
        )

    def test_rate(self) -> None:
        """
        A superscript digit as the rate is a line error.
        """
        conf = parse("echo stream tcp nowait.\u00b2 root /bin/cat cat\n")
        self.assertEqual(
            (conf.services, [p.severity for p in conf.problems]),
            ((), [Severity.ERROR]),
        )


class FixtureTests(SynchronousTestCase):
    """
    The fixture files: real Debian lines and an openbsd-inetd style file.
    """

    def read(self, name: str) -> InetdConf:
        with open(os.path.join(FIXTURES, name)) as f:
            return parse(f.read())

    def test_debian(self) -> None:
        """
        Every Debian line but the RPC one converts, with tcpd unwrapped.
        """
        conf = self.read("debian.conf")
        names = [s.block.name for s in conf.services]
        self.assertEqual(
            names,
            "tftp git rsync ssh finger ident ftp talk ntalk pop3 gopher www".split(),
        )
        self.assertEqual([p.location.line for p in conf.problems], [12])
        www = attributes(conf, names.index("www"))
        self.assertEqual(www["user"] + www["group"], ("nobody", "www-data"))
        self.assertEqual(www["server"], ("/usr/sbin/micro-httpd",))
        self.assertEqual(www["server_args"], ("micro-httpd", "/var/www/html"))

    def test_openbsd(self) -> None:
        """
        The openbsd-inetd file converts without errors; the default address
        line applies until C{*:}.
        """
        conf = self.read("openbsd.conf")
        self.assertEqual(errors(conf), [])
        binds = {
            s.block.name: attributes(conf, i).get("bind")
            for i, s in enumerate(conf.services)
        }
        self.assertEqual(
            binds,
            {
                "echo": None,
                "discard": None,
                "daytime": None,
                "time": None,
                "chargen": None,
                "finger": ("127.0.0.1",),
                "auth": ("::1",),
                "tftp": None,
                "8007": None,
            },
        )


class LoadTests(SynchronousTestCase):
    """
    C{loadConfig(..., inetdConf=PATH)}: inetd.conf after the xinetd files.
    """

    def load(self, xinetd: str, inetd: str) -> Config:
        directory = self.mktemp()
        os.makedirs(directory)
        main = os.path.join(directory, "xinetd.conf")
        other = os.path.join(directory, "inetd.conf")
        with open(main, "w") as f:
            f.write(xinetd)
        with open(other, "w") as f:
            f.write(inetd)
        self.inetdPath = other
        return loadConfig(main, inetdConf=other, isRoot=True, servicesFile=SERVICES)

    def test_defaultsApply(self) -> None:
        """
        The xinetd defaults fill inetd.conf services, even when the defaults
        block is in the xinetd file.
        """
        config = self.load(
            "defaults\n{\n\tinstances = 7\n\tonly_from = 127.0.0.1\n"
            "\tlog_on_success = PID\n\tlog_type = SYSLOG daemon\n}\n",
            "echo stream tcp nowait root internal\n",
        )
        (echo,) = config.services
        self.assertEqual(echo.serviceId, "echo-stream")
        self.assertEqual(echo.instances, 7)
        self.assertEqual([a.word for a in echo.onlyFrom or ()], ["127.0.0.1"])
        self.assertEqual(echo.logOnSuccess, frozenset({"PID"}))
        self.assertEqual(echo.family, socket.AF_INET)
        self.assertEqual(echo.port, 7)

    def test_externalService(self) -> None:
        """
        An external line becomes a service with NAMEINARGS argv, bind, group
        and the rate as cps.
        """
        config = self.load(
            "",
            "127.0.0.1:8007 stream tcp nowait.120 nobody:nogroup /bin/cat cat -u\n",
        )
        (cat,) = config.services
        self.assertEqual(
            (cat.serviceId, cat.port, cat.bind, cat.server, cat.argv),
            ("8007", 8007, "127.0.0.1", "/bin/cat", ("cat", "-u")),
        )
        self.assertEqual((cat.user, cat.group, cat.groups), ("nobody", "nogroup", True))
        self.assertEqual(cat.cps, (2, 600))
        self.assertIn("NOLIBWRAP", cat.flags)
        self.assertEqual(config.files[-1], self.inetdPath)

    def test_dgramRateWaits(self) -> None:
        """
        C{wait.N} on a datagram service keeps it waiting (xinetd makes it
        nowait).
        """
        config = self.load("", "time dgram udp wait.60 root internal\n")
        (time,) = config.services
        self.assertEqual((time.wait, time.cps), (True, (1, 600)))

    def test_xinetdWins(self) -> None:
        """
        An xinetd service with the same id hides the inetd.conf line, even a
        disabled one, with a warning naming both places.
        """
        config = self.load(
            "service echo\n{\n\tid = echo-stream\n\ttype = INTERNAL\n"
            "\tsocket_type = stream\n\twait = no\n\tdisable = yes\n}\n",
            "echo stream tcp nowait root internal\necho dgram udp wait root internal\n",
        )
        self.assertEqual([s.serviceId for s in config.services], ["echo-dgram"])
        (note,) = config.problems
        self.assertEqual(note.severity, Severity.WARNING)
        self.assertTrue(str(note).startswith(f"{self.inetdPath}:1: "))
        self.assertIn("xinetd.conf:1 has the same id", str(note))

    def test_enabledList(self) -> None:
        """
        C{enabled} in the xinetd defaults selects inetd.conf services too.
        """
        config = self.load(
            "defaults\n{\n\tenabled = echo-dgram\n}\n",
            "echo stream tcp nowait root internal\necho dgram udp wait root internal\n",
        )
        self.assertEqual([s.serviceId for s in config.services], ["echo-dgram"])

    def test_errorsNameTheLine(self) -> None:
        """
        Lines that cannot be honoured, in the reader or when filled, are
        errors at inetd.conf:LINE; the other lines are used.
        """
        config = self.load(
            "",
            "rstatd/1-5 dgram rpc/udp wait nobody /usr/sbin/tcpd /usr/sbin/rpc.rstatd\n"
            "echo stream tcp nowait nosuchuser-xt internal\n"
            "ssh stream tcp nowait root /nonexistent/sshd sshd -i\n"
            "discard stream tcp nowait root internal\n",
        )
        self.assertEqual([s.serviceId for s in config.services], ["discard-stream"])
        self.assertEqual(
            [(p.location.path, p.location.line, p.severity) for p in config.problems],
            [(self.inetdPath, n, Severity.ERROR) for n in (1, 2, 3)],
        )
        self.assertEqual(config.dropped, ("echo-stream", "ssh"))

    def test_duplicatePort(self) -> None:
        """
        A line on the same port and address as an xinetd service (another id)
        is dropped as a duplicate, as xinetd's check or bind would.
        """
        config = self.load(
            "service echo\n{\n\ttype = INTERNAL\n\tsocket_type = stream\n"
            "\twait = no\n\tbind = 127.0.0.1\n}\n",
            "127.0.0.1:echo stream tcp nowait root internal\n",
        )
        self.assertEqual([s.serviceId for s in config.services], ["echo"])
        self.assertIn("DISABLING", str(config.problems[0]))

    def test_unreadable(self) -> None:
        """
        An inetd.conf that cannot be read is an error; the xinetd services run.
        """
        main = self.mktemp()
        with open(main, "w") as f:
            f.write(
                "service echo\n{\n\ttype = INTERNAL\n\tsocket_type = stream\n\twait = no\n}\n"
            )
        config = loadConfig(
            main, inetdConf=main + ".missing", isRoot=True, servicesFile=SERVICES
        )
        self.assertEqual([s.serviceId for s in config.services], ["echo"])
        self.assertIn("cannot read inetd.conf", str(config.problems[0]))

    def test_withoutInetd(self) -> None:
        """
        Without C{inetdConf} no inetd.conf is read.
        """
        main = self.mktemp()
        with open(main, "w") as f:
            f.write("")
        config = loadConfig(main, isRoot=True, servicesFile=SERVICES)
        self.assertEqual(config.files, (main,))


class TapOptionTests(SynchronousTestCase):
    """
    The twistd plugin's C{--inetd-compat PATH}.
    """

    def test_inetdCompat(self) -> None:
        """
        C{--inetd-compat PATH} loads the inetd.conf services after the xinetd
        file; without it they are not loaded.
        """
        from xinetd_twisted.tap import Options

        main, inetd = self.mktemp(), self.mktemp()
        with open(main, "w") as f:
            f.write("")
        user = pwd.getpwuid(os.geteuid()).pw_name
        with open(inetd, "w") as f:
            f.write(f"127.0.0.1:8007 stream tcp nowait {user} /bin/cat cat\n")
        withInetd = Options()
        withInetd.parseOptions(["--config", main, "--inetd-compat", inetd])
        self.assertEqual(
            [s.serviceId for s in withInetd["loadedConfig"].services], ["8007"]
        )
        without = Options()
        without.parseOptions(["--config", main])
        self.assertEqual(without["loadedConfig"].services, ())
