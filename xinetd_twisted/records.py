# -*- test-case-name: tests.test_records -*-
"""
One C{__repr__} for the daemon's attrs classes, instead of one generated
per class.

attrs compiles the methods it writes for each class when the class is
made: for the forty classes the daemon imports at start-up that was about
a fifth of its own import time, the C{__repr__}s a third of it.  A class
made with C{attr.s(..., repr=False)} and decorated with L{plainRepr} gets
this shared one, which writes exactly what attrs' would:
C{Name(field=value!r, ...)}, fields declared C{repr=False} left out,
C{...} for an object met again inside its own representation.
"""

from __future__ import annotations

import threading
from typing import Any, Set, Type, TypeVar

import attr

_C = TypeVar("_C", bound=Type[Any])

_state = threading.local()


def _attrsRepr(self: Any) -> str:
    """
    What attrs' generated C{__repr__} gives for C{self}.
    """
    try:
        seen: Set[int] = _state.seen
    except AttributeError:
        seen = _state.seen = set()
    if id(self) in seen:
        return "..."
    seen.add(id(self))
    try:
        parts = []
        for a in self.__class__.__attrs_attrs__:
            how = a.repr
            if how is False:
                continue
            if a.init:
                value = getattr(self, a.name)
            else:
                value = getattr(self, a.name, attr.NOTHING)
            text = repr(value) if how is True else how(value)
            parts.append(f"{a.name}={text}")
        name = self.__class__.__qualname__.rsplit(">.", 1)[-1]
        return f"{name}({', '.join(parts)})"
    finally:
        seen.discard(id(self))


def plainRepr(cls: _C) -> _C:
    """
    Give C{cls}, an attrs class made with C{repr=False}, the shared
    C{__repr__}.
    """
    cls.__repr__ = _attrsRepr  # type: ignore[assignment]
    return cls
