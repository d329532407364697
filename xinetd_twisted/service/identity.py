# -*- test-case-name: tests.test_integration_ident -*-
"""
C{log_on_success = USERID} for every kind of stream service: ask the
client's identd, log USERID or NOID; with C{flags = IDONLY} serve only a
client whose identd answered with a user, within the ident timeout.
"""

from __future__ import annotations

from typing import Any, Callable

from xinetd_twisted.service.connection import Connection
from xinetd_twisted.service.parts import ServiceParts


def identThenServe(
    parts: ServiceParts, connection: Connection, serve: Callable[[Connection], None]
) -> None:
    """
    Ask the client's identd, then C{serve} the connection: at once (the
    answer is logged when it comes; xinetd makes every client wait for it),
    or with IDONLY only once identd has named a user.  The success banner
    is sent just before serving.
    """
    local, remote = connection.localAddress(), connection.remote
    success = parts.admission.banners.success
    if local is None or remote is None:
        connection.send(success)
        serve(connection)
        return
    from xinetd_twisted.protocols.ident import queryIdent

    context = parts.context
    d = queryIdent(
        context.reactor,
        local,
        remote,
        timeout=context.identTimeout,
        identPort=context.identPort,
    )
    peer = connection.peer
    if "IDONLY" not in parts.service.flags:
        d.addCallback(lambda result: parts.log.identified(result, peer))
        connection.send(success)
        serve(connection)
        return
    held = connection.hold()
    policy = parts.admission.policy
    # Waiting for identd holds the client: count it meanwhile.
    policy.started(peer)

    def answered(result: Any) -> None:
        try:
            policy.ended(peer)
            parts.log.identified(result, peer)
            if result.userid is None:
                held.close()
                return
            held.send(success)
            serve(held)
        finally:
            held.release()

    d.addCallback(answered)
