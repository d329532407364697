"""
Tests for L{xinetd_twisted.config.build}'s table of plain lines and for
L{xinetd_twisted.config.draft}.
"""

from __future__ import annotations

import os
from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, FIXTURES, SYSFILES, parse, service
from xinetd_twisted.config.addresses import makeResolver
from xinetd_twisted.config.build import Builder
from xinetd_twisted.config.draft import ServiceDraft
from xinetd_twisted.config.model import Location, Problem
from xinetd_twisted.config.parser import Reader
from xinetd_twisted.config.sysfiles import (
    readNetworks,
    readProtocols,
    readServices,
)
from xinetd_twisted.config.values import ParseContext

_DEFAULTS = """\
defaults
{
    instances = 30
    log_type = SYSLOG daemon info
    log_on_success = PID HOST
    log_on_failure = HOST
    v6only = yes
    only_from = 127.0.0.1
    cps = 10 5
}
"""

_BODIES = [
    EXTERNAL,
    EXTERNAL + "\n    server_args = -a -b\n    flags = NAMEINARGS",
    EXTERNAL + "\n    flags = NAMEINARGS\n    server_args = cat -n",
    EXTERNAL + "\n    flags = IPV4 NODELAY\n    bind = 127.0.0.1",
    EXTERNAL + "\n    bind = 127.0.0.1\n    interface = 127.0.0.1",
    EXTERNAL + "\n    port = 4001",
    EXTERNAL + "\n    wait = yes",
    EXTERNAL + "\n    log_on_success += DURATION\n    log_on_success -= PID",
    EXTERNAL + "\n    only_from = 10.0.0.0/8\n    only_from += 127.0.0.1",
    EXTERNAL + "\n    env = A=1\n    env += B=2\n    env -= A=1",
    EXTERNAL + "\n    instances += 3",
    EXTERNAL + "\n    cps = 1",
    EXTERNAL + "\n    bind = 127.0.0.1 ::1",
    EXTERNAL + "\n    nice = 100",
    EXTERNAL + "\n    disable = no",
    EXTERNAL + "\n    disable = yes",
    EXTERNAL + "\n    enabled = a",
    EXTERNAL + "\n    bogus = 1",
    EXTERNAL + "\n    user = nosuchuser",
    EXTERNAL + "\n    only_from = 10.0.0.300",
    EXTERNAL + "\n    rlimit_as = 8M\n    rlimit_cpu = UNLIMITED",
    EXTERNAL + "\n    log_type = FILE /var/log/x\n    log_type = SYSLOG daemon",
    EXTERNAL + "\n    redirect = 127.0.0.1 25",
    EXTERNAL + "\n    v6only = no",
    "    type = INTERNAL\n    socket_type = stream\n    wait = no",
]
"""Service bodies that apply lines every way a block can."""


def _corpus() -> List[Tuple[str, str]]:
    """
    Configurations whose lines repeat from block to block: each body
    twice (so that the second meets the lines of the first), in a file
    with defaults before them, after them, or none.
    """
    services = "".join(
        service(body, name=f"s{index}{copy}")
        for index, body in enumerate(_BODIES)
        for copy in "ab"
    )
    varied = "".join(
        service(
            EXTERNAL.replace("4000", port).replace("root", user)
            + f"\n    access_times = {times}\n    v6only = {v6only}"
            + f"\n    server_args = {args}",
            name=f"v{index}",
        )
        for index, (port, user, times, v6only, args) in enumerate(
            [
                ("5000", "root", "08:00-17:00", "yes", "-a"),
                ("5001", "nobody", "8:00-17:00", "no", "-a -b"),
                ("5002", "nosuchuser", "25:00-26:00", "yes", "-b"),
                ("notaport", "root", "08:00-17:00 1:00-2:00", "no", "-c -d"),
                ("99999", "nobody", "08:00", "maybe", "-e"),
                ("5005", "0", "23:59-00:01", "yes", "-a"),
            ]
        )
    )
    texts = [
        ("varied.conf", varied + varied.replace("service v", "service w")),
        ("before.conf", _DEFAULTS + services),
        ("after.conf", services + _DEFAULTS),
        ("none.conf", services),
        ("defaults.conf", _DEFAULTS + _DEFAULTS.replace("cps", "bogus") + services),
    ]
    return texts


def _build(text: str, path: str, plain: bool, strict: bool) -> Builder:
    """
    The builder after applying C{text}, with or without the table of plain
    lines.
    """
    ctx = ParseContext(
        resolve=makeResolver(),
        networks=readNetworks(SYSFILES["networksFile"]),
        protocols=readProtocols(SYSFILES["protocolsFile"]),
        services=readServices(SYSFILES["servicesFile"]),
    )
    builder = Builder(ctx, strict=strict, plainLines=plain)
    Reader(consumer=builder.add).readText(text, path)
    return builder


