"""
Tests for L{xinetd_twisted.config.reader}: what a reload needs to know
(files with errors, dropped services, each service's file), strict loading,
suggestions for unknown attributes, and files another user could change.
"""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, messages, parse, service
from xinetd_twisted.config.model import ConfigError, Location, Severity


def other(port: int, name: str) -> str:
    """
    A valid service block on C{port}.
    """
    return service(EXTERNAL.replace("4000", str(port)), name=name)


class ReloadContractTests(SynchronousTestCase):
    """
    L{Config.filesWithErrors}, L{Config.droppedServices},
    L{ServiceConfig.configFile}.
    """

    def setUp(self) -> None:
        self.dir = FilePath(self.mktemp())
        self.dir.makedirs()

    def file(self, name: str, text: str) -> str:
        child = self.dir.child(name)
        child.setContent(text.encode())
        return child.path

    def test_configFile(self) -> None:
        """
        Each service tells the file that defines it.
        """
        inc = self.file("inc", other(4001, "b"))
        config = parse(f"include {inc}\n" + other(4000, "a"), path="main")
        self.assertEqual(
            [(s.serviceId, s.configFile) for s in config.services],
            [("b", inc), ("a", "main")],
        )

    def test_filesWithErrors(self) -> None:
        """
        A file with an error is listed; a file with only warnings is not.
        """
        bad = self.file("bad", other(4001, "b").replace("wait = no", "wait = maybe"))
        warned = self.file("warned", other(4002, "c").replace("{\n", "{\n bogus = 1\n"))
        config = parse(f"include {bad}\ninclude {warned}\n" + other(4000, "a"))
        self.assertEqual(config.filesWithErrors, frozenset({bad}))
        self.assertEqual(config.droppedServices, frozenset({"b"}))

    def test_droppedServicesLowerCase(self) -> None:
        """
        Dropped ids are lower-cased, and the id is used, not the name.
        """
        config = parse(service(EXTERNAL + "\n id = MyId\n nice = x", name="Svc"))
        self.assertEqual(config.droppedServices, frozenset({"myid"}))

    def test_missingCloseBraceSwallows(self) -> None:
        """
        Deleting one closing brace in an included file drops that service
        and swallows the next one: both are dropped services, the file has
        errors, each error names FILE:LINE, and the other files' services
        still run.
        """
        text = other(4001, "b") + other(4002, "c") + other(4003, "d")
        lines = text.split("\n")
        closing = [i for i, line in enumerate(lines) if line == "}"]
        del lines[closing[0]]
        inc = self.file("inc", "\n".join(lines))
        config = parse(f"include {inc}\n" + other(4000, "a"))
        self.assertEqual([s.serviceId for s in config.services], ["d", "a"])
        self.assertEqual(config.droppedServices, frozenset({"b", "c"}))
        self.assertEqual(config.filesWithErrors, frozenset({inc}))
        self.assertEqual(
            messages(config, Severity.ERROR),
            [
                f"{inc}:10: service b: error: a 'service' line inside the entry "
                f"started at {inc}:1: a missing '}}'?",
                f"{inc}:10: service c: error: this service is inside the broken "
                f"entry at {inc}:1 (a missing '}}'?) and is not read",
            ],
        )

    def test_swallowedId(self) -> None:
        """
        A swallowed block's C{id} is the dropped id.
        """
        swallowed = other(4002, "c").replace("{\n", "{\n id = cee\n")
        text = service(EXTERNAL + "\n nice= 1", name="b").replace("}\n", "") + swallowed
        config = parse(text)
        self.assertEqual(config.droppedServices, frozenset({"b", "cee"}))

    def test_missingBraceAtEnd(self) -> None:
        """
        A last block without its brace is a dropped service.
        """
        config = parse(other(4000, "a").rstrip("}\n"))
        self.assertEqual(config.droppedServices, frozenset({"a"}))

    def test_swallowedInclude(self) -> None:
        """
        An include line swallowed by a broken entry is not read, and its
        file counts as a file with errors (its services only look gone).
        """
        inc = self.file("inc", other(4001, "b"))
        config = parse(f"service a\n{{\n socket_type = stream\ninclude {inc}\n")
        self.assertEqual(config.services, ())
        self.assertIn(inc, config.filesWithErrors)

    def test_swallowedIncludedir(self) -> None:
        """
        An includedir line swallowed by a broken entry lists the files it
        would have read as files with errors.
        """
        sub = self.dir.child("d")
        sub.makedirs()
        sub.child("x").setContent(other(4001, "x").encode())
        sub.child("y.conf").setContent(b"")
        config = parse(f"service a\n{{\n wait = no\nincludedir {sub.path}\n}}\n")
        self.assertEqual(
            config.filesWithErrors, frozenset({"test.conf", sub.child("x").path})
        )

    def test_missingOpenBrace(self) -> None:
        """
        A service without its C{{} is a dropped service.
        """
        config = parse("service a\n socket_type = stream\n}\n" + other(4001, "b"))
        self.assertEqual(
            ([s.serviceId for s in config.services], config.droppedServices),
            (["b"], frozenset({"a"})),
        )

    def test_cleanConfig(self) -> None:
        """
        Nothing wrong: no files with errors, no dropped services.
        """
        config = parse(other(4000, "a"))
        self.assertEqual(
            (config.filesWithErrors, config.droppedServices), (frozenset(), frozenset())
        )


