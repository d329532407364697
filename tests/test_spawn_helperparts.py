"""
Tests for the per-spawn parts of the spawn helper
(L{xinetd_twisted.spawn.helper}) run in this process: the check of its
own resource limits before a C{fork_exec} spawn and the batches of events
it sends the daemon.
"""

from __future__ import annotations

import array
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
