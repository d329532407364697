"""
Tests for the per-spawn parts of the spawn helper
(L{xinetd_twisted.spawn.helper}) run in this process: the check of its
own resource limits before a C{fork_exec} spawn and the batches of events
it sends the daemon.
"""

from __future__ import annotations

import array
import errno
import marshal
import os
import resource
import socket
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn import helper


class LimitsTests(SynchronousTestCase):
    """
    L{helper._Limits.ensure}: the helper's own limits made what its
    children must inherit.
    """

    def setUp(self) -> None:
        self.original = resource.getrlimit(resource.RLIMIT_CORE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_CORE, self.original)

    def test_unchanged(self) -> None:
        """
        Limits that are already ours are kept and reported as such.
        """
        soft, hard = self.original
        limits = helper._Limits([(resource.RLIMIT_CORE, soft, hard)])
        self.assertTrue(limits.ensure())
        self.assertEqual(resource.getrlimit(resource.RLIMIT_CORE), self.original)

    def test_restored(self) -> None:
        """
        A soft limit changed since (by prlimit, here setrlimit) is put back.
        """
        soft, hard = self.original
        lowered = 0 if soft != 0 else 1
        if hard != resource.RLIM_INFINITY and lowered > hard:
            self.skipTest("no other soft limit to set")
        resource.setrlimit(resource.RLIMIT_CORE, (lowered, hard))
        limits = helper._Limits([(resource.RLIMIT_CORE, soft, hard)])
        self.assertTrue(limits.ensure())
        self.assertEqual(resource.getrlimit(resource.RLIMIT_CORE), self.original)

    def test_cannotRestore(self) -> None:
        """
        A limit that cannot be set (a soft limit above its hard one) is
        reported, as L{helper._ownLimitsAre} does, and nothing changes.
        """
        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        hard = before[1]
        if hard == resource.RLIM_INFINITY:
            self.skipTest("no soft limit can exceed an infinite hard limit")
        limits = helper._Limits([(resource.RLIMIT_NOFILE, hard + 1, hard)])
        self.assertFalse(limits.ensure())
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE), before)


