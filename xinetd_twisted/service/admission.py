# -*- test-case-name: tests.test_integration_access -*-
"""
Admission: everything decided about a connection before it reaches its
server, in the parent, so that a refused client costs no process.

Banner, the limits (cps, load, access_times, instances, per_source, the
process limit), then access control (SENSOR, only_from/no_access, libwrap)
with the client's name looked up without blocking when a rule needs it; on
refusal the FAIL line, banner_fail, ident for log_on_failure USERID and a
cps pause.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from twisted.logger import Logger

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.logs.service import ServiceLog
from xinetd_twisted.policy.access import Refusal, ServicePolicy
from xinetd_twisted.policy.sensor import SensorOutcome
from xinetd_twisted.protocols.ident import queryIdent
from xinetd_twisted.service.banners import Banners
from xinetd_twisted.service.connection import Connection, peerLabel
from xinetd_twisted.service.context import DaemonContext

Proceed = Callable[[Connection], None]
"""
Serves an admitted connection.  A held connection (after a lookup) is
released by admission when this returns.
"""


class Admission:
    """
    The admission of one service's connections.

    @ivar policy: access control and limits (state kept across reloads).
    @ivar banners: the service's banners.
    @ivar connections: connections and datagrams seen.
    @ivar refused: those refused.
    @ivar plain: no banner to send and nothing to check but what
        L{ServicePolicy.checkPlain} checks, no USERID on success: a kind
        may use L{admitPlain} (decided anew on every reload).
    """

    __slots__ = (
        "_context",
        "_service",
        "_log",
        "_deactivateFor",
        "policy",
        "banners",
        "connections",
        "refused",
        "plain",
    )

    daemonLog = Logger(namespace="xinetd_twisted.service")

    def __init__(
        self,
        context: DaemonContext,
        service: ServiceConfig,
        log: ServiceLog,
        deactivateFor: Callable[[float], None],
    ) -> None:
        """
        @param deactivateFor: closes the service's socket until the given
            clock time (cps).
        """
        self._context = context
        self._service = service
        self._log = log
        self._deactivateFor = deactivateFor
        self.policy = ServicePolicy(service, context.policy)
        self.banners = Banners.forService(service)
        self.connections = 0
        self.refused = 0
        self.plain = self._isPlain()

    def reconfigure(self, service: ServiceConfig, log: ServiceLog) -> None:
        """
        Take a reloaded configuration, keeping counts and the cps window.
        """
        self._service = service
        self._log = log
        self.policy = self.policy.reconfigured(service, self._context.policy)
        self.banners = Banners.forService(service)
        self.plain = self._isPlain()

    def _isPlain(self) -> bool:
        banners = self.banners
        return (
            self.policy.plain
            and not banners.connect
            and not banners.success
            and "USERID" not in self._service.logOnSuccess
        )

    def admitPlain(self, peer: Optional[str]) -> Optional[Refusal]:
        """
        L{admit} for a L{plain} admission, without a L{Connection}: count
        the connection and return why it is refused (for
        L{refuseConnection}), or L{None} to serve it now.
        """
        self.connections += 1
        return self.policy.checkPlain(peer)

    def admit(self, connection: Connection, proceed: Proceed) -> None:
        """
        Banner, limits and access control for a stream connection; calls
        C{proceed} once admitted (now, or when the client's name is known).
        """
        self.connections += 1
        connection.send(self.banners.connect)
        peer = connection.peer
        policy = self.policy
        if policy.plain:
            # Nothing to look up, and only what checkPlain checks can refuse.
            refusal = policy.checkPlain(peer)
        else:
            refusal = policy.checkLimits(peer)
            if refusal is None:
                name: Optional[str] = None
                names = self._context.names
                if names is not None and peer is not None and policy.needsName(peer):
                    known, name = names.cached(peer)
                    if not known:
                        held = connection.hold()
                        d = names.lookup(peer)
                        d.addCallback(self._named, held, proceed)
                        return
                refusal = policy.checkAccess(peer, name)
        if refusal is None:
            proceed(connection)
        else:
            self.refuseConnection(connection, refusal)

    def _named(self, name: Optional[str], held: Connection, proceed: Proceed) -> None:
        try:
            refusal = self.policy.checkAccess(held.peer, name)
            if refusal is None:
                proceed(held)
            else:
                self.refuseConnection(held, refusal)
        except Exception:
            self.daemonLog.failure(
                "service {service}: admitting", service=self._service.serviceId
            )
        finally:
            held.release()

    def check(self, peer: Optional[str], countRate: bool = True) -> Optional[Refusal]:
        """
        Every check at once, for what cannot wait for a name (datagrams,
        wait mode, spawn retries): a name not yet known counts as unknown
        and is looked up for next time.

        @param countRate: apply cps (see L{ServicePolicy.check}).
        """
        return self.policy.check(peer, self.cachedName(peer), countRate)

    def recheckAccess(self, peer: Optional[str]) -> bool:
        """
        The access checks again (before a spawn retry, as xinetd does);
        a refusal is logged.
        """
        refusal = self.policy.checkAccess(peer, self.cachedName(peer))
        if refusal is None:
            return True
        self.refuse(refusal, peer)
        return False

    def cachedName(self, peer: Optional[str]) -> Optional[str]:
        """
        The client's name if already known; otherwise start a lookup for
        next time and treat it as unknown now.
        """
        names = self._context.names
        if names is None or peer is None or not self.policy.needsName(peer):
            return None
        known, name = names.cached(peer)
        if not known:
            names.lookup(peer)
        return name

    def refuseConnection(self, connection: Connection, refusal: Refusal) -> None:
        """
        Refuse a stream connection: log, banner_fail, ident for
        C{log_on_failure = USERID}, close a transport.
        """
        self.refuse(
            refusal, connection.peer, peerLabel(connection.peer, connection.environment)
        )
        connection.send(self.banners.fail)
        if "USERID" in self._service.logOnFailure:
            self._identAfterFailure(connection)
        connection.close()

    def refuse(
        self, refusal: Refusal, peer: Optional[str], shown: Optional[str] = None
    ) -> None:
        """
        Count and log a refusal, and act on what it says (cps pause,
        SENSOR addition).

        @param shown: what the FAIL line writes for the client, when not
            C{peer} (C{uid:N} for a UNIX-domain client).
        """
        self.refused += 1
        self._context.hooks.refused(self._service.serviceId, refusal.reason)
        if refusal.daemonMessage:
            self.daemonLog.error("{message}", message=refusal.message)
        self._log.fail(refusal.reason, peer if shown is None else shown)
        if refusal.deactivated and refusal.deactivateUntil is not None:
            self.daemonLog.error("{message}", message=refusal.message)
            self._deactivateFor(refusal.deactivateUntil)
        if refusal.sensor is SensorOutcome.ADDED:
            self.daemonLog.critical(
                "{pid} {{process_sensor}} Adding {peer} to the global_no_access "
                "list for {minutes} minutes",
                pid=os.getpid(),
                peer=peer,
                minutes=self._service.denyTime,
            )

    def deactivationPending(self, refusal: Refusal) -> None:
        """
        A refusal not logged (rate-limited datagram logging) may still
        pause the service.
        """
        if refusal.deactivated and refusal.deactivateUntil is not None:
            self._deactivateFor(refusal.deactivateUntil)

    def _identAfterFailure(self, connection: Connection) -> None:
        """
        Ask the refused client's identd and log the answer, at most
        L{IdentLimiter.limit} at a time daemon-wide.
        """
        local, remote = connection.localAddress(), connection.remote
        if local is None or remote is None:
            return
        limiter = self._context.identLimiter
        if not limiter.acquire():
            return
        log, peer = self._log, connection.peer

        def done(result: Any) -> None:
            limiter.release()
            log.identified(result, peer)

        queryIdent(
            self._context.reactor,
            local,
            remote,
            timeout=self._context.identTimeout,
            identPort=self._context.identPort,
        ).addCallback(done)
