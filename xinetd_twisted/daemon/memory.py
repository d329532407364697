# -*- test-case-name: tests.test_daemon_memory -*-
"""
The daemon's heap around a configuration load: no cyclic garbage
collections while thousands of long-lived objects are built (each
collection would scan all of them again, for nothing).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def pausedCollections() -> Iterator[None]:
    """
    Suspend the cyclic garbage collector for the block: loading and
    building a configuration allocates objects that all stay, so the
    collections the allocations trigger find nothing (with 1000 services
    they cost a fifth of the start-up).  Reference counting still frees
    everything else at once; the collector runs again after the block if
    it ran before it, the objects of the block counted as old (L{settle}).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            settle()
            gc.enable()


def settle() -> None:
    """
    Count every object the collector tracks as old: the young ones (a
    whole configuration, after a paused load) would otherwise be scanned
    by the next young collection and again by the next middle one (with
    1000 services, 40-60 ms of start-up) before they reach the old
    generation, which a full collection still scans as before.

    Freezing and at once unfreezing moves them there without a scan.
    Nothing is left frozen; when something else froze objects, nothing is
    done (unfreezing would undo it).
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
