"""
Tests for L{xinetd_twisted.builtins.datagram}: replies, the reply budget and
the loop/reflection guard.
"""

from __future__ import annotations

import calendar
from typing import Any, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.builtins import (
    AmplificationBudget,
    LoopGuard,
    ReplyBudget,
    UnknownBuiltin,
    datagramProtocol,
)
from xinetd_twisted.builtins.formats import ChargenRing

from .test_builtins_formats import FIRST_LINE, useTimeZone
from .test_builtins_stream import RecordingObserver

CLIENT = ("127.0.0.1", 40000)


class FakeUDPTransport:
    """
    Records datagrams written; knows the port it is "bound" to.
    """

    def __init__(self, port: int = 5007) -> None:
        self.port = port
        self.written: List[Tuple[bytes, Tuple[str, int]]] = []

    def write(self, packet: bytes, addr: Tuple[str, int]) -> None:
        self.written.append((packet, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.port)


def start(
    name: str,
    clock: Optional[Clock] = None,
    port: int = 5007,
    **kw: Any,
):
    """
    Build the C{name} datagram service and start it on a fake transport.
    """
    protocol = datagramProtocol(name, name + "-id", clock or Clock(), **kw)
    transport = FakeUDPTransport(port)
    protocol.makeConnection(transport)
    return protocol, transport


class ReplyTests(SynchronousTestCase):
    def test_unknown(self) -> None:
        """
        tcpmux has no datagram form.
        """
        self.assertRaises(UnknownBuiltin, datagramProtocol, "tcpmux", "t", Clock())

    def test_echo(self) -> None:
        """
        Echo sends the datagram back to its source.
        """
        protocol, transport = start("echo")
        protocol.datagramReceived(b"hello", CLIENT)
        self.assertEqual(transport.written, [(b"hello", CLIENT)])

    def test_echoTruncates(self) -> None:
        """
        Echo returns at most 2048 bytes, as xinetd's buffer does.
        """
        protocol, transport = start("echo")
        protocol.datagramReceived(b"a" * 3000, CLIENT)
        self.assertEqual(transport.written, [(b"a" * 2048, CLIENT)])

    def test_discard(self) -> None:
        """
        Discard answers nothing but counts as served.
        """
        observer = RecordingObserver()
        protocol, transport = start("discard", observer=observer)
        protocol.datagramReceived(b"x", CLIENT)
        self.assertEqual(transport.written, [])
        self.assertEqual(observer.events, [("served", "discard-id", CLIENT)])

    def test_daytime(self) -> None:
        """
        Daytime answers the injected clock's time in xinetd's format.
        """
        useTimeZone(self, "UTC")
        clock = Clock()
        clock.advance(calendar.timegm((2026, 2, 3, 14, 15, 16, 0, 0, 0)))
        protocol, transport = start("daytime", clock)
        protocol.datagramReceived(b"", CLIENT)
        self.assertEqual(transport.written, [(b"03 FEB 2026 14:15:16 UTC\r\n", CLIENT)])

    def test_time(self) -> None:
        """
        Time answers 4 bytes.
        """
        clock = Clock()
        clock.advance(100)
        protocol, transport = start("time", clock)
        protocol.datagramReceived(b"?", CLIENT)
        self.assertEqual(transport.written, [((2208988900).to_bytes(4, "big"), CLIENT)])

    def test_chargen(self) -> None:
        """
        Chargen answers one 1024-byte datagram and advances the shared ring
        by 14 lines.
        """
        ring = ChargenRing()
        protocol, transport = start("chargen", ring=ring)
        protocol.datagramReceived(b"", CLIENT)
        [(data, addr)] = transport.written
        self.assertEqual(len(data), 1024)
        self.assertEqual(data, ChargenRing().datagram())
        self.assertTrue(data.startswith(FIRST_LINE))
        self.assertEqual(ring.position, 14)

    def test_everyDatagramAnswered(self) -> None:
        """
        Twenty queued datagrams get twenty replies (xinetd drains all but
        one).
        """
        protocol, transport = start("echo")
        for i in range(20):
            protocol.datagramReceived(b"%d" % i, CLIENT)
        self.assertEqual(
            [p for p, a in transport.written], [b"%d" % i for i in range(20)]
        )

    def test_sendErrorIgnored(self) -> None:
        """
        A failing sendto is not an error of the service.
        """
        protocol, transport = start("echo")

        def fail(packet: bytes, addr: Any) -> None:
            raise ConnectionRefusedError()

        transport.write = fail  # type: ignore[method-assign]
        protocol.datagramReceived(b"x", CLIENT)


class BudgetTests(SynchronousTestCase):
    def test_burst(self) -> None:
        """
        A full bucket allows C{burst} replies at once, then none.
        """
        budget = ReplyBudget(Clock(), rate=10, burst=3)
        self.assertEqual([budget.take() for _ in range(4)], [True] * 3 + [False])

    def test_refill(self) -> None:
        """
        Tokens come back at C{rate} per second, up to C{burst}.
        """
        clock = Clock()
        budget = ReplyBudget(clock, rate=10, burst=3)
        for _ in range(3):
            budget.take()
        clock.advance(0.2)
        self.assertEqual([budget.take() for _ in range(3)], [True, True, False])
        clock.advance(100)
        self.assertEqual(sum(budget.take() for _ in range(10)), 3)

    def test_invalid(self) -> None:
        """
        A rate of zero is refused.
        """
        self.assertRaises(ValueError, ReplyBudget, Clock(), rate=0)

    def test_serviceRateLimited(self) -> None:
        """
        A service answers at most its budget; the rest is reported refused
        for "rate".
        """
        clock = Clock()
        observer = RecordingObserver()
        protocol, transport = start(
            "echo",
            clock,
            observer=observer,
            budget=ReplyBudget(clock, rate=100, burst=50),
        )
        for _ in range(60):
            protocol.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 50)
        self.assertEqual(observer.events[-1], ("refused", "echo-id", CLIENT, "rate"))
        clock.advance(0.1)
        for _ in range(60):
            protocol.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 60)

    def test_defaultBudget(self) -> None:
        """
        Without a budget, a service answers a burst of 1000 at one instant
        (a client's burst), and bounds a loop to that.
        """
        protocol, transport = start("echo")
        for _ in range(1200):
            protocol.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 1000)


