# -*- test-case-name: tests.test_listen_sockets -*-
"""
Listening sockets made the way xinetd makes them.

Twisted never sets IPV6_V6ONLY and cannot express xinetd's family rules, so
sockets are created here and handed to the reactor (adopted, or watched by our
own read descriptors).
"""

from __future__ import annotations

import socket
from typing import Callable, Optional, Tuple

import attr

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.records import plainRepr

LISTEN_BACKLOG = 64
"""
xinetd's listen() backlog.
"""

DEFAULT_SOCKET_MODE = 0o666
"""
The permissions of a C{listen_path} socket when C{socket_mode} is not given.
"""

UNIX_PROTOCOL = "unix"
"""
L{SocketSpec.protocol} of C{AF_UNIX} sockets.
"""

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)

_SOCKET_TYPES = {
    "stream": socket.SOCK_STREAM,
    "dgram": socket.SOCK_DGRAM,
    "raw": socket.SOCK_RAW,
    "seqpacket": socket.SOCK_SEQPACKET,
}


@plainRepr
@attr.s(frozen=True, auto_attribs=True, slots=True, repr=False)
class SocketSpec:
    """
    What identifies a service's socket: when these are equal across a reload
    the socket is kept.

    @ivar family: C{AF_INET} or C{AF_INET6}.
    @ivar socketType: C{SOCK_STREAM}, C{SOCK_DGRAM} ...
    @ivar protocol: the protocol name (C{tcp}, C{udp}).
    @ivar address: numeric bind address (C{""} = all addresses).
    @ivar port: the port.
    @ivar v6only: IPV6_V6ONLY for AF_INET6 sockets.
    @ivar nodelay: TCP_NODELAY (flag NODELAY).
    @ivar keepalive: SO_KEEPALIVE (flag KEEPALIVE).
    @ivar freebind: IP_FREEBIND / IPV6_FREEBIND (flag FREEBIND): bind an
        address not (yet) configured on this host.
    @ivar reuseport: SO_REUSEPORT (flag REUSEPORT): several processes (as
        the same user) may bind the same address and port, and the kernel
        spreads the connections, or datagrams, over their sockets.
    @ivar uid: for C{AF_UNIX}: the socket file's owner (C{socket_owner}),
        or L{None} to leave it as created.
    @ivar gid: for C{AF_UNIX}: its group, or L{None}.
    @ivar mode: for C{AF_UNIX}: its permissions (C{socket_mode}).

    For C{AF_UNIX} sockets (C{listen_path}) C{address} is the path, C{port}
    is 0 and C{protocol} is C{unix}.
    """

    family: int
    socketType: int
    protocol: str
    address: str
    port: int
    v6only: bool = False
    nodelay: bool = False
    keepalive: bool = False
    freebind: bool = False
    reuseport: bool = False
    uid: Optional[int] = None
    gid: Optional[int] = None
    mode: int = DEFAULT_SOCKET_MODE

    @classmethod
    def forService(cls, service: ServiceConfig) -> SocketSpec:
        """
        The socket a service asks for, with xinetd's defaults: all
        addresses, dual-stack IPv6 unless C{v6only} or a bind address says
        otherwise.
        """
        if service.listenPath is not None:
            return cls(
                family=socket.AF_UNIX,
                socketType=_SOCKET_TYPES[service.socketType],
                protocol=UNIX_PROTOCOL,
                address=service.listenPath,
                port=0,
                uid=service.socketUid,
                gid=service.socketGid,
                mode=service.socketMode,
            )
        if service.port is None:
            raise ValueError(f"service {service.serviceId} has no port")
        family = service.family
        address = service.bind or ""
        if address and ":" not in address:
            family = socket.AF_INET
        elif address:
            family = socket.AF_INET6
        if not address:
            address = "::" if family == socket.AF_INET6 else "0.0.0.0"
        return cls(
            family=family,
            socketType=_SOCKET_TYPES[service.socketType],
            protocol=service.protocol,
            address=address,
            port=service.port,
            v6only=bool(service.v6only) if family == socket.AF_INET6 else False,
            nodelay="NODELAY" in service.flags,
            keepalive="KEEPALIVE" in service.flags,
            freebind="FREEBIND" in service.flags,
            reuseport="REUSEPORT" in service.flags,
        )

    def identity(self) -> SocketSpec:
        """
        What must stay equal for a reload to keep the socket: the options
        that act only when binding, or that are applied again in place
        (TCP_NODELAY, SO_KEEPALIVE, FREEBIND, a UNIX socket's owner and
        mode), left out.  SO_REUSEPORT stays in: it must be set before the
        bind, so turning it on or off binds a new socket.
        """
        return attr.evolve(
            self,
            nodelay=False,
            keepalive=False,
            freebind=False,
            uid=None,
            gid=None,
            mode=DEFAULT_SOCKET_MODE,
        )

    def describe(self) -> str:
        """
        C{[::]:7/tcp}-style text for messages (C{unix:/run/x.sock} for a
        UNIX socket).
        """
        if self.family == socket.AF_UNIX:
            return f"{UNIX_PROTOCOL}:{self.address}"
        host = f"[{self.address}]" if self.family == socket.AF_INET6 else self.address
        return f"{host}:{self.port}/{self.protocol}"