class PlainLinesTests(SynchronousTestCase):
    """
    A line applied before is set again from L{Builder}'s table of plain
    lines, with the outcome the whole path gives.
    """

    def assertSameBuild(self, text: str, path: str, strict: bool = False) -> None:
        slow = _build(text, path, False, strict)
        fast = _build(text, path, True, strict)
        self.assertEqual(fast.drafts, slow.drafts)
        self.assertEqual(fast.problems, slow.problems)
        self.assertEqual(fast.dropped, slow.dropped)
        self.assertEqual(fast.defaults, slow.defaults)
        self.assertEqual(fast.fatal, slow.fatal)

    def test_corpusAgrees(self) -> None:
        """
        Every block of the corpus is built the same with the table as
        without it.
        """
        for path, text in _corpus():
            self.assertSameBuild(text, path)

    def test_corpusAgreesStrict(self) -> None:
        """
        Under strict loading too.
        """
        for path, text in _corpus():
            self.assertSameBuild(text, path, strict=True)

    def test_debianFixturesAgree(self) -> None:
        """
        Debian's own files are built the same both ways.
        """
        directory = os.path.join(FIXTURES, "debian", "xinetd.d")
        text = "".join(
            open(os.path.join(directory, name)).read()
            for name in sorted(os.listdir(directory))
        )
        self.assertSameBuild(text, "debian.conf")

    def test_tableUsed(self) -> None:
        """
        The second of two services written alike takes its lines from the
        table (this is the path the corpus tests compare).
        """
        builder = _build(
            service(EXTERNAL, name="a") + service(EXTERNAL, name="b"), "t", True, False
        )
        self.assertIn(("port", "=", ("4000",)), builder._plain.lines[False])
        a, b = builder.drafts
        self.assertEqual(a.values, b.values)
        self.assertEqual(b.locations["port"], Location("t", 19))

    def test_repeatStillWarns(self) -> None:
        """
        A line in the table, written twice in one block, is still an
        attribute already set.
        """
        text = service(EXTERNAL, name="a") + service(
            EXTERNAL.replace("4000", "4001") + "\n    port = 4000", name="b"
        )
        config = parse(text)
        (problem,) = config.problems
        self.assertEqual(problem.location, Location("test.conf", 20))
        self.assertIn("attribute already set: port (at test.conf:19)", str(problem))
        self.assertEqual([s.port for s in config.services], [4000, 4001])


class ServiceDraftTests(SynchronousTestCase):
    """
    L{ServiceDraft} keeps a block's values compactly.
    """

    def _drafts(self) -> List[ServiceDraft]:
        return _build(
            _DEFAULTS
            + service(EXTERNAL + "\n    id = x1", name="a")
            + service(EXTERNAL.replace("4000", "4001"), name="b"),
            "t",
            True,
            False,
        ).drafts

    def test_values(self) -> None:
        """
        The values by attribute, copied defaults included; the id, or the
        name.
        """
        a, b = self._drafts()
        values = a.valuesByKey()
        self.assertEqual(values["port"], 4000)
        self.assertIn("log_on_success", values)
        self.assertEqual((a.serviceId, b.serviceId), ("x1", "b"))

    def test_specified(self) -> None:
        """
        Copied defaults are not written in the block.
        """
        a, _ = self._drafts()
        self.assertIn("port", a.specified)
        self.assertNotIn("log_on_success", a.specified)

    def test_locations(self) -> None:
        """
        Each value's location, the copied defaults' in the defaults block.
        """
        a, b = self._drafts()
        self.assertEqual(a.locations["log_on_success"], Location("t", 5))
        self.assertEqual(b.locations["port"], Location("t", 30))

    def test_shared(self) -> None:
        """
        Services written alike share their names, paths and written sets.
        """
        builder = _build(
            service(EXTERNAL, name="a") + service(EXTERNAL, name="b"), "t", True, False
        )
        a, b = builder.drafts
        self.assertIs(a.names, b.names)
        self.assertIs(a.paths, b.paths)
        self.assertIs(a.offsets, b.offsets)
        self.assertIs(a.specified, b.specified)
        self.assertEqual(b.locations["port"], Location("t", 19))
        self.assertEqual(list(b.locations.lines), list(range(13, 20)))

    def test_problemsNameTheLine(self) -> None:
        """
        A problem found when filling names the line of the attribute.
        """
        config = parse(service(EXTERNAL + "\n    passenv = NOPE", name="a"))
        (problem,) = config.problems
        self.assertIsInstance(problem, Problem)
        self.assertEqual(problem.location, Location("test.conf", 10))
