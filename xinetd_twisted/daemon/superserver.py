# -*- test-case-name: tests.test_daemon_superserver -*-
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
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

import attr
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from xinetd_twisted.config.model import (
    Config,
    Problem,
    Severity,
)
from xinetd_twisted.config.sysfiles import forgetParsed
from xinetd_twisted.daemon.imetrics import IMetrics, NullMetrics
from xinetd_twisted.daemon.memory import pausedCollections
from xinetd_twisted.daemon.notify import (
    LISTEN_VARIABLES,
    SYSTEMD_VARIABLES,
    SystemdNotifier,
)
from xinetd_twisted.daemon.operations import Operations, budgetDescriptors
from xinetd_twisted.daemon.plan import ownsSocket
from xinetd_twisted.daemon.stopping import DaemonEnding
from xinetd_twisted.daemon.table import ServiceTable
from xinetd_twisted.logs.sinks import SyslogConnection
from xinetd_twisted.policy.access import PolicyContext
from xinetd_twisted.policy.libwrap import loadHostsAccess
from xinetd_twisted.policy.limits import ProcessLimit
from xinetd_twisted.records import plainRepr
from xinetd_twisted.service.context import (
    DaemonContext,
    IServiceHooks,
    LogSinks,
    NoHooks,
    ResolverOnFirstUse,
)
from xinetd_twisted.service.runtime import ServiceRuntime
from xinetd_twisted.spawn.interfaces import ISpawner

if TYPE_CHECKING:
    from xinetd_twisted.daemon.activation import InheritedSockets
    from xinetd_twisted.daemon.rpc import RpcRegistrations
    from xinetd_twisted.policy.hostsaccess import HostsAccess
    from xinetd_twisted.protocols.names import ReverseResolver

ConfigLoader = Callable[[str], Config]


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
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
    @ivar raiseDescriptorLimit: raise the soft RLIMIT_NOFILE to the hard
        limit at start (an application composing the super-server may keep
        its own).
    @ivar metrics: serve Prometheus metrics at C{/metrics} on this Twisted
        server endpoint description, or L{None}.
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
    metrics: Optional[str] = None
    raiseDescriptorLimit: bool = True


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


