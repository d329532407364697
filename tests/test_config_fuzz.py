"""
Property-based tests: no input makes the loader, C{check}, C{dump},
C{convert} or the daemon's option parsing end in anything but a
configuration, a L{ConfigError}, or an exit status.

The inputs are Debian's shipped configurations with bytes flipped, lines
and braces deleted or duplicated, include chains and loops, FIFOs, devices
and binary noise.  Derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
from typing import Callable, List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import FIXTURES, SYSFILES
from xinetd_twisted.cli import main
from xinetd_twisted.config import reader
from xinetd_twisted.config.model import Config, ConfigError
from xinetd_twisted.tap import Options

DEBIAN = os.path.join(FIXTURES, "debian")
SOURCES: List[Tuple[str, bytes]] = []
for _directory in ("xinetd.d", "examples"):
    for _name in sorted(os.listdir(os.path.join(DEBIAN, _directory))):
        with open(os.path.join(DEBIAN, _directory, _name), "rb") as _f:
            SOURCES.append((_name.replace(".", "_"), _f.read()))
INETD = os.path.join(FIXTURES, "inetd")
INETD_SOURCES = [
    open(os.path.join(INETD, name), "rb").read()
    for name in sorted(os.listdir(INETD))
    if name.endswith(".conf")
]

# Lines worth inserting; {dir} is the example's directory.
LINES = [
    b"}",
    b"{",
    b"service extra",
    b"defaults",
    b"include {dir}/c0",
    b"include {dir}/main",
    b"includedir {dir}/d",
    b"includedir {dir}",
    b"include {dir}/fifo",
    b"include /dev/zero",
    b"include /dev/null",
    b"include {dir}/noise",
    b"include {dir}/missing",
    b"instances = 99999999999999999999999",
    b"cps = 1 99999999999999999999",
    b"rlimit_as = 99999999999999999M",
    b"only_frm = 127.0.0.1",
    b"bind = 127.0.0.1 ::1",
    b"disable = no",
    b"disable = yes",
    b"type = UNLISTED",
    b"port = 70000",
    b"port = 4242",
    b"user = 99999999999999999999",
    b"nice = \xc2\xb2",
    b"flags = IPv4 IPv6 NAMEINARGS",
    b"server = /bin/cat",
    b"server_args = a b c",
    b"access_times = 25:00-26:00 1:0-2:0",
    b"log_type = FILE /dev/null 1K 1",
    b"log_type = SYSLOG local9",
    b"redirect = localhost 99999",
    b"enabled = echo",
    b"env = =x",
    b"wait = yes",
    b"socket_type = dgram",
    b"\xff\xfe",
]

# A service that runs, in each file of an include chain.
CHAINED = """\
service echo
{{
 type = INTERNAL UNLISTED
 id = chained{index}
 port = {port}
 socket_type = stream
 wait = no
}}
"""

mutation = st.one_of(
    # Mostly printable: most other bytes make the file binary, refused early.
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(32, 126)),
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("dropLine"), st.integers(0, 2**16)),
    st.tuples(st.just("dropBrace"), st.integers(0, 2**16)),
    st.tuples(st.just("duplicate"), st.integers(0, 2**16)),
    st.tuples(st.just("noise"), st.integers(0, 2**16), st.binary(max_size=24)),
    st.tuples(st.just("line"), st.integers(0, 2**16), st.sampled_from(LINES)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16)),
)


def mutate(data: bytes, mutations: Sequence[tuple], directory: str) -> bytes:
    """
    Apply C{mutations} to C{data}, in order.
    """
    for kind, where, *rest in mutations:
        lines = data.split(b"\n")
        if kind == "flip" and data:
            at = where % len(data)
            data = data[:at] + bytes([rest[0]]) + data[at + 1 :]
        elif kind == "dropLine":
            del lines[where % len(lines)]
            data = b"\n".join(lines)
        elif kind == "dropBrace":
            braces = [i for i, line in enumerate(lines) if line.strip() in (b"{", b"}")]
            if braces:
                del lines[braces[where % len(braces)]]
            data = b"\n".join(lines)
        elif kind == "duplicate":
            at = where % len(lines)
            lines.insert(at, lines[at])
            data = b"\n".join(lines)
        elif kind == "noise":
            at = where % (len(data) + 1)
            data = data[:at] + rest[0] + data[at:]
        elif kind == "line":
            text = rest[0].replace(b"{dir}", os.fsencode(directory))
            lines.insert(where % (len(lines) + 1), text)
            data = b"\n".join(lines)
        elif kind == "truncate":
            data = data[: where % (len(data) + 1)]
    return data


@st.composite
def trees(draw: Callable) -> dict:
    """
    A description of one configuration tree.
    """
    return {
        "main": draw(st.lists(mutation, max_size=4)),
        "files": draw(
            st.lists(
                st.tuples(
                    st.integers(0, len(SOURCES) - 1), st.lists(mutation, max_size=4)
                ),
                max_size=5,
            )
        ),
        "noise": draw(st.binary(max_size=64)),
        "chain": draw(st.integers(0, 40)),
        "loop": draw(st.booleans()),
        "inetd": draw(
            st.tuples(
                st.integers(0, len(INETD_SOURCES) - 1), st.lists(mutation, max_size=4)
            )
        ),
        "strict": draw(st.booleans()),
        "isRoot": draw(st.booleans()),
    }


def build(tree: dict, directory: str) -> Tuple[str, str]:
    """
    Write C{tree} under C{directory}: (main file, inetd.conf).
    """
    sub = os.path.join(directory, "d")
    os.mkdir(sub)
    os.mkfifo(os.path.join(directory, "fifo"))
    with open(os.path.join(directory, "noise"), "wb") as f:
        f.write(tree["noise"])
    for index, (source, mutations) in enumerate(tree["files"]):
        name, data = SOURCES[source]
        with open(os.path.join(sub, f"{name}{index}"), "wb") as f:
            f.write(mutate(data, mutations, directory))
    chain = [os.path.join(directory, f"c{i}") for i in range(tree["chain"])]
    nexts: List[Optional[str]] = [*chain[1:], None]
    for index, (here, after) in enumerate(zip(chain, nexts[: len(chain)], strict=True)):
        with open(here, "wb") as f:
            target = after or (chain[0] if tree["loop"] else None)
            if target is not None:
                f.write(f"include {target}\n".encode())
            f.write(CHAINED.format(index=index, port=4000 + index).encode())
    main = f"defaults\n{{\n}}\nincludedir {sub}\n".encode()
    if chain:
        main += f"include {chain[0]}\n".encode()
    path = os.path.join(directory, "main")
    with open(path, "wb") as f:
        f.write(mutate(main, tree["main"], directory))
    inetdSource, inetdMutations = tree["inetd"]
    inetd = os.path.join(directory, "inetd_conf")
    with open(inetd, "wb") as f:
        f.write(mutate(INETD_SOURCES[inetdSource], inetdMutations, directory))
    return path, inetd


FUZZ = settings(
    max_examples=75,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class FuzzTests(SynchronousTestCase):
    """
    Mutated configurations never escape as anything but a ConfigError.
    """

    def setUp(self) -> None:
        # No name in a mutated file may reach a real resolver.
        self.patch(reader, "makeResolver", lambda: lambda name: ())
        self.patch(sys, "stderr", io.StringIO())

    def tree(self, tree: dict) -> Tuple[str, str]:
        directory = tempfile.mkdtemp(prefix="xt-fuzz-")
        self.addCleanup(shutil.rmtree, directory, True)
        return build(tree, directory)

    @FUZZ
    @given(trees())
    def test_loadConfig(self, tree: dict) -> None:
        """
        loadConfig returns a Config or raises ConfigError, whose problems
        all have a location.
        """
        main, inetd = self.tree(tree)
        try:
            config = reader.loadConfig(
                main,
                inetdConf=inetd,
                strict=tree["strict"],
                environ={},
                isRoot=tree["isRoot"],
                warnWritable=True,
                **SYSFILES,
            )
        except ConfigError as e:
            self.assertTrue(e.problems)
            for problem in e.problems:
                str(problem)
            return
        self.assertIsInstance(config, Config)
        for service in config.services:
            self.assertIn(service.configFile, config.files)
        self.assertEqual(
            config.droppedServices, frozenset(d.lower() for d in config.dropped)
        )

    @FUZZ
    @given(trees())
    def test_commands(self, tree: dict) -> None:
        """
        check, check --dump --strict, dump and convert return 0, 1 or 2.
        """
        main, inetd = self.tree(tree)
        for argv in (
            ["check", "--inetd-compat", inetd, main],
            ["check", "--dump", "--strict", main],
            ["dump", main],
            ["convert", inetd],
            ["convert", main],
        ):
            out = io.StringIO()
            status = main_(argv, out)
            self.assertIn(status, (0, 1, 2), argv)
            if argv[0] == "check":
                self.assertEqual(status, expectedStatus(out.getvalue()), out.getvalue())

    @FUZZ
    @given(trees())
    def test_daemonOptions(self, tree: dict) -> None:
        """
        The daemon's option parsing loads the configuration or exits with a
        message.
        """
        main, inetd = self.tree(tree)
        options = Options()
        argv = ["--config", main, "--inetd-compat", inetd]
        if tree["strict"]:
            argv.append("--strict")
        try:
            options.parseOptions(argv)
        except SystemExit as e:
            self.assertIsInstance(e.code, str)
            self.assertTrue(e.code.startswith("twistd: "), e.code)
            return
        self.assertIsInstance(options["loadedConfig"], Config)


SUMMARY = re.compile(
    r"would run(?::.*)? \((\d+) dropped, (\d+) errors?, \d+ warnings?\)$"
)


def expectedStatus(output: str) -> int:
    """
    The status C{check}'s own output announces: 2 for an unreadable file,
    1 for a refused configuration or a summary with something dropped or
    an error, else 0.
    """
    for line in output.splitlines():
        if line.startswith("xinetd-twisted: cannot read"):
            return 2
        if line.startswith("configuration refused"):
            return 1
        found = SUMMARY.search(line)
        if found is not None:
            return 1 if int(found.group(1)) or int(found.group(2)) else 0
    raise AssertionError(f"no summary in {output!r}")


def main_(argv: List[str], out: io.StringIO) -> int:
    """
    The CLI in process, output kept.
    """
    return main(argv, out=out, err=out)
