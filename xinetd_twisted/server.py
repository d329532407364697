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
from typing import Callable, Dict, List, Optional

from twisted.application.service import Service
from twisted.logger import Logger

from xinetd_twisted.config.model import Config, ConfigError, Problem, Severity
from xinetd_twisted.runtime import DaemonContext, ServiceRuntime
from xinetd_twisted.spawn.interfaces import ISpawner

ConfigLoader = Callable[[str], Config]


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


def makeSpawner(kind: str = "helper", reactor: Optional[object] = None) -> ISpawner:
    """
    The spawner named by C{kind}: C{"helper"} (the fast, faithful fork
    server) or C{"plain"} (C{reactor.spawnProcess}, lenient about what it
    cannot apply).
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if kind == "helper":
        from xinetd_twisted.spawn.helperclient import HelperSpawner

        return HelperSpawner(reactor=reactor)
    if kind == "plain":
        from xinetd_twisted.spawn.plain import ReactorSpawner

        return ReactorSpawner(reactor, lenient=True)
    raise ValueError(f"unknown spawner {kind!r}")


def superServerFromPath(
    configPath: str,
    reactor: Optional[object] = None,
    spawner: Optional[ISpawner] = None,
    loader: Optional[ConfigLoader] = None,
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
    return SuperServer(config, configPath, loader, spawner, reactor=reactor)


class SuperServer(Service):
    """
    xinetd: listens for every configured service and serves each connection.

    @ivar configPath: the main configuration file (re-read on SIGHUP).
    @ivar config: the configuration in force.
    @ivar runtimes: active services by id.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        configPath: str,
        loader: ConfigLoader,
        spawner: ISpawner,
        reactor: Optional[object] = None,
        environ: Optional[Dict[str, str]] = None,
        umask: Optional[int] = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        self.configPath = configPath
        self.config = config
        self._loader = loader
        self._context = DaemonContext(
            reactor=reactor,
            spawner=spawner,
            environ=dict(os.environ if environ is None else environ),
            umask=currentUmask() if umask is None else umask,
            isRoot=os.geteuid() == 0,
            nofileHardLimit=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        )
        self.runtimes: Dict[str, ServiceRuntime] = {}
        self._previousHandlers: Dict[int, object] = {}
        self._activated = False

    @property
    def spawner(self) -> ISpawner:
        return self._context.spawner

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
        for service in self.config.services:
            self._startRuntime(service)
        self.log.info(
            "Started working: {count} available service(s)", count=len(self.runtimes)
        )

    def startService(self) -> None:
        """
        Serve (binding now if twistd's privileged start did not run, as with
        C{twist}), and listen for SIGHUP.
        """
        self._activate()
        super().startService()
        for signum in (signal.SIGHUP, signal.SIGUSR2):
            self._previousHandlers[signum] = signal.signal(signum, self._onReloadSignal)

    def stopService(self) -> object:
        """
        Close every socket and stop the spawner; running servers are left
        alone, as xinetd leaves them.
        """
        super().stopService()
        for signum, handler in self._previousHandlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previousHandlers.clear()
        for runtime in list(self.runtimes.values()):
            runtime.deactivate()
        self.runtimes.clear()
        self._activated = False
        return self._context.spawner.stop()

    def _startRuntime(self, service: object) -> Optional[ServiceRuntime]:
        runtime = ServiceRuntime(self._context, service)  # type: ignore[arg-type]
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

    def _onReloadSignal(self, signum: int, frame: object) -> None:
        # Runs between two bytecodes, possibly inside reactor code: only
        # schedule the work.
        self._reactor.callFromThread(self.reload)  # type: ignore[attr-defined]

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
        old = dict(self.runtimes)
        kept: List[str] = []
        new = dropped = 0
        for service in config.services:
            key = service.serviceId.lower()
            runtime = old.pop(key, None)
            if runtime is not None and _sameSocket(runtime, service):
                runtime.update(service)
                kept.append(key)
                self.log.info("readjusting service {service}", service=service.serviceId)
                continue
            if runtime is not None:
                runtime.deactivate()
                del self.runtimes[key]
                dropped += 1
            if self._startRuntime(service) is not None:
                new += 1
        for key, runtime in old.items():
            runtime.deactivate()
            del self.runtimes[key]
            dropped += 1
            self.log.info("service {service} deactivated", service=runtime.serviceId)
        self.config = config
        self.log.info(
            "Reconfigured: new={new} old={old} dropped={dropped} (services)",
            new=new,
            old=len(kept),
            dropped=dropped,
        )
        return config


def _sameSocket(runtime: ServiceRuntime, service: object) -> bool:
    from xinetd_twisted.listen.sockets import SocketSpec

    current = runtime.service
    try:
        wanted = SocketSpec.forService(service)  # type: ignore[arg-type]
    except ValueError:
        return False
    return (
        runtime.spec is not None
        and (runtime.spec.address, runtime.spec.port, runtime.spec.protocol)
        == (wanted.address, wanted.port, wanted.protocol)
        and runtime.spec.socketType == wanted.socketType
        and current.wait == service.wait  # type: ignore[attr-defined]
        and current.types == service.types  # type: ignore[attr-defined]
    )