SocketSource = Callable[[], Tuple[socket.socket, "SocketSpec", str]]
"""
Gives a runtime a socket bound elsewhere (inherited from systemd), its
spec and what to call it in messages, each time it activates; the runtime
owns the socket it is given.

@raise OSError: when the socket cannot serve the service.
"""


def specFor(service: ServiceConfig) -> Optional[SocketSpec]:
    """
    The socket a service asks for, or L{None} when it has none of its own
    (tcpmux sub-services, RPC).
    """
    if service.listenPath is None and service.port is None:
        return None
    return SocketSpec.forService(service)


def _protocolNumber(name: str) -> int:
    try:
        return socket.getprotobyname(name)
    except OSError:
        return 0


def openSocket(spec: SocketSpec, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """
    Create, configure and bind a non-blocking, close-on-exec socket; listen
    when it is a stream socket.

    @raise OSError: when the socket cannot be created or bound.
    """
    proto = _protocolNumber(spec.protocol) if spec.socketType == socket.SOCK_RAW else 0
    # Non-blocking from the start: no fcntl after the listen.
    sock = socket.socket(spec.family, spec.socketType | socket.SOCK_NONBLOCK, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if spec.family == socket.AF_INET6:
            sock.setsockopt(
                socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if spec.v6only else 0
            )
        if spec.socketType == socket.SOCK_STREAM:
            if spec.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if spec.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if spec.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if spec.freebind:
            if spec.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((spec.address, spec.port))
        if spec.socketType in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def openServiceSocket(
    service: ServiceConfig,
    backlog: int = LISTEN_BACKLOG,
    spec: Optional[SocketSpec] = None,
) -> tuple[socket.socket, SocketSpec, Optional[str]]:
    """
    Open the socket for C{service}.  When IPv6 is unavailable and no bind
    address was given, fall back to IPv4 as xinetd does.

    @param spec: C{SocketSpec.forService(service)} when the caller has it.
    @return: the socket, the spec actually used, and a notice to log when a
        fallback happened (else L{None}).
    """
    if spec is None:
        spec = SocketSpec.forService(service)
    try:
        return openSocket(spec, backlog), spec, None
    except OSError as e:
        if spec.family != socket.AF_INET6 or service.bind or not _noIPv6(e):
            raise
    fallback = attr.evolve(spec, family=socket.AF_INET, address="0.0.0.0", v6only=False)
    notice = f"IPv6 socket creation failed for service {service.serviceId}, trying IPv4"
    return openSocket(fallback, backlog), fallback, notice


def _noIPv6(error: OSError) -> bool:
    import errno

    return error.errno in (
        errno.EAFNOSUPPORT,
        errno.EADDRNOTAVAIL,
        errno.EPROTONOSUPPORT,
    )


def numericHost(address: object) -> str:
    """
    The numeric host part of a socket address, as xinetd prints it
    (C{::ffff:127.0.0.1} for IPv4 clients of a dual-stack socket).
    """
    if isinstance(address, tuple) and address:
        host = address[0]
        if isinstance(host, str):
            return host
    return "<invalid address>"