class StrictTests(SynchronousTestCase):
    """
    C{strict=True}: warnings are errors.
    """

    def test_warningDropsService(self) -> None:
        """
        A service with a warning is dropped, the warning now an error.
        """
        text = service(EXTERNAL + "\n only_frm = 127.0.0.1", name="a") + other(
            4001, "b"
        )
        config = parse(text, strict=True)
        self.assertEqual([s.serviceId for s in config.services], ["b"])
        self.assertEqual(config.droppedServices, frozenset({"a"}))
        self.assertEqual(
            messages(config),
            [
                "test.conf:10: service a: attribute only_frm: error: bad service "
                "attribute: only_frm (did you mean only_from?) (an error under --strict)"
            ],
        )

    def test_notStrict(self) -> None:
        """
        Without strict the same service runs, with a warning.
        """
        config = parse(service(EXTERNAL + "\n only_frm = 127.0.0.1", name="a"))
        self.assertEqual(len(config.services), 1)
        self.assertEqual(config.problems[0].severity, Severity.WARNING)

    def test_warningInDefaultsFatal(self) -> None:
        """
        A warning in defaults refuses the configuration.
        """
        with self.assertRaises(ConfigError) as raised:
            parse("defaults\n{\n instancs = 3\n}\n" + other(4000, "a"), strict=True)
        self.assertEqual(raised.exception.problems[0].severity, Severity.FATAL)
        self.assertIn("did you mean instances?", str(raised.exception))

    def test_fillWarning(self) -> None:
        """
        A warning found when filling in (an undefined passenv variable) drops
        the service too.
        """
        text = service(EXTERNAL + "\n passenv = NOT_SET", name="a")
        config = parse(text, strict=True)
        self.assertEqual(
            (config.services, config.dropped, config.problems[0].severity),
            ((), ("a",), Severity.ERROR),
        )

    def test_topLevelWarning(self) -> None:
        """
        A top-level warning becomes an error that drops nothing more.
        """
        config = parse("service a {\n wait = no\n", strict=True)
        self.assertEqual(
            [p.severity for p in config.problems], [Severity.ERROR, Severity.ERROR]
        )

    def test_inetdWarning(self) -> None:
        """
        An inetd.conf line with a warning is dropped under strict.
        """
        inetd = FilePath(self.mktemp())
        inetd.setContent(b"8009 dgram udp wait nobody /bin/cat\n")
        config = parse("", strict=True, inetdConf=inetd.path)
        self.assertEqual((config.services, config.dropped), ((), ("8009",)))
        self.assertIn(inetd.path, config.filesWithErrors)


class SuggestionTests(SynchronousTestCase):
    """
    Unknown attributes get a "did you mean".
    """

    def test_service(self) -> None:
        """
        A misspelt service attribute names the closest one.
        """
        config = parse(service(EXTERNAL + "\n only_frm = 127.0.0.1"))
        self.assertEqual(
            messages(config),
            [
                "test.conf:10: service svc: attribute only_frm: warning: bad "
                "service attribute: only_frm (did you mean only_from?)"
            ],
        )

    def test_defaults(self) -> None:
        """
        In defaults, the suggestion is an attribute defaults may have.
        """
        config = parse("defaults\n{\n no_acces = 10.0.0.1\n}\n")
        self.assertIn("(did you mean no_access?)", messages(config)[0])