class AmplificationTests(SynchronousTestCase):
    """
    What a service sends beyond what it received is bounded per source and
    in all.
    """

    def test_echoCostsNothing(self) -> None:
        """Replies no larger than their datagram are always allowed."""
        budget = AmplificationBudget(Clock(), perSourceBurst=10, totalBurst=10)
        self.assertTrue(all(budget.allow("10.0.0.1", 100, 100) for _ in range(1000)))

    def test_perSource(self) -> None:
        """One source gets its burst of excess bytes, then its refill rate."""
        clock = Clock()
        budget = AmplificationBudget(clock, perSourceRate=100, perSourceBurst=1000)
        self.assertEqual(sum(budget.allow("10.0.0.1", 1, 101) for _ in range(20)), 10)
        self.assertTrue(budget.allow("10.0.0.2", 1, 101))
        clock.advance(1)
        self.assertEqual(sum(budget.allow("10.0.0.1", 1, 101) for _ in range(20)), 1)

    def test_total(self) -> None:
        """Rotating source addresses gains nothing past the shared bucket."""
        budget = AmplificationBudget(Clock(), totalBurst=1000, maxSources=3)
        allowed = sum(budget.allow(f"10.0.0.{i}", 1, 101) for i in range(100))
        self.assertEqual(allowed, 10)

    def test_chargenFromOneSource(self) -> None:
        """
        A thousand 1-byte datagrams to chargen from one source get at most
        64 KiB more than they sent; another source is still answered.
        """
        protocol, transport = start("chargen")
        for _ in range(1000):
            protocol.datagramReceived(b"x", CLIENT)
        sent = sum(len(data) for data, _ in transport.written)
        self.assertLessEqual(sent - 1000, 64 * 1024)
        self.assertGreater(sent, 32 * 1024)
        before = len(transport.written)
        protocol.datagramReceived(b"x", ("10.0.0.9", 5000))
        self.assertEqual(len(transport.written), before + 1)


