# -*- test-case-name: tests.test_daemon_superserver -*-
"""
The super-server: one L{ServiceRuntime} per configured service, started,
reloaded and stopped together.

This is the only module that knows every part: configuration, sockets,
spawning, policy and logs meet here.
"""

from __future__ import annotations

import atexit
import os
import resource
import signal
from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
from twisted.application.service import Service
from twisted.logger import Logger, globalLogPublisher

from xinetd_twisted.config.model import (
    Config,
    ConfigError,
    FileLog,
    Problem,
    ServiceConfig,
    Severity,
)
from xinetd_twisted.listen.sockets import SocketSpec
from xinetd_twisted.logs.daemonsyslog import DaemonSyslogObserver
from xinetd_twisted.logs.sinks import SyslogConnection
from xinetd_twisted.policy.access import PolicyContext
from xinetd_twisted.policy.hostsaccess import HostsAccess
from xinetd_twisted.policy.limits import ProcessLimit
from xinetd_twisted.protocols.names import ReverseResolver
from xinetd_twisted.service.inprocess import (
    InternalDatagramRuntime,
    InternalStreamRuntime,
    RedirectRuntime,
    TcpmuxRuntime,
)
from xinetd_twisted.service.programs import SpawningStreamRuntime, WaitRuntime
from xinetd_twisted.service.runtime import (
    DaemonContext,
    ServiceRuntime,
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
    @ivar stayalive: keep running with no service (xinetd's C{-stayalive});
        otherwise the daemon exits with status 1 when no service is
        available at start or after a reload.
    @ivar dumpFile: where SIGUSR1 appends the state dump.
    @ivar gracefulStop: on SIGTERM, seconds to wait for running servers
        before sending them SIGTERM; L{None} for xinetd's behaviour (leave
        them running).
    @ivar syslogFacility: also send the daemon's own messages to syslog at
        this facility (xinetd's C{-syslog}), or L{None}.
    @ivar stopSignals: handle SIGTERM, SIGQUIT and SIGUSR1 as xinetd does
        (an application composing the super-server may keep its own).
    """

    processLimit: Optional[int] = None
    syslogPath: str = "/dev/log"
    hostsAllow: Optional[str] = "/etc/hosts.allow"
    hostsDeny: str = "/etc/hosts.deny"
    reloadSignals: tuple = (signal.SIGHUP, signal.SIGUSR2)
    stayalive: bool = True
    dumpFile: str = "/var/run/xinetd-twisted.dump"
    gracefulStop: Optional[float] = None
    stopSignals: bool = True
    syslogFacility: Optional[str] = None


TERM_GRACE = 2.0
"""
Seconds left to servers sent SIGTERM by a graceful stop to end (and have
their EXIT lines logged) before the daemon exits anyway.
"""


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

        from xinetd_twisted.daemon.superserver import superServerFromPath
        superServerFromPath("/etc/xinetd.conf").setServiceParent(application)

    @raise ConfigError: when the configuration cannot be used at all.
    """
    if loader is None:
        from xinetd_twisted.config.reader import loadConfig

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
    @ivar draining: runtimes of services a reload removed whose servers
        have not all been reaped yet (for their EXIT lines and the dump).
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
        exitProcess: Optional[Callable[[int], None]] = None,
    ) -> None:
        """
        @param exitProcess: called with an exit status when the daemon must
            end on its own (no services); by default stops the reactor and
            makes the process exit with that status.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor: Any = reactor
        self.configPath = configPath
        self.config = config
        self._loader = loader
        self.options = options if options is not None else DaemonOptions()
        self._exitProcess = exitProcess or self._stopWithStatus
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
        # Client names for host/domain rules, looked up without blocking.
        self._context.names = ReverseResolver.forReactor(reactor)
        self.runtimes: Dict[str, ServiceRuntime] = {}
        self._ownSyslog: Any = None
        self.draining: List[ServiceRuntime] = []
        self._previousHandlers: Dict[int, Any] = {}
        self._activated = False
        self._scrub: Any = None
        self._terminating = False

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
        self._context.spawner.observePressure(self._onBackPressure)
        self._startAll(self.config)
        self._scrub = self._reactor.callLater(60, self._scrubSensor)

    def _startAll(self, config: Config) -> None:
        subservices = [s for s in config.services if s.isTcpmuxSubservice]
        for service in config.services:
            self._startRuntime(service, subservices)

    def startService(self) -> None:
        """
        Serve (binding now if twistd's privileged start did not run, as with
        C{twist}), and take over xinetd's signals.
        """
        self._activate()
        super().startService()
        if self.options.syslogFacility is not None and self._ownSyslog is None:
            self._ownSyslog = DaemonSyslogObserver(
                self._context.syslog, self.options.syslogFacility
            )
            globalLogPublisher.addObserver(self._ownSyslog)
        for signum in self.options.reloadSignals:
            self._handle(signum, self._onReloadSignal)
        if self.options.stopSignals:
            self._handle(signal.SIGUSR1, self._onDumpSignal)
        # The reactor installs its SIGTERM handler as it starts running
        # (after this, under twistd): take over once it runs.
        self._whenRunning(self._ready)

    def _ready(self) -> None:
        """
        The reactor runs: handle SIGTERM/SIGQUIT, and say so only now, when
        every signal does what xinetd's does.
        """
        if not self.running:
            return
        if self.options.stopSignals:
            self._handle(signal.SIGTERM, self._onStopSignal)
            self._handle(signal.SIGQUIT, self._onStopSignal)
        self.log.info(
            "Started working: {count} available service(s)", count=len(self.runtimes)
        )
        self._exitIfNothingServed("no services. Exiting...")

    def _whenRunning(self, f: Callable[..., Any], *args: Any) -> None:
        whenRunning = getattr(self._reactor, "callWhenRunning", None)
        if whenRunning is None:
            f(*args)
        else:
            whenRunning(f, *args)

    def _handle(self, signum: int, handler: Callable[[int, Any], None]) -> None:
        previous = signal.signal(signum, handler)
        self._previousHandlers.setdefault(signum, previous)

    def stopService(self) -> Any:
        """
        Close every socket and stop the spawner; running servers are left
        alone, as xinetd leaves them.
        """
        super().stopService()
        for signum, handler in self._previousHandlers.items():
            signal.signal(signum, handler)
        self._previousHandlers.clear()
        if self._ownSyslog is not None:
            globalLogPublisher.removeObserver(self._ownSyslog)
            self._ownSyslog = None
        if self._scrub is not None and self._scrub.active():
            self._scrub.cancel()
        self._scrub = None
        for runtime in list(self.runtimes.values()):
            runtime.deactivate()
        self.runtimes.clear()
        self.draining.clear()
        for sink in self._context.fileSinks.values():
            sink.close()
        self._context.fileSinks.clear()
        self._context.syslog.disconnect()
        if self._context.names is not None:
            self._context.names.stop()
        self._activated = False
        return self._context.spawner.stop()

    def _onBackPressure(self, key: Any, backedUp: bool) -> None:
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
        try:
            runtime = runtimeFor(self._context, service)
            if runtime is None:
                return None
            if isinstance(runtime, TcpmuxRuntime):
                runtime.setSubservices(subservices)
            runtime.activate()
        except OSError as e:
            self.log.error(
                "bind failed for service {service} ({error}); "
                "Service {service} failed to start and is deactivated.",
                service=service.serviceId,
                error=e.strerror or str(e),
            )
            return None
        except Exception:
            # One broken service never takes the others down.
            self.log.failure(
                "Service {service} failed to start and is deactivated.",
                service=service.serviceId,
            )
            return None
        self.runtimes[runtime.serviceId.lower()] = runtime
        return runtime

    def _exitIfNothingServed(self, message: str) -> bool:
        """
        xinetd exits when no service is available, unless C{-stayalive}.

        @return: whether the daemon goes on.
        """
        if self.runtimes or self.options.stayalive:
            return True
        self.log.critical(message)
        self._exitProcess(1)
        return False

    def _stopWithStatus(self, status: int) -> None:
        # twistd exits 0 once the reactor has stopped and the pidfile is
        # removed; the status is set at interpreter exit, after all that.
        if status:
            atexit.register(os._exit, status)
        self._reactor.stop()

    # --- SIGTERM, SIGQUIT, SIGUSR1 -------------------------------------------

    def _onStopSignal(self, signum: int, frame: Any) -> None:
        self._reactor.callFromThread(
            self.terminate if signum == signal.SIGTERM else self.quit
        )

    def _onDumpSignal(self, signum: int, frame: Any) -> None:
        # twistd rotates its --logfile on SIGUSR1: keep doing that too,
        # first, so that the dump's messages go to the new file.
        previous = self._previousHandlers.get(signum)
        if callable(previous):
            previous(signum, frame)
        self._reactor.callFromThread(self.dump)

    def quit(self) -> None:
        """
        SIGQUIT: close every socket and exit with status 0; running servers
        are left alone.
        """
        self.log.warn("Exiting...")
        self._reactor.stop()

    def terminate(self) -> None:
        """
        SIGTERM.  As xinetd: the servers of internal and redirect services
        end (ours run inside the daemon, so their connections close with
        it) and ordinary servers are left running.  With L{DaemonOptions}
        C{gracefulStop}: stop accepting, wait that long for running servers,
        send the rest SIGTERM, then exit.
        """
        grace = self.options.gracefulStop
        if not grace:
            self.quit()
            return
        if self._terminating:
            return
        self._terminating = True
        for runtime in self.runtimes.values():
            runtime.deactivate()
        children = self.runningChildren()
        self.log.info(
            "Graceful stop: no longer accepting; waiting up to {grace} s for "
            "{count} running server(s)",
            grace=grace,
            count=len(children),
        )
        self._waitForChildren(self._reactor.seconds() + grace, self._endChildren)

    def runningChildren(self) -> List[Tuple[ServiceRuntime, int]]:
        """
        C{(runtime, pid)} of every server started and not yet reaped.
        """
        self.draining = [r for r in self.draining if r.running]
        return [
            (runtime, pid)
            for runtime in list(self.runtimes.values()) + self.draining
            for pid in runtime.running
        ]

    def _waitForChildren(self, deadline: float, then: Callable[[], None]) -> None:
        if not self.runningChildren() or self._reactor.seconds() >= deadline:
            then()
            return
        self._reactor.callLater(0.1, self._waitForChildren, deadline, then)

    def _endChildren(self) -> None:
        children = self.runningChildren()
        for runtime, pid in children:
            self.log.warn(
                "Sending signal 15 to {service} server {pid}",
                service=runtime.serviceId,
                pid=pid,
            )
            self._context.spawner.signalChild(pid, int(signal.SIGTERM))
        self._waitForChildren(self._reactor.seconds() + TERM_GRACE, self.quit)

    def dump(self) -> None:
        """
        SIGUSR1: append the state dump to L{DaemonOptions.dumpFile}.
        """
        from xinetd_twisted.daemon.dump import appendDump, formatDump

        path = self.options.dumpFile
        try:
            appendDump(path, formatDump(self, now=self._context.wallClock()))
        except OSError as e:
            self.log.error(
                "cannot write the state dump to {path}: {error}",
                path=path,
                error=e.strerror or str(e),
            )
            return
        self.log.info("State dump appended to {path}", path=path)

    # --- reconfiguration ---------------------------------------------------

    def _onReloadSignal(self, signum: int, frame: Any) -> None:
        # Runs between two bytecodes, possibly inside reactor code: only
        # schedule the work.
        self._reactor.callFromThread(self.reload)

    def _loadForReload(self) -> Optional[Config]:
        try:
            return self._loader(self.configPath)
        except ConfigError as e:
            logProblems(self.log, e.problems)
            reason = "the configuration has errors"
        except OSError as e:
            reason = e.strerror or str(e)
        except Exception:
            self.log.failure("reading {path}", path=self.configPath)
            reason = "unexpected error"
        self.log.warn(
            "reconfiguration failed ({reason}); keeping the running configuration",
            reason=reason,
        )
        return None

    def reload(self) -> Optional[Config]:
        """
        Re-read the configuration and apply the difference: services whose
        socket is unchanged keep it (and their children) and take the new
        settings in place; the others are dropped (their servers killed,
        as xinetd does) and, when still configured, bound again.  A
        configuration that cannot be loaded leaves everything as it was.

        @return: the new configuration, or L{None} when it was refused.
        """
        if self._terminating:
            return None
        self.log.info("Starting reconfiguration")
        config = self._loadForReload()
        if config is None:
            return None
        logProblems(self.log, config.problems)
        self._context.policy.hostsAccess = self._readHosts()
        subservices = [s for s in config.services if s.isTcpmuxSubservice]
        old = dict(self.runtimes)
        keep: List[Tuple[ServiceRuntime, ServiceConfig]] = []
        start: List[ServiceConfig] = []
        for service in config.services:
            if service.isTcpmuxSubservice and not service.isInternal:
                continue
            runtime = old.get(service.serviceId.lower())
            if runtime is not None and _sameSocket(runtime, service):
                del old[service.serviceId.lower()]
                keep.append((runtime, service))
            else:
                start.append(service)
        # Drop first: a new service may want a port a dropped one holds.
        for runtime in old.values():
            self._drop(runtime)
        for runtime, service in keep:
            runtime.update(service)
            if isinstance(runtime, TcpmuxRuntime):
                runtime.setSubservices(subservices)
            self.log.info("readjusting service {service}", service=service.serviceId)
        new = sum(1 for service in start if self._startRuntime(service, subservices))
        self.config = config
        self._closeUnusedSinks()
        self.log.info(
            "Reconfigured: new={new} old={old} dropped={dropped} (services)",
            new=new,
            old=len(keep),
            dropped=len(old),
        )
        self._exitIfNothingServed("No available services. Exiting")
        return config

    def _drop(self, runtime: ServiceRuntime) -> None:
        """
        A service is gone (or changed identity): close its socket, forget
        its pending spawn retries and end its servers as xinetd does
        (SIGKILL for programs).
        """
        runtime.deactivate()
        for pid in sorted(runtime.running):
            self.log.info(
                "Sending signal 9 to {service} server {pid}",
                service=runtime.serviceId,
                pid=pid,
            )
        runtime.killChildren(int(signal.SIGKILL))
        self.runtimes.pop(runtime.serviceId.lower(), None)
        if runtime.running:
            self.draining.append(runtime)
        self.log.info("service {service} deactivated", service=runtime.serviceId)

    def _closeUnusedSinks(self) -> None:
        """
        Close FILE logs no service writes to any more (removed services
        whose servers still run keep theirs for the EXIT lines).
        """
        self.draining = [r for r in self.draining if r.running]
        used = {
            r.service.logType
            for r in list(self.runtimes.values()) + self.draining
            if isinstance(r.service.logType, FileLog)
        }
        for key in [k for k in self._context.fileSinks if k not in used]:
            self._context.fileSinks.pop(key).close()


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
