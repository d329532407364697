# -*- test-case-name: tests.test_policy_cps -*-
"""
C{cps = max wait}: xinetd's connection-rate limiter (reference 4.6).

xinetd's arithmetic is reproduced exactly, including its oddities: time is
whole seconds, the window length in seconds is the I{rate} C{max}, the rate
is an integer division C{count / max(1, now - t0)}, and the counter is not
reset when the service is deactivated.  What is not reproduced: xinetd
forgets how many servers are running when it reactivates (RH bz770858);
here the running counts live elsewhere (L{xinetd_twisted.policy.limits})
and cps never touches them.
"""

from __future__ import annotations

from typing import Callable, Optional

CPS = "connections per second"


class ConnectionRate:
    """
    One service's cps state.

    L{check} answers L{None} (go on) or the time (clock seconds) until which
    the service is deactivated.  On a fresh deactivation L{justDeactivated}
    is set so the caller logs xinetd's "Deactivating service" line once and
    closes or pauses the listening socket until that time.

    @ivar maximum: connections per second; C{0} disables the limiter.
    @ivar wait: seconds to stay deactivated.
    @ivar deactivatedUntil: clock time when the service may accept again,
        or L{None}.
    @ivar justDeactivated: the last L{check} deactivated the service.
    """

    __slots__ = (
        "maximum",
        "wait",
        "_seconds",
        "_count",
        "_start",
        "deactivatedUntil",
        "justDeactivated",
    )

    def __init__(self, maximum: int, wait: int, seconds: Callable[[], float]) -> None:
        self.maximum = maximum
        self.wait = wait
        self._seconds = seconds
        self._count = 0
        self._start = 0
        self.deactivatedUntil: Optional[float] = None
        self.justDeactivated = False

    def setLimits(self, maximum: int, wait: int) -> None:
        """
        Change C{max}/C{wait} (on reload) keeping the window and any pause.
        """
        self.maximum = maximum
        self.wait = wait

    def uncount(self) -> None:
        """
        Take back one connection L{check} let through and counted: it was
        refused by address afterwards, and a refused client must not be
        able to close the service to everyone else.
        """
        if self._count > 0:
            self._count -= 1

    def isActive(self) -> bool:
        """
        Whether the service is accepting (not paused by cps).
        """
        until = self.deactivatedUntil
        if until is None:
            return True
        if self._seconds() >= until:
            self.deactivatedUntil = None
            return True
        return False

    def check(self) -> Optional[float]:
        """
        Count one connection.  Returns L{None} to let it through, else the
        clock time until which the service is deactivated (the connection is
        refused with C{"connections per second"}).  A connection arriving
        while already deactivated (one the caller had queued) is refused
        without being counted.
        """
        self.justDeactivated = False
        maximum = self.maximum
        if maximum == 0:
            return None
        if not self.isActive():
            return self.deactivatedUntil
        now = self._seconds()
        wholeNow = int(now)
        elapsed = wholeNow - self._start
        if self._count == 0:
            self._count = 1
            self._start = wholeNow
        elif elapsed < maximum:
            self._count += 1
            if self._count // max(1, elapsed) > maximum:
                self.deactivatedUntil = now + self.wait
                self.justDeactivated = True
                return self.deactivatedUntil
        else:
            self._start = wholeNow
            self._count = 1
        return None
