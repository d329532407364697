# -*- test-case-name: tests.test_policy_sensor -*-
"""
The global SENSOR blocklist (xinetd's C{global_no_access}, reference 4.8).

One per daemon, kept across reloads (so C{FOREVER} entries last until the
daemon stops, as in xinetd).  Entries are exact client addresses, keyed as
L{Peer.key<xinetd_twisted.policy.addresses.Peer>} so an IPv4 client is the
same entry on every socket family; unlike xinetd, an address ending in
C{.0} is not re-read as a network wildcard.  A repeat hit extends the expiry
(xinetd's intent; its code never does).
"""

from __future__ import annotations

import enum
from typing import Callable, Dict, Iterator, List, Tuple

from xinetd_twisted.policy.addresses import normaliseHost

FOREVER = -1
"""
C{deny_time = FOREVER}: the entry lasts until the daemon stops.
"""

MAX_ENTRIES = 10240
"""
xinetd's C{MAX_GLOBAL_NO_ACCESS}.
"""

_NEVER_EXPIRES = float("inf")


class SensorOutcome(enum.Enum):
    """
    What L{SensorList.add} did, so the caller logs what xinetd logs.
    """

    ADDED = "added"  # CRITICAL "Adding A to the global_no_access list ..."
    EXTENDED = "extended"  # already listed, expiry moved later
    UNCHANGED = "unchanged"  # already listed until at least as late
    FULL = "full"  # list full: not added; first refusal since there was room
    FULL_AGAIN = "full again"  # list still full: not added, already reported
    IGNORED = "ignored"  # deny_time 0 (NEVER): nothing recorded


class SensorList:
    """
    Addresses denied everywhere after touching a SENSOR service.

    Expired entries are dropped when looked up and by L{scrub}, which the
    runtime may call from a timer (xinetd scrubs every 60 s).

    @ivar maxEntries: the bound; when reached, new addresses are not added.
    """

    def __init__(
        self, seconds: Callable[[], float], maxEntries: int = MAX_ENTRIES
    ) -> None:
        self.maxEntries = maxEntries
        self._seconds = seconds
        self._expiry: Dict[str, float] = {}
        self._fullReported = False
        self.listed: List[Callable[[], None]] = []
        """
        Called when an address is listed while none was: a service whose
        sub-helper accepts its connections takes them back (see
        L{xinetd_twisted.spawn.delegation}).
        """

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, host: str, minutes: int) -> SensorOutcome:
        """
        Deny C{host} for C{minutes} (or L{FOREVER}).  C{0} records nothing,
        as in xinetd (C{deny_time = NEVER}).
        """
        if minutes == 0:
            return SensorOutcome.IGNORED
        key = normaliseHost(host)
        now = self._seconds()
        expiry = _NEVER_EXPIRES if minutes == FOREVER else now + 60.0 * minutes
        current = self._expiry.get(key)
        if current is not None and current > now:
            if expiry > current:
                self._expiry[key] = expiry
                return SensorOutcome.EXTENDED
            return SensorOutcome.UNCHANGED
        if current is None and len(self._expiry) >= self.maxEntries:
            self.scrub()
            if len(self._expiry) >= self.maxEntries:
                if self._fullReported:
                    return SensorOutcome.FULL_AGAIN
                self._fullReported = True
                return SensorOutcome.FULL
        self._fullReported = False
        first = not self._expiry
        self._expiry[key] = expiry
        if first:
            for listed in list(self.listed):
                listed()
        return SensorOutcome.ADDED

    def __contains__(self, host: object) -> bool:
        """
        Whether C{host} is denied now (an expired entry is dropped).
        """
        if not self._expiry or not isinstance(host, str):
            return False
        key = normaliseHost(host)
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if expiry <= self._seconds():
            del self._expiry[key]
            return False
        return True

    def isDenied(self, key: str) -> bool:
        """
        Like C{in}, for an already normalised key (the hot path).
        """
        if not self._expiry:
            return False
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if expiry <= self._seconds():
            del self._expiry[key]
            return False
        return True

    def scrub(self) -> int:
        """
        Drop expired entries; return how many were dropped.
        """
        now = self._seconds()
        expired = [key for key, expiry in self._expiry.items() if expiry <= now]
        for key in expired:
            del self._expiry[key]
        if len(self._expiry) < self.maxEntries:
            self._fullReported = False
        return len(expired)

    def entries(self) -> Iterator[Tuple[str, float]]:
        """
        C{(address, expiry)} pairs, expiry C{inf} for FOREVER (for dumps).
        """
        return iter(list(self._expiry.items()))
