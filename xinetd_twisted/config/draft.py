# -*- test-case-name: tests.test_config_build -*-
"""
A service block once its lines are applied, kept compactly until the whole
configuration is read and the service can be filled.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Tuple

import attr

from xinetd_twisted.config.attributes import Settings
from xinetd_twisted.config.locations import Locations
from xinetd_twisted.config.parser import Block
from xinetd_twisted.records import plainRepr


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class ServiceDraft:
    """
    A service block after its lines were applied, kept compactly until the
    whole configuration is read: with a thousand services, a dict of
    values, one of locations and a set each were most of a load's memory.

    @ivar block: the block's C{service} line: its name and location (the
        lines, applied, are not kept).
    @ivar names: the attributes set (copied defaults included), in the
        order they were first set; one tuple for services written alike.
    @ivar values: the value of each of L{names}.
    @ivar paths: the file each of L{names} was set in (shared likewise).
    @ivar offsets: how far from the block's C{service} line each of
        L{names} was set (L{Locations.pack}; shared likewise).
    @ivar specified: the attributes written in the block itself (shared).
    """

    block: Block
    names: Tuple[str, ...]
    values: Tuple[Any, ...]
    paths: Tuple[str, ...]
    offsets: bytes
    specified: FrozenSet[str]

    @classmethod
    def pack(
        cls, block: Block, settings: Settings, shared: Dict[Any, Any]
    ) -> ServiceDraft:
        """
        The draft of C{block}, whose lines gave C{settings}; C{shared} holds
        the names, paths and sets of this load's drafts, one object each.
        """
        wheres = settings.lines.values()
        names = tuple(settings.lines)
        paths = tuple([line.path for line in wheres])
        specified = frozenset(settings.specified)
        offsets = Locations.pack([line.number for line in wheres], block.location.line)
        return cls(
            Block(block.kind, block.name, block.location, ()),
            shared.setdefault(names, names),
            tuple(settings.values.values()),
            shared.setdefault(paths, paths),
            shared.setdefault(offsets, offsets),
            shared.setdefault(specified, specified),
        )

    def valuesByKey(self) -> Dict[str, Any]:
        """
        The values, by attribute (a new dict).
        """
        return dict(zip(self.names, self.values, strict=True))

    @property
    def locations(self) -> Locations:
        """
        Where each value was set.
        """
        return Locations(self.names, self.paths, self.offsets, self.block.location.line)

    @property
    def serviceId(self) -> str:
        """
        The C{id}, or the name when no id was written.
        """
        names = self.names
        if "id" in names:
            return self.values[names.index("id")]  # type: ignore[no-any-return]
        return self.block.name
