"""
Import the hand-run benchmark's modules (in bench/, not a package) for the
tests of their pure parts.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    """
    The module C{bench/<name>.py}, imported with bench/ on C{sys.path} as
    the scripts themselves put it.
    """
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)
