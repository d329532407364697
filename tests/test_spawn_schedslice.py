"""
Tests for L{xinetd_twisted.spawn.schedslice}: the C{struct sched_attr} it
packs and reads, and what L{SliceSetter} does with a fake kernel.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
from typing import Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn import schedslice
from xinetd_twisted.spawn.launcher import HELPER_PATH, helperArguments
from xinetd_twisted.spawn.schedslice import (
    RESET_ON_FORK,
    SliceSetter,
    packAttr,
    parseAttr,
    setterFor,
)


class AttrTests(SynchronousTestCase):
    """
    L{packAttr} and L{parseAttr}: the kernel's C{struct sched_attr}.
    """

    def test_layout(self) -> None:
        """
        56 bytes: size, policy (u32), flags (u64), nice (s32), priority
        (u32), runtime, deadline, period (u64), util_min, util_max (u32).
        """
        data = packAttr(3, RESET_ON_FORK, -2, 100_000)
        self.assertEqual(len(data), 56)
        self.assertEqual(struct.unpack_from("=II", data, 0), (56, 3))
        self.assertEqual(struct.unpack_from("=Q", data, 8), (1,))
        self.assertEqual(struct.unpack_from("=iI", data, 16), (-2, 0))
        self.assertEqual(struct.unpack_from("=QQQII", data, 24), (100_000, 0, 0, 0, 0))

    def test_parse(self) -> None:
        """
        A read attribute gives its policy, flags, nice and runtime, whatever
        follows the 56 bytes.
        """
        data = packAttr(0, 1, 5, 1_400_000) + b"\xff" * 8
        self.assertEqual(parseAttr(data), (0, 1, 5, 1_400_000))


class _Kernel:
    """
    A fake of the two system calls: one attribute per pid, every call
    recorded, optional errors.
    """

    def __init__(self, attrs: Dict[int, bytes], takesSlice: bool = True) -> None:
        self.attrs = attrs
        self.takesSlice = takesSlice
        self.sets: List[Tuple[int, Tuple[int, int, int, int]]] = []
        self.getError = 0
        self.setError = 0

    def get(self, pid: int) -> Tuple[int, bytes]:
        if self.getError:
            return self.getError, b"\0" * 56
        return 0, self.attrs[pid]

    def set(self, pid: int, attr: bytes) -> int:
        if self.setError:
            return self.setError
        policy, flags, nice, runtime = parseAttr(attr)
        self.sets.append((pid, (policy, flags, nice, runtime)))
        self.attrs[pid] = packAttr(
            policy, flags, nice, runtime if self.takesSlice else 0
        )
        return 0


class SliceSetterTests(SynchronousTestCase):
    """
    L{SliceSetter.apply} with a fake kernel.
    """

    def setUp(self) -> None:
        self.warnings: List[str] = []

    def setter(self, kernel: _Kernel) -> SliceSetter:
        return SliceSetter(100_000, kernel, self.warnings.append)

    def test_keepsPolicyAndNice(self) -> None:
        """
        The slice is set with reset-on-fork, the process's policy and nice
        value kept.
        """
        kernel = _Kernel({7: packAttr(3, 0, 4, 1_400_000)})
        self.assertTrue(self.setter(kernel).apply(7))
        self.assertEqual(kernel.sets, [(7, (3, RESET_ON_FORK, 4, 100_000))])
        self.assertEqual(self.warnings, [])

    def test_negativeNice(self) -> None:
        """
        A process with a negative nice value is left alone: reset-on-fork
        would give its children nice 0.
        """
        kernel = _Kernel({7: packAttr(0, 0, -5, 1_400_000)})
        self.assertFalse(self.setter(kernel).apply(7))
        self.assertEqual(kernel.sets, [])
        [warning] = self.warnings
        self.assertIn("nice -5", warning)

    def test_realTime(self) -> None:
        """
        A real-time process (no slice in its class) is left alone.
        """
        kernel = _Kernel({7: packAttr(1, 0, 0, 0)})
        self.assertFalse(self.setter(kernel).apply(7))
        self.assertEqual(kernel.sets, [])
        self.assertIn("policy 1", self.warnings[0])

    def test_refused(self) -> None:
        """
        A refused call (an old kernel, no permission) is said once, however
        many processes it fails for.
        """
        kernel = _Kernel({7: packAttr(0, 0, 0, 0), 8: packAttr(0, 0, 0, 0)})
        kernel.setError = errno.EPERM
        setter = self.setter(kernel)
        self.assertFalse(setter.apply(7))
        self.assertFalse(setter.apply(8))
        self.assertEqual(
            self.warnings,
            [
                f"scheduler slice not set ({os.strerror(errno.EPERM)}): "
                "the kernel's default stays"
            ],
        )

    def test_noSyscall(self) -> None:
        """
        A kernel without C{sched_getattr} (C{ENOSYS}) is said once.
        """
        kernel = _Kernel({})
        kernel.getError = errno.ENOSYS
        self.assertFalse(self.setter(kernel).apply(7))
        self.assertIn(os.strerror(errno.ENOSYS), self.warnings[0])

    def test_kernelIgnoresSlice(self) -> None:
        """
        A kernel that takes the call but no slice (before 6.12 it reads
        back as 0) is said to need a newer one.
        """
        kernel = _Kernel({7: packAttr(0, 0, 0, 0)}, takesSlice=False)
        self.assertFalse(self.setter(kernel).apply(7))
        self.assertIn("6.12", self.warnings[0])


class SetterForTests(SynchronousTestCase):
    """
    L{setterFor} picks the system calls of the machine.
    """

    def setUp(self) -> None:
        self.warnings: List[str] = []
        self.numbers: List[Tuple[int, int]] = []

    def calls(self, numbers: Tuple[int, int]) -> _Kernel:
        self.numbers.append(numbers)
        return _Kernel({1: packAttr(0, 0, 0, 0)})

    def test_off(self) -> None:
        """
        A slice of 0 makes no setter and no system call.
        """
        self.assertIsNone(setterFor(0, self.warnings.append, "x86_64", self.calls))
        self.assertEqual((self.numbers, self.warnings), ([], []))

    def test_machines(self) -> None:
        """
        x86_64 and aarch64 have their own numbers; microseconds become
        nanoseconds.
        """
        setter = setterFor(250, self.warnings.append, "x86_64", self.calls)
        setterFor(250, self.warnings.append, "aarch64", self.calls)
        self.assertEqual(self.numbers, [(314, 315), (274, 275)])
        assert setter is not None
        self.assertTrue(setter.apply(1))
        self.assertEqual(setter._calls.sets, [(1, (0, RESET_ON_FORK, 0, 250_000))])  # type: ignore[attr-defined]

    def test_unknownMachine(self) -> None:
        """
        On a machine whose numbers we do not know nothing is tried, and
        that is said.
        """
        self.assertIsNone(setterFor(100, self.warnings.append, "riscv64", self.calls))
        self.assertEqual(self.numbers, [])
        self.assertIn("riscv64", self.warnings[0])

    def test_noCtypes(self) -> None:
        """
        Without ctypes the slice is skipped and that is said.
        """

        def missing(numbers: Tuple[int, int]) -> None:
            raise ImportError("No module named '_ctypes'")

        self.assertIsNone(setterFor(100, self.warnings.append, "x86_64", missing))
        self.assertIn("_ctypes", self.warnings[0])


class HelperArgumentsTests(SynchronousTestCase):
    """
    The helper is told the slice and the daemon's pid on its command line.
    """

    def test_slice(self) -> None:
        """
        A slice adds its microseconds and the daemon's pid after the fd.
        """
        argv = helperArguments(fd=5, schedSlice=100, daemonPid=4242)
        self.assertEqual(argv[-4:], [HELPER_PATH, "5", "100", "4242"])

    def test_noSlice(self) -> None:
        """
        Without a slice the helper's command line is as before.
        """
        self.assertEqual(helperArguments(fd=5, daemonPid=4242)[-2:], [HELPER_PATH, "5"])

    def test_launcherPassesIt(self) -> None:
        """
        The launcher starts the helper with its slice and our pid.
        """
        from twisted.internet.task import Clock

        from xinetd_twisted.spawn.launcher import HelperLauncher
        from xinetd_twisted.spawn.orphans import OrphanReaper

        started: List[List[str]] = []

        def startProcess(reactor, proto, argv, environment, keep):
            started.append(argv)
            raise OSError(errno.ENOENT, "not really")

        launcher = HelperLauncher(Clock(), {}, OrphanReaper(Clock()), print, 250)
        launcher.startProcess = startProcess
        launcher.launch().close()
        self.assertEqual(started[0][-2:], ["250", str(os.getpid())])

    def test_importsLittle(self) -> None:
        """
        Loaded as the helper loads it, the module imports neither ctypes
        nor typing until a setter is made (nor does the daemon, which
        imports it for the option's bounds).
        """
        code = (
            "import sys, _frozen_importlib as b, _frozen_importlib_external as e\n"
            "before = set(sys.modules)\n"
            "spec = e.spec_from_file_location('slice', sys.argv[1])\n"
            "spec.loader.exec_module(b.module_from_spec(spec))\n"
            "print(' '.join(sorted(set(sys.modules) - before)))\n"
        )
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, schedslice.__file__],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        self.assertEqual({"ctypes", "typing"} & set(out), set())
