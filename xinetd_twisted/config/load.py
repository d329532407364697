# -*- test-case-name: tests.test_config_load -*-
"""
The public entry points: a configuration file (or text) to a checked
L{Config}.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

from xinetd_twisted.config.addresses import makeResolver
from xinetd_twisted.config.build import Builder
from xinetd_twisted.config.fill import Environment, Filler
from xinetd_twisted.config.model import Config, ConfigError, Location, Problem, Severity
from xinetd_twisted.config.parser import Reader
from xinetd_twisted.config.sysfiles import (
    readNetworks,
    readProtocols,
    readRpc,
    readServices,
)
from xinetd_twisted.config.values import ParseContext


def loadConfig(
    path: str,
    *,
    environ: Optional[Mapping[str, str]] = None,
    isRoot: Optional[bool] = None,
    servicesFile: str = "/etc/services",
    protocolsFile: str = "/etc/protocols",
    rpcFile: str = "/etc/rpc",
    networksFile: str = "/etc/networks",
) -> Config:
    """
    Read, fill and check the configuration at C{path} and everything it
    includes.

    @param environ: the daemon's environment (for C{passenv} warnings);
        default C{os.environ}.
    @param isRoot: whether the daemon runs as root; default
        C{os.geteuid() == 0}.  When not, services that ask for another user
        or group are dropped.
    @raise ConfigError: the main file cannot be read, or a value in
        C{defaults} is bad (xinetd exits then).
    """
    reader = Reader()
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise ConfigError(
            (
                Problem(
                    Location(path, 0),
                    Severity.FATAL,
                    f"cannot read configuration file: {e.strerror}",
                ),
            )
        ) from None
    reader.readText(text, path)
    return _finish(
        reader, environ, isRoot, servicesFile, protocolsFile, rpcFile, networksFile
    )


def parseConfigText(
    text: str,
    path: str = "<string>",
    *,
    environ: Optional[Mapping[str, str]] = None,
    isRoot: Optional[bool] = None,
    servicesFile: str = "/etc/services",
    protocolsFile: str = "/etc/protocols",
    rpcFile: str = "/etc/rpc",
    networksFile: str = "/etc/networks",
) -> Config:
    """
    Like L{loadConfig}, for text in hand (C{path} names it in messages;
    includes are read from disk).
    """
    reader = Reader()
    reader.readText(text, path)
    return _finish(
        reader, environ, isRoot, servicesFile, protocolsFile, rpcFile, networksFile
    )


def _finish(
    reader: Reader,
    environ: Optional[Mapping[str, str]],
    isRoot: Optional[bool],
    servicesFile: str,
    protocolsFile: str,
    rpcFile: str,
    networksFile: str,
) -> Config:
    services = readServices(servicesFile)
    ctx = ParseContext(
        resolve=makeResolver(),
        networks=readNetworks(networksFile),
        protocols=readProtocols(protocolsFile),
        services=services,
    )
    builder = Builder(ctx)
    for block in reader.blocks:
        builder.add(block)
    problems = list(reader.problems) + builder.problems
    if builder.fatal:
        raise ConfigError(tuple(problems))
    filler = Filler(
        Environment(
            services=services,
            rpc=readRpc(rpcFile),
            environ=os.environ if environ is None else environ,
            isRoot=os.geteuid() == 0 if isRoot is None else isRoot,
        ),
        builder.defaults,
    )
    for draft in builder.activeDrafts():
        filler.add(draft)
    problems += filler.problems
    return Config(
        services=tuple(filler.services),
        problems=tuple(problems),
        files=tuple(reader.files),
        dropped=tuple(builder.dropped + filler.dropped),
    )
