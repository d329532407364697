# -*- test-case-name: tests.test_config_parser -*-
"""
The lexical layer: xinetd.conf text to blocks of attribute lines, following
C{include}/C{includedir}, with a location for everything.

Nothing here knows what an attribute means; L{xinetd_twisted.config.build}
gives the lines their meaning in the order they were read.
"""

from __future__ import annotations

import io
import os
import stat
from typing import Callable, Dict, List, NamedTuple, NoReturn, Optional, Tuple, Union

import attr

from xinetd_twisted.config.files import (
    MAX_INCLUDE_DEPTH,
    FileRefused,
    checkText,
    readConfigFile,
    writableByOthers,
)
from xinetd_twisted.config.model import ConfigError, Location, Problem, Severity
from xinetd_twisted.records import plainRepr

MAX_LINE = 16 * 1024


class Line(NamedTuple):
    """
    C{name op value...} inside a block, and where it was written.

    A tuple made in C rather than a frozen attrs class, its L{Location}
    made only when asked for: a thousand services are eleven thousand
    lines, and making a L{Line} and a L{Location} for each was a fifth of
    a load.

    @ivar name: the attribute, lower-case.
    @ivar op: C{=}, C{+=} or C{-=}.
    @ivar values: the words after the operator.
    @ivar path: the file.
    @ivar number: the 1-based line number.
    """

    name: str
    op: str
    values: Tuple[str, ...]
    path: str
    number: int

    @property
    def location(self) -> Location:
        """
        Where the line was written.
        """
        return Location(self.path, self.number)

    @classmethod
    def at(
        cls, name: str, op: str, values: Tuple[str, ...], location: Location
    ) -> Line:
        """
        The line C{name op values} written at C{location}.
        """
        return cls(name, op, values, location.path, location.line)


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class Broken:
    """
    A line that breaks its block (xinetd drops the service): bad syntax,
    bad operator, or the end of the file inside the block.
    """

    message: str
    location: Location
    attribute: Optional[str] = None


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
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


