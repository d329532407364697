# -*- test-case-name: tests.test_daemon_activation -*-
"""
systemd socket activation of the daemon itself: the sockets it inherits
(C{LISTEN_PID}, C{LISTEN_FDS}, C{LISTEN_FDNAMES}, descriptors from 3) and
which service each one serves.

A socket named like a service id is that service's only socket, whatever
address the configuration gives; a socket with any other name (systemd's
default C{unknown}, the unit's name) serves the service whose configured
socket has its family, type, address and port.  The daemon never binds an
inherited socket's address itself, and keeps every inherited descriptor for
its whole life: a service (re)activated, on start, after a reload or a cps
pause, gets a fresh duplicate.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Dict, Iterable, List, Mapping, MutableMapping, Optional, Tuple

import attr
from twisted.logger import Logger

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.daemon.notify import LISTEN_VARIABLES
from xinetd_twisted.listen.sockets import (
    UNIX_PROTOCOL,
    SocketSource,
    SocketSpec,
    specFor,
)
from xinetd_twisted.records import plainRepr

LISTEN_FDS_START = 3
"""
The first inherited descriptor (C{SD_LISTEN_FDS_START}).
"""

DEFAULT_NAME = "unknown"
"""
systemd's name for a descriptor that C{LISTEN_FDNAMES} does not name.
"""

_PROTOCOLS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}

_TYPE_NAMES: Dict[int, str] = {
    socket.SOCK_STREAM: "stream",
    socket.SOCK_DGRAM: "dgram",
    socket.SOCK_RAW: "raw",
    socket.SOCK_SEQPACKET: "seqpacket",
}


def listenDescriptors(environ: Mapping[str, str], pid: int) -> List[Tuple[int, str]]:
    """
    C{(fd, name)} of every descriptor systemd passed to process C{pid}, or
    C{[]} when the variables are absent, malformed or meant for another
    process.
    """
    try:
        if int(environ.get("LISTEN_PID", "")) != pid:
            return []
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    if count <= 0:
        return []
    names = environ.get("LISTEN_FDNAMES", "")
    given = names.split(":") if names else []
    given += [DEFAULT_NAME] * (count - len(given))
    return [
        (LISTEN_FDS_START + index, given[index] or DEFAULT_NAME)
        for index in range(count)
    ]


def _normalHost(family: int, host: str) -> str:
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host.split("%")[0]))
    except (OSError, ValueError):
        return host


def specOfDescriptor(fd: int) -> Optional[SocketSpec]:
    """
    What socket C{fd} is (family, type, protocol, bound address), or
    L{None} when it is no socket we can serve.
    """
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        family, socketType = sock.family, sock.type
        address = sock.getsockname()
        protocol = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
        v6only = (
            bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
            if family == socket.AF_INET6
            else False
        )
    except OSError:
        return None
    finally:
        sock.close()
    if family == socket.AF_UNIX:
        path = (
            address.decode("utf-8", "replace")
            if isinstance(address, bytes)
            else address
        )
        return SocketSpec(family, socketType, UNIX_PROTOCOL, path, 0)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return SocketSpec(
        family=family,
        socketType=socketType,
        protocol=_PROTOCOLS.get(protocol, str(protocol)),
        address=_normalHost(family, address[0]),
        port=address[1],
        v6only=v6only,
    )


def _sameAddress(inherited: SocketSpec, wanted: SocketSpec) -> bool:
    return (
        inherited.family == wanted.family
        and inherited.socketType == wanted.socketType
        and inherited.protocol == wanted.protocol
        and inherited.port == wanted.port
        and inherited.address == _normalHost(wanted.family, wanted.address)
    )


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class InheritedSocket:
    """
    One descriptor passed by systemd.

    @ivar name: its C{LISTEN_FDNAMES} name.
    @ivar fd: the descriptor, kept open for the daemon's life.
    @ivar spec: what it is.
    """

    name: str
    fd: int
    spec: SocketSpec

    def describe(self) -> str:
        return f"{self.name} ({self.spec.describe()})"

    def sourceFor(self, service: ServiceConfig) -> SocketSource:
        """
        What a runtime calls to get its own duplicate of this socket.
        """

        def take() -> Tuple[socket.socket, SocketSpec, str]:
            wanted = service.socketType
            if _TYPE_NAMES.get(self.spec.socketType) != wanted:
                raise OSError(
                    errno.EPROTOTYPE,
                    f"inherited socket {self.describe()} is not a {wanted} socket",
                )
            sock = socket.socket(fileno=os.dup(self.fd))
            sock.setblocking(False)
            return sock, self.spec, f"inherited socket {self.describe()}"

        return take


class InheritedSockets:
    """
    The sockets the daemon was started with, and which service serves each.
    """

    log = Logger(namespace="xinetd_twisted.daemon")

    def __init__(self, sockets: Iterable[InheritedSocket] = ()) -> None:
        self.sockets: Tuple[InheritedSocket, ...] = tuple(sockets)

    @classmethod
    def fromEnvironment(
        cls, environ: MutableMapping[str, str], pid: Optional[int] = None
    ) -> InheritedSockets:
        """
        Read (and unset) systemd's variables; every descriptor they pass is
        made close-on-exec, and kept.  A descriptor that is no usable
        socket is logged and left alone.
        """
        descriptors = listenDescriptors(environ, os.getpid() if pid is None else pid)
        for name in LISTEN_VARIABLES:
            environ.pop(name, None)
        sockets = []
        for fd, name in descriptors:
            spec = specOfDescriptor(fd)
            if spec is None:
                cls.log.error(
                    "inherited descriptor {fd} ({name}) is not a socket that "
                    "can be served; ignored",
                    fd=fd,
                    name=name,
                )
                continue
            os.set_inheritable(fd, False)
            sockets.append(InheritedSocket(name, fd, spec))
        return cls(sockets)

    def assign(self, services: Iterable[ServiceConfig]) -> Dict[str, InheritedSocket]:
        """
        Which inherited socket each service (by lower-case id) serves on:
        first by name, then, for sockets named like no service, by address.
        """
        services = list(services)
        byId = {s.serviceId.lower(): s for s in services}
        assignment: Dict[str, InheritedSocket] = {}
        unnamed: List[InheritedSocket] = []
        for inherited in self.sockets:
            key = inherited.name.lower()
            if key in byId and key not in assignment:
                assignment[key] = inherited
            elif key not in byId:
                unnamed.append(inherited)
        for service in services:
            key = service.serviceId.lower()
            if key in assignment:
                continue
            wanted = specFor(service)
            if wanted is None:
                continue
            for inherited in unnamed:
                if _sameAddress(inherited.spec, wanted):
                    assignment[key] = inherited
                    unnamed.remove(inherited)
                    break
        return assignment

    def logUnused(self, assignment: Mapping[str, InheritedSocket]) -> None:
        """
        Say which inherited sockets no service serves on.
        """
        used = {id(s) for s in assignment.values()}
        for inherited in self.sockets:
            if id(inherited) not in used:
                self.log.warn(
                    "inherited socket {name} ({address}) is not used by any service",
                    name=inherited.name,
                    address=inherited.spec.describe(),
                )
