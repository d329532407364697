# -*- test-case-name: tests.test_policy_sourcerate -*-
"""
C{per_source_cps = RATE WAIT} (our extension): more than C{RATE}
connections within one second from one client address refuses that
address, and only it, for C{WAIT} seconds.

Each address has a one-second window that starts at its first connection
(not a sliding window: memory is three numbers per address whatever the
rate).  A refused connection is not counted, so a client that keeps
knocking is let in again C{WAIT} seconds after the first refusal.  At most
L{MAX_SOURCES} addresses are tracked: when full, finished windows are
forgotten first, then the oldest-tracked addresses.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

PER_SOURCE_CPS = "per_source_cps"
"""
The FAIL reason of a connection refused by C{per_source_cps}.
"""

MAX_SOURCES = 10240
"""
Addresses tracked at once (as many as xinetd's SENSOR list holds).
"""

WINDOW = 1.0
"""
Seconds in which more than C{RATE} connections trip the limit.
"""


class _Source:
    __slots__ = ("start", "count", "blockedUntil")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.blockedUntil = 0.0


class SourceRate:
    """
    One service's per-source connection rates.

    @ivar rate: connections a second allowed from one address.
    @ivar wait: seconds an address is refused once it went over.
    @ivar maxSources: the bound on tracked addresses.
    @ivar justBlocked: the last L{check} started a refusal period (the
        caller logs it once).
    """

    def __init__(
        self,
        rate: int,
        wait: int,
        seconds: Callable[[], float],
        maxSources: int = MAX_SOURCES,
    ) -> None:
        self.rate = rate
        self.wait = wait
        self.maxSources = maxSources
        self.justBlocked = False
        self._seconds = seconds
        self._sources: Dict[str, _Source] = {}

    def __len__(self) -> int:
        return len(self._sources)

    def setLimits(self, rate: int, wait: int) -> None:
        """
        New C{RATE}/C{WAIT} (on reload), keeping the windows and refusals
        in progress.
        """
        self.rate = rate
        self.wait = wait

    def check(self, key: str) -> Optional[float]:
        """
        Count one connection from C{key} (a normalised numeric address).

        @return: L{None} to let it through, else the clock time until which
            C{key} is refused.
        """
        self.justBlocked = False
        now = self._seconds()
        source = self._sources.get(key)
        if source is not None and source.blockedUntil > now:
            return source.blockedUntil
        if source is None or now - source.start >= WINDOW:
            if source is not None:
                # Re-inserted: the oldest-tracked are evicted first.
                del self._sources[key]
            elif len(self._sources) >= self.maxSources:
                self._makeRoom(now)
            source = self._sources[key] = _Source(now)
        source.count += 1
        if source.count > self.rate:
            source.blockedUntil = now + self.wait
            self.justBlocked = True
            return source.blockedUntil
        return None

    def isBlocked(self, key: str) -> bool:
        """
        Whether C{key} is being refused now.
        """
        source = self._sources.get(key)
        return source is not None and source.blockedUntil > self._seconds()

    def _makeRoom(self, now: float) -> None:
        finished: List[str] = [
            key
            for key, source in self._sources.items()
            if now - source.start >= WINDOW and source.blockedUntil <= now
        ]
        for key in finished:
            del self._sources[key]
        # Still full: forget the oldest-tracked (a tenth, so that a flood
        # of new addresses does not rescan the table on every connection).
        excess = len(self._sources) - self.maxSources + 1
        if excess > 0:
            excess = max(excess, self.maxSources // 10)
            for key in list(self._sources)[:excess]:
                del self._sources[key]
