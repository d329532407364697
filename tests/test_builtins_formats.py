"""
Tests for L{xinetd_twisted.builtins.formats}: the exact bytes of xinetd's
daytime, time and chargen.
"""

from __future__ import annotations

import os
import struct
import time

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.builtins.formats import (
    RING_POSITIONS,
    ChargenRing,
    PerSecond,
    daytimeString,
    timeBytes,
)

FIRST_LINE = (
    b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
)
ALPHABET = bytes(range(0x21, 0x7E))


def useTimeZone(case: SynchronousTestCase, zone: str) -> None:
    """
    Make C{zone} the local time zone for the rest of the test C{case}.
    """
    old = os.environ.get("TZ")

    def restore() -> None:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    case.addCleanup(restore)
    os.environ["TZ"] = zone
    time.tzset()


class DaytimeTests(SynchronousTestCase):
    def test_format(self) -> None:
        """
        The reply is DD MON YYYY HH:MM:SS ZONE CRLF with an upper-case month.
        """
        tm = time.struct_time((2026, 11, 26, 4, 8, 2, 3, 330, 0, "UTC", 0))
        self.assertEqual(
            daytimeString(0, localtime=lambda when: tm),
            b"26 NOV 2026 04:08:02 UTC\r\n",
        )

    def test_padding(self) -> None:
        """
        Day, hour, minute and second are zero-padded to two digits.
        """
        tm = time.struct_time((2024, 1, 5, 3, 4, 9, 4, 5, 0, "CET", 3600))
        self.assertEqual(
            daytimeString(0, localtime=lambda when: tm),
            b"05 JAN 2024 03:04:09 CET\r\n",
        )

    def test_localTime(self) -> None:
        """
        By default the machine's local time and zone abbreviation are used.
        """
        useTimeZone(self, "EST5EDT")
        self.assertEqual(daytimeString(0.9), b"31 DEC 1969 19:00:00 EST\r\n")
        self.assertEqual(daytimeString(1215000000), b"02 JUL 2008 08:00:00 EDT\r\n")


class TimeTests(SynchronousTestCase):
    def test_epoch(self) -> None:
        """
        The Unix epoch is 2208988800 seconds after 1900, big-endian.
        """
        self.assertEqual(timeBytes(0), b"\x83\xaa\x7e\x80")

    def test_fractionDropped(self) -> None:
        """
        Fractions of a second are truncated.
        """
        self.assertEqual(timeBytes(1.99), struct.pack("!I", 2208988801))

    def test_wraps(self) -> None:
        """
        The value is taken modulo 2**32 (the 2036 rollover).
        """
        self.assertEqual(timeBytes(2**32 - 2208988800 + 5), b"\x00\x00\x00\x05")


class ChargenRingTests(SynchronousTestCase):
    def test_firstLine(self) -> None:
        """
        A fresh ring starts with xinetd's first line: '!' to 'h'.
        """
        self.assertEqual(ChargenRing().nextLine(), FIRST_LINE)

    def test_lines(self) -> None:
        """
        Every line is 72 consecutive characters of the 93-character alphabet
        (no space, no '~'), starting one character after the previous line.
        """
        ring = ChargenRing()
        for k in range(RING_POSITIONS):
            line = ring.nextLine()
            start = k % 93
            expected = bytes(ALPHABET[(start + i) % 93] for i in range(72))
            self.assertEqual(line, expected + b"\r\n")

    def test_cycleOf95(self) -> None:
        """
        The start positions cycle after 95 lines: the first characters run
        '!' .. '}' then '!' '"' again, then repeat.
        """
        ring = ChargenRing()
        firsts = bytes(ring.nextLine()[0] for _ in range(2 * RING_POSITIONS))
        one = ALPHABET + b'!"'
        self.assertEqual(RING_POSITIONS, 95)
        self.assertEqual(firsts, one + one)

    def test_cycle(self) -> None:
        """
        C{cycle} is the next 95 lines and leaves the position unchanged.
        """
        ring = ChargenRing(17)
        other = ChargenRing(17)
        data = ring.cycle()
        self.assertEqual(data, b"".join(other.nextLine() for _ in range(95)))
        self.assertEqual(ring.position, 17)
        self.assertEqual(len(data), 95 * 74)

    def test_datagram(self) -> None:
        """
        A datagram is 13 whole lines and a 60-character line, 1024 bytes, and
        advances the ring 14 times.
        """
        ring = ChargenRing()
        data = ring.datagram()
        self.assertEqual(len(data), 1024)
        lines = data.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual([len(x) for x in lines[:-1]], [72] * 13 + [60])
        self.assertEqual(data[:74], FIRST_LINE)
        self.assertEqual(lines[13], ChargenRing(13).nextLine()[:60])
        self.assertEqual(ring.position, 14)

    def test_datagramsContinue(self) -> None:
        """
        The next datagram starts where the previous one left the ring.
        """
        ring = ChargenRing()
        ring.datagram()
        self.assertEqual(ring.datagram()[:74], ChargenRing(14).nextLine())

    def test_copy(self) -> None:
        """
        A copy advances on its own.
        """
        ring = ChargenRing(3)
        copy = ring.copy()
        copy.nextLine()
        self.assertEqual((ring.position, copy.position), (3, 4))

    def test_outOfRange(self) -> None:
        """
        Positions outside the 95 are rejected.
        """
        self.assertRaises(ValueError, ChargenRing, 95)


class PerSecondTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rendered: list = []

        def render(when: float) -> bytes:
            self.rendered.append(when)
            return b"%d" % (when,)

        self.reply = PerSecond(render)

    def test_oncePerSecond(self) -> None:
        """
        Every time within one second gets the reply rendered once.
        """
        self.assertEqual(
            [self.reply(100.0), self.reply(100.25), self.reply(100.999)],
            [b"100"] * 3,
        )
        self.assertEqual(self.rendered, [100])

    def test_newSecond(self) -> None:
        """
        A new second, later or earlier (the clock was set back), renders
        again.
        """
        self.assertEqual(
            [self.reply(100.5), self.reply(101.0), self.reply(99.9)],
            [b"100", b"101", b"99"],
        )
        self.assertEqual(self.rendered, [100, 101, 99])

    def test_daytimeUnchanged(self) -> None:
        """
        Wrapping daytimeString gives the bytes it gives.
        """
        reply = PerSecond(daytimeString)
        self.assertEqual(reply(1_700_000_000.7), daytimeString(1_700_000_000.7))
