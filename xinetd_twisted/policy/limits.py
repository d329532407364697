# -*- test-case-name: tests.test_policy_limits -*-
"""
Running-server bookkeeping: C{instances}, C{per_source} and the daemon-wide
C{-limit} (reference 2.1, 4.4 step 3, 4.10).

These objects hold state (counts of running servers), so the runtime keeps
them across a reload and only swaps the limits in place: a reload never
forgets servers that are still running.  Nothing here is reset by cps
reactivation either (xinetd bug RH bz770858 / xinetd-org #21).
"""

from __future__ import annotations

from typing import Dict, Optional

from xinetd_twisted.policy.addresses import normaliseHost

SERVICE_LIMIT = "service_limit"
PER_SOURCE_LIMIT = "per_source_limit"
PROCESS_LIMIT = "process_limit"


class ProcessLimit:
    """
    The daemon-wide limit on running servers (xinetd's C{-limit}); one per
    daemon, shared by every service.

    @ivar limit: the maximum, or L{None} for no limit.
    @ivar running: servers counted now.
    """

    __slots__ = ("limit", "running")

    def __init__(self, limit: Optional[int] = None) -> None:
        self.limit = limit
        self.running = 0

    def check(self, processes: int = 1) -> Optional[str]:
        """
        C{"process_limit"} if starting C{processes} more would exceed the
        limit, else L{None}.
        """
        if self.limit is not None and self.running + processes > self.limit:
            return PROCESS_LIMIT
        return None

    def started(self, processes: int = 1) -> None:
        """
        Count servers that were just started.
        """
        self.running += processes

    def ended(self, processes: int = 1) -> None:
        """
        Forget servers that ended (never below zero).
        """
        self.running = max(0, self.running - processes)


class ServiceLimits:
    """
    One service's C{instances} and C{per_source} bookkeeping.

    Peers are keyed by their normalised address (L{normaliseHost}), so an
    IPv4 client counts the same on an IPv4 socket and as C{::ffff:a.b.c.d}
    on a dual-stack one.  Every operation is O(1).

    @ivar instances: L{None} = UNLIMITED; C{0} refuses every request.
    @ivar perSource: L{None} = UNLIMITED.
    @ivar running: running servers of this service.
    """

    __slots__ = ("instances", "perSource", "running", "_bySource")

    def __init__(
        self, instances: Optional[int] = None, perSource: Optional[int] = None
    ) -> None:
        self.instances = instances
        self.perSource = perSource
        self.running = 0
        self._bySource: Dict[str, int] = {}

    def setLimits(self, instances: Optional[int], perSource: Optional[int]) -> None:
        """
        Change the limits (on reload) keeping every count.
        """
        self.instances = instances
        self.perSource = perSource

    def runningFrom(self, peer: Optional[str]) -> int:
        """
        Running servers of this service for the client C{peer}.
        """
        if peer is None:
            return 0
        return self._bySource.get(normaliseHost(peer), 0)

    def check(self, peer: Optional[str]) -> Optional[str]:
        """
        C{"service_limit"} or C{"per_source_limit"} when one more server for
        C{peer} is over a limit, else L{None}.  A peer of L{None} (address
        unknown) skips C{per_source}, as xinetd does.
        """
        if self.instances is not None and self.running >= self.instances:
            return SERVICE_LIMIT
        if (
            self.perSource is not None
            and peer is not None
            and self._bySource.get(normaliseHost(peer), 0) >= self.perSource
        ):
            return PER_SOURCE_LIMIT
        return None

    def started(self, peer: Optional[str]) -> None:
        """
        Count a server that was just started for C{peer}.
        """
        self.running += 1
        if peer is not None:
            key = normaliseHost(peer)
            self._bySource[key] = self._bySource.get(key, 0) + 1

    def ended(self, peer: Optional[str]) -> None:
        """
        Forget a server started for C{peer}; unknown peers are ignored so a
        mismatched call cannot drive a count negative.
        """
        if self.running > 0:
            self.running -= 1
        if peer is not None:
            key = normaliseHost(peer)
            count = self._bySource.get(key, 0)
            if count > 1:
                self._bySource[key] = count - 1
            elif count == 1:
                del self._bySource[key]
