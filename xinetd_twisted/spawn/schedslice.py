# -*- test-case-name: tests.test_spawn_schedslice -*-
"""
A short scheduler slice for the daemon and its spawn helpers (C{--sched-slice}).

On Linux 6.12 and later (EEVDF) C{sched_setattr(2)} takes a slice for a
C{SCHED_OTHER} or C{SCHED_BATCH} process in C{sched_runtime}.  The daemon
and its helpers wake for each connection and run briefly; beside a process
that keeps a core busy, a short slice lets them run sooner instead of
waiting out the busy one's default slice.  C{SCHED_FLAG_RESET_ON_FORK} goes
with it, so that what they start (the servers) gets the kernel's default,
as xinetd's children would.  A process with a negative nice value is left
alone: reset-on-fork would give its children nice 0 too.

The root helper loads this file (it runs with C{-I -S} and no package on
C{sys.path}: standard library only) and sets the slice on itself, on the
daemon by pid and on each sub-helper it forks: one process, root while
the daemon is, sets every slice, and the daemon makes no call of its own.
Older kernels
ignore the slice (it reads back as 0) or refuse the call; either way it is
skipped and said once.
"""

from __future__ import annotations

import os
import struct

# Not typing itself: it would cost the helper, which loads this file,
# modules it has no other use for.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

SCHED_ATTR = "=IIQiIQQQII"
"""
C{struct sched_attr}: size, policy, flags, nice, priority, runtime,
deadline, period, util_min, util_max.
"""

SCHED_ATTR_SIZE = struct.calcsize(SCHED_ATTR)

RESET_ON_FORK = 0x01
"""C{SCHED_FLAG_RESET_ON_FORK}."""

FAIR_POLICIES = (0, 3)
"""C{SCHED_OTHER} and C{SCHED_BATCH}: the policies that take a slice."""

SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}
"""C{(sched_setattr, sched_getattr)} by machine."""

MIN_SLICE_US = 100
MAX_SLICE_US = 100_000
"""The kernel clamps a slice to these bounds, in microseconds."""


def packAttr(policy: int, flags: int, nice: int, runtime: int) -> bytes:
    """
    A C{struct sched_attr} for C{sched_setattr}.
    """
    return struct.pack(
        SCHED_ATTR, SCHED_ATTR_SIZE, policy, flags, nice, 0, runtime, 0, 0, 0, 0
    )


def parseAttr(data: bytes) -> Tuple[int, int, int, int]:
    """
    C{(policy, flags, nice, runtime)} of a C{struct sched_attr}.
    """
    fields = struct.unpack(SCHED_ATTR, data[:SCHED_ATTR_SIZE])
    return fields[1], fields[2], fields[3], fields[5]


class SliceSetter:
    """
    Gives processes the slice, each keeping its policy and nice value;
    says at most once why it could not.

    @ivar warned: whether the reason has been said.
    """

    def __init__(
        self, nanoseconds: int, calls: Any, warn: Callable[[str], None]
    ) -> None:
        """
        @param calls: C{get(pid) -> (errno, attr bytes)} and
            C{set(pid, attr bytes) -> errno} (0: done), see L{LibcCalls}.
        @param warn: says why a slice was not set.
        """
        self._nanoseconds = nanoseconds
        self._calls = calls
        self._warn = warn
        self.warned = False

    def apply(self, pid: int) -> bool:
        """
        Give process C{pid} the slice, with reset-on-fork; whether it has it.
        """
        why = self._set(pid)
        if why is not None and not self.warned:
            self.warned = True
            self._warn(f"scheduler slice not set ({why}): the kernel's default stays")
        return why is None

    def _set(self, pid: int) -> Optional[str]:
        err, data = self._calls.get(pid)
        if err:
            return os.strerror(err)
        policy, _flags, nice, _runtime = parseAttr(data)
        if policy not in FAIR_POLICIES:
            return f"scheduling policy {policy}"
        if nice < 0:
            return f"nice {nice}, which reset-on-fork would not give servers"
        err = self._calls.set(
            pid, packAttr(policy, RESET_ON_FORK, nice, self._nanoseconds)
        )
        if err:
            return os.strerror(err)
        err, data = self._calls.get(pid)
        if err or not parseAttr(data)[3]:
            return "the kernel takes no slice: Linux 6.12 or later needed"
        return None


class LibcCalls:
    """
    C{sched_getattr} and C{sched_setattr} through C{ctypes}.
    """

    def __init__(self, numbers: Tuple[int, int]) -> None:
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._setNumber, self._getNumber = numbers

    def get(self, pid: int) -> Tuple[int, bytes]:
        """
        C{(errno, attr)} of process C{pid}.
        """
        buf = self._ctypes.create_string_buffer(SCHED_ATTR_SIZE)
        done = self._libc.syscall(self._getNumber, pid, buf, SCHED_ATTR_SIZE, 0)
        return (self._ctypes.get_errno() if done else 0), buf.raw

    def set(self, pid: int, attr: bytes) -> int:
        """
        Set process C{pid}'s attributes; the errno, 0 if done.
        """
        buf = self._ctypes.create_string_buffer(attr, SCHED_ATTR_SIZE)
        done = self._libc.syscall(self._setNumber, pid, buf, 0)
        return self._ctypes.get_errno() if done else 0


def setterFor(
    microseconds: int,
    warn: Callable[[str], None],
    machine: Optional[str] = None,
    calls: Optional[Callable[[Tuple[int, int]], Any]] = None,
) -> Optional[SliceSetter]:
    """
    A L{SliceSetter} for a slice of C{microseconds}, or L{None} for 0 or
    for a machine whose system call numbers we do not know (said once).

    @param machine: default C{os.uname().machine}.
    @param calls: makes the system calls from their numbers (L{LibcCalls}).
    """
    if microseconds <= 0:
        return None
    machine = machine or os.uname().machine
    numbers = SYSCALLS.get(machine)
    if numbers is None:
        warn(f"scheduler slice not set (no sched_setattr known on {machine})")
        return None
    try:
        made = (calls or LibcCalls)(numbers)
    except (ImportError, OSError) as e:
        warn(f"scheduler slice not set ({e})")
        return None
    return SliceSetter(microseconds * 1000, made, warn)


__all__ = [
    "MAX_SLICE_US",
    "MIN_SLICE_US",
    "LibcCalls",
    "SliceSetter",
    "packAttr",
    "parseAttr",
    "setterFor",
]
