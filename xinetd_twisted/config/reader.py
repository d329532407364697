# -*- test-case-name: tests.test_config_load -*-
"""
The public entry points: a configuration file (or text) to a checked
L{Config}.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional

from xinetd_twisted.config.addresses import makeResolver
from xinetd_twisted.config.build import Builder
from xinetd_twisted.config.fill import Environment, Filler
from xinetd_twisted.config.inetdconf import InetdConf, readInetdConf
from xinetd_twisted.config.model import Config, ConfigError, Location, Problem, Severity
from xinetd_twisted.config.parser import Line, Reader
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
    inetdConf: Optional[str] = None,
) -> Config:
    """
    Read, fill and check the configuration at C{path} and everything it
    includes.

    @param environ: the daemon's environment (for C{passenv} warnings);
        default C{os.environ}.
    @param isRoot: whether the daemon runs as root; default
        C{os.geteuid() == 0}.  When not, services that ask for another user
        or group are dropped.
    @param inetdConf: an inetd.conf (conventionally C{/etc/inetd.conf}) to
        read after the xinetd files, as xinetd's C{-inetd_compat}; its lines
        take the xinetd defaults, and an xinetd service with the same id
        hides a line.
    @raise ConfigError: the main file cannot be read, or a value in
        C{defaults} is bad (xinetd exits then).
    """
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
    return parseConfigText(
        text,
        path,
        environ=environ,
        isRoot=isRoot,
        servicesFile=servicesFile,
        protocolsFile=protocolsFile,
        rpcFile=rpcFile,
        networksFile=networksFile,
        inetdConf=inetdConf,
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
    inetdConf: Optional[str] = None,
) -> Config:
    """
    Like L{loadConfig}, for text in hand (C{path} names it in messages;
    includes are read from disk).
    """
    reader = Reader()
    reader.readText(text, path)
    return _finish(
        reader,
        environ,
        isRoot,
        servicesFile,
        protocolsFile,
        rpcFile,
        networksFile,
        inetdConf,
    )


def _finish(
    reader: Reader,
    environ: Optional[Mapping[str, str]],
    isRoot: Optional[bool],
    servicesFile: str,
    protocolsFile: str,
    rpcFile: str,
    networksFile: str,
    inetdConf: Optional[str] = None,
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
    files = list(reader.files)
    if inetdConf is not None:
        # xinetd reads inetd.conf after every xinetd file, into the same
        # list, so its lines get every defaults value.
        _addInetd(builder, reader, readInetdConf(inetdConf, services))
        files.append(inetdConf)
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
        files=tuple(files),
        dropped=tuple(builder.dropped + filler.dropped),
    )


def _addInetd(builder: Builder, reader: Reader, conf: InetdConf) -> None:
    """
    Give the builder the inetd.conf lines that no xinetd service hides.

    Debian's packages register a service both in /etc/xinetd.d and with
    update-inetd, and README.Debian promises that the xinetd one hides the
    inetd.conf line even when it is disabled; so every xinetd block counts,
    whether it runs or not.
    """
    xinetdIds: Dict[str, Location] = {}
    for block in reader.blocks:
        if block.kind != "service":
            continue
        serviceId = block.name
        for line in block.lines:
            if isinstance(line, Line) and line.name == "id" and line.values:
                serviceId = line.values[0]
        xinetdIds.setdefault(serviceId.lower(), block.location)
    builder.problems.extend(conf.problems)
    for service in conf.services:
        hiddenBy = xinetdIds.get(service.baseId.lower())
        if hiddenBy is not None:
            builder.problems.append(
                Problem(
                    service.block.location,
                    Severity.WARNING,
                    f"the xinetd service at {hiddenBy} has the same id; this "
                    "inetd.conf line is not used",
                    service.baseId,
                )
            )
            continue
        builder.add(service.block)
