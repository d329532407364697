"""
Tests for L{xinetd_twisted.config.parser}: the grammar, includes, locations.
"""

from __future__ import annotations

import os
from typing import List

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, messages, parse, service
from xinetd_twisted.config.model import Location, Severity
from xinetd_twisted.config.parser import Block, Broken, Line, Reader, parseLine


class GrammarTests(SynchronousTestCase):
    """
    Blocks, lines and operators as xinetd reads them.
    """

    def test_validService(self) -> None:
        """
        A well-formed service block gives one service with its location.
        """
        config = parse("# comment\n\n" + service(EXTERNAL))
        self.assertEqual([s.serviceId for s in config.services], ["svc"])
        self.assertEqual(config.services[0].location, Location("test.conf", 3))
        self.assertEqual(config.problems, ())

    def test_noInlineComments(self) -> None:
        """
        A C{#} after a value is part of the value.
        """
        config = parse(service(EXTERNAL + "\n server_args = a b # note"))
        self.assertEqual(config.services[0].argv, ("cat", "a", "b", "#", "note"))

    def test_noQuoting(self) -> None:
        """
        Quotes are ordinary characters; words split on blanks only.
        """
        config = parse(service(EXTERNAL + '\n server_args = -c "echo hi"'))
        self.assertEqual(config.services[0].serverArgs, ("-c", '"echo', 'hi"'))

    def test_caseInsensitiveKeywords(self) -> None:
        """
        Keywords, attribute names and values are case-insensitive.
        """
        body = EXTERNAL.replace("socket_type = stream", "SOCKET_TYPE = STREAM")
        body = body.replace("wait = no", "Wait = NO")
        config = parse("SERVICE svc\n{\n" + body + "\n}\n")
        self.assertEqual(config.services[0].socketType, "stream")
        self.assertFalse(config.services[0].wait)

    def test_braceOnServiceLine(self) -> None:
        """
        C{service foo {} on one line is an error and the block is skipped.
        """
        config = parse("service svc {\n" + EXTERNAL + "\n}\n")
        self.assertEqual((config.services, config.dropped), ((), ("svc",)))
        self.assertEqual(
            messages(config),
            ["test.conf:2: service svc: error: Service svc: missing '{'"],
        )

    def test_missingServiceKeyword(self) -> None:
        """
        Anything else at top level is reported and skipped to the next C{}}.
        """
        config = parse("bogus\n{\n a = b\n}\n" + service(EXTERNAL))
        self.assertEqual(
            messages(config), ["test.conf:1: error: missing service keyword"]
        )
        self.assertEqual(len(config.services), 1)

    def test_incompleteEntry(self) -> None:
        """
        End of file inside a block drops the service.
        """
        config = parse("service svc\n{\n" + EXTERNAL + "\n")
        self.assertEqual(config.services, ())
        self.assertIn("incomplete entry", messages(config, Severity.ERROR)[0])
        self.assertEqual(config.dropped, ("svc",))

    def test_missingCloseWhileSkipping(self) -> None:
        """
        End of file while skipping a bad entry is a warning.
        """
        config = parse("service svc {\n wait = no\n")
        self.assertIn(
            "test.conf:2: warning: missing } in last service entry", messages(config)
        )

    def test_needsSpaceBeforeOperator(self) -> None:
        """
        C{name= value} drops the whole service, naming the attribute.
        """
        config = parse(service(EXTERNAL + "\n nice= 3"))
        self.assertEqual(config.services, ())
        self.assertEqual(
            messages(config),
            [
                "test.conf:10: service svc: attribute nice: error: "
                "Attribute nice needs a space before operator"
            ],
        )

    def test_spaceAfterOperatorOptional(self) -> None:
        """
        C{name =value} is fine.
        """
        config = parse(service(EXTERNAL + "\n nice =3"))
        self.assertEqual(config.services[0].nice, 3)

    def test_badOperator(self) -> None:
        """
        An unknown operator drops the service.
        """
        config = parse(service(EXTERNAL + "\n nice := 3"))
        self.assertEqual(config.services, ())
        self.assertIn("Bad operator for attribute: nice", messages(config)[0])

    def test_includeInsideService(self) -> None:
        """
        C{include} inside a block is a line without operator: service dropped.
        """
        config = parse(service(EXTERNAL + "\n include /dev/null"))
        self.assertEqual(config.services, ())
        self.assertEqual(config.problems[0].location.line, 10)

    def test_longLine(self) -> None:
        """
        A line over 16 KiB breaks its block.
        """
        config = parse(service(EXTERNAL + "\n server_args = " + "x" * 17000))
        self.assertEqual(config.services, ())
        self.assertIn("longer than 16384", messages(config)[0])

    def test_crlf(self) -> None:
        """
        CRLF line ends are accepted.
        """
        config = parse(service(EXTERNAL).replace("\n", "\r\n"))
        self.assertEqual(len(config.services), 1)

    def test_extraWordsAfterName(self) -> None:
        """
        Words after the service name are ignored.
        """
        config = parse(service(EXTERNAL, name="svc extra words"))
        self.assertEqual(config.services[0].name, "svc")


