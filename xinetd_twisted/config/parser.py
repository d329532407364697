# -*- test-case-name: tests.test_config_parser -*-
"""
The lexical layer: xinetd.conf text to blocks of attribute lines, following
C{include}/C{includedir}, with a location for everything.

Nothing here knows what an attribute means; L{xinetd_twisted.config.build}
gives the lines their meaning in the order they were read.
"""

from __future__ import annotations

import os
import stat
from typing import List, Optional, Tuple, Union

import attr

from xinetd_twisted.config.model import Location, Problem, Severity

MAX_LINE = 16 * 1024


@attr.s(frozen=True, auto_attribs=True)
class Line:
    """
    C{name op value...} inside a block.
    """

    name: str
    op: str
    values: Tuple[str, ...]
    location: Location


@attr.s(frozen=True, auto_attribs=True)
class Broken:
    """
    A line that breaks its block (xinetd drops the service): bad syntax,
    bad operator, or the end of the file inside the block.
    """

    message: str
    location: Location
    attribute: Optional[str] = None


@attr.s(frozen=True, auto_attribs=True)
class Block:
    """
    A C{defaults} or C{service NAME} block as read.

    @ivar kind: C{"defaults"} or C{"service"}.
    @ivar name: the service name (C{"defaults"} for defaults).
    @ivar location: the keyword line.
    @ivar lines: attribute lines, possibly ending with a L{Broken}.
    @ivar duplicateDefaults: a second defaults block in the same file.
    """

    kind: str
    name: str
    location: Location
    lines: Tuple[Union[Line, Broken], ...]
    duplicateDefaults: bool = False


