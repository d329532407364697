# -*- test-case-name: tests.test_spawn_helper,tests.test_spawn_watchdog -*-
"""
The spawns sent to a helper and not answered yet, with their Deferreds.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import attr
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    CredentialKey,
    SpawnError,
    credentialKey,
)

_log = Logger(namespace="xinetd_twisted.spawn")


@attr.s(auto_attribs=True, slots=True, eq=False)
class SpawnRequest:
    """
    A spawn sent (or queued) and not answered yet.

    @ivar channel: the channel whose peer must answer it: the one it was
        sent on, or the sub-helper the root helper forwarded it to.
    @ivar lane: which of its credential set's sub-helpers is to start it.
    @ivar sentOn: the channel it was sent on.
    """

    requestId: int
    proto: Any
    setup: ChildSetup
    deferred: Deferred
    channel: Channel
    templateId: int
    lane: int
    sentOn: Channel


class InFlight:
    """
    The spawns in flight by request id: who must answer each, and how each
    one's Deferred fires when the answer (or the lack of one) is known.
    """

    def __init__(self) -> None:
        self._pending: Dict[int, SpawnRequest] = {}

    def expect(
        self,
        requestId: int,
        proto: Any,
        setup: ChildSetup,
        channel: Channel,
        templateId: int,
        lane: int = 0,
    ) -> Deferred:
        """
        Follow a spawn just sent on C{channel}; return its Deferred.
        """
        d: Deferred = Deferred()
        self._pending[requestId] = SpawnRequest(
            requestId, proto, setup, d, channel, templateId, lane, channel
        )
        channel.awaitAnswer(requestId)
        return d

    def _attribute(self, request: SpawnRequest, channel: Channel) -> None:
        request.channel.requests.discard(request.requestId)
        request.channel = channel
        channel.awaitAnswer(request.requestId)

    def forwarded(
        self, templateId: int, lane: int, via: Optional[Channel], to: Channel
    ) -> None:
        """
        The spawns of C{templateId} and C{lane} sent through C{via} (the
        root helper) are C{to}'s (the sub-helper it forwards them to) to
        answer.
        """
        for request in list(self._pending.values()):
            if (
                request.templateId == templateId
                and request.lane == lane
                and request.channel is via
            ):
                self._attribute(request, to)

    def awaitedOn(
        self, channel: Optional[Channel], key: Optional[CredentialKey]
    ) -> bool:
        """
        Whether a spawn of credential set C{key} waits on C{channel}'s peer.
        """
        return any(
            request.channel is channel and credentialKey(request.setup) == key
            for request in self._pending.values()
        )

    def take(self, requestId: int) -> Optional[SpawnRequest]:
        """
        Stop following a spawn, answered now; L{None} if it is not followed.
        """
        request = self._pending.pop(requestId, None)
        if request is not None:
            request.channel.requests.discard(requestId)
        return request

    def fail(self, requestId: int, why: str) -> None:
        """
        Fail a spawn with L{SpawnError}C{(why)}.
        """
        request = self.take(requestId)
        if request is not None:
            request.deferred.errback(SpawnError(why))

    def failSentOn(self, channel: Channel, why: str) -> None:
        """
        Fail every spawn sent on C{channel}, also those its peer forwarded.
        """
        for request in list(self._pending.values()):
            if request.sentOn is channel:
                self.fail(request.requestId, why)

    def subHelperDied(self, requestId: int) -> None:
        """
        Fail a spawn whose sub-helper died before starting it.
        """
        lost = self.take(requestId)
        if lost is not None:
            _log.error(
                "{executable}: the spawn sub-helper died before starting it",
                executable=lost.setup.executable,
            )
            lost.deferred.errback(SpawnError("spawn sub-helper died"))


__all__ = ["InFlight", "SpawnRequest"]
