"""
Tests for the man pages (docs/man/): they render cleanly, and they say what
the code and docs/configuration.md say, so that neither can drift.

When a test here fails after you added an attribute, option, flag or
command: add its entry to the man page (see the comment at the top of the
page and docs/man/README.md), not an exception here.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional, Set

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted import cli, tap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAN = os.path.join(ROOT, "docs", "man")
DAEMON_PAGE = os.path.join(MAN, "xinetd-twisted.8")
CONF_PAGE = os.path.join(MAN, "xinetd-twisted.conf.5")
PAGES = (DAEMON_PAGE, CONF_PAGE)
CONFIGURATION = os.path.join(ROOT, "docs", "configuration.md")

EXTENSION_MARK = "xinetd-twisted extension"
"""What the .5 page says in the entry of an attribute xinetd lacks."""


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- what the pages say ------------------------------------------------


def section(roff: str, name: str) -> List[str]:
    """
    The lines of the C{.SH name} section of a page.
    """
    lines = roff.splitlines()
    start = lines.index(f".SH {name}")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(".SH ")),
        len(lines),
    )
    return lines[start + 1 : end]


def entries(lines: List[str]) -> List[List[str]]:
    """
    Each C{.TP} entry: its tag line, then its body lines (up to the next
    C{.TP}, C{.PP} or C{.SS}).
    """
    found: List[List[str]] = []
    current: Optional[List[str]] = None
    for line in lines:
        if line == ".TP":
            current = []
            found.append(current)
        elif line.startswith((".PP", ".SS")):
            current = None
        elif current is not None:
            current.append(line)
    return [e for e in found if e]


def tagWords(tag: str) -> List[str]:
    """
    The bold names of a tag line: its words, quoted text (the
    decoration in C{.BI name " value"}) left out.
    """
    macro, _, rest = tag.partition(" ")
    if macro not in (".B", ".BI", ".BR"):
        return []
    return re.sub(r'"[^"]*"', " ", rest).split()


def pageAttributes(roff: str) -> List[str]:
    return [w for e in entries(section(roff, "ATTRIBUTES")) for w in tagWords(e[0])]


def pageExtensions(roff: str) -> Set[str]:
    return {
        word
        for entry in entries(section(roff, "ATTRIBUTES"))
        if EXTENSION_MARK in " ".join(entry[1:])
        for word in tagWords(entry[0])
    }


def pageFlags(roff: str) -> Set[str]:
    return {w for e in entries(section(roff, "FLAGS")) for w in tagWords(e[0])}


def pageOptions(roff: str) -> Set[str]:
    names: Set[str] = set()
    for entry in entries(section(roff, "DAEMON OPTIONS")):
        names.update(re.findall(r"--([a-z][a-z0-9-]*)", entry[0].replace("\\-", "-")))
    return names


def pageCommands(roff: str) -> Set[str]:
    return {w for e in entries(section(roff, "COMMANDS")) for w in tagWords(e[0])}


# --- what the code and docs/configuration.md say -------------------------


def attributeRows(markdown: str) -> List[List[str]]:
    """
    The rows of the table under C{## Attributes}, as cells.
    """
    body = markdown.split("\n## Attributes\n", 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith("|")
    ]
    return [row for row in rows[2:]]


def docAttributes(markdown: str) -> List[str]:
    return [
        name
        for row in attributeRows(markdown)
        for name in re.findall(r"`(\w+)`", row[0])
    ]


def docExtensions(markdown: str) -> Set[str]:
    return {
        name
        for row in attributeRows(markdown)
        if "our extension" in row[-1]
        for name in re.findall(r"`(\w+)`", row[0])
    }


def docFlags(markdown: str) -> Set[str]:
    [row] = [r for r in attributeRows(markdown) if r[0] == "`flags`"]
    return set(row[1].strip("`").split())


def tapOptions() -> Set[str]:
    return {entry[0] for entry in tap.Options.optParameters + tap.Options.optFlags}


def cliCommands() -> Set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main(["--help"])
    return set(re.findall(r"^    ([a-z]+)  ", out.getvalue(), re.MULTILINE))


class DriftTests(SynchronousTestCase):
    def test_attributes(self) -> None:
        """The .5 page lists exactly the attributes of docs/configuration.md, in its order."""
        self.assertEqual(
            pageAttributes(read(CONF_PAGE)), docAttributes(read(CONFIGURATION))
        )

    def test_extensions(self) -> None:
        """Exactly the attributes the configuration reference calls ours are marked so."""
        ours = docExtensions(read(CONFIGURATION))
        self.assertIn("chroot", ours)
        self.assertEqual(pageExtensions(read(CONF_PAGE)), ours)

    def test_flags(self) -> None:
        """The .5 page's FLAGS are the flags row of docs/configuration.md."""
        self.assertEqual(pageFlags(read(CONF_PAGE)), docFlags(read(CONFIGURATION)))

    def test_daemonOptions(self) -> None:
        """The .8 page's DAEMON OPTIONS are exactly tap.Options' long options."""
        self.assertEqual(pageOptions(read(DAEMON_PAGE)), tapOptions())

    def test_commands(self) -> None:
        """The .8 page's COMMANDS are exactly the subcommands of xinetd-twisted."""
        self.assertIn("status", cliCommands())
        self.assertEqual(pageCommands(read(DAEMON_PAGE)), cliCommands())

    def test_driftIsSeen(self) -> None:
        """An attribute added to the reference alone is a difference the test sees."""
        markdown = read(CONFIGURATION).replace(
            "| `chroot` |", "| `listen_path` | path | — | | new |\n| `chroot` |"
        )
        self.assertIn("listen_path", docAttributes(markdown))
        self.assertNotEqual(pageAttributes(read(CONF_PAGE)), docAttributes(markdown))

    def test_commentsIgnored(self) -> None:
        """An option only in a roff comment is not documented."""
        roff = '.SH DAEMON OPTIONS\n.\\" .TP\n.\\" .BI \\-\\-metrics\n.SH NEXT\n'
        self.assertEqual(pageOptions(roff), set())


class RenderTests(SynchronousTestCase):
    def test_groffClean(self) -> None:
        """groff -man -ww -z prints nothing for either page."""
        groff = shutil.which("groff")
        if groff is None:
            raise self.skipTest("groff not installed (Debian package groff-base)")
        for page in PAGES:
            result = subprocess.run(
                [groff, "-man", "-ww", "-z", page], capture_output=True, timeout=60
            )
            self.assertEqual(
                (result.returncode, result.stdout, result.stderr), (0, b"", b""), page
            )

    def test_manRenders(self) -> None:
        """man -l renders each page with its name and sections."""
        man = shutil.which("man")
        if man is None:
            raise self.skipTest("man not installed (Debian package man-db)")
        for page, title in (
            (DAEMON_PAGE, "XINETD-TWISTED(8)"),
            (CONF_PAGE, "XINETD-TWISTED.CONF(5)"),
        ):
            result = subprocess.run(
                [man, "-l", page],
                capture_output=True,
                timeout=60,
                env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
            )
            text = result.stdout.decode("utf-8", "replace")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(title, text)
            self.assertIn("SEE ALSO", text)

    def test_installedUnderShareMan(self) -> None:
        """pip installs the pages under share/man/man8 and share/man/man5."""
        from setuptools.config.setupcfg import read_configuration

        dataFiles = dict(
            read_configuration(os.path.join(ROOT, "setup.cfg"))["options"]["data_files"]
        )
        self.assertEqual(dataFiles["share/man/man8"], ["docs/man/xinetd-twisted.8"])
        self.assertEqual(
            dataFiles["share/man/man5"], ["docs/man/xinetd-twisted.conf.5"]
        )

    def test_pipInstallsPages(self) -> None:
        """
        pip install --prefix P puts both pages where man finds them under
        P/share/man, and (with a C compiler) the compiled sub-helper in the
        package.
        """
        directory = tempfile.mkdtemp(prefix="xt-man-")
        self.addCleanup(shutil.rmtree, directory, True)
        source = os.path.join(directory, "src")
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "_trial_temp*", "build", "*.egg-info", "__pycache__"
            ),
        )
        prefix = os.path.join(directory, "prefix")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
            + ["--prefix", prefix, source],
            capture_output=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        if shutil.which(os.environ.get("CC", "cc")):
            [program] = glob.glob(
                os.path.join(prefix, "lib", "python*", "site-packages")
                + "/xinetd_twisted/spawn/xinetd-subhelper"
            )
            self.assertTrue(os.access(program, os.X_OK))
        manTree = os.path.join(prefix, "share", "man")
        for sub, page in (("man8", DAEMON_PAGE), ("man5", CONF_PAGE)):
            installed = os.path.join(manTree, sub, os.path.basename(page))
            self.assertEqual(read(installed), read(page))
        man = shutil.which("man")
        if man is not None:
            found = subprocess.run(
                [man, "-w", "xinetd-twisted.conf"],
                capture_output=True,
                timeout=60,
                env={**os.environ, "MANPATH": manTree},
            )
            self.assertEqual(
                found.stdout.decode().strip(),
                os.path.join(manTree, "man5", "xinetd-twisted.conf.5"),
            )
