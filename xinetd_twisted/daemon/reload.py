# -*- test-case-name: tests.test_daemon_superserver -*-
"""
The reload: loading a configuration (any failure is logged and refuses
the reload, leaving the running configuration in force) and applying it to
a L{SuperServer}.  Imported on the first reload only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from twisted.logger import Logger

from xinetd_twisted.config.model import Config, ConfigError, Severity
from xinetd_twisted.config.sysfiles import forgetParsed
from xinetd_twisted.daemon.memory import pausedCollections
from xinetd_twisted.daemon.plan import planReload

if TYPE_CHECKING:
    from xinetd_twisted.daemon.superserver import SuperServer


def loadForReload(
    loader: Callable[[str], Config], path: str, log: Logger
) -> Optional[Config]:
    """
    The configuration at C{path}, or L{None} (logged) when it cannot be
    used at all.
    """
    try:
        with pausedCollections():
            return loader(path)
    except ConfigError as e:
        for problem in e.problems:
            emit = log.warn if problem.severity is Severity.WARNING else log.error
            emit("{problem}", problem=str(problem))
        reason = "the configuration has errors"
    except OSError as e:
        reason = e.strerror or str(e)
    except Exception:
        log.failure("reading {path}", path=path)
        reason = "unexpected error"
    log.warn(
        "reconfiguration failed ({reason}); keeping the running configuration",
        reason=reason,
    )
    return None


def reloadServer(
    server: SuperServer, loader: Callable[[str], Config]
) -> Optional[Config]:
    """
    Re-read C{server}'s configuration with C{loader} and have its table
    apply the L{planReload} plan; exit if no service is left (unless
    C{-stayalive}).

    @return: the new configuration, or L{None} when it was refused.
    """
    from xinetd_twisted.daemon.superserver import logProblems

    log = server.log
    log.info("Starting reconfiguration")
    server.operations.reloading()
    config = loadForReload(loader, server.configPath, log)
    forgetParsed()
    if config is None:
        server.operations.reloaded(False)
        return None
    logProblems(log, config.problems)
    server.context.policy.hostsAccess = server.readHosts()
    running = {runtime.name: runtime.service for runtime in server}
    table = server.table
    table.inheritance.assign(server.inherited, config)
    table.apply(planReload(running, config))
    table.inheritance.logUnused(server.inherited)
    server.config = config
    server.operations.reloaded(True)
    server.exitIfNothingServed("No available services. Exiting")
    return config