@plainRepr
@attr.s(auto_attribs=True, repr=False)
class Reader:
    """
    Reads a main file and everything it includes, in xinetd's order.

    @ivar blocks: every block, in reading order (unless a L{consumer}
        takes them).
    @ivar problems: syntax problems found at the top level.
    @ivar files: every file read.
    @ivar unread: files the configuration names that were not read because
        of an error (a missing include, an include line inside a broken
        entry): the services they defined may only look removed.
    @ivar warnWritable: warn about files and directories another user
        than root could change (for a daemon running as root).
    @ivar consumer: given each block as soon as it is read, in reading
        order, instead of L{blocks}: then a block's lines can be let go
        once applied, rather than every file's lines kept until the end
        (with a thousand services that was most of a load's memory).
    """

    blocks: List[Block] = attr.ib(factory=list)
    problems: List[Problem] = attr.ib(factory=list)
    files: List[str] = attr.ib(factory=list)
    unread: List[str] = attr.ib(factory=list)
    warnWritable: bool = False
    consumer: Optional[Callable[[Block], None]] = None
    _stack: List[str] = attr.ib(factory=list)
    _parsed: Dict[str, Tuple[str, str, Tuple[str, ...]]] = attr.ib(factory=dict)
    _rows: Dict[str, Tuple[str, str, Tuple[str, ...]]] = attr.ib(factory=dict)

    def parseLine(self, text: str, location: Location) -> Union[Line, Broken]:
        """
        L{parseLine}, its words split once per distinct text in this load
        (a thousand services written alike repeat most of their lines).
        """
        seen = self._parsed.get(text)
        if seen is not None:
            return Line(seen[0], seen[1], seen[2], location.path, location.line)
        item = parseLine(text, location)
        if isinstance(item, Line):
            self._parsed[text] = (item.name, item.op, item.values)
        return item

    def addBlock(self, block: Block) -> None:
        """
        A block was read: to the L{consumer}, else to L{blocks}.
        """
        if self.consumer is not None:
            self.consumer(block)
        else:
            self.blocks.append(block)

    def problem(
        self, location: Location, message: str, severity: Severity = Severity.ERROR
    ) -> None:
        """
        Record a top-level problem.
        """
        self.problems.append(Problem(location, severity, message))

    def fatal(self, problem: Problem) -> NoReturn:
        """
        Give up the whole load: raise L{ConfigError} with every problem so
        far and C{problem}.
        """
        raise ConfigError(tuple(self.problems) + (problem,))

    def readMain(self, path: str) -> None:
        """
        Read the main file C{path} and everything it includes.

        @raise FileRefused: the main file cannot be used.
        @raise ConfigError: an included file cannot be used at all.
        """
        got = readConfigFile(path)
        self.checkOwner(path, got.status, Location(path, 0))
        self._readChecked(got.text, path)

    def readFile(self, path: str, where: Location) -> bool:
        """
        Read the included file C{path}, named at C{where}.  A missing file
        is an error and reading goes on (as in xinetd); anything else that
        cannot be read refuses the load.

        @return: L{False} when the file is missing.
        """
        try:
            got = readConfigFile(path, where)
        except FileRefused as e:
            if not e.missing:
                self.fatal(e.problem)
            self.problem(
                where,
                f"Unable to open included configuration file: {path} ({e.reason})",
            )
            self.unread.append(path)
            return False
        self.checkOwner(path, got.status, where)
        self._readChecked(got.text, path)
        return True

    def checkOwner(self, path: str, status: os.stat_result, where: Location) -> None:
        """
        With L{warnWritable}, warn at C{where} when the file C{path} (whose
        C{stat} is C{status}) could be changed by another user than root.
        """
        if not self.warnWritable:
            return
        why = writableByOthers(status)
        if why is not None:
            self.problem(
                where,
                f"{path} is {why}: another user could change what the root daemon runs",
                Severity.WARNING,
            )

    def readText(self, text: str, path: str) -> None:
        """
        Read configuration text as if it were the file C{path}.

        @raise ConfigError: the text is not a configuration (a NUL, ...).
        """
        try:
            checkText(text, path)
        except FileRefused as e:
            self.fatal(e.problem)
        self._readChecked(text, path)

    def _readChecked(self, text: str, path: str) -> None:
        """
        L{readText} for text L{checkText} passed (as L{readConfigFile}
        checks what it reads).
        """
        self._stack.append(os.path.realpath(path))
        self.files.append(path)
        try:
            _FileReader(self, text, path).run()
        finally:
            self._stack.pop()

    def include(self, path: str, where: Location) -> None:
        """
        Follow C{include PATH}; a file already being read is a loop, and
        nesting deeper than L{MAX_INCLUDE_DEPTH} refuses the load.
        """
        if os.path.realpath(path) in self._stack:
            self.problem(where, f"include loop: {path} is already being read; skipped")
            return
        if len(self._stack) > MAX_INCLUDE_DEPTH:
            self.fatal(
                Problem(
                    where,
                    Severity.FATAL,
                    f"includes nested deeper than {MAX_INCLUDE_DEPTH} files "
                    f"(at {path}); the configuration is refused",
                )
            )
        self.readFile(path, where)

    def includeDir(self, directory: str, where: Location) -> None:
        """
        Follow C{includedir DIR}: names in byte order, skipping any with a
        C{.} or ending in C{~}; subdirectories are errors and skipped, other
        files that are not regular (FIFOs, devices, sockets) refuse the
        load.
        """
        paths = self._listDir(directory, where)
        if paths is None:
            return
        if self.warnWritable:
            try:
                self.checkOwner(directory, os.stat(directory), where)
            except OSError:
                pass
        for path in paths:
            try:
                mode = os.stat(path).st_mode
            except OSError as e:
                self.problem(where, f"Unable to stat {path}: {e.strerror}")
                self.unread.append(path)
                continue
            if stat.S_ISDIR(mode):
                self.problem(
                    where, f"{path} is not a regular file. It is being skipped."
                )
                continue
            self.include(path, where)

    def _listDir(self, directory: str, where: Location) -> Optional[List[str]]:
        """
        The files C{includedir DIRECTORY} reads, in order, or L{None} (with
        an error) when the directory cannot be listed.
        """
        try:
            return _includedFiles(directory)
        except OSError as e:
            self.problem(where, f"Unable to read directory {directory}: {e.strerror}")
            return None

    def notRead(self, keyword: str, target: str) -> None:
        """
        An C{include}/C{includedir} line that a broken entry swallowed:
        remember what it would have read.
        """
        if keyword == "include":
            self.unread.append(target)
            return
        try:
            self.unread.extend(_includedFiles(target))
        except OSError:
            pass


