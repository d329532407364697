# -*- test-case-name: tests.test_server -*-
"""
The super-server: one L{ServiceRuntime} per configured service, started,
reloaded and stopped together.

This is the only module that knows every part: configuration, sockets,
spawning, policy and logs meet here.
"""

from __future__ import annotations

import os
import resource
import signal
from typing import Any, Callable, Dict, List, Optional

import attr
from twisted.application.service import Service
from twisted.logger import Logger

from xinetd_twisted.config.model import (
    Config,
    ConfigError,
    Problem,
    ServiceConfig,
    Severity,
)
from xinetd_twisted.inprocess import (
    InternalDatagramRuntime,
    InternalStreamRuntime,
    RedirectRuntime,
    TcpmuxRuntime,
)
from xinetd_twisted.listen.sockets import SocketSpec
from xinetd_twisted.logsinks import SyslogConnection
from xinetd_twisted.policy.access import PolicyContext
from xinetd_twisted.policy.hostsaccess import HostsAccess
from xinetd_twisted.policy.limits import ProcessLimit
from xinetd_twisted.runtime import (
    DaemonContext,
    ServiceRuntime,
    SpawningStreamRuntime,
    WaitRuntime,
)
from xinetd_twisted.spawn.interfaces import ISpawner

ConfigLoader = Callable[[str], Config]


@attr.s(frozen=True, auto_attribs=True)
class DaemonOptions:
    """
    Daemon-wide settings, from the command line (xinetd's options).

    @ivar processLimit: most forked servers running at once (C{-limit}), or
        L{None}.
    @ivar syslogPath: where service SYSLOG lines go.
    @ivar hostsAllow: the libwrap allow file, or L{None} for no libwrap
        checks at all.
    @ivar hostsDeny: the libwrap deny file.
    @ivar reloadSignals: signals that re-read the configuration.
    """

    processLimit: Optional[int] = None
    syslogPath: str = "/dev/log"
    hostsAllow: Optional[str] = "/etc/hosts.allow"
    hostsDeny: str = "/etc/hosts.deny"
    reloadSignals: tuple = (signal.SIGHUP, signal.SIGUSR2)


def currentUmask() -> int:
    """
    The process umask (read by setting and restoring it: there is no getter;
    the daemon is single-threaded, so nothing can observe the change).
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def logProblems(log: Logger, problems: tuple[Problem, ...]) -> None:
    """
    Write configuration problems to the daemon's log at their level.
    """
    for problem in problems:
        emit = log.warn if problem.severity is Severity.WARNING else log.error
        emit("{problem}", problem=str(problem))


def runtimeFor(
    context: DaemonContext, service: ServiceConfig
) -> Optional[ServiceRuntime]:
    """
    The runtime that serves C{service}, by its kind; L{None} for tcpmux
    sub-services, which have no socket of their own.
    """
    if service.isTcpmuxSubservice and not service.isInternal:
        return None
    if service.isInternal:
        if service.name.lower() == "tcpmux" and service.socketType == "stream":
            return TcpmuxRuntime(context, service)
        if service.socketType == "dgram":
            return InternalDatagramRuntime(context, service)
        return InternalStreamRuntime(context, service)
    if service.redirect is not None:
        return RedirectRuntime(context, service)
    if service.wait:
        return WaitRuntime(context, service)
    return SpawningStreamRuntime(context, service)


def makeSpawner(kind: str = "helper", reactor: Optional[Any] = None) -> ISpawner:
    """
    The spawner named by C{kind}: C{"helper"} (the fast, faithful fork
    server) or C{"plain"} (C{reactor.spawnProcess}, lenient about what it
    cannot apply).
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if kind == "helper":
        from xinetd_twisted.spawn.helperspawner import HelperSpawner

        return HelperSpawner(reactor=reactor)
    if kind == "plain":
        from xinetd_twisted.spawn.reactorspawner import ReactorSpawner

        return ReactorSpawner(reactor, lenient=True)
    raise ValueError(f"unknown spawner {kind!r}")


