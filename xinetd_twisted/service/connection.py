# -*- test-case-name: tests.test_service_factory -*-
"""
One client connection, whichever door it came in by: a raw descriptor
accepted on the daemon's own socket (the fast door), or a Twisted
transport from any endpoint (the factory door).  Admission and the kinds
see only this.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional, Tuple

import attr
from twisted.internet.interfaces import ISSLTransport

from xinetd_twisted.service.banners import sendNoWait

Address = Tuple[Any, ...]


def _tlsEnvironment(transport: Any) -> Tuple[Tuple[str, str], ...]:
    # Only TLS services import their module.
    if not ISSLTransport.providedBy(transport):
        return ()
    from xinetd_twisted.service.tls import tlsEnvironment

    return tlsEnvironment(transport)


def hostOf(address: object) -> Optional[str]:
    """
    The numeric host of a socket address tuple or a Twisted IAddress, as
    xinetd prints it; L{None} when the address has none (UNIX sockets).
    """
    if isinstance(address, tuple):
        if address and isinstance(address[0], str):
            return address[0]
        return None
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def socketAddress(address: object) -> Optional[Address]:
    """
    C{(host, port)} of a socket address tuple or a Twisted IP address.
    """
    if isinstance(address, tuple):
        return address
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return (host, port)
    return None


def peerLabel(
    peer: Optional[str], environment: Tuple[Tuple[str, str], ...]
) -> Optional[str]:
    """
    What logs write for a client: its host, or C{uid:N} for a UNIX-domain
    client (which has no address, only credentials), else L{None}.
    """
    if peer is not None:
        return peer
    for name, value in environment:
        if name == "REMOTE_UID":
            return f"uid:{value}"
    return None


@attr.s(auto_attribs=True, eq=False)
class Connection:
    """
    A client connection on its way through admission to its server.

    @ivar peer: the client's numeric host (for policy, logs, REMOTE_HOST),
        or L{None} when it has none.
    @ivar remote: the client's C{(host, port)} (for ident), or L{None}.
    @ivar local: our C{(host, port)} (for ident), or L{None}.
    @ivar fd: a descriptor of the connection's socket that the kind may hand
        to a child, or C{-1} when there is no plain socket (TLS): then
        L{transport} carries the bytes.
    @ivar transport: the Twisted transport, or L{None} on the fast door.
    @ivar family: the socket family, for adopting C{fd} into a transport.
    @ivar accepted: the clock time it was accepted (spawn latency).
    @ivar environment: per-connection variables for a spawned program,
        besides REMOTE_HOST (which comes from L{peer}): what the listener
        knows of the client (TLS subject, UNIX peer credentials).
    """

    peer: Optional[str]
    remote: Optional[Address] = None
    local: Optional[Address] = None
    fd: int = -1
    transport: Any = None
    family: int = socket.AF_INET
    accepted: float = 0.0
    environment: Tuple[Tuple[str, str], ...] = ()

    @classmethod
    def fromDescriptor(
        cls, fd: int, address: object, family: int, accepted: float = 0.0
    ) -> Connection:
        """
        A connection accepted on our own socket.  The caller keeps owning
        C{fd}.  A UNIX-domain client has no address: its credentials
        (SO_PEERCRED) become REMOTE_UID, REMOTE_GID and REMOTE_PID.
        """
        environment: Tuple[Tuple[str, str], ...] = ()
        if family == socket.AF_UNIX:
            # Only UNIX-domain services need the module.
            from xinetd_twisted.listen.unix import peerCredentials

            credentials = peerCredentials(fd)
            if credentials is not None:
                environment = credentials.environment()
        return cls(
            peer=hostOf(address),
            remote=socketAddress(address),
            fd=fd,
            family=family,
            accepted=accepted,
            environment=environment,
        )

    @classmethod
    def fromTransport(cls, transport: Any, accepted: float = 0.0) -> Connection:
        """
        A connection that arrived by the factory door on C{transport}, with
        what its listener knows of the client (TLS: C{SSL_*}) in
        L{environment}.
        """
        peer = transport.getPeer()
        return cls(
            peer=hostOf(peer),
            remote=socketAddress(peer),
            local=socketAddress(transport.getHost()),
            transport=transport,
            accepted=accepted,
            environment=_tlsEnvironment(transport),
        )

    def localAddress(self) -> Optional[Address]:
        """
        Our end's address, looked up only when needed (ident).
        """
        if self.local is None and self.fd >= 0:
            sock = socket.socket(fileno=os.dup(self.fd))
            try:
                self.local = sock.getsockname()
            except OSError:
                return None
            finally:
                sock.close()
        return self.local

    def send(self, data: bytes) -> None:
        """
        Write a banner without blocking the reactor.
        """
        if not data:
            return
        if self.fd >= 0:
            sendNoWait(self.fd, data)
        elif self.transport is not None:
            self.transport.write(data)

    def hold(self) -> Connection:
        """
        A copy that stays usable after the caller closes its descriptor
        (while a name lookup or an ident query is pending); L{release} it.
        """
        if self.fd < 0:
            return self
        return attr.evolve(self, fd=os.dup(self.fd))

    def take(self) -> int:
        """
        Take the descriptor: from now on it is the caller's, and neither
        the door that accepted it nor L{release} closes it.
        """
        fd, self.fd = self.fd, -1
        return fd

    def release(self) -> None:
        """
        Close a held copy's descriptor.
        """
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def close(self) -> None:
        """
        Refused: close the connection (a transport is closed; a raw
        descriptor is its owner's to close).
        """
        if self.fd < 0 and self.transport is not None:
            self.transport.loseConnection()
