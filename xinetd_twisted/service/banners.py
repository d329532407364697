# -*- test-case-name: tests.test_service_banners -*-
"""
A service's banners (C{banner}, C{banner_success}, C{banner_fail}): read
once when the configuration loads (and at every reload), sent without
blocking.

The root daemon reads these files on behalf of the configuration, so
reading one must never let a user steer it (docs/differences.md): only a
regular file is read (a FIFO or a device could hang the daemon or never
end), opened non-blocking, at most L{BANNER_LIMIT} bytes; and a banner
reached through a symbolic link is read only when the link belongs to root
or to the owner of the file it points to (a user who can write the
banner's directory can show clients only files of his own, never, say,
C{/etc/shadow}).  One level of link is followed, no more.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Optional, Tuple

import attr
from twisted.logger import Logger

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.records import plainRepr

BANNER_LIMIT = 64 * 1024
"""
Banners are read at load time and sent without blocking; bytes past this
size (or past what the socket buffer takes at once) are not sent.
"""

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC

_log = Logger()


class BannerRefused(Exception):
    """
    A banner file that is not read, and why.
    """


def _openTarget(path: str) -> int:
    """
    A descriptor of the regular file C{path} names, applying the symbolic
    link rule of this module.

    @raise BannerRefused: the file is not one we read.
    @raise OSError: it cannot be opened.
    """
    directory, name = os.path.split(path)
    dirFd = os.open(directory or ".", _PATH_FLAGS | os.O_DIRECTORY)
    try:
        try:
            return os.open(name, _READ_FLAGS | os.O_NOFOLLOW, dir_fd=dirFd)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
        # A symbolic link: pin it, so its owner and target are one link's.
        linkFd = os.open(name, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dirFd)
        try:
            linkOwner = os.fstat(linkFd).st_uid
            target = os.readlink("", dir_fd=linkFd)
        finally:
            os.close(linkFd)
        # Look before opening for reading: opening a device can act on it.
        targetFd = os.open(target, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dirFd)
        try:
            found = os.fstat(targetFd)
            if stat.S_ISLNK(found.st_mode):
                raise BannerRefused("it is a link to a link")
            if linkOwner not in (0, found.st_uid):
                raise BannerRefused(
                    f"it is a symbolic link of uid {linkOwner} "
                    f"to a file of uid {found.st_uid}"
                )
            if not stat.S_ISREG(found.st_mode):
                raise BannerRefused("it is not a regular file")
            # The very file just checked, not whatever the name means now.
            return os.open(f"/proc/self/fd/{targetFd}", _READ_FLAGS)
        finally:
            os.close(targetFd)
    finally:
        os.close(dirFd)


def loadBanner(path: str) -> Tuple[bytes, Optional[str]]:
    """
    The first L{BANNER_LIMIT} bytes of a banner file, without blocking.

    @return: the bytes and L{None}, or C{b""} and why nothing is sent.
    """
    try:
        fd = _openTarget(path)
    except BannerRefused as e:
        return b"", str(e)
    except OSError as e:
        return b"", e.strerror or str(e)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"", "it is not a regular file"
        chunks = []
        left = BANNER_LIMIT
        # Bounded: each read returns data or ends the loop.
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), None
    except OSError as e:
        return b"", e.strerror or str(e)
    finally:
        os.close(fd)


def readBanner(path: Optional[str]) -> bytes:
    """
    The bytes of a banner file, or C{b""} when unset, unreadable or refused
    (see L{loadBanner}).
    """
    if not path:
        return b""
    return loadBanner(path)[0]


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


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Banners:
    """
    What a service sends before anything else: to every client
    (C{connect}), to admitted ones (C{success}), to refused ones (C{fail}).
    """

    connect: bytes = b""
    success: bytes = b""
    fail: bytes = b""

    @classmethod
    def forService(cls, service: ServiceConfig, *, log: Logger = _log) -> Banners:
        """
        Read the banner files a service names; each one that cannot be sent
        is warned about once, naming the service, the path and the
        attribute's file:line.

        @param log: where the warnings go (the daemon's log).
        """
        texts = []
        for attribute, path in (
            ("banner", service.banner),
            ("banner_success", service.bannerSuccess),
            ("banner_fail", service.bannerFail),
        ):
            if not path:
                texts.append(b"")
                continue
            data, problem = loadBanner(path)
            if problem is not None:
                location = service.locations.get(attribute, service.location)
                log.warn(
                    "{location}: service {service}: {attribute} {path} "
                    "is not sent: {problem}",
                    location=str(location),
                    service=service.serviceId,
                    attribute=attribute,
                    path=path,
                    problem=problem,
                )
            texts.append(data)
        if not any(texts):
            return NO_BANNERS
        return cls(*texts)


NO_BANNERS = Banners()
"""
The banners of a service that names none (one value for all of them).
"""