def superServerFromPath(
    configPath: str,
    reactor: Optional[Any] = None,
    spawner: Optional[ISpawner] = None,
    loader: Optional[ConfigLoader] = None,
    options: Optional[DaemonOptions] = None,
) -> SuperServer:
    """
    Build the super-server for a configuration file, for composing into any
    Twisted application::

        from xinetd_twisted.server import superServerFromPath
        superServerFromPath("/etc/xinetd.conf").setServiceParent(application)

    @raise ConfigError: when the configuration cannot be used at all.
    """
    if loader is None:
        from xinetd_twisted.config.load import loadConfig

        loader = loadConfig
    config = loader(configPath)
    if spawner is None:
        spawner = makeSpawner("helper", reactor)
    return SuperServer(
        config, configPath, loader, spawner, reactor=reactor, options=options
    )


class SuperServer(Service):
    """
    xinetd: listens for every configured service and serves each connection.

    @ivar configPath: the main configuration file (re-read on SIGHUP).
    @ivar config: the configuration in force.
    @ivar runtimes: active services by lower-case id.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        configPath: str,
        loader: ConfigLoader,
        spawner: ISpawner,
        reactor: Optional[Any] = None,
        environ: Optional[Dict[str, str]] = None,
        umask: Optional[int] = None,
        options: Optional[DaemonOptions] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor: Any = reactor
        self.configPath = configPath
        self.config = config
        self._loader = loader
        self.options = options if options is not None else DaemonOptions()
        policy = PolicyContext.forReactor(
            reactor,
            processLimit=ProcessLimit(self.options.processLimit),
            hostsAccess=self._readHosts(),
        )
        self._context = DaemonContext(
            reactor=reactor,
            spawner=spawner,
            environ=dict(os.environ if environ is None else environ),
            umask=currentUmask() if umask is None else umask,
            isRoot=os.geteuid() == 0,
            nofileHardLimit=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            policy=policy,
            syslog=SyslogConnection(self.options.syslogPath),
        )
        self.runtimes: Dict[str, ServiceRuntime] = {}
        self._previousHandlers: Dict[int, Any] = {}
        self._activated = False
        self._scrub: Any = None

    @property
    def spawner(self) -> ISpawner:
        return self._context.spawner

    @property
    def context(self) -> DaemonContext:
        return self._context

    def _readHosts(self) -> Optional[HostsAccess]:
        if self.options.hostsAllow is None:
            return None
        hosts = HostsAccess.fromFiles(self.options.hostsAllow, self.options.hostsDeny)
        logProblems(self.log, tuple(hosts.problems))
        return hosts

    # --- start and stop ----------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Start the spawner and bind every socket while still privileged.
        """
        super().privilegedStartService()
        self._activate()

    def _activate(self) -> None:
        if self._activated:
            return
        self._activated = True
        logProblems(self.log, self.config.problems)
        self._context.spawner.start()
        if hasattr(self._context.spawner, "onBackPressure"):
            self._context.spawner.onBackPressure = self._onBackPressure  # type: ignore[attr-defined]
        self._startAll(self.config)
        self._scrub = self._reactor.callLater(60, self._scrubSensor)
        self.log.info(
            "Started working: {count} available service(s)", count=len(self.runtimes)
        )

    def _startAll(self, config: Config) -> None:
        subservices = [s for s in config.services if s.isTcpmuxSubservice]
        for service in config.services:
            self._startRuntime(service, subservices)

    def startService(self) -> None:
        """
        Serve (binding now if twistd's privileged start did not run, as with
        C{twist}), and listen for SIGHUP.
        """
        self._activate()
        super().startService()
        for signum in self.options.reloadSignals:
            self._previousHandlers[signum] = signal.signal(signum, self._onReloadSignal)

    def stopService(self) -> Any:
        """
        Close every socket and stop the spawner; running servers are left
        alone, as xinetd leaves them.
        """
        super().stopService()
        for signum, handler in self._previousHandlers.items():
            signal.signal(signum, handler)
        self._previousHandlers.clear()
        if self._scrub is not None and self._scrub.active():
            self._scrub.cancel()
        self._scrub = None
        for runtime in list(self.runtimes.values()):
            runtime.deactivate()
        self.runtimes.clear()
        for sink in self._context.fileSinks.values():
            sink.close()
        self._context.fileSinks.clear()
        self._context.syslog.disconnect()
        self._activated = False
        return self._context.spawner.stop()

    def _onBackPressure(self, backedUp: bool) -> None:
        """
        The spawner cannot keep up: stop accepting for services that spawn
        until it has caught up, instead of queueing without bound.
        """
        for runtime in self.runtimes.values():
            if runtime._setup is not None:
                if backedUp:
                    runtime.pause()
                else:
                    runtime.resume()

    def _scrubSensor(self) -> None:
        sensor = self._context.policy.sensorList
        if sensor is not None:
            expired = sensor.scrub()
            if expired:
                self.log.info(
                    "At least 1 DENY_TIME has expired, global_no_access list updated"
                )
        self._scrub = self._reactor.callLater(60, self._scrubSensor)

    def _startRuntime(
        self, service: ServiceConfig, subservices: List[ServiceConfig]
    ) -> Optional[ServiceRuntime]:
        runtime = runtimeFor(self._context, service)
        if runtime is None:
            return None
        if isinstance(runtime, TcpmuxRuntime):
            runtime.setSubservices(subservices)
        try:
            runtime.activate()
        except OSError as e:
            self.log.error(
                "bind failed for service {service} ({error}); "
                "Service {service} failed to start and is deactivated.",
                service=runtime.serviceId,
                error=e.strerror or str(e),
            )
            return None
        self.runtimes[runtime.serviceId.lower()] = runtime
        return runtime

    # --- reconfiguration ---------------------------------------------------

    def _onReloadSignal(self, signum: int, frame: Any) -> None:
        # Runs between two bytecodes, possibly inside reactor code: only
        # schedule the work.
        self._reactor.callFromThread(self.reload)

    def reload(self) -> Optional[Config]:
        """
        Re-read the configuration and apply the difference: services whose
        socket is unchanged keep it (and their children) and take the new
        settings in place; others are rebound, dropped or added.  A
        configuration that cannot be loaded leaves everything as it was.

        @return: the new configuration, or L{None} when it was refused.
        """
        self.log.info("Starting reconfiguration")
        try:
            config = self._loader(self.configPath)
        except ConfigError as e:
            logProblems(self.log, e.problems)
            self.log.warn("reconfiguration failed; keeping the running configuration")
            return None
        except OSError as e:
            self.log.warn(
                "reconfiguration failed ({error}); keeping the running configuration",
                error=e,
            )
            return None
        logProblems(self.log, config.problems)
        self._context.policy.hostsAccess = self._readHosts()
        subservices = [s for s in config.services if s.isTcpmuxSubservice]
        old = dict(self.runtimes)
        kept = new = dropped = 0
        for service in config.services:
            key = service.serviceId.lower()
            runtime = old.pop(key, None)
            if runtime is not None and _sameSocket(runtime, service):
                runtime.update(service)
                if isinstance(runtime, TcpmuxRuntime):
                    runtime.setSubservices(subservices)
                kept += 1
                self.log.info(
                    "readjusting service {service}", service=service.serviceId
                )
                continue
            if runtime is not None:
                self._drop(runtime)
                dropped += 1
            if self._startRuntime(service, subservices) is not None:
                new += 1
        for runtime in old.values():
            self._drop(runtime)
            dropped += 1
        self.config = config
        self.log.info(
            "Reconfigured: new={new} old={old} dropped={dropped} (services)",
            new=new,
            old=kept,
            dropped=dropped,
        )
        return config

    def _drop(self, runtime: ServiceRuntime) -> None:
        """
        A service is gone (or changed identity): close its socket and end its
        servers as xinetd does (SIGKILL for programs).
        """
        runtime.deactivate()
        runtime.killChildren(signal.SIGKILL)
        self.runtimes.pop(runtime.serviceId.lower(), None)
        self.log.info("service {service} deactivated", service=runtime.serviceId)


def _sameSocket(runtime: ServiceRuntime, service: ServiceConfig) -> bool:
    """
    Whether a reloaded service is the same service on the same socket
    (xinetd's identity: id, type, wait, protocol, socket type, port) and the
    same bind address and family (which otherwise force a rebind).
    """
    current = runtime.service
    if service.port is None or runtime.requested is None:
        return False
    wanted = SocketSpec.forService(service)
    return (
        wanted
        == attr.evolve(
            runtime.requested, nodelay=wanted.nodelay, keepalive=wanted.keepalive
        )
        and current.wait == service.wait
        and current.isInternal == service.isInternal
        and (current.redirect is None) == (service.redirect is None)
        and current.types == service.types
        and current.name.lower() == service.name.lower()
    )
