# -*- test-case-name: tests.test_config_fill -*-
"""
Where each attribute of a service was set, kept compactly.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any, Iterable, Iterator, Mapping, Tuple

from xinetd_twisted.config.model import Location

_INT = struct.Struct("i")
"""An item of C{array("i")}."""


class Locations(Mapping[str, Location]):
    """
    Where each attribute of a service was set, kept compactly: the names
    and paths as tuples, the lines as their distances from a base line
    packed in bytes (services written alike share all three: their lines
    are as far from their C{service} lines), a L{Location} made on each
    look-up.  A dict of L{Location}s cost a service about a kilobyte.
    """

    __slots__ = ("_names", "_paths", "_offsets", "_base")

    def __init__(
        self,
        names: Tuple[str, ...],
        paths: Tuple[str, ...],
        offsets: bytes,
        base: int = 0,
    ) -> None:
        """
        @param offsets: the line of each of C{names} minus C{base}, as an
            C{array("i")}'s bytes.
        """
        self._names = names
        self._paths = paths
        self._offsets = offsets
        self._base = base

    @staticmethod
    def pack(lines: Iterable[int], base: int = 0) -> bytes:
        """
        The C{offsets} of C{lines} from C{base}.
        """
        return array("i", [line - base for line in lines]).tobytes()

    @classmethod
    def fromMapping(cls, locations: Mapping[str, Location]) -> Locations:
        """
        The compact form of C{locations}.
        """
        wheres = locations.values()
        return cls(
            tuple(locations),
            tuple([where.path for where in wheres]),
            cls.pack([where.line for where in wheres]),
        )

    @property
    def names(self) -> Tuple[str, ...]:
        """
        The attribute names, in the order they were set.
        """
        return self._names

    @property
    def paths(self) -> Tuple[str, ...]:
        """
        The path of each attribute in L{names}.
        """
        return self._paths

    @property
    def lines(self) -> "array[int]":
        """
        The line of each attribute in L{names}.
        """
        offsets = array("i")
        offsets.frombytes(self._offsets)
        return array("i", [self._base + offset for offset in offsets])

    def __getitem__(self, name: str) -> Location:
        try:
            index = self._names.index(name)
        except ValueError:
            raise KeyError(name) from None
        (offset,) = _INT.unpack_from(self._offsets, _INT.size * index)
        return Location(self._paths[index], self._base + offset)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def get(self, name: str, default: Any = None) -> Any:
        """
        The location of C{name}, or C{default} (without the exception
        L{Mapping.get} would raise and catch for each attribute not set).
        """
        if name not in self._names:
            return default
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Locations({dict(self)!r})"
