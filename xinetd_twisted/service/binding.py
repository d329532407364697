# -*- test-case-name: tests.test_integration_unix -*-
"""
Where a service's socket comes from: inherited from systemd (socket
activation), a UNIX path we bind (and remove while it is still ours), or an
address we bind.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Optional, Tuple

from twisted.logger import Logger

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.listen.sockets import SocketSource, SocketSpec, openServiceSocket

if TYPE_CHECKING:
    # Imported only when a service has a listen_path.
    from xinetd_twisted.listen.unix import BoundPath


class ServiceSocket:
    """
    Obtains one service's socket, each time it is (re)activated.

    @ivar inherited: the socket systemd passed for the service, or L{None}:
        then it is bound here.
    """

    __slots__ = ("_serviceId", "inherited", "_bound")

    log = Logger(namespace="xinetd_twisted.service")

    def __init__(self, serviceId: str) -> None:
        self._serviceId = serviceId
        self.inherited: Optional[SocketSource] = None
        self._bound: Optional[BoundPath] = None

    def open(
        self, service: ServiceConfig, requested: Optional[SocketSpec]
    ) -> Tuple[socket.socket, Optional[SocketSpec], str]:
        """
        The socket to serve on, its spec, and where it came from for the
        log (C{""}: its address).

        @raise OSError: when it cannot be created or bound.
        """
        if self.inherited is not None:
            # Socket activation: never bound here, whatever the
            # configuration says.
            return self.inherited()
        if requested is not None and requested.family == socket.AF_UNIX:
            from xinetd_twisted.listen.unix import openUnixSocket

            sock, self._bound = openUnixSocket(requested)
            return sock, requested, ""
        sock, spec, notice = openServiceSocket(service, spec=requested)
        if notice:
            self.log.info(notice)
        return sock, spec, ""

    def removePath(self) -> None:
        """
        Remove our UNIX socket file, if it is still ours.
        """
        bound, self._bound = self._bound, None
        if bound is not None:
            bound.remove()

    def reapply(self, requested: Optional[SocketSpec]) -> bool:
        """
        A kept UNIX socket takes the reloaded owner and mode in place.

        @return: whether they were applied.
        """
        if self._bound is None or requested is None:
            return False
        try:
            self._bound.apply(requested)
        except OSError as e:
            self.log.error(
                "service {service}: cannot set the owner and mode of {path}: {error}",
                service=self._serviceId,
                path=self._bound.path,
                error=e.strerror or str(e),
            )
            return False
        return True
