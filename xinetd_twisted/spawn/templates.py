# -*- test-case-name: tests.test_spawn_helper -*-
"""
L{Templates}: the child setups registered with the root helper, by id.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional

from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.interfaces import ChildSetup


class Templates:
    """
    Each L{ChildSetup} is sent to the root helper once, as a template
    that later spawns name by its id.

    @ivar ids: C{{setup: templateId}} registered with the running helper.
    """

    def __init__(self, ids: Iterator[int]) -> None:
        """
        @param ids: where template ids come from (shared with request ids).
        """
        self._nextId = ids
        self.ids: Dict[ChildSetup, int] = {}
        self._setups: Dict[int, ChildSetup] = {}

    def register(self, setup: ChildSetup, control: Channel) -> int:
        """
        Send C{setup} to the root helper on C{control}; return its id.
        """
        templateId = next(self._nextId)
        for message in self.messages(templateId, setup):
            control.send(message, -1)
        self.ids[setup] = templateId
        self._setups[templateId] = setup
        return templateId

    def registerOn(self, channel: Channel, templateId: int, setup: ChildSetup) -> bool:
        """
        Send template C{templateId} (of C{setup}) to the sub-helper on
        C{channel}, which knows it from now on; L{False} if the channel is
        lost.
        """
        for message in self.messages(templateId, setup):
            if not channel.send(message, -1):
                return False
        channel.templates.add(templateId)
        return True

    def setupOf(self, templateId: int) -> Optional[ChildSetup]:
        """
        The setup registered as C{templateId}, if any.
        """
        return self._setups.get(templateId)

    def reset(self) -> None:
        """
        Forget them all: a new helper knows none.
        """
        self.ids.clear()
        self._setups.clear()

    @staticmethod
    def messages(templateId: int, setup: ChildSetup) -> List[bytes]:
        """
        The C{"T"} messages that register C{setup} as C{templateId}.
        """
        blob = _wire.encodeTemplate(
            setup.executable,
            setup.argv,
            setup.environment,
            setup.uid,
            setup.gid,
            setup.supplementaryGroups,
            setup.umask,
            setup.nice,
            setup.rlimits,
            setup.chroot,
            setup.workingDirectory,
            setup.newSession,
            setup.noNewPrivileges,
        )
        return _wire.templateMessages(templateId, blob)


__all__ = ["Templates"]
