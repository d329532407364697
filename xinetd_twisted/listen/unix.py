# -*- test-case-name: tests.test_listen_unix -*-
"""
UNIX-domain listening sockets (C{listen_path}, our extension) and the
credentials of their clients.

The socket file is ours from bind to close: a stale socket left by a
previous run is replaced, anything else at the path (a regular file, a
symlink, a socket someone still listens on) is refused; at close the path is
removed only when it is still the socket we bound (same device and inode).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from typing import Optional, Tuple

import attr

from xinetd_twisted.listen.sockets import LISTEN_BACKLOG, SocketSpec

_UCRED = struct.Struct("iII")
"""
C{struct ucred}: pid, uid, gid.
"""


@attr.s(frozen=True, auto_attribs=True)
class PeerCredentials:
    """
    The client process of a UNIX-domain connection, from C{SO_PEERCRED}.
    """

    pid: int
    uid: int
    gid: int

    def environment(self) -> Tuple[Tuple[str, str], ...]:
        """
        The variables a spawned program gets (in place of REMOTE_HOST).
        """
        return (
            ("REMOTE_UID", str(self.uid)),
            ("REMOTE_GID", str(self.gid)),
            ("REMOTE_PID", str(self.pid)),
        )


def peerCredentials(fd: int) -> Optional[PeerCredentials]:
    """
    The credentials of the peer of connected UNIX socket C{fd}, or L{None}
    when the kernel gives none.
    """
    sock = socket.socket(fileno=os.dup(fd))
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    finally:
        sock.close()
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid, uid, gid)


@attr.s(frozen=True, auto_attribs=True)
class BoundPath:
    """
    The socket file we bound, to tell it from whatever may replace it.
    """

    path: str
    device: int
    inode: int

    def isOurs(self) -> bool:
        """
        Whether the path is still our socket.
        """
        try:
            status = os.lstat(self.path)
        except OSError:
            return False
        return (
            stat.S_ISSOCK(status.st_mode)
            and status.st_dev == self.device
            and status.st_ino == self.inode
        )

    def apply(self, spec: SocketSpec) -> None:
        """
        Give the socket file the owner and mode of C{spec} (without
        following a symlink someone put in its place).

        @raise OSError: when it cannot.
        """
        if not self.isOurs():
            raise OSError(errno.ENOENT, f"{self.path} is no longer our socket")
        if spec.uid is not None or spec.gid is not None:
            os.chown(
                self.path,
                -1 if spec.uid is None else spec.uid,
                -1 if spec.gid is None else spec.gid,
                follow_symlinks=False,
            )
        os.chmod(self.path, spec.mode)

    def remove(self) -> bool:
        """
        Remove the socket file if it is still ours.

        @return: whether it was removed.
        """
        if not self.isOurs():
            return False
        try:
            os.unlink(self.path)
        except OSError:
            return False
        return True


def _clearStale(path: str) -> None:
    """
    Remove a socket file nobody listens on; refuse anything else.

    @raise OSError: C{EEXIST} for a file that is not a socket (symlinks
        included), C{EADDRINUSE} for a socket that still accepts.
    """
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass
    except BlockingIOError:
        # Its backlog is full: someone listens.
        raise OSError(errno.EADDRINUSE, f"{path} is in use") from None
    except OSError:
        # Not connectable for another reason (a datagram socket, no
        # permission): not a listener of ours to replace blindly.
        raise OSError(errno.EADDRINUSE, f"{path} is in use") from None
    else:
        raise OSError(errno.EADDRINUSE, f"{path} is in use")
    finally:
        probe.close()
    os.unlink(path)


def openUnixSocket(
    spec: SocketSpec, backlog: int = LISTEN_BACKLOG
) -> Tuple[socket.socket, BoundPath]:
    """
    Create, bind and listen on a non-blocking UNIX stream socket at
    C{spec.address}, replacing a stale socket file, then give it its owner
    and mode.  It is bound with a restrictive umask, so nobody can connect
    before its mode is set.

    @raise OSError: when the path is taken or the socket cannot be bound.
    """
    path = spec.address
    _clearStale(path)
    sock = socket.socket(socket.AF_UNIX, spec.socketType)
    try:
        previous = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(previous)
        status = os.lstat(path)
        bound = BoundPath(path, status.st_dev, status.st_ino)
        try:
            bound.apply(spec)
            sock.listen(backlog)
        except BaseException:
            bound.remove()
            raise
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, bound
