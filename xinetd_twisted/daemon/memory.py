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
    it ran before it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
