# -*- test-case-name: tests.test_config_files -*-
"""
Opening the files a configuration names (the main file, includes, an
inetd.conf) the way a root daemon must: never blocking on a FIFO or a
device, bounded in size, refusing what is not text, and noticing files
another user could rewrite.

A file that is not a configuration at all refuses the whole load
(L{FileRefused}); a missing one is the caller's decision (xinetd goes on
without a missing include).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import Optional

import attr

from xinetd_twisted.config.model import Location, Problem, Severity
from xinetd_twisted.records import plainRepr

MAX_FILE_SIZE = 4 * 1024 * 1024
"""The largest configuration file read (bytes); a larger one refuses the
load.  Real files are a few KiB; a thousand services are about 300 KiB."""

MAX_INCLUDE_DEPTH = 32
"""How deep C{include}/C{includedir} may nest below the main file."""

# Control bytes no text configuration has (tab, LF, VT, FF and CR are fine).
_BINARY = re.compile("[\x00-\x08\x0e-\x1f]")
_UNDECODED = re.compile("[\udc80-\udcff]")
_CONTROLS = tuple(chr(c) for c in (*range(0x00, 0x09), *range(0x0E, 0x20)))
"""What L{_BINARY} matches, one character each: 27 substring tests of a
large text cost a fortieth of one search of the character class."""
_MISSING = (errno.ENOENT, errno.ENOTDIR)


class FileRefused(Exception):
    """
    A file the configuration names cannot be used.

    @ivar problem: what is wrong, located.
    @ivar missing: the file does not exist (ENOENT/ENOTDIR): the only case
        a caller may treat as less than fatal.
    @ivar reason: the short reason (C{strerror} for system errors).
    @ivar systemError: opening or reading it failed (C{missing} included),
        as opposed to what it is or holds.
    """

    def __init__(
        self,
        problem: Problem,
        reason: str,
        missing: bool = False,
        systemError: bool = False,
    ) -> None:
        super().__init__(str(problem))
        self.problem = problem
        self.reason = reason
        self.missing = missing
        self.systemError = systemError or missing


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class ConfigText:
    """
    A configuration file read.

    @ivar text: its contents, decoded (undecodable bytes in comments are
        kept as surrogate escapes).
    @ivar status: C{os.fstat} of the descriptor it was read from.
    """

    text: str
    status: os.stat_result


def _refuse(
    location: Location, message: str, reason: str, systemError: bool = False
) -> FileRefused:
    problem = Problem(
        location, Severity.FATAL, f"{message}; the configuration is refused"
    )
    return FileRefused(problem, reason, systemError=systemError)


def readConfigFile(path: str, where: Optional[Location] = None) -> ConfigText:
    """
    Read the configuration file C{path}.

    @param where: the line that named it (an include), for messages about
        the file as a whole; L{None} for the main file.
    @raise FileRefused: it is missing or unreadable, not a regular file,
        larger than L{MAX_FILE_SIZE}, or not text (a NUL or another control
        byte anywhere, or bytes that are not UTF-8 outside a comment).
    """
    at = where if where is not None else Location(path, 0)
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in _MISSING:
            problem = Problem(at, Severity.ERROR, f"cannot open {path}: {reason}")
            raise FileRefused(problem, reason, missing=True) from None
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):  # a socket cannot even be opened
            raise _notRegular(at, path, mode) from None
        raise _refuse(at, f"cannot open {path}: {reason}", reason, True) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise _notRegular(at, path, status.st_mode)
        if status.st_size > MAX_FILE_SIZE:
            raise _tooLarge(at, path)
        chunks = []
        size = 0
        while size <= MAX_FILE_SIZE:
            # As much as fstat says is left (and a byte more, to see the
            # end), not the most we would take: a 4 MiB buffer for every
            # file, even shrunk once read, left the allocator keeping the
            # memory of a whole load.
            want = max(status.st_size + 1 - size, 64 * 1024)
            chunk = os.read(fd, min(want, MAX_FILE_SIZE + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_SIZE:
            raise _tooLarge(at, path)
    except OSError as e:
        reason = e.strerror or str(e)
        raise _refuse(at, f"cannot read {path}: {reason}", reason, True) from None
    finally:
        os.close(fd)
    return ConfigText(decodeConfig(b"".join(chunks), path), status)


def _notRegular(at: Location, path: str, mode: int) -> FileRefused:
    return _refuse(
        at,
        f"{path} is not a regular file (it is {describeKind(mode)})",
        "not a regular file",
    )


def _tooLarge(at: Location, path: str) -> FileRefused:
    return _refuse(at, f"{path} is larger than {MAX_FILE_SIZE} bytes", "file too large")


def decodeConfig(data: bytes, path: str) -> str:
    """
    Configuration bytes to text, refusing what is not text (see
    L{checkText}); a UTF-8 byte-order mark is dropped.

    @raise FileRefused: the bytes are not a configuration.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", "surrogateescape")
    checkText(text, path)
    return text


def checkText(text: str, path: str) -> None:
    """
    Refuse configuration text that is not text.

    @raise FileRefused: a control character other than tab, LF, VT, FF, CR
        (a NUL most often: a binary file), or bytes that were not UTF-8
        (surrogate escapes) on a line that is not a comment.  Such bytes in
        a comment are kept (old files written in Latin-1).
    """
    bad = None
    if any(c in text for c in _CONTROLS):
        bad = _BINARY.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        code = ord(bad.group())
        what = "a NUL byte" if code == 0 else f"the control byte 0x{code:02x}"
        raise _refuse(
            Location(path, line),
            f"not a configuration file: it contains {what}",
            "not a text file",
        )
    # Surrogate escapes are not ASCII (and an ASCII text knows it is).
    if not text.isascii() and _UNDECODED.search(text) is not None:
        for number, row in enumerate(text.split("\n"), start=1):
            if _UNDECODED.search(row) and not row.lstrip(" \t").startswith("#"):
                raise _refuse(
                    Location(path, number),
                    "not a configuration file: this line is not UTF-8 text",
                    "not a text file",
                )


def describeKind(mode: int) -> str:
    """
    What a non-regular file is, in words.
    """
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def writableByOthers(status: os.stat_result) -> Optional[str]:
    """
    Why another user than root could change a file, or L{None}.

    For a root daemon: a file writable by its group or by everyone, or
    owned by another user, lets that user choose what root reads or runs.
    """
    mode = stat.S_IMODE(status.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "everyone" if mode & stat.S_IWOTH else f"group {status.st_gid}"
        return f"writable by {who} (mode {mode:04o})"
    if status.st_uid != 0:
        return f"owned by uid {status.st_uid}, not root"
    return None
