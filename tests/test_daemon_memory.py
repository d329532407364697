"""
Tests for L{xinetd_twisted.daemon.memory}: the heap around a configuration
load.
"""

from __future__ import annotations

import gc
from typing import List

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Config
from xinetd_twisted.daemon.memory import pausedCollections, settle
from xinetd_twisted.daemon.reload import loadForReload


class PausedCollectionsTests(SynchronousTestCase):
    """
    L{pausedCollections} suspends the cyclic collector for a block.
    """

    def setUp(self) -> None:
        enabled = gc.isenabled()
        self.addCleanup(gc.enable if enabled else gc.disable)
        gc.enable()

    def test_pausedInside(self) -> None:
        """
        The collector does not run inside the block and runs again after it.
        """
        with pausedCollections():
            self.assertFalse(gc.isenabled())
        self.assertTrue(gc.isenabled())

    def test_restoredOnError(self) -> None:
        """
        An exception out of the block still turns the collector back on.
        """
        with self.assertRaises(ZeroDivisionError):
            with pausedCollections():
                raise ZeroDivisionError()
        self.assertTrue(gc.isenabled())

    def test_nested(self) -> None:
        """
        An inner block leaves the collector paused for the outer one.
        """
        with pausedCollections():
            with pausedCollections():
                pass
            self.assertFalse(gc.isenabled())
        self.assertTrue(gc.isenabled())

    def test_disabledStaysDisabled(self) -> None:
        """
        A collector that was off before the block stays off after it.
        """
        gc.disable()
        with pausedCollections():
            pass
        self.assertFalse(gc.isenabled())


class SettleTests(SynchronousTestCase):
    """
    After a paused block its objects count as old, and nothing stays frozen.
    """

    def setUp(self) -> None:
        enabled = gc.isenabled()
        self.addCleanup(gc.enable if enabled else gc.disable)
        gc.enable()

    def test_blockObjectsOld(self) -> None:
        """
        A container made inside the block is in the oldest generation after
        it, without a collection having run.
        """
        runs: List[int] = []

        def counting(phase: str, info: dict) -> None:
            if phase == "start":
                runs.append(info["generation"])

        with pausedCollections():
            made = [[] for _ in range(3)]
            gc.callbacks.append(counting)
        try:
            old = {id(o) for o in gc.get_objects(generation=2)}
        finally:
            gc.callbacks.remove(counting)
        self.assertIn(id(made), old)
        self.assertEqual(runs, [])
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_frozenLeftFrozen(self) -> None:
        """
        Objects someone else froze stay frozen.
        """
        gc.freeze()
        self.addCleanup(gc.unfreeze)
        frozen = gc.get_freeze_count()
        with pausedCollections():
            pass
        self.assertEqual(gc.get_freeze_count(), frozen)

    def test_settle(self) -> None:
        """
        L{settle} moves young objects to the oldest generation.
        """
        young = [[]]
        settle()
        self.assertIn(id(young), {id(o) for o in gc.get_objects(generation=2)})
        self.assertEqual(gc.get_freeze_count(), 0)


class ReloadLoadTests(SynchronousTestCase):
    """
    L{loadForReload} loads with the collector paused.
    """

    def test_loaderRunsPaused(self) -> None:
        """
        The loader runs without cyclic collections; they run again after.
        """
        enabled = gc.isenabled()
        self.addCleanup(gc.enable if enabled else gc.disable)
        gc.enable()
        seen = []

        def loader(path: str) -> Config:
            seen.append(gc.isenabled())
            return Config(services=())

        config = loadForReload(loader, "x.conf", Logger())
        self.assertEqual(config, Config(services=()))
        self.assertEqual(seen, [False])
        self.assertTrue(gc.isenabled())
