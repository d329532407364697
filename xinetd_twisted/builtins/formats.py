# -*- test-case-name: tests.test_builtins_formats -*-
"""
The bytes xinetd's internal services send, computed without any I/O.

Kept apart from the protocols so that the exact formats (src/builtins.c) can be
tested with a fixed time and the chargen ring can be shared between the stream
and datagram services the way xinetd's one static ring is.
"""

from __future__ import annotations

import struct
import time
from typing import Callable, Dict, Optional

__all__ = [
    "TIME_OFFSET",
    "LINE_LENGTH",
    "CHARGEN_DATAGRAM_SIZE",
    "daytimeString",
    "timeBytes",
    "PerSecond",
    "ChargenRing",
    "globalChargenRing",
]

#: Seconds between 1900-01-01 and 1970-01-01 (RFC 868).
TIME_OFFSET = 2208988800

#: Characters per chargen line, without the CRLF.
LINE_LENGTH = 72

#: Size of the one datagram a UDP chargen request gets.
CHARGEN_DATAGRAM_SIZE = 1024

_MONTHS = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)

# xinetd fills a 94 + 72 byte buffer with '!' .. '}' repeating (it resets when
# the next character would be '~', so '~' and space never appear: 93
# characters), and moves the start of each line one byte on, back to the
# beginning once fewer than 72 bytes are left: 95 start positions.
_ALPHABET = bytes(range(ord("!"), ord("~")))
_RING_BUFFER_SIZE = 94 + LINE_LENGTH
_RING = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(_RING_BUFFER_SIZE))
RING_POSITIONS = _RING_BUFFER_SIZE - LINE_LENGTH + 1


def daytimeString(
    when: float,
    localtime: Callable[[float], time.struct_time] = time.localtime,
) -> bytes:
    """
    The daytime (RFC 867) reply xinetd sends: C{DD MON YYYY HH:MM:SS ZONE\\r\\n}.

    The month is upper-case English whatever the locale, the year is not
    padded, and the zone is C{strftime("%Z")} of the local time, as in xinetd's
    C{daytime_protocol}.

    @param when: seconds since the epoch.
    @param localtime: converts C{when} to local broken-down time (injectable
        so tests need not depend on the machine's zone).
    """
    tm = localtime(when)
    zone = time.strftime("%Z", tm)
    text = "%02d %s %d %02d:%02d:%02d %s\r\n" % (
        tm.tm_mday,
        _MONTHS[tm.tm_mon - 1],
        tm.tm_year,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        zone,
    )
    return text.encode("ascii", "replace")


def timeBytes(when: float) -> bytes:
    """
    The time (RFC 868) reply: 4 bytes, big-endian, seconds since 1900 modulo
    2**32 (so it wraps in 2036 the way xinetd's does).

    @param when: seconds since the epoch; the fraction is dropped.
    """
    return struct.pack("!I", (int(when) + TIME_OFFSET) % 2**32)


class PerSecond:
    """
    A reply that depends only on the whole second (daytime, time), computed
    once per second instead of once per connection: a busy daytime service
    answers thousands of clients with the same line.
    """

    def __init__(self, render: Callable[[float], bytes]) -> None:
        """
        @param render: the reply for a time in seconds since the epoch.
        """
        self._render = render
        self._second: Optional[int] = None
        self._reply = b""

    def __call__(self, when: float) -> bytes:
        """
        The reply for C{when}.
        """
        second = int(when)
        if second != self._second:
            self._reply = self._render(second)
            self._second = second
        return self._reply


def _line(position: int, length: int = LINE_LENGTH) -> bytes:
    return _RING[position : position + length] + b"\r\n"


class ChargenRing:
    """
    The position of the next chargen line, the one piece of state xinetd keeps
    for chargen.

    xinetd has a single ring per process: every UDP reply advances it and
    every stream connection starts where it is (the forked child then moves
    only its own copy).  L{copy} gives a stream connection its private copy.

    @ivar position: index of the first character of the next line, in
        C{range(RING_POSITIONS)}.
    """

    # Whole cycles (95 lines), keyed by start position: the unit a stream
    # writes, since after a whole cycle the position is unchanged.
    _cycles: Dict[int, bytes] = {}

    def __init__(self, position: int = 0) -> None:
        if not 0 <= position < RING_POSITIONS:
            raise ValueError(f"chargen position out of range: {position}")
        self.position = position

    def copy(self) -> ChargenRing:
        """
        A ring at the same position that advances independently.
        """
        return ChargenRing(self.position)

    def nextLine(self, length: int = LINE_LENGTH) -> bytes:
        """
        Take one line of C{length} characters (at most 72) plus CRLF.
        """
        line = _line(self.position, min(length, LINE_LENGTH))
        self.position = (self.position + 1) % RING_POSITIONS
        return line

    def cycle(self) -> bytes:
        """
        The next 95 lines (7030 bytes), after which the position is where it
        started: what a stream connection writes in one go.
        """
        data = self._cycles.get(self.position)
        if data is None:
            data = b"".join(
                _line((self.position + i) % RING_POSITIONS)
                for i in range(RING_POSITIONS)
            )
            self._cycles[self.position] = data
        return data

    def datagram(self, size: int = CHARGEN_DATAGRAM_SIZE) -> bytes:
        """
        One UDP reply as xinetd builds it: whole lines while they fit, then a
        shorter last line, each ending in CRLF; for 1024 bytes that is 13 lines
        of 72 and one of 60 characters, advancing the ring 14 times.
        """
        parts = []
        left = size
        while left > 2:
            length = min(LINE_LENGTH + 2, left)
            parts.append(self.nextLine(length - 2))
            left -= length
        return b"".join(parts)


#: The process-wide chargen ring, as in xinetd (one static buffer per process).
globalChargenRing = ChargenRing()
