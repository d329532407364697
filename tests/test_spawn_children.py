"""
Tests for L{xinetd_twisted.spawn.children}.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any, List

from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.interfaces import ChildSetup


class _Recorder(ProcessProtocol):
    def __init__(self, ended: List[Any]) -> None:
        self._ended = ended

    def processEnded(self, reason: Failure) -> None:
        self._ended.append(reason)


class ChildrenTests(SynchronousTestCase):
    """
    L{Children} follows the running children and reports each end once.
    """

    def setUp(self) -> None:
        self.children = Children(spawner=None, reaper=None)  # type: ignore[arg-type]
        self.setup = ChildSetup("/bin/true", ("true",))
        self.ended: List[Any] = []

    def start(self, pid: int) -> Any:
        protocol = _Recorder(self.ended)
        process = self.children.started(pid, protocol, self.setup, object())  # type: ignore[arg-type]
        protocol.makeConnection(process)
        return protocol, process

    def test_endedOnce(self) -> None:
        """A child's end reaches its protocol once, whoever reports it."""
        self.start(100)
        reason = Failure(ProcessDone(0))
        self.children.ended(100, reason)
        self.children.ended(100, reason)
        self.assertEqual(self.ended, [reason])
        self.assertEqual(self.children.running, {})

    def test_endedChildLeavesNoCycle(self) -> None:
        """
        Once a child has ended, its protocol and transport are freed by
        reference counting: nothing is left for the cyclic collector per
        connection.
        """
        protocol, process = self.start(101)
        self.children.ended(101, Failure(ProcessDone(0)))
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        refs = weakref.ref(protocol), weakref.ref(process)
        del protocol, process
        self.assertEqual([ref() for ref in refs], [None, None])
