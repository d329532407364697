# -*- test-case-name: tests.test_config_extensions -*-
"""
Our extensions beyond xinetd (issue 10): C{max_duration} and
C{per_source_cps}, their value parsers and their load-time checks, kept
apart from xinetd's own attributes.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.config.values import ParseContext, integer

MAX_SECONDS = 10**7
"""
The largest C{max_duration} or C{per_source_cps} wait (about 115 days):
larger values are almost certainly typos.
"""


def maxDuration(words: Sequence[str], ctx: ParseContext) -> int:
    """
    C{max_duration = SECONDS}: a whole number of seconds, 1 or more.
    """
    try:
        return integer(words[0], 1, MAX_SECONDS)
    except ValueError:
        raise ValueError(
            f"bad max_duration: {words[0]} (a number of seconds, 1 to {MAX_SECONDS})"
        ) from None


def perSourceCps(words: Sequence[str], ctx: ParseContext) -> Tuple[int, int]:
    """
    C{per_source_cps = RATE WAIT}: at most C{RATE} (1 or more) connections
    a second from one address, else that address waits C{WAIT} seconds
    (1 or more).
    """
    try:
        rate = integer(words[0], 1)
    except ValueError:
        raise ValueError(
            f"bad per_source_cps rate: {words[0]} (connections a second, 1 or more)"
        ) from None
    try:
        wait = integer(words[1], 1, MAX_SECONDS)
    except ValueError:
        raise ValueError(
            f"bad per_source_cps wait: {words[1]} (seconds, 1 to {MAX_SECONDS})"
        ) from None
    return (rate, wait)


def checkExtensions(
    service: ServiceConfig, warnings: List[Tuple[str, Optional[str]]]
) -> None:
    """
    Remarks on the extension attributes of a filled service (appended to
    C{warnings} as C{(message, attribute)}); nothing here drops a service.
    """
    if "REUSEPORT" in service.flags and service.listenPath is not None:
        warnings.append(
            (
                f"Service {service.serviceId} listens on a UNIX socket: "
                "REUSEPORT has no effect there (one process binds a path)",
                "flags",
            )
        )
    if (
        service.maxDuration is not None
        and service.isInternal
        and service.socketType == "dgram"
    ):
        warnings.append(
            (
                f"Service {service.serviceId} answers datagrams in the daemon: "
                "max_duration has nothing to limit",
                "max_duration",
            )
        )
    if service.maxDuration is not None and service.isTcpmuxSubservice:
        warnings.append(
            (
                f"Service {service.serviceId} is reached through tcpmux: the "
                "tcpmux service's max_duration applies to its servers",
                "max_duration",
            )
        )
