"""
Tests for L{xinetd_twisted.config.files} through the loader: what is not a
configuration refuses the whole load, with its location, and never hangs.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_config_support import EXTERNAL, SYSFILES, service
from xinetd_twisted.config import files, loadConfig
from xinetd_twisted.config.model import (
    Config,
    ConfigError,
    Severity,
    UnreadableConfig,
)


def load(path: str, **kw: Any) -> Config:
    """
    L{loadConfig} with the fixture system files, as root.
    """
    options: dict = dict(SYSFILES, environ={}, isRoot=True, warnWritable=False)
    options.update(kw)
    return loadConfig(path, **options)


class _Files(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = FilePath(self.mktemp())
        self.dir.makedirs()

    def write(self, name: str, data: bytes) -> str:
        child = self.dir.child(name)
        child.setContent(data)
        return child.path

    def main(self, text: str) -> str:
        """
        A main file with C{text} and one good service after it.
        """
        return self.write("main", (text + service(EXTERNAL)).encode())

    def refused(self, path: str) -> str:
        """
        The one FATAL problem of a refused load, as text.
        """
        with self.assertRaises(ConfigError) as raised:
            load(path)
        fatal = [p for p in raised.exception.problems if p.severity is Severity.FATAL]
        self.assertEqual(len(fatal), 1, raised.exception.problems)
        return str(fatal[0])


class NotTextTests(_Files):
    """
    Binary files, anywhere in the tree, refuse the load.
    """

    def test_nulInInclude(self) -> None:
        """
        An included file with a NUL byte refuses the whole load, naming the
        file and the line of the byte (it used to load as no services).
        """
        inc = self.write("inc", b"# ok\n\nservice x\x00\x01\x02\n")
        message = self.refused(self.main(f"include {inc}\n"))
        self.assertEqual(
            message,
            f"{inc}:3: fatal: not a configuration file: it contains a NUL byte; "
            "the configuration is refused",
        )

    def test_nulInMainFile(self) -> None:
        """
        A main file with a NUL byte is refused too.
        """
        path = self.write("main", b"\x7fELF\x02\x01\x01\x00\x00")
        self.assertIn(f"{path}:1: fatal: not a configuration file", self.refused(path))

    def test_nulInText(self) -> None:
        """
        Text in hand with a NUL (C{parseConfigText}) is refused too, not a
        ValueError from C{open}.
        """
        from tests.test_config_support import parse

        with self.assertRaises(ConfigError) as raised:
            parse("include /etc/x\x00y\n")
        self.assertIn(
            "test.conf:1: fatal: not a configuration file", str(raised.exception)
        )

    def test_controlByte(self) -> None:
        """
        A control byte other than tab, LF, VT, FF, CR is not text.
        """
        path = self.main("# \x1b[31m\n")
        self.assertIn("the control byte 0x1b", self.refused(path))

    def test_everyControlByte(self) -> None:
        """
        Each control byte is refused, at its line, and only those: tab,
        LF, VT, FF, CR and DEL are text.
        """
        from xinetd_twisted.config.files import FileRefused, checkText

        for code in (*range(0x00, 0x09), *range(0x0E, 0x20)):
            with self.assertRaises(FileRefused, msg=hex(code)) as raised:
                checkText(f"# ok\n# bad {chr(code)}\n", "t.conf")
            self.assertEqual(raised.exception.problem.location.line, 2)
        checkText("a\tb\x0b\x0c\r\n\x7f caf\xe9\n", "t.conf")

    def test_undecodedAfterText(self) -> None:
        """
        A text that is not ASCII is still searched for undecoded bytes.
        """
        from xinetd_twisted.config.files import FileRefused, checkText

        with self.assertRaises(FileRefused) as raised:
            checkText("# caf\xe9\nserver = \udcff\n", "t.conf")
        self.assertEqual(raised.exception.problem.location.line, 2)

    def test_invalidUtf8Value(self) -> None:
        """
        Bytes that are not UTF-8 on an attribute line refuse the load.
        """
        path = self.write(
            "main", service(EXTERNAL + "\n server_args = \xff\xfe").encode("latin-1")
        )
        self.assertIn(f"{path}:10: fatal: not a configuration file", self.refused(path))

    def test_latin1Comment(self) -> None:
        """
        Latin-1 in a comment is accepted: old files have it.
        """
        path = self.write("main", ("# caf\xe9\n" + service(EXTERNAL)).encode("latin-1"))
        self.assertEqual(len(load(path).services), 1)

    def test_byteOrderMark(self) -> None:
        """
        A UTF-8 byte-order mark is not part of the first keyword.
        """
        path = self.write("main", b"\xef\xbb\xbf" + service(EXTERNAL).encode())
        config = load(path)
        self.assertEqual((len(config.services), config.problems), (1, ()))

    def test_binaryInetdConf(self) -> None:
        """
        A binary inetd.conf refuses the load like an xinetd file.
        """
        inetd = self.write("inetd.conf", b"\x00\x00")
        with self.assertRaises(ConfigError):
            load(self.main(""), inetdConf=inetd)


class NotRegularTests(_Files):
    """
    FIFOs, devices and sockets refuse the load at once, never hanging.
    """

    def test_fifoInclude(self) -> None:
        """
        C{include} of a FIFO is refused at the include line (it used to
        wait forever for a writer).
        """
        fifo = os.path.join(self.dir.path, "fifo")
        os.mkfifo(fifo)
        path = self.main(f"\ninclude {fifo}\n")
        self.assertEqual(
            self.refused(path),
            f"{path}:2: fatal: {fifo} is not a regular file (it is a FIFO); "
            "the configuration is refused",
        )

    def test_fifoInIncludedir(self) -> None:
        """
        A FIFO in an includedir is refused at the includedir line.
        """
        sub = self.dir.child("d")
        sub.makedirs()
        os.mkfifo(sub.child("fifo").path)
        self.assertIn(
            "(it is a FIFO)", self.refused(self.main(f"includedir {sub.path}\n"))
        )

    def test_socketInIncludedir(self) -> None:
        """
        A UNIX socket in an includedir is refused.
        """
        # A short directory: a UNIX socket path has at most 107 bytes.
        sub = tempfile.mkdtemp(prefix="xt-")
        self.addCleanup(shutil.rmtree, sub)
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(os.path.join(sub, "sock"))
        path = self.main(f"includedir {sub}\n")
        self.assertIn("(it is a socket)", self.refused(path))

    def test_deviceNull(self) -> None:
        """
        C{include /dev/null} is refused: a device is no configuration.
        """
        message = self.refused(self.main("include /dev/null\n"))
        self.assertIn(
            "/dev/null is not a regular file (it is a character device)", message
        )

    def test_deviceZero(self) -> None:
        """
        C{include /dev/zero} is refused at once (it used to end in
        MemoryError).
        """
        self.assertIn(
            "character device", self.refused(self.main("include /dev/zero\n"))
        )

    def test_includeDirectory(self) -> None:
        """
        C{include} of a directory is refused.
        """
        self.assertIn(
            "(it is a directory)", self.refused(self.main(f"include {self.dir.path}\n"))
        )

    def test_mainFileFifo(self) -> None:
        """
        A FIFO as the main file is refused, not read.
        """
        fifo = os.path.join(self.dir.path, "fifo")
        os.mkfifo(fifo)
        self.assertIn("(it is a FIFO)", self.refused(fifo))


class SizeAndReadTests(_Files):
    """
    Size cap, read errors, missing files.
    """

    def test_tooLarge(self) -> None:
        """
        A file over the size cap refuses the load with a clear message.
        """
        self.patch(files, "MAX_FILE_SIZE", 1000)
        inc = self.write("inc", b"#" * 1001)
        message = self.refused(self.main(f"include {inc}\n"))
        self.assertIn(f"{inc} is larger than 1000 bytes", message)

    def test_unreadable(self) -> None:
        """
        A file that cannot be read (here: an I/O error) refuses the load.
        """
        message = self.refused(self.main("include /proc/self/mem\n"))
        self.assertIn("cannot read /proc/self/mem: Input/output error", message)

    def test_permissionDenied(self) -> None:
        """
        A file the daemon may not read refuses the load.
        """
        if os.geteuid() == 0:
            raise SkipTest("root reads every file")
        inc = self.write("inc", b"")
        os.chmod(inc, 0)
        self.assertIn("Permission denied", self.refused(self.main(f"include {inc}\n")))

    def test_missingInclude(self) -> None:
        """
        A missing include is an error, reading goes on (as in xinetd), and
        the missing file counts as a file with errors.
        """
        missing = os.path.join(self.dir.path, "gone")
        config = load(self.main(f"include {missing}\n"))
        self.assertEqual(len(config.services), 1)
        self.assertIn(missing, config.filesWithErrors)

    def test_missingMainFile(self) -> None:
        """
        A missing main file is L{UnreadableConfig}, with the reason.
        """
        missing = os.path.join(self.dir.path, "gone")
        with self.assertRaises(UnreadableConfig) as raised:
            load(missing)
        self.assertEqual(
            (raised.exception.path, raised.exception.reason),
            (missing, "No such file or directory"),
        )

    def test_mainFileIOError(self) -> None:
        """
        A main file that cannot be read is L{UnreadableConfig} too.
        """
        with self.assertRaises(UnreadableConfig) as raised:
            load("/proc/self/mem")
        self.assertEqual(raised.exception.reason, "Input/output error")


class DepthTests(_Files):
    """
    Include nesting is bounded.
    """

    def chain(self, length: int) -> str:
        """
        C{length} files, each including the next; the last has a service.
        """
        names = [self.dir.child(f"f{i}").path for i in range(length)]
        for here, after in zip(names, names[1:], strict=False):
            FilePath(here).setContent(f"include {after}\n".encode())
        FilePath(names[-1]).setContent(service(EXTERNAL).encode())
        return names[0]

    def test_deepChainRefused(self) -> None:
        """
        A chain of 256 includes is refused with the include line (it used
        to end in RecursionError).
        """
        message = self.refused(self.chain(256))
        self.assertIn(
            f"includes nested deeper than {files.MAX_INCLUDE_DEPTH} files", message
        )

    def test_chainWithinLimit(self) -> None:
        """
        A chain as deep as the limit is read.
        """
        config = load(self.chain(files.MAX_INCLUDE_DEPTH + 1))
        self.assertEqual(len(config.services), 1)
