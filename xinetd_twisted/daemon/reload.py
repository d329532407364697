# -*- test-case-name: tests.test_daemon_superserver -*-
"""
Loading a configuration for a reload: any failure is logged and refuses
the reload, leaving the running configuration in force.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.logger import Logger

from xinetd_twisted.config.model import Config, ConfigError, Severity
from xinetd_twisted.daemon.memory import pausedCollections


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