class IncludeTests(SynchronousTestCase):
    """
    C{include} and C{includedir}.
    """

    def setUp(self) -> None:
        self.dir = FilePath(self.mktemp())
        self.dir.makedirs()

    def test_include(self) -> None:
        """
        An included file's services are read at the include's position, and
        its problems carry its own path and line.
        """
        inc = self.dir.child("inc")
        inc.setContent(("\n" + service(EXTERNAL + "\n bogus = 1", name="a")).encode())
        config = parse(
            f"include {inc.path}\n"
            + service(EXTERNAL.replace("4000", "4001"), name="b")
        )
        self.assertEqual([s.name for s in config.services], ["a", "b"])
        self.assertEqual(
            messages(config),
            [
                f"{inc.path}:11: service a: attribute bogus: warning: bad service attribute: bogus"
            ],
        )
        self.assertEqual(config.files, ("test.conf", inc.path))

    def test_includeMissing(self) -> None:
        """
        A missing included file is an error; reading goes on.
        """
        config = parse("include /nonexistent/x\n" + service(EXTERNAL))
        self.assertEqual(len(config.services), 1)
        self.assertIn("Unable to open included configuration file", messages(config)[0])

    def test_includeLoop(self) -> None:
        """
        A file including itself is reported, not followed forever.
        """
        me = self.dir.child("me")
        me.setContent(f"include {me.path}\n".encode() + service(EXTERNAL).encode())
        config = parse(f"include {me.path}\n")
        self.assertEqual(len(config.services), 1)
        self.assertIn("include loop", messages(config)[0])

    def test_includedirOrderAndFilter(self) -> None:
        """
        includedir reads names in byte order and skips names with a dot or
        ending in a tilde.
        """
        for i, name in enumerate(["b", "A", "0first", "c.conf", "d~", "e.dpkg-old"]):
            body = EXTERNAL.replace("4000", str(5000 + i))
            self.dir.child(name).setContent(service(body, name=name).encode())
        config = parse(f"includedir {self.dir.path}\n")
        self.assertEqual([s.name for s in config.services], ["0first", "A", "b"])

    def test_includedirNonRegular(self) -> None:
        """
        A directory inside an includedir is an error and skipped.
        """
        self.dir.child("sub").makedirs()
        config = parse(f"includedir {self.dir.path}\n")
        self.assertEqual(
            messages(config),
            [
                f"test.conf:1: error: {os.path.join(self.dir.path, 'sub')} is not a regular file. It is being skipped."
            ],
        )

    def test_defaultsInIncludedFile(self) -> None:
        """
        A defaults block in an included file merges into the same defaults,
        and does not count as a second one.
        """
        inc = self.dir.child("inc")
        inc.setContent(b"defaults\n{\n instances = 7\n}\n")
        config = parse(
            f"defaults\n{{\n per_source = 3\n}}\ninclude {inc.path}\n"
            + service(EXTERNAL)
        )
        self.assertEqual(config.problems, ())
        self.assertEqual(
            (config.services[0].instances, config.services[0].perSource), (7, 3)
        )

    def test_secondDefaultsInFile(self) -> None:
        """
        A second defaults block in one file is an error and ignored.
        """
        config = parse(
            "defaults\n{\n instances = 7\n}\ndefaults\n{\n instances = 9\n}\n"
            + service(EXTERNAL)
        )
        self.assertEqual(config.services[0].instances, 7)
        self.assertIn("only 1 defaults entry is allowed", messages(config)[0])


class ConsumerTests(SynchronousTestCase):
    """
    A L{Reader} with a consumer hands each block over as it is read.
    """

    def test_blocksInReadingOrder(self) -> None:
        """
        The consumer gets every block in reading order, broken and
        swallowed ones included, and L{Reader.blocks} stays empty.
        """
        got: List[Block] = []
        reader = Reader(consumer=got.append)
        reader.readText(
            "defaults\n{\n instances = 3\n}\n"
            "service a\n{\n wait = no\n"
            "service b\n{\n}\n"
            "service c\n{\n wait = yes\n}\n",
            "t.conf",
        )
        self.assertEqual(
            [(b.kind, b.name) for b in got],
            [("defaults", "defaults"), ("service", "a"), ("service", "b")]
            + [("service", "c")],
        )
        self.assertIsInstance(got[1].lines[-1], Broken)
        self.assertEqual(reader.blocks, [])

    def test_sameAsWithoutConsumer(self) -> None:
        """
        The blocks consumed are those a reader without a consumer keeps.
        """
        text = service(EXTERNAL, name="a") + service(EXTERNAL, name="b")
        got: List[Block] = []
        Reader(consumer=got.append).readText(text, "t.conf")
        kept = Reader()
        kept.readText(text, "t.conf")
        self.assertEqual(got, kept.blocks)

    def test_loadUnchanged(self) -> None:
        """
        Loading (which consumes blocks as read) still reports a problem of
        a later block at its file and line.
        """
        config = parse(service(EXTERNAL, name="a") + service("bogus = 1", name="b"))
        self.assertEqual([s.name for s in config.services], ["a"])
        self.assertTrue(any("test.conf:13" in m for m in messages(config)))


