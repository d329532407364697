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
    executable = "/bin/true"
    argv = [b"/bin/true"]
    env: list = []

    def __init__(self, limits: _CountingLimits) -> None:
        self.limits = limits


class SpawnerLimitsTests(SynchronousTestCase):
    """
    L{helper._Spawner.spawn} checks a template's limits once per wake-up
    (L{helper._Spawner.woken}), whatever the number of its spawns read then.
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


class CompiledSubhelperChoiceTests(SynchronousTestCase):
    """
    When a sub-helper becomes the compiled program, and when it stays the
    Python one.
    """

    def test_found(self) -> None:
        """
        Built beside helper.py and not turned off: its path; turned off by
        either switch: L{None}.
        """
        path = helper.SUBHELPER_PATH
        expected = path if os.access(path, os.X_OK) else None
        self.assertEqual(helper._compiledSubhelper({}), expected)
        for switch in (
            "XINETD_TWISTED_PYTHON_SUBHELPERS",
            "XINETD_TWISTED_HELPER_NO_FORK_EXEC",
        ):
            self.assertIsNone(helper._compiledSubhelper({switch: "1"}))

    def test_cannotExecute(self) -> None:
        """
        A program the service's user cannot execute (say, installed under a
        directory only root may enter) leaves the sub-helper in Python, on
        its sockets as they were.
        """
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        directory = self.mktemp()
        os.mkdir(directory)
        program = os.path.join(directory, helper.SUBHELPER_NAME)
        with open(program, "w") as f:
            f.write("not a program\n")
        os.chmod(program, 0o644)
        helper._execSubhelper(program, a.fileno(), b.fileno())
        self.assertFalse(os.get_inheritable(a.fileno()))
        self.assertFalse(os.get_inheritable(b.fileno()))
        a.send(b"still ours")
        self.assertEqual(b.recv(100), b"still ours")