def makeSpawner(
    kind: str = "helper",
    reactor: Optional[Any] = None,
    helperIdle: Optional[float] = None,
    schedSlice: int = 0,
    delegating: bool = True,
) -> ISpawner:
    """
    The spawner named by C{kind}: C{"helper"} (the fast, faithful fork
    server) or C{"plain"} (C{reactor.spawnProcess}, lenient about what it
    cannot apply).

    @param helperIdle: the spawn helpers' idle timeout in seconds (0:
        never retire them), L{None} for the default.
    @param schedSlice: the scheduler slice in microseconds of the daemon and
        its helpers (0: the kernel's default), with the helper spawner.
    @param delegating: with the helper spawner, whether the sockets of
        plain services go to their compiled sub-helpers (see
        L{xinetd_twisted.spawn.delegation}).
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if kind == "helper":
        from xinetd_twisted.spawn.helperspawner import HelperSpawner

        spawner = HelperSpawner(reactor=reactor, schedSlice=schedSlice)
        if helperIdle is not None:
            spawner.idleTimeout = helperIdle
        spawner.delegating = delegating
        return spawner
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
        from xinetd_twisted.config.reader import loadConfig

        loader = loadConfig
    config = loader(configPath)
    if spawner is None:
        spawner = makeSpawner("helper", reactor)
    return SuperServer(
        config, configPath, loader, spawner, reactor=reactor, options=options
    )


def _inheritedFromEnvironment() -> Optional[InheritedSockets]:
    """
    The sockets systemd passed in C{LISTEN_*} (those variables then unset),
    or L{None} without any such variable, in which case socket activation
    is not even imported.
    """
    if not any(name in os.environ for name in LISTEN_VARIABLES):
        return None
    from xinetd_twisted.daemon.activation import InheritedSockets

    return InheritedSockets.fromEnvironment(os.environ)


def _resolverFor(reactor: Any) -> ReverseResolver:
    from xinetd_twisted.protocols.names import ReverseResolver

    return ReverseResolver.forReactor(reactor)


def defaultMetrics(options: DaemonOptions) -> IMetrics:
    """
    The metrics of a daemon not given any: a L{Metrics} when
    L{DaemonOptions.metrics} is set (only then imported), else nothing.
    """
    if options.metrics is None:
        return NullMetrics()
    from xinetd_twisted.daemon.metrics import Metrics

    return Metrics()


def buildContext(
    reactor: Any,
    spawner: ISpawner,
    options: DaemonOptions,
    hostsAccess: Optional[HostsAccess],
    environ: Mapping[str, str],
    umask: int,
    hooks: Optional[IServiceHooks] = None,
) -> DaemonContext:
    """
    The context every service of one daemon shares.
    """
    policy = PolicyContext.forReactor(
        reactor,
        processLimit=ProcessLimit(options.processLimit),
        hostsAccess=hostsAccess,
    )
    return DaemonContext(
        reactor=reactor,
        spawner=spawner,
        # systemd's variables are the daemon's, never its servers'.
        environ={k: v for k, v in environ.items() if k not in SYSTEMD_VARIABLES},
        umask=umask,
        isRoot=os.geteuid() == 0,
        nofileHardLimit=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        policy=policy,
        sinks=LogSinks(SyslogConnection(options.syslogPath)),
        names=ResolverOnFirstUse(partial(_resolverFor, reactor)),
        hooks=hooks if hooks is not None else NoHooks(),
    )


class SuperServer(MultiService):
    """
    xinetd: a L{MultiService} whose children are the L{ServiceRuntime} of
    every configured service, named by service id.

    @ivar configPath: the main configuration file (re-read on SIGHUP).
    @ivar config: the configuration in force.
    @ivar draining: runtimes of services a reload removed whose servers
        have not all been reaped yet (for their EXIT lines and the dump).
    @ivar ending: how it ends (SIGQUIT, SIGTERM, no service left).
    """

    log = Logger(namespace="xinetd_twisted.daemon")

    def __init__(
        self,
        config: Config,
        configPath: str,
        loader: ConfigLoader,
        spawner: ISpawner,
        reactor: Optional[Any] = None,
        environ: Optional[Mapping[str, str]] = None,
        umask: Optional[int] = None,
        options: Optional[DaemonOptions] = None,
        exitProcess: Optional[Callable[[int], None]] = None,
        metrics: Optional[IMetrics] = None,
        notifier: Optional[SystemdNotifier] = None,
        inherited: Optional[InheritedSockets] = None,
    ) -> None:
        """
        @param exitProcess: called with an exit status when the daemon must
            end on its own (no services); by default stops the reactor and
            makes the process exit with that status.
        @param metrics: told of every service event; by default a
            L{Metrics} when L{DaemonOptions.metrics} is set, else nothing.
        @param notifier: tells systemd about readiness, reloads and stops;
            by default from C{$NOTIFY_SOCKET}.
        @param inherited: the sockets systemd passed (socket activation);
            by default read from C{LISTEN_*} (and those variables unset)
            unless C{environ} is given.
        """
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor: Any = reactor
        self.configPath = configPath
        self.config = config
        forgetParsed()
        self._loader = loader
        self.options = options if options is not None else DaemonOptions()
        self.metrics: IMetrics = (
            metrics if metrics is not None else defaultMetrics(self.options)
        )
        self.context = buildContext(
            reactor,
            spawner,
            self.options,
            self.readHosts(),
            os.environ if environ is None else environ,
            currentUmask() if umask is None else umask,
            self.metrics,
        )
        if inherited is None and environ is None:
            inherited = _inheritedFromEnvironment()
        self.inherited: Optional[InheritedSockets] = inherited
        self.operations = Operations(
            self,
            reactor,
            self.metrics,
            notifier
            if notifier is not None
            else SystemdNotifier.fromEnvironment(os.environ, reactor),
        )
        self.table = ServiceTable(self, self.context, self.metrics)
        self._activated = False
        self.ending = DaemonEnding(self, reactor, exitProcess)
        subservices = [s for s in config.services if s.isTcpmuxSubservice]
        for service in config.services:
            if ownsSocket(service):
                self.table.add(service, subservices)

    @property
    def rpc(self) -> RpcRegistrations:
        """
        The rpcbind registrations of the RPC services.
        """
        return self.table.rpc

    @rpc.setter
    def rpc(self, registrations: RpcRegistrations) -> None:
        self.table.rpc = registrations

    @property
    def spawner(self) -> ISpawner:
        return self.context.spawner

    @property
    def runtimes(self) -> Dict[str, ServiceRuntime]:
        """
        The running services by lower-case id.
        """
        return {s.name.lower(): s for s in self}

    def readHosts(self) -> Optional[HostsAccess]:
        """
        The libwrap files, read now (problems logged), or L{None} without
        libwrap checks.
        """
        if self.options.hostsAllow is None:
            return None
        hosts = loadHostsAccess(self.options.hostsAllow, self.options.hostsDeny)
        if hosts is not None:
            logProblems(self.log, tuple(hosts.problems))
        return hosts

    # --- start and stop ----------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Start the spawner and bind every socket while still privileged.
        """
        self._activate()

    def _activate(self) -> None:
        if self._activated:
            return
        self._activated = True
        logProblems(self.log, self.config.problems)
        budgetDescriptors(
            self.context,
            len(self.config.services),
            self.options.raiseDescriptorLimit,
        )
        self.context.spawner.observePressure(self.table.pressure)
        self.table.inheritance.assign(self.inherited, self.config)
        with pausedCollections():
            self.table.bindAll(list(self))
        # Once every socket is bound: the helper's start (a process of its
        # own) no longer competes with binding a thousand of them, and no
        # spawn can be asked for before the reactor runs anyway.
        started: Any = self.context.spawner.start()
        started.addErrback(self._spawnerNotStarted)
        self.table.inheritance.logUnused(self.inherited)

    def _spawnerNotStarted(self, reason: Any) -> None:
        # Stopped before it was ready, or it could not start: spawns fail
        # (and are logged) until a later one restarts it.
        self.log.warn(
            "the spawner did not start: {reason}", reason=reason.getErrorMessage()
        )

    def startService(self) -> None:
        """
        Serve (binding now if twistd's privileged start did not run, as with
        C{twist}), and take over xinetd's signals.
        """
        self._activate()
        for runtime in list(self):
            runtime.startService()
        self.running = 1
        self.operations.start()

    def serviceCount(self) -> int:
        """
        How many services are available.
        """
        return len(self.namedServices)

    def stopService(self) -> Deferred:
        """
        Close every socket and stop the spawner; running servers are left
        alone, as xinetd leaves them.
        """
        self.running = 0
        stopped = self.operations.stop()
        stopped += [runtime.stopService() for runtime in reversed(list(self))]
        stopped.append(self.table.stopRpc())
        self.table.removeAll()
        self.context.sinks.close()
        if self.context.names is not None:
            self.context.names.stop()
        self._activated = False
        stopped.append(self.context.spawner.stop())  # type: ignore[arg-type]
        return DeferredList(stopped).addCallback(lambda _: None)

    def exitIfNothingServed(self, message: str) -> bool:
        """
        xinetd exits when no service is available, unless C{-stayalive}
        (L{DaemonEnding.exitIfNothingServed}).

        @return: whether the daemon goes on.
        """
        return self.ending.exitIfNothingServed(message)

    # --- SIGTERM, SIGQUIT, SIGUSR1 -------------------------------------------

    def quit(self) -> None:
        """
        SIGQUIT: close every socket and exit with status 0 (L{DaemonEnding}).
        """
        self.ending.quit()

    def terminate(self) -> None:
        """
        SIGTERM: exit, at once or after a graceful stop (L{DaemonEnding}).
        """
        self.ending.terminate()

    @property
    def draining(self) -> List[ServiceRuntime]:
        """
        Removed services whose servers still run.
        """
        return self.table.stillDraining()

    def runningChildren(self) -> List[Tuple[ServiceRuntime, int]]:
        """
        C{(runtime, pid)} of every server started and not yet reaped.
        """
        return self.table.runningChildren()

    def dump(self) -> None:
        """
        SIGUSR1: append the state dump to L{DaemonOptions.dumpFile}.
        """
        from xinetd_twisted.daemon.dump import writeDump

        writeDump(self, self.options.dumpFile, self.context.wallClock())

    # --- reconfiguration ---------------------------------------------------

    def reload(self) -> Optional[Config]:
        """
        Re-read the configuration and apply the L{planReload} plan
        (L{reloadServer}).  A configuration that cannot be loaded leaves
        everything as it was.

        @return: the new configuration, or L{None} when it was refused.
        """
        if self.ending.terminating:
            return None
        from xinetd_twisted.daemon.reload import reloadServer

        return reloadServer(self, self._loader)
