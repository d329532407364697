# -*- test-case-name: tests.test_spawn_setup -*-
"""
From a service's configuration to the L{ChildSetup} its children get, once
per configuration load (never per connection).
"""

from __future__ import annotations

import resource
from functools import lru_cache
from typing import Dict, Mapping, Optional, Tuple

from xinetd_twisted.config.model import UNLIMITED, ServiceConfig
from xinetd_twisted.spawn.interfaces import ChildSetup
from xinetd_twisted.spawn.wire import allRlimits

DAEMON_RLIMITS: Dict[int, Tuple[int, int]] = allRlimits()
"""
The daemon's own resource limits, every C{RLIMIT_*} the platform has,
captured once when it starts: what a child gets for each limit its service
does not set.  (A spawn helper's limits, which whoever runs as its user
can change with prlimit(2), never decide a child's.)
"""


def _limit(value: int) -> int:
    return resource.RLIM_INFINITY if value == UNLIMITED else value


def childSetupFor(
    service: ServiceConfig,
    *,
    daemonEnviron: Mapping[str, str],
    daemonUmask: int,
    isRoot: bool,
    nofileHardLimit: int,
    daemonRlimits: Optional[Mapping[int, Tuple[int, int]]] = None,
) -> ChildSetup:
    """
    Build the setup xinetd's child.c would apply for C{service}.

    @param service: a service that runs a program (C{server} set).
    @param daemonEnviron: the daemon's environment at start-up (xinetd's
        "standard environment").
    @param daemonUmask: the daemon's umask at start-up; children get it
        C{| 022} unless the service sets C{umask}.
    @param isRoot: whether the daemon runs as root; credentials are only
        changed then, as xinetd does (and its man page says).
    @param nofileHardLimit: the daemon's hard RLIMIT_NOFILE; the child gets
        it as soft and hard limit unless C{rlimit_files} is set.
    @param daemonRlimits: C{{resource: (soft, hard)}}, the limits a child
        gets for every other resource its service does not set; by default
        L{DAEMON_RLIMITS}.  The setup carries every limit, so that a child
        never inherits one from the helper that starts it.
    """
    if service.server is None:
        raise ValueError(f"service {service.serviceId} runs no program")
    passenv = None if service.passenv is None else tuple(service.passenv)
    environment = _environment(
        tuple(daemonEnviron.items()), passenv, tuple(service.env)
    )
    rlimits = _rlimits(
        tuple((DAEMON_RLIMITS if daemonRlimits is None else daemonRlimits).items()),
        nofileHardLimit,
        tuple((name, amount) for name, amount in service.rlimits),
    )

    credentials = isRoot and (service.uid is not None or service.gid is not None)
    return ChildSetup(
        executable=service.server,
        argv=tuple(service.argv),
        environment=environment,
        uid=service.uid if isRoot else None,
        gid=service.gid if isRoot else None,
        supplementaryGroups=tuple(service.supplementaryGroups) if credentials else None,
        umask=service.umask if service.umask is not None else daemonUmask | 0o022,
        nice=service.nice,
        rlimits=rlimits,
        chroot=service.chroot,
        workingDirectory="/",
        newSession=True,
        noNewPrivileges=service.noNewPrivileges,
    )


# Services mostly share their environment and limits: one tuple each for
# all of them (~3.5 KiB a service otherwise).  Bounded, for reloads.


@lru_cache(maxsize=64)
def _environment(
    daemonEnviron: Tuple[Tuple[str, str], ...],
    passenv: Optional[Tuple[str, ...]],
    env: Tuple[str, ...],
) -> Tuple[Tuple[str, str], ...]:
    """
    The child's base environment: the daemon's (only the C{passenv} names,
    when set), the service's C{env} overriding it.
    """
    if passenv is None:
        base = list(daemonEnviron)
    else:
        known = dict(daemonEnviron)
        base = [(n, known[n]) for n in passenv if n in known]
    extra = []
    for word in env:
        name, _, value = word.partition("=")
        extra.append((name, value))
    # Later entries win in a C environment only by convention; keep one
    # entry per name, the service's env overriding the passed one.
    overridden = {name for name, _ in extra}
    return tuple((n, v) for n, v in base if n not in overridden) + tuple(extra)


@lru_cache(maxsize=64)
def _rlimits(
    daemonRlimits: Tuple[Tuple[int, Tuple[int, int]], ...],
    nofileHardLimit: int,
    serviceRlimits: Tuple[Tuple[str, int], ...],
) -> Tuple[Tuple[int, int, int], ...]:
    """
    Every limit the child gets, C{(resource, soft, hard)} in resource
    order: the service's, else the daemon's; files at the daemon's hard
    limit unless the service sets C{rlimit_files}.
    """
    limits = dict(daemonRlimits)
    limits[resource.RLIMIT_NOFILE] = (_limit(nofileHardLimit), _limit(nofileHardLimit))
    for resourceName, amount in serviceRlimits:
        limits[getattr(resource, resourceName)] = (_limit(amount), _limit(amount))
    return tuple((r, soft, hard) for r, (soft, hard) in sorted(limits.items()))


def connectionEnvironment(peerHost: str) -> Tuple[Tuple[str, str], ...]:
    """
    The per-connection variables xinetd adds: C{REMOTE_HOST}, the numeric
    client address (C{::ffff:a.b.c.d} for IPv4 clients of a dual-stack
    socket, as xinetd shows them).
    """
    return (("REMOTE_HOST", peerHost),)
