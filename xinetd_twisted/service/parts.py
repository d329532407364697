# -*- test-case-name: tests.test_service_parts -*-
"""
The parts of one service, composed: its log, its admission and its
children.  The kinds serve connections through these parts and nothing
else.

An idle service needs none of them to listen: each is built the first
time something asks for it (its first connection, a signal to its
children, a test) and is a plain instance attribute from then on
(L{BuiltOnRead}).  What only reads a part (the dump, the counters) asks
L{ServiceParts.built} first and reads zero when it is not.
"""

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generic,
    Optional,
    Protocol,
    TypeVar,
    overload,
)

from twisted.logger import Logger

from xinetd_twisted.config.builtins import builtinFor
from xinetd_twisted.config.model import FileLog, ServiceConfig
from xinetd_twisted.logs.service import ServiceLog
from xinetd_twisted.service.context import DaemonContext

if TYPE_CHECKING:
    from xinetd_twisted.policy.access import ServicePolicy
    from xinetd_twisted.service.admission import Admission
    from xinetd_twisted.service.children import Children
    from xinetd_twisted.service.front import ServiceFront


class Deactivating(Protocol):
    """
    What owns the parts: the runtime, which closes its socket for a while
    when cps trips.
    """

    def deactivateFor(self, until: float) -> None:
        """
        Close the socket until clock time C{until}, then bind it again.
        """


Owner = TypeVar("Owner")
Built = TypeVar("Built")


class BuiltOnRead(Generic[Owner, Built]):
    """
    An attribute built by C{build(instance)} on its first read and stored
    on the instance: later reads find it there and never reach this
    descriptor (it has no C{__set__}), so they cost what any attribute
    read costs.  (A C{__getattr__} would do the same job but slows every
    attribute read of the class, a few tens of nanoseconds each on the
    connection path.)  Assigning the attribute stores it as well.
    """

    __slots__ = ("_build", "_name")

    def __init__(self, build: Callable[[Owner], Built]) -> None:
        self._build = build
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(
        self, instance: None, owner: Any = None
    ) -> BuiltOnRead[Owner, Built]: ...

    @overload
    def __get__(self, instance: Owner, owner: Any = None) -> Built: ...

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        built = self._build(instance)
        setattr(instance, self._name, built)
        return built


def isBuilt(instance: object, name: str) -> bool:
    """
    Whether the L{BuiltOnRead} attribute C{name} of C{instance} has been
    built (or assigned), without building it.
    """
    return name in vars(instance)


def countsInstances(service: ServiceConfig) -> bool:
    """
    Whether the servers of C{service} count towards C{instances},
    C{per_source} and the process limit: programs and redirects do, and
    the internal services xinetd forks for.
    """
    if not service.isInternal:
        return True
    builtin = builtinFor(service.name, service.socketType)
    return builtin is not None and builtin.forks


def _opensFile(service: ServiceConfig) -> bool:
    """
    Whether the service logs to a file: that file is opened when the
    configuration is (re)loaded, as xinetd opens it, not on first use.
    """
    return isinstance(service.logType, FileLog)


def _hasBanners(service: ServiceConfig) -> bool:
    """
    Whether the service names banner files: the admission reads them (and
    warns about those it cannot send) when the configuration is loaded.
    """
    return bool(service.banner or service.bannerSuccess or service.bannerFail)


def _hasFront(service: ServiceConfig) -> bool:
    """
    Whether something stands in front of the service's socket (TLS, whose
    files are read, and checked, when the configuration is loaded; trusted
    proxies).
    """
    return service.tlsCertificate is not None or service.proxyProtocol is not None


class ServiceParts:
    """
    One service's log, admission and children, and the configuration they
    serve (swapped in place on reload).

    Each of L{log}, L{admission}, L{children} and L{front} is built on its
    first read (L{BuiltOnRead}), except what must act when the
    configuration is loaded: the log of a FILE service opens its file, the
    admission of a service with banners reads them, the front of a TLS
    service reads its files.

    @ivar log: its L{ServiceLog}.
    @ivar admission: its L{Admission}.
    @ivar children: its L{Children}.
    @ivar front: its TLS and trusted proxies (L{ServiceFront}).
    @ivar active: whether the service's socket is open and served.
    """

    daemonLog = Logger(namespace="xinetd_twisted.service")

    def __init__(
        self,
        context: DaemonContext,
        service: ServiceConfig,
        owner: Deactivating,
    ) -> None:
        """
        @param owner: the runtime, whose socket the admission closes for a
            while (cps).  (The owner, not its bound method: that would be
            one more object for each service.)
        """
        self.context = context
        self.service = service
        self._owner = owner
        self._serving = True
        self.active = False
        if _opensFile(service):
            self.log = self._buildLog()
        if _hasBanners(service):
            self.admission = self._buildAdmission()
        if _hasFront(service):
            self.front = self._buildFront()

    def built(self, name: str) -> bool:
        """
        Whether part C{name} (C{"log"}, C{"admission"}, C{"children"},
        C{"front"}) has been built, without building it.
        """
        return isBuilt(self, name)

    def _buildLog(self) -> ServiceLog:
        service = self.service
        return ServiceLog.fromConfig(service, self.context.sinks.sinkFor(service))

    def _buildAdmission(self) -> Admission:
        from xinetd_twisted.service.admission import Admission

        return Admission(
            self.context, self.service, self.log, self._owner.deactivateFor
        )

    def _buildChildren(self) -> Children:
        from xinetd_twisted.service.children import Children

        children = Children(
            self.context,
            self.service,
            policy=self._policy,
            log=self._log,
            recheck=self._recheck,
            countsInstances=countsInstances(self.service),
        )
        children.active = self._serving
        return children

    def _buildFront(self) -> ServiceFront:
        from xinetd_twisted.service.front import ServiceFront

        return ServiceFront(self.service)

    log = BuiltOnRead(_buildLog)
    admission = BuiltOnRead(_buildAdmission)
    children = BuiltOnRead(_buildChildren)
    front = BuiltOnRead(_buildFront)

    # Bound methods rather than lambdas: a service's children keep two
    # closures and their cells less each.

    def _policy(self) -> ServicePolicy:
        return self.admission.policy

    def _log(self) -> ServiceLog:
        return self.log

    def _recheck(self, peer: Optional[str]) -> bool:
        return self.admission.recheckAccess(peer)

    def setServing(self, serving: bool) -> None:
        """
        Whether the service is in force (bound, not stopped or removed): a
        spawn that failed is retried only then.
        """
        if serving is self._serving:
            # Every bind at start-up: nothing changes, nothing is looked at.
            return
        self._serving = serving
        if self.built("children"):
            self.children.active = serving

    def reconfigure(self, service: ServiceConfig) -> None:
        """
        Take a reloaded configuration, keeping counts and children; a part
        not built yet will be built from it.
        """
        self.service = service
        if self.built("log"):
            if self.log.sink is not None:
                self.log.sink.reopen()
            self.log = self._buildLog()
        elif _opensFile(service):
            self.log = self._buildLog()
        if self.built("admission"):
            self.admission.reconfigure(service, self.log)
        elif _hasBanners(service):
            self.admission = self._buildAdmission()
        if self.built("children"):
            self.children.reconfigure(service)
        if self.built("front"):
            self.front.reconfigure(service)
        elif _hasFront(service):
            self.front = self._buildFront()

    def seconds(self) -> float:
        """
        The daemon's clock.
        """
        return self.context.policy.seconds()
