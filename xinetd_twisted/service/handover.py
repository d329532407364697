# -*- test-case-name: tests.test_integration_delegation -*-
"""
L{HandOver}: a program service's listening socket handed to the compiled
sub-helper that starts its servers, which then accepts its connections
itself (see L{xinetd_twisted.spawn.delegation}), and taken back.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Protocol, Tuple

from xinetd_twisted.service.front import OwnListener

if TYPE_CHECKING:
    from xinetd_twisted.service.parts import ServiceParts
    from xinetd_twisted.spawn.delegation import Delegation
    from xinetd_twisted.spawn.interfaces import ChildSetup


class _Kind(Protocol):
    """What the hand-over needs of its program kind."""

    setup: ChildSetup

    def acceptRaw(self, fd: int, address: object) -> None: ...


class HandOver:
    """
    Whether, and to whom, one service's own socket is handed over.

    The kind tells it of the socket's life (L{opened}, L{closing},
    L{pause}, L{resume}, L{takeBack} on reload) and calls L{delegate} after
    a connection it served itself while L{delegation} is L{None} and
    L{mayDelegate} is not L{False}: an idle service costs no setup and no
    descriptor for it.

    @ivar socketIsOurs: whether the socket is one we bound (set as it is
        opened): an inherited one is shared with whoever passed it
        (systemd), and is never handed on.
    @ivar delegation: the socket's delegation while handed (or offered).
    @ivar mayDelegate: L{False} once found not delegable (until the next
        open, resume or take-back), L{None} when not looked at yet.
    """

    __slots__ = (
        "_parts",
        "_own",
        "_kind",
        "_paused",
        "_handedOver",
        "_handedOnce",
        "socketIsOurs",
        "delegation",
        "mayDelegate",
    )

    def __init__(self, parts: ServiceParts, own: OwnListener, kind: _Kind) -> None:
        self._parts = parts
        self._own = own
        self._kind = kind
        self._paused = False
        self._handedOver = False
        self._handedOnce = False
        self.socketIsOurs = True
        self.delegation: Optional[Delegation] = None
        self.mayDelegate: Optional[bool] = None

    # --- the socket's life -----------------------------------------------

    def opened(self) -> None:
        self.mayDelegate = None
        self._handedOnce = False

    def closing(self) -> None:
        """
        The socket is about to be closed: take it back, and stop it
        listening if a sub-helper ever had it.
        """
        sock = self._own.socket
        self.takeBack()
        if self._handedOnce and sock is not None:
            # A sub-helper's copy is this very socket, closed only once it
            # has read our "U": stop it listening now, so that the port is
            # free at once (a reload may bind it again in the same turn)
            # and no client is left waiting on it.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pause(self) -> None:
        self._paused = True
        self.takeBack()

    def resume(self) -> None:
        self._paused = False
        self.mayDelegate = None

    # --- handing over ----------------------------------------------------

    def _delegable(self, sock: socket.socket) -> bool:
        """
        Whether nothing of the daemon is needed between the accept and the
        server: our own IP socket, no TLS, no PROXY header, and an
        admission and policy that decide nothing (see
        L{ServicePolicy.delegable}).
        """
        service = self._parts.service
        admission = self._parts.admission
        return (
            self.socketIsOurs
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and service.tlsCertificate is None
            and service.proxyProtocol is None
            and admission.plain
            and admission.policy.delegable
        )

    def delegate(self) -> None:
        """
        Hand the socket to the sub-helper that starts this service's
        servers, where the spawner can (L{HelperSpawner.delegate}) and the
        service is delegable.
        """
        spawner = self._parts.context.spawner
        sock = self._own.socket
        if (
            not getattr(spawner, "delegating", False)
            or self._paused
            or sock is None
            or not self._delegable(sock)
        ):
            self.mayDelegate = None if self._paused else False
            return
        self.mayDelegate = True
        self._handedOnce = True
        self.delegation = spawner.delegate(  # type: ignore[attr-defined]
            sock,
            self._kind.setup,
            self._accepted,
            self._kind.acceptRaw,
            self._accepting,
        )
        self._sensorListeners().append(self.takeBack)

    def takeBack(self) -> None:
        """
        Take the socket back: accept on it here again (unless paused); the
        next connection decides again whether to hand it over.
        """
        self.mayDelegate = None
        delegation, self.delegation = self.delegation, None
        if delegation is None:
            return
        listed = self._sensorListeners()
        if self.takeBack in listed:
            listed.remove(self.takeBack)
        delegation.withdraw()
        self._accepting(False)

    def _sensorListeners(self) -> List[Callable[[], None]]:
        sensorList = self._parts.context.policy.sensorList
        assert sensorList is not None  # set by PolicyContext
        return sensorList.listed

    # --- what the sub-helper says ----------------------------------------

    def _accepting(self, accepting: bool) -> None:
        if accepting == self._handedOver:
            return
        self._handedOver = accepting
        if accepting:
            self._own.pause()
        elif not self._paused:
            self._own.resume()

    def _accepted(self, host: str, port: int) -> Any:
        """
        The sub-helper started a server for a client at C{host}, C{port}:
        count it and follow the server.
        """
        address: Tuple[Any, ...] = (host, port)
        if self._own.family == socket.AF_INET6:
            address = (host, port, 0, 0)
        parts = self._parts
        parts.admission.connections += 1
        return parts.children.adopted(host, address)


__all__ = ["HandOver"]
