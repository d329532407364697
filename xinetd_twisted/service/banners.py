# -*- test-case-name: tests.test_service_banners -*-
"""
A service's banners (C{banner}, C{banner_success}, C{banner_fail}): read
once when the configuration loads (and at every reload), sent without
blocking.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

import attr

from xinetd_twisted.config.model import ServiceConfig

BANNER_LIMIT = 64 * 1024
"""
Banners are read at load time and sent without blocking; bytes past this
size (or past what the socket buffer takes at once) are not sent.
"""


def readBanner(path: Optional[str]) -> bytes:
    """
    The bytes of a banner file, or C{b""} when unset or unreadable (xinetd
    silently sends nothing then).
    """
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(BANNER_LIMIT)
    except OSError:
        return b""


def sendNoWait(fd: int, data: bytes) -> None:
    """
    Write to a fresh connection without blocking the reactor: what the
    socket buffer does not take at once is not sent.
    """
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
    except OSError:
        pass
    finally:
        sock.close()


@attr.s(frozen=True, auto_attribs=True)
class Banners:
    """
    What a service sends before anything else: to every client
    (C{connect}), to admitted ones (C{success}), to refused ones (C{fail}).
    """

    connect: bytes = b""
    success: bytes = b""
    fail: bytes = b""

    @classmethod
    def forService(cls, service: ServiceConfig) -> Banners:
        """
        Read the banner files a service names.
        """
        return cls(
            readBanner(service.banner),
            readBanner(service.bannerSuccess),
            readBanner(service.bannerFail),
        )