class WritableTests(SynchronousTestCase):
    """
    A root daemon warns about files another user could change.
    """

    def setUp(self) -> None:
        self.dir = FilePath(self.mktemp())
        self.dir.makedirs()
        os.chmod(self.dir.path, 0o755)

    def file(self, name: str, text: str, mode: int = 0o644) -> str:
        child = self.dir.child(name)
        child.setContent(text.encode())
        os.chmod(child.path, mode)
        return child.path

    def warnings(self, text: str, **kw: object) -> list:
        config = parse(text, warnWritable=True, **kw)
        return messages(config, Severity.WARNING)

    def test_includedFile(self) -> None:
        """
        An included file writable by everyone is named at the include line.
        """
        inc = self.file("inc", "", 0o666)
        self.assertEqual(
            self.warnings(f"\ninclude {inc}\n"),
            [
                f"test.conf:2: warning: {inc} is writable by everyone (mode 0666): "
                "another user could change what the root daemon runs"
            ],
        )

    def test_mainFile(self) -> None:
        """
        The main file is checked too (at line 0).
        """
        from tests.test_config_support import SYSFILES
        from xinetd_twisted.config import loadConfig

        main = self.file("main", "", 0o664)
        config = loadConfig(
            main, warnWritable=True, environ={}, isRoot=True, **SYSFILES
        )
        self.assertEqual([str(p.location) for p in config.problems], [f"{main}:0"])
        self.assertIn("writable by group", str(config.problems[0]))

    def test_inetdConf(self) -> None:
        """
        The inetd.conf read with C{inetdConf} is checked too.
        """
        inetd = self.file("inetd.conf", "", 0o666)
        (warning,) = self.warnings("", inetdConf=inetd)
        self.assertTrue(warning.startswith(f"{inetd}:0: warning: {inetd} is writable"))

    def test_includedir(self) -> None:
        """
        An includedir writable by others is named at its line.
        """
        sub = self.dir.child("d")
        sub.makedirs()
        os.chmod(sub.path, 0o777)
        self.assertEqual(
            self.warnings(f"includedir {sub.path}\n"),
            [
                f"test.conf:1: warning: {sub.path} is writable by everyone (mode "
                "0777): another user could change what the root daemon runs"
            ],
        )

    def test_notRootOwned(self) -> None:
        """
        A file owned by another user than root is named.
        """
        inc = self.file("inc", "")
        if os.geteuid() == 0:
            os.chown(inc, 65534, -1)
        (warning,) = self.warnings(f"include {inc}\n")
        self.assertIn(f"{inc} is owned by uid {os.stat(inc).st_uid}, not root", warning)

    def test_server(self) -> None:
        """
        A server executable writable by others is named at its C{server}
        line.
        """
        program = self.file("prog", "#!/bin/sh\n", 0o777)
        text = service(EXTERNAL.replace("/bin/cat", program))
        self.assertEqual(
            self.warnings(text),
            [
                f"test.conf:7: service svc: attribute server: warning: server "
                f"{program} is writable by everyone (mode 0777): another user "
                "could change what the root daemon runs or sends"
            ],
        )

    def test_banner(self) -> None:
        """
        A banner writable by others is named at its line, even from
        defaults.
        """
        banner = self.file("banner", "hi\n", 0o666)
        text = f"defaults\n{{\n banner_fail = {banner}\n}}\n" + service(EXTERNAL)
        (warning,) = self.warnings(text)
        self.assertTrue(
            warning.startswith(
                f"test.conf:3: service svc: attribute banner_fail: warning: banner {banner}"
            ),
            warning,
        )

    def test_strictDropsService(self) -> None:
        """
        Under strict, a service whose server others can change is dropped.
        """
        program = self.file("prog", "#!/bin/sh\n", 0o777)
        text = service(EXTERNAL.replace("/bin/cat", program))
        config = parse(text, warnWritable=True, strict=True)
        self.assertEqual(config.dropped, ("svc",))

    def test_notRoot(self) -> None:
        """
        Without warnWritable (a daemon that is not root) nothing is said.
        """
        inc = self.file("inc", "", 0o666)
        self.assertEqual(messages(parse(f"include {inc}\n", warnWritable=False)), [])

    def test_defaultFollowsEuid(self) -> None:
        """
        By default the check is on exactly when the effective uid is 0.
        """
        inc = self.file("inc", "", 0o666)
        self.patch(os, "geteuid", lambda: 1000)
        self.assertEqual(messages(parse(f"include {inc}\n", warnWritable=None)), [])
        self.patch(os, "geteuid", lambda: 0)
        self.assertEqual(len(messages(parse(f"include {inc}\n", warnWritable=None))), 1)


class LocationTests(SynchronousTestCase):
    """
    Problems keep FILE:LINE.
    """

    def test_secondDefaultsLocation(self) -> None:
        """
        The ignored second defaults block is named at its line.
        """
        config = parse("defaults\n{\n}\ndefaults\n{\n}\n")
        self.assertEqual(config.problems[0].location, Location("test.conf", 4))