class GuardTests(SynchronousTestCase):
    def assertRefused(self, port: int, why: str, guard: Optional[LoopGuard] = None):
        observer = RecordingObserver()
        protocol, transport = start("echo", observer=observer, guard=guard)
        protocol.datagramReceived(b"x", ("127.0.0.1", port))
        self.assertEqual(transport.written, [])
        self.assertEqual(
            observer.events, [("refused", "echo-id", ("127.0.0.1", port), why)]
        )

    def test_portZero(self) -> None:
        """
        Source port 0 is never answered.
        """
        self.assertRefused(0, "source port", LoopGuard(refuseLowPorts=False))

    def test_smallServicePorts(self) -> None:
        """
        Datagrams from echo, discard, daytime, chargen and time ports are
        replies, never answered even with the low-port check off.
        """
        for port in (7, 9, 13, 19, 37):
            self.assertRefused(port, "source port", LoopGuard(refuseLowPorts=False))

    def test_lowPortsByDefault(self) -> None:
        """
        By default every source port below 1024 is refused; 1024 is not.
        """
        self.assertRefused(1023, "source port")
        protocol, transport = start("echo")
        protocol.datagramReceived(b"x", ("127.0.0.1", 1024))
        self.assertEqual(len(transport.written), 1)

    def test_lowPortsAllowed(self) -> None:
        """
        With refuseLowPorts off, an ordinary low port is answered.
        """
        protocol, transport = start("echo", guard=LoopGuard(refuseLowPorts=False))
        protocol.datagramReceived(b"x", ("127.0.0.1", 123))
        self.assertEqual(len(transport.written), 1)

    def test_ownPortRegistered(self) -> None:
        """
        A running service's port is in the shared guard until it stops.
        """
        guard = LoopGuard()
        protocol, transport = start("echo", port=20007, guard=guard)
        self.assertEqual(guard.ownPorts, {20007})
        protocol.doStop()
        self.assertEqual(guard.ownPorts, set())

    def test_ownServicePort(self) -> None:
        """
        A datagram from the port of one of our own services is refused.
        """
        guard = LoopGuard()
        start("chargen", port=20019, guard=guard)
        self.assertRefused(20019, "own service", guard)

    def test_policy(self) -> None:
        """
        The admit hook refuses by policy, after the guard.
        """
        seen: List[Tuple[str, int]] = []

        def admit(addr: Tuple[str, int]) -> bool:
            seen.append(addr)
            return False

        observer = RecordingObserver()
        protocol, transport = start("echo", observer=observer, admit=admit)
        protocol.datagramReceived(b"x", CLIENT)
        protocol.datagramReceived(b"x", ("127.0.0.1", 7))
        self.assertEqual(transport.written, [])
        self.assertEqual(seen, [CLIENT])
        self.assertEqual(observer.events[0][3], "policy")


class LoopTests(SynchronousTestCase):
    """
    Two echo services pointed at each other: a datagram from one to the
    other is a reply to a reply.
    """

    def pump(self, a: Any, b: Any, limit: int = 10000) -> int:
        """
        Deliver what each side writes to the other until quiet or C{limit}
        datagrams; return how many were delivered.
        """
        (pa, ta), (pb, tb) = a, b
        delivered = 0
        while delivered < limit and (ta.written or tb.written):
            for src, receiver in ((ta, pb), (tb, pa)):
                while src.written and delivered < limit:
                    packet, _addr = src.written.pop(0)
                    delivered += 1
                    receiver.datagramReceived(packet, ("127.0.0.1", src.port))
        return delivered

    def test_sharedGuardNoLoop(self) -> None:
        """
        With the shared guard, the first spoofed datagram gets no answer.
        """
        guard = LoopGuard()
        a = start("echo", port=20007, guard=guard)
        b = start("echo", port=20008, guard=guard)
        a[0].datagramReceived(b"ping", ("127.0.0.1", 20008))
        self.assertEqual(a[1].written, [])
        self.assertEqual(self.pump(a, b), 0)

    def test_budgetBoundsLoop(self) -> None:
        """
        Two services that cannot recognise each other (separate guards, as
        on two hosts) stop once their budgets are spent.
        """
        clock = Clock()
        a = start("echo", clock, port=20007, budget=ReplyBudget(clock, 100, 50))
        b = start("echo", clock, port=20008, budget=ReplyBudget(clock, 100, 50))
        a[0].datagramReceived(b"ping", ("127.0.0.1", 20008))
        delivered = self.pump(a, b)
        self.assertLess(delivered, 10000)
        # Each side answers its burst of 50, then nothing.
        self.assertEqual(delivered, 100)