class OutboxTests(SynchronousTestCase):
    """
    L{helper._Outbox.flush}: events go in one message, with the
    descriptors they carry.
    """

    def setUp(self) -> None:
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(self.ours.close)
        self.outbox = helper._Outbox(theirs)
        self.addCleanup(self.outbox.close)

    def test_plainBatch(self) -> None:
        """
        Events that carry no descriptor arrive as one message.
        """
        self.outbox.events += [("s", 1, 100), ("e", 100, 0)]
        self.outbox.flush()
        data, anc, _flags, _addr = self.ours.recvmsg(helper.MAX_MESSAGE, 64)
        self.assertEqual(marshal.loads(data), [("s", 1, 100), ("e", 100, 0)])
        self.assertEqual(anc, [])
        self.assertEqual(self.outbox.events, [])

    def test_batchWithDescriptor(self) -> None:
        """
        A connection given back rides in C{SCM_RIGHTS} beside its C{"f"}.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, w)
        self.outbox.events.append(("s", 1, 100))
        self.outbox.failed(2, 11, r)
        os.close(r)
        self.outbox.flush()
        data, anc, _flags, _addr = self.ours.recvmsg(
            helper.MAX_MESSAGE, socket.CMSG_SPACE(4)
        )
        self.assertEqual(marshal.loads(data), [("s", 1, 100), ("f", 2, 11, None, True)])
        self.assertEqual(len(anc), 1)
        fds = array.array("i")
        fds.frombytes(anc[0][2])
        os.write(w, b"x")
        self.assertEqual(os.read(fds[0], 1), b"x")
        os.close(fds[0])
        self.assertEqual(self.outbox.fds, [])


class _CountingLimits:
    """
    A template's limits that count how often they are checked.
    """

    def __init__(self, result: bool = True) -> None:
        self.result = result
        self.checks = 0

    def ensure(self) -> bool:
        self.checks += 1
        return self.result


class _Template:
    """
    What L{helper._Spawner.spawn} reads of a template for a C{fork_exec}
    child.
    """

    fast = True
    credentials = None
    pinnable = False
    executable = "/bin/true"
    argv = [b"/bin/true"]
    env: list = []

    def __init__(self, limits: _CountingLimits) -> None:
        self.limits = limits


class _SpawnerTestCase(SynchronousTestCase):
    """
    A sub-helper's L{helper._Spawner} whose C{fork_exec} makes up pids.
    """

    def setUp(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(ours.close)
        self.ours = ours
        outbox = helper._Outbox(theirs)
        self.addCleanup(outbox.close)
        self.spawner = helper._Spawner(outbox, True, helper.allRlimits(), None)
        self.addCleanup(self.spawner.closeErrorSocket)
        self.pids = iter(range(1000, 2000))
        self.patch(helper, "_FORK_EXEC", lambda *args: next(self.pids))

    def spawn(self, requestId: int, templateId: int = 1) -> None:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.spawner.spawn(("S", requestId, templateId, [], 0), r)


class SpawnerLimitsTests(_SpawnerTestCase):
    """
    L{helper._Spawner.spawn} checks a template's limits once per wake-up
    (L{helper._Spawner.woken}), whatever the number of its spawns read then.
    """

    def test_oncePerWakeUp(self) -> None:
        """
        The spawns read on one wake-up check their template's limits once;
        the next wake-up checks them again.
        """
        limits = _CountingLimits()
        self.spawner.templates[1] = _Template(limits)
        self.spawner.woken()
        self.spawn(1)
        self.spawn(2)
        self.assertEqual(limits.checks, 1)
        self.spawner.woken()
        self.spawn(3)
        self.assertEqual(limits.checks, 2)
        self.assertEqual([e[0] for e in self.spawner.outbox.events], ["s", "s", "s"])

    def test_eachTemplate(self) -> None:
        """
        Each template's limits are checked, in the same wake-up too.
        """
        first, second = _CountingLimits(), _CountingLimits()
        self.spawner.templates[1] = _Template(first)
        self.spawner.templates[2] = _Template(second)
        self.spawner.woken()
        self.spawn(1, 1)
        self.spawn(2, 2)
        self.assertEqual((first.checks, second.checks), (1, 1))

    def test_failedCheckNotRemembered(self) -> None:
        """
        Limits a sub-helper cannot restore fail the spawn and end it, and
        are not taken as checked.
        """
        limits = _CountingLimits(result=False)
        self.spawner.templates[1] = _Template(limits)
        self.spawner.woken()
        self.spawn(1)
        self.assertTrue(self.spawner.tampered)
        for fd in self.spawner.outbox.fds:  # the connection given back
            os.close(fd)
        self.assertEqual(
            self.spawner.outbox.events[0][:4], ("f", 1, errno.EPERM, "rlimits")
        )
        self.spawn(2)
        self.assertEqual(limits.checks, 2)


class _RecordingPinning:
    """
    A L{helper._Pinning} that says what it was asked.
    """

    def __init__(self) -> None:
        self.calls: list = []

    def woken(self) -> None:
        self.calls.append("woken")

    def pin(self) -> object:
        self.calls.append("pin")
        return "mask"

    def unpin(self, mask: object, pid: object) -> None:
        self.calls.append(("unpin", mask, pid))


class SpawnerPinningTests(_SpawnerTestCase):
    """
    L{helper._Spawner.spawn} pins around the C{fork_exec} of a pinnable
    template and gives the child (if any) the affinity back.
    """

    def setUp(self) -> None:
        super().setUp()
        self.spawner.pinning = self.recorded = _RecordingPinning()  # type: ignore[assignment]

    def template(self, pinnable: bool) -> None:
        t = _Template(_CountingLimits())
        t.pinnable = pinnable
        self.spawner.templates[1] = t

    def test_pinnedSpawn(self) -> None:
        self.template(True)
        self.spawner.woken()
        self.spawn(1)
        self.assertEqual(self.recorded.calls, ["woken", "pin", ("unpin", "mask", 1000)])

    def test_failedFork(self) -> None:
        """
        A failed C{fork_exec} is unpinned with no child, and reported.
        """

        def refuse(*args: object) -> int:
            raise OSError(errno.EAGAIN, "no")

        self.patch(helper, "_FORK_EXEC", refuse)
        self.template(True)
        self.spawn(1)
        self.assertEqual(self.recorded.calls, ["pin", ("unpin", "mask", None)])
        self.assertEqual(self.spawner.outbox.events[-1][:3], ("f", 1, errno.EAGAIN))

    def test_notPinnable(self) -> None:
        self.template(False)
        self.spawn(1)
        self.assertEqual(self.recorded.calls, [])


class PinningTests(SynchronousTestCase):
    """
    L{helper._Pinning}: this process narrowed to its CPU around a spawn, the
    child given back the process's affinity.
    """

    def setUp(self) -> None:
        if not hasattr(os, "sched_setaffinity"):
            self.skipTest("no sched_setaffinity here")
        self.original = os.sched_getaffinity(0)
        self.addCleanup(os.sched_setaffinity, 0, self.original)
        if len(self.original) < 2:
            self.skipTest("one CPU: nothing to pin")
        self.pinning = helper._Pinning.fromLibc()

    def test_pinAndUnpin(self) -> None:
        """
        L{helper._Pinning.pin} leaves this process one CPU of its affinity
        and returns the affinity; L{helper._Pinning.unpin} restores it.
        """
        mask = self.pinning.pin()
        pinned = os.sched_getaffinity(0)
        self.pinning.unpin(mask, None)
        self.assertEqual(
            (mask, len(pinned), pinned <= self.original),
            (self.original, 1, True),
        )
        self.assertEqual(os.sched_getaffinity(0), self.original)

    def test_childGetsTheAffinityBack(self) -> None:
        """
        A child forked while pinned inherits the one CPU; once unpinned with
        its pid it has this process's whole affinity.
        """
        mask = self.pinning.pin()
        child = subprocess.Popen(["sleep", "30"])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        inherited = os.sched_getaffinity(child.pid)
        self.pinning.unpin(mask, child.pid)
        self.assertEqual(len(inherited), 1)
        self.assertEqual(os.sched_getaffinity(child.pid), self.original)

    def test_childsOwnChoiceKept(self) -> None:
        """
        A child that already has several CPUs (it chose them itself) is
        left alone.
        """
        mask = self.pinning.pin()
        child = subprocess.Popen(["sleep", "30"])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        chosen = set(sorted(self.original)[:2])
        os.sched_setaffinity(child.pid, chosen)
        self.pinning.unpin({min(self.original)}, child.pid)
        os.sched_setaffinity(0, mask)
        self.assertEqual(os.sched_getaffinity(child.pid), chosen)

    def test_goneChild(self) -> None:
        """
        A child already reaped is no error.
        """
        child = subprocess.Popen(["true"])
        child.wait()
        mask = self.pinning.pin()
        self.pinning.unpin(mask, child.pid)
        self.assertEqual(os.sched_getaffinity(0), self.original)

    def test_affinityReadOncePerWakeUp(self) -> None:
        """
        This process's affinity is read at the first pin of a wake-up and
        kept for the others; a single CPU means no pinning at all.
        """
        one = {min(self.original)}
        self.pinning.unpin(self.pinning.pin(), None)
        os.sched_setaffinity(0, one)
        again = self.pinning.pin()
        self.pinning.unpin(again, None)
        os.sched_setaffinity(0, one)
        self.pinning.woken()
        self.assertEqual((again, self.pinning.pin()), (self.original, None))
        self.assertEqual(os.sched_getaffinity(0), one)

    def test_unknownCpu(self) -> None:
        """
        A C{sched_getcpu} that fails (-1) pins nothing.
        """
        self.assertIsNone(helper._Pinning(lambda: -1).pin())
        self.assertEqual(os.sched_getaffinity(0), self.original)

    def test_unpinNeverRaises(self) -> None:
        """
        The spawn has happened when L{helper._Pinning.unpin} runs: a mask
        the kernel refuses is no error.
        """
        self.pinning.unpin({1 << 20}, os.getpid())
        self.assertEqual(os.sched_getaffinity(0), self.original)

    def test_noGetcpu(self) -> None:
        """
        Without C{sched_getcpu} nothing is pinned.
        """
        pinning = helper._Pinning(None)
        self.assertIsNone(pinning.pin())
        self.assertEqual(os.sched_getaffinity(0), self.original)


class ExecKeepsOwnerTests(SynchronousTestCase):
    """
    L{helper._execKeepsOwner}: only a program without set-user or set-group
    ID bits is started pinned (its affinity can always be given back).
    """

    def program(self, mode: int) -> bytes:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(path, mode)
        return os.fsencode(path)

    def test_modes(self) -> None:
        self.assertEqual(
            [
                helper._execKeepsOwner(self.program(mode))
                for mode in (0o755, 0o4755, 0o2755, 0o6755)
            ],
            [True, False, False, False],
        )

    def test_missing(self) -> None:
        self.assertFalse(helper._execKeepsOwner(b"/nonexistent/program"))
