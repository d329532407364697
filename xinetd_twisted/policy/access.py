# -*- test-case-name: tests.test_policy_access -*-
"""
One service's access decision, composed in xinetd's order (reference 4.4).

L{ServicePolicy.checkLimits} runs the parent's "light" checks (cps,
max_load, access_times, instances, per_source, process limit);
L{ServicePolicy.checkAccess} runs what xinetd does in the child (SENSOR
list, only_from/no_access, libwrap), which we do in the parent before
anything is started.  L{ServicePolicy.check} runs both.  A refusal is a
L{Refusal} carrying xinetd's exact FAIL reason.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import attr
from twisted.internet.interfaces import IReactorTime

from xinetd_twisted.config.model import ServiceConfig
from xinetd_twisted.policy.addresses import AddressList, Peer
from xinetd_twisted.policy.cps import CPS, ConnectionRate
from xinetd_twisted.policy.libwrap import LIBWRAP, libwrapName
from xinetd_twisted.policy.limits import PROCESS_LIMIT, ProcessLimit, ServiceLimits
from xinetd_twisted.policy.loadavg import LOAD, LoadAverage, overloaded
from xinetd_twisted.policy.sensor import SensorList, SensorOutcome

if TYPE_CHECKING:
    from xinetd_twisted.policy.hostsaccess import DaemonAccess, HostsAccess
    from xinetd_twisted.policy.sourcerate import SourceRate
    from xinetd_twisted.policy.times import AccessTimes

ADDRESS = "address"
TIME = "time"
FORK = "fork"


@attr.s(frozen=True, auto_attribs=True, slots=True)
class Refusal:
    """
    Why a connection is refused.

    @ivar reason: xinetd's FAIL reason, exactly (C{address}, C{time},
        C{service_limit}, C{per_source_limit}, C{process_limit},
        C{libwrap}, C{load}, C{connections per second}).
    @ivar message: a human-readable sentence; for C{load}, C{libwrap}, a
        double address match and a fresh cps deactivation it is the text of
        xinetd's own log line.
    @ivar deactivateUntil: for cps, the clock time until which the
        listening socket stays closed.
    @ivar deactivated: for cps, this very connection deactivated the
        service (log "Deactivating ..." and close the socket now).
    @ivar sensor: for a SENSOR service, what happened to the blocklist.
    @ivar daemonMessage: xinetd also writes C{message} to its own log (load,
        libwrap, a double address match).
    """

    reason: str
    message: str
    deactivateUntil: Optional[float] = None
    deactivated: bool = False
    sensor: Optional[SensorOutcome] = None
    daemonMessage: bool = False


@attr.s(auto_attribs=True)
class PolicyContext:
    """
    What every service's policy shares; one per daemon, kept across reloads.

    @ivar seconds: the clock (C{reactor.seconds} or C{Clock().seconds}).
    @ivar localtime: seconds -> local time (C{tm_hour}, C{tm_min}).
    @ivar loadAverage: the 1-minute load average (a L{LoadAverage}).
    @ivar sensorList: the global SENSOR blocklist.
    @ivar processLimit: the daemon-wide C{-limit}.
    @ivar hostsAccess: parsed hosts.allow/deny, or L{None} for no libwrap
        checks at all.
    """

    seconds: Callable[[], float]
    localtime: Callable[[float], Any] = time.localtime
    loadAverage: Optional[Callable[[], float]] = None
    sensorList: Optional[SensorList] = None
    processLimit: ProcessLimit = attr.Factory(ProcessLimit)
    hostsAccess: Optional[HostsAccess] = None

    @classmethod
    def forReactor(cls, reactor: Any, **kwargs: Any) -> PolicyContext:
        """
        A context whose clock is C{reactor} (any L{IReactorTime} provider,
        such as the reactor or a L{twisted.internet.task.Clock}).
        """
        clock: Any = IReactorTime(reactor)
        return cls(seconds=clock.seconds, **kwargs)

    def __attrs_post_init__(self) -> None:
        if self.loadAverage is None:
            self.loadAverage = LoadAverage(self.seconds)
        if self.sensorList is None:
            self.sensorList = SensorList(self.seconds)


class ServicePolicy:
    """
    The access policy of one service.

    @ivar config: the service.
    @ivar limits: running-server counts (kept across reloads).
    @ivar rate: cps state (kept across reloads).
    @ivar sourceRate: C{per_source_cps} state (kept across reloads), or
        L{None} when the service has no such limit.
    @ivar libwrapName: the daemon name for hosts.allow/deny, or L{None}.
    @ivar plain: the service sets none of max_load, access_times,
        per_source_cps, instances, per_source, only_from, no_access, SENSOR
        nor a libwrap rule: L{checkPlain} decides for it (decided anew for
        every configuration, as a reload makes a new policy).
    """

    __slots__ = (
        "config",
        "_context",
        "_seconds",
        "_processLimit",
        "_sensorList",
        "_loadAverage",
        "limits",
        "rate",
        "sourceRate",
        "_addresses",
        "_times",
        "_isSensor",
        "libwrapName",
        "_wrap",
        "_lastHost",
        "_lastPeer",
        "plain",
    )

    def __init__(
        self,
        config: ServiceConfig,
        context: PolicyContext,
        limits: Optional[ServiceLimits] = None,
        rate: Optional[ConnectionRate] = None,
        sourceRate: Optional[SourceRate] = None,
    ) -> None:
        self.config = config
        self._context = context
        self._seconds = context.seconds
        self._processLimit = context.processLimit
        assert context.sensorList is not None and context.loadAverage is not None
        self._sensorList: SensorList = context.sensorList
        self._loadAverage: Callable[[], float] = context.loadAverage
        self.limits = _limits(config, limits)
        self.rate = _rate(config, context, rate)
        self.sourceRate = _sourceRate(config, context, sourceRate)
        self._addresses = AddressList(config.onlyFrom, config.noAccess)
        self._times = _accessTimes(config)
        self._isSensor = "SENSOR" in config.flags
        self.libwrapName = libwrapName(config)
        self._wrap = _daemonAccess(context, self.libwrapName)
        self._lastHost: Optional[str] = None
        self._lastPeer: Optional[Peer] = None
        self.plain = _plain(config, self._addresses, self._isSensor, self._wrap)

    def reconfigured(
        self, config: ServiceConfig, context: PolicyContext
    ) -> ServicePolicy:
        """
        The policy for a reloaded C{config}, keeping running counts and the
        cps window (and any cps pause) of this one.
        """
        return ServicePolicy(config, context, self.limits, self.rate, self.sourceRate)

    def _peer(self, host: Optional[str]) -> Optional[Peer]:
        # needsName then check parse the same host: keep one parse.
        if host is None:
            return None
        if host != self._lastHost:
            self._lastPeer = Peer.fromHost(host)
            self._lastHost = host
        return self._lastPeer

    def _key(self, host: Optional[str]) -> Optional[str]:
        # per_source keys: normalised numeric addresses; anything else
        # ("<no address>") is an unknown address.
        peer = self._peer(host)
        return None if peer is None else peer.key

    def needsName(self, peerHost: Optional[str]) -> bool:
        """
        Whether the client's reverse-lookup name could change the decision,
        so the caller looks it up (asynchronously, with a timeout) only then.
        """
        if self._isSensor:
            return False
        peer = self._peer(peerHost)
        if self._wrap is not None and self._wrap.needsName:
            return True
        if peer is None or self._addresses.isOpen:
            return False
        return self._addresses.needsName(peer)

    def check(
        self,
        peerHost: Optional[str],
        peerName: Optional[str] = None,
        countRate: bool = True,
    ) -> Optional[Refusal]:
        """
        All checks in xinetd's order; L{None} means go ahead.  C{peerHost}
        is the numeric client address (L{None} when unknown: address checks
        then pass, as in xinetd); C{peerName} its reverse-lookup name.

        @param countRate: apply cps (datagrams answered in-process are not
            counted: they cost no process, and their budgets bound them).
        """
        refusal = self.checkLimits(peerHost, countRate)
        if refusal is not None:
            return refusal
        return self.checkAccess(peerHost, peerName)

    def checkLimits(
        self, peerHost: Optional[str], countRate: bool = True
    ) -> Optional[Refusal]:
        """
        The parent's checks: cps, max_load, access_times, instances,
        per_source, process limit.
        """
        config = self.config
        until = self.rate.check() if countRate else None
        if until is not None:
            return _cpsRefusal(self.rate, self.config, until)
        if config.maxLoad and overloaded(config.maxLoad, self._loadAverage):
            return Refusal(
                LOAD,
                f"refused connect from {peerHost} due to excessive load",
                daemonMessage=True,
            )
        if self._times is not None and not self._times.allowedAt(
            self._context.localtime(self._seconds())
        ):
            return Refusal(
                TIME, f"service {config.serviceId} is outside its access_times"
            )
        if self.sourceRate is not None:
            refusal = _checkSourceRate(self.sourceRate, config, self._key(peerHost))
            if refusal is not None:
                return refusal
        reason = self.limits.check(self._key(peerHost))
        if reason is not None:
            return Refusal(
                reason,
                f"service {config.serviceId}: {reason.replace('_', ' ')} reached",
            )
        reason = self._processLimit.check()
        if reason is not None:
            return Refusal(reason, "process limit reached")
        return None

    @property
    def delegable(self) -> bool:
        """
        Whether no connection needs this policy at all: it is L{plain},
        cps is off, there is no process limit and the SENSOR list is empty
        (while so, a sub-helper may accept the service's connections, see
        L{xinetd_twisted.spawn.delegation}).
        """
        return (
            self.plain
            and not self.rate.maximum
            and self._processLimit.limit is None
            and not self._sensorList
        )

    def checkPlain(self, peerHost: Optional[str]) -> Optional[Refusal]:
        """
        L{check} for a L{plain} policy (the caller makes sure it is): only
        cps, the process limit and the global SENSOR list can refuse.
        """
        until = self.rate.check()
        if until is not None:
            return _cpsRefusal(self.rate, self.config, until)
        if self._processLimit.check() is not None:
            return Refusal(PROCESS_LIMIT, "process limit reached")
        if self._sensorList:
            return self.checkAccess(peerHost, None)
        return None

    def checkAccess(
        self, peerHost: Optional[str], peerName: Optional[str] = None
    ) -> Optional[Refusal]:
        """
        What xinetd checks in the child: the SENSOR list (or, for a SENSOR
        service, record the client and refuse), only_from/no_access, then
        hosts.allow/deny.  A client refused here is taken back out of the
        cps count (unlike xinetd, where a flood of refused clients closes
        the service to everyone).
        """
        refusal = self._checkAccess(peerHost, peerName)
        if refusal is not None:
            self.rate.uncount()
        return refusal

    def _checkAccess(
        self, peerHost: Optional[str], peerName: Optional[str]
    ) -> Optional[Refusal]:
        config = self.config
        peer = self._peer(peerHost)
        if peer is not None:
            if self._isSensor:
                outcome = self._sensorList.add(peer.key, config.denyTime)
                return Refusal(
                    ADDRESS, f"{peerHost} hit sensor {config.serviceId}", sensor=outcome
                )
            if self._sensorList.isDenied(peer.key):
                return Refusal(ADDRESS, f"{peerHost} is on the global_no_access list")
            if not self._addresses.isOpen:
                decision = self._addresses.decide(peer, peerName)
                if not decision.allowed:
                    if decision.bothMatched:
                        message = (
                            f"Service={config.serviceId}: only_from list and no_access "
                            f"list match equally the address {peerHost}"
                        )
                    else:
                        message = f"{peerHost} is not allowed by only_from/no_access"
                    return Refusal(ADDRESS, message, daemonMessage=decision.bothMatched)
        elif self._isSensor:
            return Refusal(ADDRESS, f"unknown address hit sensor {config.serviceId}")
        if self._wrap is not None and not self._wrap.allowed(peer, peerName):
            return Refusal(
                LIBWRAP,
                f"libwrap refused connection to {config.serviceId} "
                f"(libwrap={self.libwrapName}) from {peerHost}",
                daemonMessage=True,
            )
        return None

    def started(self, peerHost: Optional[str]) -> None:
        """
        A server was started for C{peerHost}: count it for instances,
        per_source and the process limit.
        """
        self.limits.started(self._key(peerHost))
        self._processLimit.started()

    def ended(self, peerHost: Optional[str]) -> None:
        """
        A server started for C{peerHost} ended.
        """
        self.limits.ended(self._key(peerHost))
        self._processLimit.ended()


# Building a policy's state from its configuration: run when a policy is
# made (start-up, reload), never for a connection.


def _limits(config: ServiceConfig, current: Optional[ServiceLimits]) -> ServiceLimits:
    """
    The running-server counts for C{config}: C{current} (the counts of
    the policy before a reload) with its limits set anew, or new counts.
    """
    if current is None:
        return ServiceLimits(config.instances, config.perSource)
    current.setLimits(config.instances, config.perSource)
    return current


def _rate(
    config: ServiceConfig, context: PolicyContext, current: Optional[ConnectionRate]
) -> ConnectionRate:
    """
    The cps state for C{config}: C{current} (kept across a reload, with
    any pause it is in) with its limits set anew, or a new one.
    """
    maximum, wait = config.cps
    if current is None:
        return ConnectionRate(maximum, wait, context.seconds)
    current.setLimits(maximum, wait)
    return current


def _daemonAccess(
    context: PolicyContext, name: Optional[str]
) -> Optional[DaemonAccess]:
    """
    The hosts.allow/deny rules for daemon C{name}, or L{None} when there
    is no libwrap check for it (no name, no hosts files, or no rule).
    """
    if context.hostsAccess is None or name is None:
        return None
    wrap = context.hostsAccess.forDaemon(name)
    return wrap if wrap else None


def _plain(
    config: ServiceConfig,
    addresses: AddressList,
    isSensor: bool,
    wrap: Optional[DaemonAccess],
) -> bool:
    """
    Whether a policy is L{ServicePolicy.plain}: none of the parent's
    checks but cps and the process limit applies, the addresses are open,
    and neither SENSOR nor a libwrap rule concerns the service.
    """
    return (
        not config.maxLoad
        and config.accessTimes is None
        and config.perSourceCps is None
        and config.instances is None
        and config.perSource is None
        and addresses.isOpen
        and not isSensor
        and wrap is None
    )


def _accessTimes(config: ServiceConfig) -> Optional[AccessTimes]:
    # Imported only for a service with access_times, as per_source_cps's.
    if config.accessTimes is None:
        return None
    from xinetd_twisted.policy.times import AccessTimes

    return AccessTimes(config.accessTimes)


def _sourceRate(
    config: ServiceConfig, context: PolicyContext, current: Optional[SourceRate]
) -> Optional[SourceRate]:
    # per_source_cps (our extension): kept across reloads like cps.
    if config.perSourceCps is None:
        return None
    rate, wait = config.perSourceCps
    if current is None:
        from xinetd_twisted.policy.sourcerate import SourceRate

        return SourceRate(rate, wait, context.seconds)
    current.setLimits(rate, wait)
    return current


# Refusals a connection may draw (L{ServicePolicy}'s checks make them).


def _cpsRefusal(rate: ConnectionRate, config: ServiceConfig, until: float) -> Refusal:
    if rate.justDeactivated:
        message = (
            f"Deactivating service {config.name} due to excessive incoming "
            f"connections.  Restarting in {rate.wait} seconds."
        )
    else:
        message = f"service {config.serviceId} is deactivated by cps"
    return Refusal(CPS, message, until, rate.justDeactivated)


def _checkSourceRate(
    sourceRate: SourceRate, config: ServiceConfig, key: Optional[str]
) -> Optional[Refusal]:
    from xinetd_twisted.policy.sourcerate import PER_SOURCE_CPS

    if key is None:
        return None
    until = sourceRate.check(key)
    if until is None:
        return None
    if sourceRate.justBlocked:
        return Refusal(
            PER_SOURCE_CPS,
            f"service {config.serviceId}: more than {sourceRate.rate} connections "
            f"a second from {key}: refusing it for {sourceRate.wait} seconds",
            daemonMessage=True,
        )
    return Refusal(
        PER_SOURCE_CPS,
        f"service {config.serviceId}: {key} is refused by per_source_cps",
    )
