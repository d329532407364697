# -*- test-case-name: tests.test_integration_stream -*-
"""
The kinds that start a program: stream C{wait = no} (each connection
becomes a child's fds 0-2) and C{wait = yes} (the socket itself goes to
the child).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Optional, Tuple

from zope.interface import implementer

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.sockets import numericHost
from xinetd_twisted.service.connection import Connection, hostOf, socketAddress
from xinetd_twisted.service.context import DaemonContext
from xinetd_twisted.service.factory import (
    ConnectionLimits,
    IStreamKind,
    ServiceFactory,
    ServiceProtocol,
    detachSocket,
    plainSocket,
    relayToChild,
)
from xinetd_twisted.service.front import OwnListener, OwnSocketKind
from xinetd_twisted.service.handover import HandOver
from xinetd_twisted.service.identity import identThenServe
from xinetd_twisted.service.parts import BuiltOnRead, ServiceParts, isBuilt
from xinetd_twisted.spawn.interfaces import ChildSetup, CredentialKey, credentialKey
from xinetd_twisted.spawn.setup import childSetupFor

if TYPE_CHECKING:
    from xinetd_twisted.listen.wait import WaitDescriptor


def setupFor(context: DaemonContext, service: ServiceConfig) -> ChildSetup:
    """
    The L{ChildSetup} of a service's program, computed once per load.
    """
    return childSetupFor(
        service,
        daemonEnviron=context.environ,
        daemonUmask=context.umask,
        isRoot=context.isRoot,
        nofileHardLimit=context.nofileHardLimit,
    )


def credentialsFor(context: DaemonContext, service: ServiceConfig) -> CredentialKey:
    """
    C{credentialKey(setupFor(context, service))}, without building the
    setup: the credentials are changed only when the daemon runs as root.
    """
    if not context.isRoot:
        return (None, None, None)
    uid, gid = service.uid, service.gid
    groups = None
    if uid is not None or gid is not None:
        groups = tuple(service.supplementaryGroups)
    return (uid, gid, groups)


def _setupOf(kind: ProgramSetup) -> ChildSetup:
    return setupFor(kind._parts.context, kind._parts.service)


class ProgramSetup:
    """
    What both program kinds share: the L{ChildSetup} of their children,
    computed the first time it is read (an idle service never needs it),
    and again on reload once it has been.

    @ivar setup: the child's setup.
    """

    _parts: ServiceParts

    setup = BuiltOnRead(_setupOf)

    def update(self, service: ServiceConfig) -> None:
        if isBuilt(self, "setup"):
            self.setup = setupFor(self._parts.context, service)

    def credentials(self) -> CredentialKey:
        """
        The credential set its children run with.
        """
        if isBuilt(self, "setup"):
            return credentialKey(self.setup)
        return credentialsFor(self._parts.context, self._parts.service)


def _factoryOf(kind: ProgramKind) -> ServiceFactory:
    parts = kind._parts
    # Behind TLS the daemon relays: the client's socket and its end of the
    # child's socketpair stay here.
    return ServiceFactory(
        kind,
        parts.service.serviceId,
        parts,
        ConnectionLimits(parts.context.descriptors, parts.context.reactor, None, 2),
    )


@implementer(IStreamKind)
class ProgramKind(ProgramSetup, OwnSocketKind):
    """
    Stream C{wait = no} with a program: each admitted connection becomes a
    child's fds 0, 1 and 2; the parent keeps nothing, so the client sees EOF
    when the child exits.

    Two doors, one behaviour: L{acceptRaw} takes descriptors from our own
    socket (no transport is ever built), L{factory} takes transports from
    any endpoint.

    @ivar factory: the factory door (built the first time it is read).
    """

    def __init__(self, parts: ServiceParts) -> None:
        self._parts = parts
        self._own = OwnListener(parts, self, True)
        self._handOver = HandOver(parts, self._own, self)

    factory = BuiltOnRead(_factoryOf)

    @property
    def socketIsOurs(self) -> bool:
        """See L{HandOver.socketIsOurs}."""
        return self._handOver.socketIsOurs

    @socketIsOurs.setter
    def socketIsOurs(self, ours: bool) -> None:
        self._handOver.socketIsOurs = ours

    def open(self, sock: socket.socket) -> None:
        self._own.open(sock)
        self._handOver.opened()

    def close(self) -> None:
        self._handOver.closing()
        self._own.close()

    def pause(self) -> None:
        self._handOver.pause()
        self._own.pause()

    def resume(self) -> None:
        self._own.resume()
        self._handOver.resume()

    def update(self, service: ServiceConfig) -> None:
        ProgramSetup.update(self, service)
        # What the service is now may not be delegable, or its servers'
        # setup (the sub-helper's template) has changed: the next
        # connection decides again.
        self._handOver.takeBack()

    def endConnections(self) -> None:
        """
        Programs own their connections; nothing of ours to end.
        """

    # --- the fast door -----------------------------------------------------

    def acceptRaw(self, fd: int, address: object) -> None:
        """
        A connection accepted on our own socket; C{fd} is closed when this
        returns (the child has its own copy by then).  With a plain
        admission (L{Admission.plain}: no banner, no name to look up, no
        USERID) an IP client goes to its server without a L{Connection}.
        """
        try:
            peer = hostOf(address)
            if peer is not None and self._parts.admission.plain:
                self._acceptPlain(fd, peer, address)  # type: ignore[arg-type]
                return
            connection = Connection.fromDescriptor(
                fd, address, self._own.family, self._parts.seconds()
            )
            self._parts.admission.admit(connection, self._serve)
        finally:
            os.close(fd)

    def _acceptPlain(self, fd: int, peer: str, address: Tuple[Any, ...]) -> None:
        """
        What L{Admission.admit} and L{_serve} do for a plain admission, in
        fewer steps: nothing to send, nothing to look up.
        """
        parts = self._parts
        refusal = parts.admission.admitPlain(peer)
        if refusal is None:
            parts.children.spawn(fd, peer, self.setup, parts.seconds(), (), address)
            handOver = self._handOver
            if handOver.delegation is None and handOver.mayDelegate is not False:
                handOver.delegate()
            return
        connection = Connection.fromDescriptor(
            fd, address, self._own.family, parts.seconds()
        )
        parts.admission.refuseConnection(connection, refusal)

    # --- the factory door --------------------------------------------------

    def connected(self, protocol: ServiceProtocol) -> None:
        transport = protocol.transport
        peer, host = transport.getPeer(), transport.getHost()
        sock = plainSocket(transport)
        if sock is not None:
            # A plain socket: from here on it is the fast door's path.
            protocol.handedOff = True
            family = sock.family
            fd = detachSocket(transport, sock)
            try:
                connection = Connection.fromDescriptor(
                    fd, peer, family, self._parts.seconds()
                )
                connection.local = socketAddress(host)
                self._parts.admission.admit(connection, self._serve)
            finally:
                os.close(fd)
            return
        connection = Connection.fromTransport(transport, self._parts.seconds())
        self._parts.admission.admit(
            connection, lambda admitted: self._serveRelayed(admitted, protocol)
        )

    # --- serving -----------------------------------------------------------

    def _serve(self, connection: Connection) -> None:
        parts = self._parts
        if "USERID" in parts.service.logOnSuccess:
            identThenServe(parts, connection, self._start)
            return
        connection.send(parts.admission.banners.success)
        self._start(connection)

    def _start(self, connection: Connection) -> None:
        self._parts.children.spawn(
            connection.fd,
            connection.peer,
            self.setup,
            connection.accepted,
            connection.environment,
            connection.remote,
        )

    def _serveRelayed(self, connection: Connection, protocol: ServiceProtocol) -> None:
        def start(admitted: Connection) -> None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._parts.children.spawn(
                    theirs.fileno(),
                    admitted.peer,
                    self.setup,
                    admitted.accepted,
                    admitted.environment,
                    admitted.remote,
                )
            finally:
                theirs.close()
            relayToChild(self._parts.context.reactor, protocol, ours)

        if "USERID" in self._parts.service.logOnSuccess:
            identThenServe(self._parts, connection, start)
            return
        connection.send(self._parts.admission.banners.success)
        start(connection)


class WaitKind(ProgramSetup):
    """
    C{wait = yes} with a program: the child gets the socket itself (the
    listening socket for stream, the bound socket with the datagram still
    queued for dgram) and the daemon stops watching it until the child
    exits.  There is no factory door: the child does the accepting.
    """

    factory = None

    def __init__(self, parts: ServiceParts) -> None:
        self._parts = parts
        self._waiter: Optional[WaitDescriptor] = None
        parts.children.onChildGone = self._childGone

    def open(self, sock: socket.socket) -> None:
        # Imported only for a wait = yes program service.
        from xinetd_twisted.listen.wait import WaitDescriptor

        self._waiter = WaitDescriptor(
            self._parts.context.reactor,
            sock,
            self._ready,
            self._parts.service.serviceId,
        )
        self._waiter.startReading()

    @property
    def listeningSocket(self) -> Optional[socket.socket]:
        return None if self._waiter is None else self._waiter.socket

    def close(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None

    def pause(self) -> None:
        if self._waiter is not None:
            self._waiter.stopReading()

    def resume(self) -> None:
        if self._waiter is not None:
            self._waiter.startReading()

    def endConnections(self) -> None:
        """
        The child owns the socket; nothing of ours to end.
        """

    def _ready(self, address: Optional[object]) -> None:
        waiter = self._waiter
        assert waiter is not None
        parts = self._parts
        peer = numericHost(address) if address is not None else None
        parts.admission.connections += 1
        refusal = parts.admission.check(peer)
        if refusal is not None:
            parts.admission.refuse(refusal, peer)
            self._drainRefused(waiter)
            return
        parts.children.spawn(waiter.fileno(), peer, self.setup, parts.seconds())

    def _drainRefused(self, waiter: WaitDescriptor) -> None:
        """
        A refused datagram is read and dropped (xinetd drains); a refused
        stream connection is accepted and closed.
        """
        sock = waiter.socket
        try:
            if sock.type == socket.SOCK_DGRAM:
                sock.recvfrom(1, socket.MSG_DONTWAIT)
            else:
                conn, _ = sock.accept()
                conn.close()
        except OSError:
            pass
        if self._waiter is waiter:
            waiter.childDone()

    def _childGone(self) -> None:
        if self._waiter is not None and self._parts.active:
            dropped = self._waiter.childDone()
            if dropped is not None:
                self._parts.daemonLog.warn(
                    "service {service}: the server exited without reading the "
                    "datagram from {peer}; discarded it",
                    service=self._parts.service.serviceId,
                    peer=numericHost(dropped),
                )