def _includedFiles(directory: str) -> List[str]:
    """
    The paths C{includedir DIRECTORY} reads, in xinetd's order: names in
    byte order, without those that contain a C{.} or end in C{~}.

    @raise OSError: the directory cannot be listed.
    """
    return [
        os.path.join(directory, name)
        for name in sorted(os.listdir(directory), key=os.fsencode)
        if "." not in name and not name.endswith("~")
    ]


_KEYWORDS = ("service", "defaults", "include", "includedir")


class _FileReader:
    """
    The top-level state machine over one file's lines.

    @ivar swallowed: blocks for the C{service NAME} lines the last skipped
        entry swallowed, each ending in a L{Broken}, to be added after it.
    """

    def __init__(self, reader: Reader, text: str, path: str) -> None:
        self.reader = reader
        self.path = path
        # Lines one at a time (split at "\n" only, as str.split("\n")),
        # not a list of them all: a thousand services' twelve thousand
        # line strings, alive together, left holes in the allocator's
        # arenas that the load's lasting values could not fill.
        self.rows = io.StringIO(text)
        self.index = 0
        self.sawDefaults = False
        self.swallowed: List[Block] = []

    def nextLine(self) -> Optional[Tuple[str, Location]]:
        """
        The next line that is not blank or a comment, or L{None} at EOF.
        """
        got = self.nextText()
        return None if got is None else (got[0], Location(self.path, got[1]))

    def nextText(self) -> Optional[Tuple[str, int]]:
        """
        L{nextLine} with its line number instead of its L{Location}.
        """
        index = self.index
        for row in self.rows:
            # A CRLF file would otherwise glue "\r" to the last value.
            text = row.rstrip("\r\n")
            index += 1
            stripped = text.strip(" \t")
            if stripped and stripped[0] != "#":
                self.index = index
                return text, index
        self.index = index
        return None

    def skipEntry(
        self, cause: Location, first: Optional[Tuple[str, Location]] = None
    ) -> None:
        """
        Skip to the next line that is only C{}}, starting with C{first}
        when given; C{service} and C{include} lines met on the way are
        remembered (L{swallowed}, L{Reader.notRead}).
        """
        got = first if first is not None else self.nextLine()
        while True:
            if got is None:
                self.reader.problem(
                    Location(self.path, self.index),
                    "missing } in last service entry",
                    Severity.WARNING,
                )
                return
            text, location = got
            if text.strip(" \t") == "}":
                return
            self._swallow(text, location, cause)
            got = self.nextLine()

    def _swallow(self, text: str, location: Location, cause: Location) -> None:
        words = text.split()
        keyword = words[0].lower()
        if keyword == "service" and len(words) > 1:
            message = (
                f"this service is inside the broken entry at {cause} (a "
                "missing '}'?) and is not read"
            )
            broken = Broken(message, location)
            self.swallowed.append(Block("service", words[1], location, (broken,)))
        elif keyword in ("include", "includedir") and len(words) > 1:
            self.reader.notRead(keyword, words[1])
        elif self.swallowed and keyword == "id":
            # The id is the service's key: keep it with the swallowed block.
            item = parseLine(text, location)
            last = self.swallowed[-1]
            if isinstance(item, Line) and item.values:
                self.swallowed[-1] = attr.evolve(last, lines=(item,) + last.lines)

    def _flushSwallowed(self) -> None:
        for block in self.swallowed:
            self.reader.addBlock(block)
        self.swallowed = []

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
                    self.skipEntry(location)
                    self._flushSwallowed()
                    continue
                kind, name = "service", words[1]
            elif keyword == "defaults":
                kind, name = "defaults", "defaults"
            else:
                self.reader.problem(location, "missing service keyword")
                self.skipEntry(location)
                self._flushSwallowed()
                continue
            brace = self.nextText()
            if brace is None or brace[0].strip(" \t") != "{":
                self._missingBrace(kind, name, location, brace)
                continue
            duplicate = kind == "defaults" and self.sawDefaults
            if kind == "defaults":
                self.sawDefaults = True
            lines = self.readBody(location)
            self.reader.addBlock(Block(kind, name, location, lines, duplicate))
            if self.swallowed:
                self._flushSwallowed()

    def _missingBrace(
        self,
        kind: str,
        name: str,
        location: Location,
        brace: Optional[Tuple[str, int]],
    ) -> None:
        """
        The line after C{service NAME} (C{brace}, or L{None} at the end of
        the file) is not C{{}: the entry is broken and skipped.
        """
        # xinetd counts the line it read instead of the brace.
        where = location if brace is None else Location(self.path, brace[1])
        broken = Broken(f"Service {name}: missing '{{'", where)
        self.reader.addBlock(Block(kind, name, location, (broken,)))
        if brace is not None and brace[0].strip(" \t") != "}":
            self._swallow(brace[0], where, location)
        self.skipEntry(location)
        self._flushSwallowed()

    def readBody(self, start: Location) -> Tuple[Union[Line, Broken], ...]:
        """
        The lines of a block up to its C{}}.
        """
        lines: List[Union[Line, Broken]] = []
        parse, path, rows = self.reader.parseLine, self.path, self.rows
        parsedRows = self.reader._rows
        # nextLine's loop, inlined: this one runs for every line of every
        # block (and the closing brace needs no Location, nor a line seen
        # before: its Line is a tuple made in C).  A row read before as a
        # line, "\n" and all, is that line again: no stripping, no test.
        newTuple = tuple.__new__
        index = self.index
        for row in rows:
            index += 1
            seen = parsedRows.get(row)
            if seen is not None:
                lines.append(newTuple(Line, (seen[0], seen[1], seen[2], path, index)))
                continue
            text = row.rstrip("\r\n")
            stripped = text.strip(" \t")
            if not stripped or stripped[0] == "#":
                continue
            if stripped == "}":
                self.index = index
                return tuple(lines)
            location = Location(path, index)
            item = parse(text, location)
            if isinstance(item, Line):
                parsedRows[row] = item[:3]
                lines.append(item)
                continue
            self.index = index
            words = text.split()
            if words[0].lower() in _KEYWORDS and not _hasOperator(words):
                item = Broken(
                    f"a '{words[0]}' line inside the entry started at "
                    f"{start}: a missing '}}'?",
                    location,
                )
                lines.append(item)
                self.skipEntry(start, (text, location))
            else:
                lines.append(item)
                self.skipEntry(start)
            return tuple(lines)
        self.index = index
        lines.append(Broken("incomplete entry", Location(path, index)))
        return tuple(lines)


def _hasOperator(words: List[str]) -> bool:
    return len(words) > 1 and words[1].startswith(_OPERATORS)


_OPERATORS = ("+=", "-=", "=")


def parseLine(text: str, location: Location) -> Union[Line, Broken]:
    """
    Split C{name op values}; values are separated by spaces and tabs only,
    with no comments, quoting or escapes.
    """
    if len(text) > MAX_LINE:
        return Broken(f"line longer than {MAX_LINE} bytes", location)
    words = _words(text)
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
    if rest[0] == "=":
        op = "="
    elif rest[1:2] == "=" and rest[0] in "+-":
        op = rest[:2]
    else:
        return Broken(f"Bad operator for attribute: {name}", location, name.lower())
    first = rest[len(op) :]
    values = (first, *words[2:]) if first else tuple(words[2:])
    return Line(name.lower(), op, values, location.path, location.line)


def _words(text: str) -> List[str]:
    """
    C{text} split at runs of spaces and tabs (only: not at the other
    characters C{str.split} takes for white space).
    """
    spaced = text.replace("\t", " ")
    if spaced.isascii() and spaced.isprintable():
        # No control character left: a space is its only white space.
        return spaced.split()
    return [w for w in spaced.split(" ") if w]