class RepeatedLineTests(SynchronousTestCase):
    """
    L{Reader.parseLine} splits each distinct line text once per load.
    """

    def test_sameAsParseLine(self) -> None:
        """
        A line seen before gives what L{parseLine} gives, at its own location.
        """
        reader = Reader()
        first = reader.parseLine("\tserver_args = -a  b", Location("t.conf", 3))
        again = reader.parseLine("\tserver_args = -a  b", Location("t.conf", 9))
        self.assertEqual(
            again, parseLine("\tserver_args = -a  b", Location("t.conf", 9))
        )
        self.assertEqual(first.location, Location("t.conf", 3))
        self.assertIs(again.values, first.values)

    def test_brokenNotKept(self) -> None:
        """
        A broken line is reported each time it is met, at each location.
        """
        reader = Reader()
        reader.parseLine("wait= no", Location("t.conf", 1))
        again = reader.parseLine("wait= no", Location("t.conf", 5))
        self.assertIsInstance(again, Broken)
        self.assertEqual(again.location, Location("t.conf", 5))

    def test_blocksKeepTheirLines(self) -> None:
        """
        Two services written alike each get their own lines, with their own
        line numbers.
        """
        reader = Reader()
        reader.readText(service(EXTERNAL, name="a") + service(EXTERNAL, name="b"), "t")
        a, b = reader.blocks
        self.assertEqual(
            [line.name for line in a.lines], [line.name for line in b.lines]
        )
        offset = b.location.line - a.location.line
        self.assertEqual(
            [line.location.line + offset for line in a.lines],
            [line.location.line for line in b.lines],
        )

    def test_rowsReadAgain(self) -> None:
        """
        Every line of a file whose rows repeat (with CRLF or LF, tabs or
        spaces, the last row without an end) is what L{parseLine} gives for
        its text, at its own location.
        """
        body = "\tport = 1\r\n wait = no\n\tserver_args = a  b\r\n# c\n"
        text = "".join(f"service s{i}\n{{\n{body}\tid = x{i}\n}}\n" for i in range(3))
        text += "service t\n{\n\tport = 1\r\n wait = no"
        reader = Reader()
        reader.readText(text, "t.conf")
        rows = text.split("\n")
        got = [line for block in reader.blocks for line in block.lines]
        self.assertEqual(len([g for g in got if isinstance(g, Line)]), 14)
        for line in got:
            if isinstance(line, Line):
                row = rows[line.number - 1].rstrip("\r")
                self.assertEqual(line, parseLine(row, line.location))
        self.assertIsInstance(got[-1], Broken)


class RepeatedValueTests(SynchronousTestCase):
    """
    Equal words of an attribute are parsed once per load, and whatever a
    value says is still said for every line that has it.
    """

    def test_equalValuesOneObject(self) -> None:
        """
        Two services with the same C{per_source_cps} words (a value the
        checker does not share) get the one parsed value.
        """
        body = EXTERNAL + "\n per_source_cps = 5 10"
        text = service(body, name="a") + service(body.replace("4000", "4001"), "b")
        a, b = parse(text).services
        self.assertIs(a.perSourceCps, b.perSourceCps)
        self.assertEqual(a.perSourceCps, (5, 10))

    def test_remarkEveryTime(self) -> None:
        """
        A value that draws a warning draws it on each line that has it.
        """
        body = EXTERNAL + "\n v6only = no"
        text = service(body, name="a") + service(body.replace("4000", "4001"), "b")
        config = parse(text)
        self.assertEqual(len(config.services), 2)
        remarks = [m for m in messages(config, Severity.WARNING) if "v6only" in m]
        self.assertEqual(len(remarks), 2, remarks)

    def test_errorEveryTime(self) -> None:
        """
        A value that does not parse drops every service that has it.
        """
        body = EXTERNAL + "\n instances = lots"
        text = service(body, name="a") + service(body.replace("4000", "4001"), "b")
        config = parse(text)
        self.assertEqual(config.services, ())
        self.assertEqual(config.dropped, ("a", "b"))