@attr.s(auto_attribs=True)
class Reader:
    """
    Reads a main file and everything it includes, in xinetd's order.

    @ivar blocks: every block, in reading order.
    @ivar problems: syntax problems found at the top level.
    @ivar files: every file read.
    """

    blocks: List[Block] = attr.ib(factory=list)
    problems: List[Problem] = attr.ib(factory=list)
    files: List[str] = attr.ib(factory=list)
    _stack: List[str] = attr.ib(factory=list)

    def problem(
        self, location: Location, message: str, severity: Severity = Severity.ERROR
    ) -> None:
        """
        Record a top-level problem.
        """
        self.problems.append(Problem(location, severity, message))

    def readFile(self, path: str, where: Optional[Location] = None) -> bool:
        """
        Read C{path} (an included file when C{where} is its include line).

        @return: L{False} when the file could not be read.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            if where is not None:
                self.problem(
                    where,
                    f"Unable to open included configuration file: {path} ({e.strerror})",
                )
            return False
        self.readText(data.decode("utf-8", "surrogateescape"), path)
        return True

    def readText(self, text: str, path: str) -> None:
        """
        Read configuration text as if it were the file C{path}.
        """
        self._stack.append(os.path.realpath(path))
        self.files.append(path)
        try:
            _FileReader(self, text, path).run()
        finally:
            self._stack.pop()

    def include(self, path: str, where: Location) -> None:
        """
        Follow C{include PATH}; a file already being read is a loop.
        """
        if os.path.realpath(path) in self._stack:
            self.problem(where, f"include loop: {path} is already being read; skipped")
            return
        self.readFile(path, where)

    def includeDir(self, directory: str, where: Location) -> None:
        """
        Follow C{includedir DIR}: names in byte order, skipping any with a
        C{.} or ending in C{~}; non-regular files are errors.
        """
        try:
            names = os.listdir(directory)
        except OSError as e:
            self.problem(where, f"Unable to read directory {directory}: {e.strerror}")
            return
        for name in sorted(names, key=os.fsencode):
            if "." in name or name.endswith("~"):
                continue
            path = os.path.join(directory, name)
            try:
                mode = os.stat(path).st_mode
            except OSError as e:
                self.problem(where, f"Unable to stat {path}: {e.strerror}")
                continue
            if not stat.S_ISREG(mode):
                self.problem(
                    where, f"{path} is not a regular file. It is being skipped."
                )
                continue
            self.include(path, where)


class _FileReader:
    """
    The top-level state machine over one file's lines.
    """

    def __init__(self, reader: Reader, text: str, path: str) -> None:
        self.reader = reader
        self.path = path
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.index = 0
        self.sawDefaults = False

    def nextLine(self) -> Optional[Tuple[str, Location]]:
        """
        The next line that is not blank or a comment, or L{None} at EOF.
        """
        while self.index < len(self.lines):
            # A CRLF file would otherwise glue "\r" to the last value.
            text = self.lines[self.index].rstrip("\r")
            self.index += 1
            stripped = text.strip(" \t")
            if stripped and not stripped.startswith("#"):
                return text, Location(self.path, self.index)
        return None

    def skipEntry(self) -> None:
        """
        Skip to the next line that is only C{}}.
        """
        while True:
            got = self.nextLine()
            if got is None:
                self.reader.problem(
                    Location(self.path, len(self.lines)),
                    "missing } in last service entry",
                    Severity.WARNING,
                )
                return
            if got[0].strip(" \t") == "}":
                return

    def run(self) -> None:
        """
        Read every top-level entry of the file.
        """
        while True:
            got = self.nextLine()
            if got is None:
                return
            text, location = got
            if len(text) > MAX_LINE:
                self.reader.problem(location, f"line longer than {MAX_LINE} bytes")
                continue
            words = text.split()
            keyword = words[0].lower()
            if keyword in ("include", "includedir"):
                if len(words) < 2:
                    self.reader.problem(location, f"{keyword}: file name missing")
                elif keyword == "include":
                    self.reader.include(words[1], location)
                else:
                    self.reader.includeDir(words[1], location)
                continue
            if keyword == "service":
                if len(words) < 2:
                    self.reader.problem(location, "service name missing")
                    self.skipEntry()
                    continue
                kind, name = "service", words[1]
            elif keyword == "defaults":
                kind, name = "defaults", "defaults"
            else:
                self.reader.problem(location, "missing service keyword")
                self.skipEntry()
                continue
            brace = self.nextLine()
            if brace is None or brace[0].strip(" \t") != "{":
                # xinetd counts the line it read instead of the brace.
                where = location if brace is None else brace[1]
                self.reader.problem(where, f"Service {name}: missing '{{'")
                self.skipEntry()
                continue
            duplicate = kind == "defaults" and self.sawDefaults
            if kind == "defaults":
                self.sawDefaults = True
            lines = self.readBody()
            self.reader.blocks.append(Block(kind, name, location, lines, duplicate))

    def readBody(self) -> Tuple[Union[Line, Broken], ...]:
        """
        The lines of a block up to its C{}}.
        """
        lines: List[Union[Line, Broken]] = []
        while True:
            got = self.nextLine()
            if got is None:
                where = Location(self.path, len(self.lines))
                lines.append(Broken("incomplete entry", where))
                return tuple(lines)
            text, location = got
            if text.strip(" \t") == "}":
                return tuple(lines)
            item = parseLine(text, location)
            lines.append(item)
            if isinstance(item, Broken):
                self.skipEntry()
                return tuple(lines)


_OPERATORS = ("+=", "-=", "=")


def parseLine(text: str, location: Location) -> Union[Line, Broken]:
    """
    Split C{name op values}; values are separated by spaces and tabs only,
    with no comments, quoting or escapes.
    """
    if len(text) > MAX_LINE:
        return Broken(f"line longer than {MAX_LINE} bytes", location)
    words = [w for w in text.replace("\t", " ").split(" ") if w]
    name = words[0]
    if "=" in name:
        attribute = name[: name.index("=")].rstrip("+-")
        if attribute:
            return Broken(
                f"Attribute {attribute} needs a space before operator",
                location,
                attribute.lower(),
            )
        return Broken(f"Bad operator for attribute: {name}", location)
    if len(words) < 2:
        return Broken(f"missing operator for attribute {name}", location, name.lower())
    rest = words[1]
    for op in _OPERATORS:
        if rest.startswith(op):
            first = rest[len(op) :]
            values = ([first] if first else []) + words[2:]
            return Line(name.lower(), op, tuple(values), location)
    return Broken(f"Bad operator for attribute: {name}", location, name.lower())
