# -*- test-case-name: tests.test_builtins_datagram -*-
"""
The UDP internal services: echo, discard, daytime, time and chargen.

Unlike xinetd, which answers one datagram and then drains (drops) every other
queued one, each datagram is answered, within two limits xinetd lacks: a
guard against loops and reflection (a datagram from a port that is itself a
UDP small service is a reply, and answering it starts a ping-pong), and a
per-service reply budget.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Optional, Set, Tuple, cast

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol

from .formats import ChargenRing, daytimeString, globalChargenRing, timeBytes
from .observe import IBuiltinObserver, NullObserver

__all__ = [
    "ReplyBudget",
    "LoopGuard",
    "InternalDatagramProtocol",
    "DATAGRAM_SERVICES",
    "ECHO_MAX",
    "SMALL_SERVICE_PORTS",
]

#: xinetd reads an echo datagram into a 2048-byte buffer: longer ones are
#: echoed truncated.
ECHO_MAX = 2048

#: echo, discard, daytime, chargen, time: a datagram from one of these is an
#: answer from another small-services server.
SMALL_SERVICE_PORTS: FrozenSet[int] = frozenset({7, 9, 13, 19, 37})

Peer = Tuple[str, int]


class ReplyBudget:
    """
    A token bucket: at most C{burst} replies at once, refilled at C{rate} per
    second of the injected clock.

    @ivar rate: tokens added per second.
    @ivar burst: bucket size.
    """

    def __init__(
        self, clock: IReactorTime, rate: float = 100.0, burst: int = 50
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock: Any = cast(Any, clock)
        self._tokens = float(burst)
        self._last: float = self._clock.seconds()

    def _refill(self) -> None:
        now = self._clock.seconds()
        # max(): a clock that steps backwards must not drain the bucket.
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)

    def available(self, tokens: float = 1.0) -> bool:
        """
        Whether C{tokens} could be spent now.
        """
        self._refill()
        return self._tokens >= tokens

    def take(self, tokens: float = 1.0) -> bool:
        """
        Spend C{tokens} if there are that many.

        @return: whether a reply may be sent now.
        """
        if not self.available(tokens):
            return False
        self._tokens -= tokens
        return True


class AmplificationBudget:
    """
    Bounds what a UDP service can be made to send beyond what it received:
    chargen, daytime and time answer a 1-byte datagram with up to 512
    bytes, an amplifier for spoofed sources.  Each source address has a
    bucket of excess bytes (L{perSourceBurst}, refilled at
    L{perSourceRate} per second), and all sources together share one
    (L{totalBurst}, L{totalRate}), so that rotating spoofed addresses gains
    nothing.  Replies no larger than their datagram (echo) cost nothing.

    @ivar maxSources: most source addresses tracked; past it the table
        starts again (the shared bucket still bounds the total).
    """

    def __init__(
        self,
        clock: IReactorTime,
        perSourceRate: float = 8 * 1024,
        perSourceBurst: int = 64 * 1024,
        totalRate: float = 256 * 1024,
        totalBurst: int = 1024 * 1024,
        maxSources: int = 4096,
    ) -> None:
        self._clock: Any = cast(Any, clock)
        self._perSourceRate = perSourceRate
        self._perSourceBurst = perSourceBurst
        self._total = ReplyBudget(clock, totalRate, totalBurst)
        self._sources: Dict[str, ReplyBudget] = {}
        self.maxSources = maxSources

    def allow(self, source: str, received: int, sending: int) -> bool:
        """
        Whether C{sending} bytes may answer C{received} from C{source}; the
        excess is spent from both buckets when it may.
        """
        excess = sending - received
        if excess <= 0:
            return True
        bucket = self._sources.get(source)
        if bucket is None:
            if len(self._sources) >= self.maxSources:
                self._sources.clear()
            bucket = ReplyBudget(self._clock, self._perSourceRate, self._perSourceBurst)
            self._sources[source] = bucket
        if not bucket.available(excess) or not self._total.available(excess):
            return False
        bucket.take(excess)
        self._total.take(excess)
        return True


class LoopGuard:
    """
    Decides which source ports never get an answer.  Share one guard among
    all UDP internal services of a process: each protocol registers its own
    port in C{ownPorts} while it runs, so two of our services pointed at each
    other (same process) never exchange a single reply.

    @ivar refuseLowPorts: refuse every source port below 1024, the check
        xinetd dropped in 2.3.14 and its PR #25 restores.  Real clients send
        from ephemeral ports, so this costs nothing but a spoofed request.
    @ivar refusedPorts: always refused: port 0 and the small services.
    @ivar ownPorts: ports our own UDP internal services are bound to.
    """

    def __init__(
        self,
        refuseLowPorts: bool = True,
        refusedPorts: FrozenSet[int] = SMALL_SERVICE_PORTS | {0},
    ) -> None:
        self.refuseLowPorts = refuseLowPorts
        self.refusedPorts = refusedPorts
        self.ownPorts: Set[int] = set()

    def check(self, port: int) -> Optional[str]:
        """
        @return: why a datagram from C{port} must not be answered, or L{None}.
        """
        if port in self.refusedPorts or (self.refuseLowPorts and port < 1024):
            return "source port"
        if port in self.ownPorts:
            return "own service"
        return None


def _echo(data: bytes, now: float, ring: ChargenRing) -> Optional[bytes]:
    return data[:ECHO_MAX]


def _discard(data: bytes, now: float, ring: ChargenRing) -> Optional[bytes]:
    return None


def _daytime(data: bytes, now: float, ring: ChargenRing) -> Optional[bytes]:
    return daytimeString(now)


def _time(data: bytes, now: float, ring: ChargenRing) -> Optional[bytes]:
    return timeBytes(now)


def _chargen(data: bytes, now: float, ring: ChargenRing) -> Optional[bytes]:
    return ring.datagram()


#: Reply functions by xinetd service name: C{(datagram, now, ring) -> reply
#: or None}.  C{sensor} is discard, as in xinetd.
DATAGRAM_SERVICES = {
    "echo": _echo,
    "discard": _discard,
    "daytime": _daytime,
    "time": _time,
    "chargen": _chargen,
    "sensor": _discard,
}


class InternalDatagramProtocol(DatagramProtocol):
    """
    One UDP internal service.  Per datagram, in this order: the loop guard,
    the integrator's C{admit} (access control), the reply budget, then the
    answer to the datagram's source address.

    @ivar serviceId: the service's C{id}, passed to the observer.
    """

    # "Starting protocol <...>" on every bind says nothing a reader wants.
    noisy = False

    def __init__(
        self,
        serviceId: str,
        reply: Callable[[bytes, float, ChargenRing], Optional[bytes]],
        clock: IReactorTime,
        observer: Optional[IBuiltinObserver] = None,
        guard: Optional[LoopGuard] = None,
        budget: Optional[ReplyBudget] = None,
        ring: Optional[ChargenRing] = None,
        admit: Optional[Callable[[Peer], bool]] = None,
        amplification: Optional[AmplificationBudget] = None,
    ) -> None:
        """
        @param reply: a value of L{DATAGRAM_SERVICES}.
        @param guard: shared loop guard; a private default one if not given.
        @param budget: this service's reply budget (it bounds a loop between
            two hosts' services); 1000/s, burst 1000 if not given.
        @param amplification: bounds the bytes sent beyond those received,
            per source; a private default one if not given.
        @param ring: the chargen ring; the process-wide one if not given.
        @param admit: called with the source address of each datagram that
            passed the guard; C{False} means refused by policy (the admit
            function does its own FAIL logging).
        """
        self.serviceId = serviceId
        self._reply = reply
        # Any: without the zope mypy plugin, interface methods type badly.
        self._clock: Any = clock
        self._observer: Any = observer if observer is not None else NullObserver()
        self._guard = guard if guard is not None else LoopGuard()
        self._budget = (
            budget if budget is not None else ReplyBudget(clock, 1000.0, 1000)
        )
        self._amplification = (
            amplification if amplification is not None else AmplificationBudget(clock)
        )
        self._ring = ring if ring is not None else globalChargenRing
        self._admit = admit
        self._ownPort: Optional[int] = None

    transport: Any

    def logPrefix(self) -> str:
        """
        The service id, where Twisted's log would name this object.
        """
        return self.serviceId

    def startProtocol(self) -> None:
        port = self.transport.getHost().port
        self._ownPort = port
        self._guard.ownPorts.add(port)

    def stopProtocol(self) -> None:
        if self._ownPort is not None:
            self._guard.ownPorts.discard(self._ownPort)
            self._ownPort = None

    def datagramReceived(self, datagram: bytes, addr: Peer) -> None:
        why = self._guard.check(addr[1])
        if why is None and self._admit is not None and not self._admit(addr):
            why = "policy"
        if why is None and not self._budget.available():
            why = "rate"
        answer = None
        if why is None:
            answer = self._reply(datagram, self._clock.seconds(), self._ring)
            if answer is not None and not self._amplification.allow(
                addr[0], len(datagram), len(answer)
            ):
                why = "amplification"
            else:
                self._budget.take()
        if why is not None:
            self._observer.datagramRefused(self.serviceId, addr, why)
            return
        self._observer.datagramServed(self.serviceId, addr)
        if answer is not None:
            try:
                self.transport.write(answer, addr)
            except OSError:
                # Unreachable peer, full socket buffer: UDP gives no promise,
                # and xinetd ignores sendto errors too.
                pass
