# -*- test-case-name: tests.test_config_reader -*-
"""
The public entry points: a configuration file (or text) to a checked
L{Config}.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional

import attr

from xinetd_twisted.config.addresses import makeResolver
from xinetd_twisted.config.build import STRICT_SUFFIX, Builder
from xinetd_twisted.config.files import FileRefused
from xinetd_twisted.config.fill import Environment, Filler
from xinetd_twisted.config.model import (
    Config,
    ConfigError,
    Location,
    Problem,
    Severity,
    UnreadableConfig,
)
from xinetd_twisted.config.parser import Block, Line, Reader
from xinetd_twisted.config.sysfiles import (
    readNetworks,
    readProtocols,
    readRpc,
    readServices,
)
from xinetd_twisted.config.values import ParseContext
from xinetd_twisted.records import plainRepr

if TYPE_CHECKING:
    # Read only with --inetd-compat.
    from xinetd_twisted.config.inetdconf import InetdConf


def loadConfig(
    path: str,
    *,
    inetdConf: Optional[str] = None,
    strict: bool = False,
    environ: Optional[Mapping[str, str]] = None,
    isRoot: Optional[bool] = None,
    warnWritable: Optional[bool] = None,
    servicesFile: str = "/etc/services",
    protocolsFile: str = "/etc/protocols",
    rpcFile: str = "/etc/rpc",
    networksFile: str = "/etc/networks",
    text: Optional[str] = None,
) -> Config:
    """
    Read, fill and check the configuration at C{path} and everything it
    includes.

    @param inetdConf: an inetd.conf (conventionally C{/etc/inetd.conf}) to
        read after the xinetd files, as xinetd's C{-inetd_compat}; its lines
        take the xinetd defaults, and an xinetd service with the same id
        hides a line.
    @param strict: treat every warning as an error: the service it concerns
        is dropped, and a warning in C{defaults} refuses the configuration.
    @param environ: the daemon's environment (for C{passenv} warnings);
        default C{os.environ}.
    @param isRoot: whether the daemon runs as root; default
        C{os.geteuid() == 0}.  When not, services that ask for another user
        or group are dropped.
    @param warnWritable: warn about configuration files, include
        directories, servers and banners that another user than root could
        change; default C{os.geteuid() == 0} (only a root daemon is at risk).
    @param text: the main file's text in hand: C{path} only names it (see
        L{parseConfigText}).
    @raise UnreadableConfig: the main file cannot be opened or read.
    @raise ConfigError: the configuration cannot be used at all: a file in
        it is not a configuration (not text, not a regular file, too
        large, unreadable), includes nest too deep, or a value in
        C{defaults} is bad (xinetd exits then).
    """
    options = _Options(
        environ,
        isRoot,
        os.geteuid() == 0 if warnWritable is None else warnWritable,
        strict,
        servicesFile,
        protocolsFile,
        rpcFile,
        networksFile,
        inetdConf,
    )
    load = _Load(options)
    reader = Reader(warnWritable=options.warnWritable, consumer=load.add)
    if text is not None:
        reader.readText(text, path)
    else:
        _readMain(reader, path)
    return _finish(reader, load, options)


def parseConfigText(text: str, path: str = "<string>", **options: Any) -> Config:
    """
    Like L{loadConfig}, for text in hand (C{path} names it in messages;
    includes are read from disk); takes L{loadConfig}'s keyword arguments.
    """
    return loadConfig(path, text=text, **options)


def _readMain(reader: Reader, path: str) -> None:
    """
    Read the main file, turning a refusal into the loader's exceptions.
    """
    try:
        reader.readMain(path)
    except FileRefused as e:
        if e.systemError:
            problem = Problem(
                Location(path, 0),
                Severity.FATAL,
                f"cannot read configuration file: {e.reason}",
            )
            raise UnreadableConfig((problem,), path, e.reason) from None
        raise ConfigError((e.problem,)) from None


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class _Options:
    """
    The loader's options, once the entry point has taken its input.
    """

    environ: Optional[Mapping[str, str]]
    isRoot: Optional[bool]
    warnWritable: bool
    strict: bool
    servicesFile: str
    protocolsFile: str
    rpcFile: str
    networksFile: str
    inetdConf: Optional[str]


def _strictly(problems: Iterable[Problem], strict: bool) -> List[Problem]:
    """
    The problems, with warnings made errors under C{strict}.
    """
    if not strict:
        return list(problems)
    return [
        attr.evolve(p, severity=Severity.ERROR, message=p.message + STRICT_SUFFIX)
        if p.severity is Severity.WARNING
        else p
        for p in problems
    ]


class _Load:
    """
    Applies each block as the reader reads it (so that its lines can go),
    remembering the ids of the xinetd services (for inetd.conf lines).

    @ivar services: /etc/services.
    @ivar builder: applies the blocks.
    @ivar xinetdIds: the lower-case id of every xinetd service block -> its
        location, the first one for an id.
    """

    def __init__(self, options: _Options) -> None:
        self.services = readServices(options.servicesFile)
        ctx = ParseContext(
            resolve=makeResolver(),
            networks=readNetworks(options.networksFile),
            protocols=readProtocols(options.protocolsFile),
            services=self.services,
        )
        self.builder = Builder(ctx, strict=options.strict)
        self.xinetdIds: Dict[str, Location] = {}

    def add(self, block: Block) -> None:
        """
        Apply one block, in reading order.
        """
        if block.kind == "service":
            self.xinetdIds.setdefault(_blockId(block).lower(), block.location)
        self.builder.add(block)


def _finish(reader: Reader, load: _Load, options: _Options) -> Config:
    services, builder = load.services, load.builder
    files = list(reader.files)
    if options.inetdConf is not None:
        # xinetd reads inetd.conf after every xinetd file, into the same
        # list, so its lines get every defaults value.
        from xinetd_twisted.config.inetdconf import readInetdConf

        _addInetd(
            builder, load.xinetdIds, readInetdConf(options.inetdConf, services), options
        )
        files.append(options.inetdConf)
        try:
            inetdStatus = os.stat(options.inetdConf)
        except OSError:
            pass  # reported as unreadable already
        else:
            reader.checkOwner(
                options.inetdConf, inetdStatus, Location(options.inetdConf, 0)
            )
    problems = _strictly(reader.problems, options.strict) + builder.problems
    if builder.fatal:
        raise ConfigError(tuple(problems))
    filler = Filler(
        Environment(
            services=services,
            rpc=readRpc(options.rpcFile),
            environ=os.environ if options.environ is None else options.environ,
            isRoot=os.geteuid() == 0 if options.isRoot is None else options.isRoot,
            warnWritable=options.warnWritable,
        ),
        builder.defaults,
        strict=options.strict,
    )
    # Each draft let go once filled, as each block once applied.
    drafts = list(reversed(builder.activeDrafts()))
    builder.drafts.clear()
    while drafts:
        filler.add(drafts.pop())
    problems += filler.problems
    dropped = builder.dropped + filler.dropped
    withErrors = {
        p.location.path for p in problems if p.severity is not Severity.WARNING
    }
    withErrors.update(reader.unread)
    withErrors.update(builder.droppedFiles + filler.droppedFiles)
    return Config(
        services=tuple(filler.services),
        problems=tuple(problems),
        files=tuple(files),
        dropped=tuple(dropped),
        filesWithErrors=frozenset(withErrors),
        droppedServices=frozenset(d.lower() for d in dropped),
    )


def _addInetd(
    builder: Builder,
    xinetdIds: Mapping[str, Location],
    conf: InetdConf,
    options: _Options,
) -> None:
    """
    Give the builder the inetd.conf lines that no xinetd service hides.

    Debian's packages register a service both in /etc/xinetd.d and with
    update-inetd, and README.Debian promises that the xinetd one hides the
    inetd.conf line even when it is disabled; so every xinetd block counts,
    whether it runs or not.
    """
    builder.problems.extend(_strictly(conf.problems, options.strict))
    # Under strict, a line with a warning is dropped like a service.
    warned = {
        p.service
        for p in conf.problems
        if options.strict and p.severity is Severity.WARNING
    }
    for service in conf.services:
        hiddenBy = xinetdIds.get(service.baseId.lower())
        if hiddenBy is not None:
            hidden = Problem(
                service.block.location,
                Severity.WARNING,
                f"the xinetd service at {hiddenBy} has the same id; this "
                "inetd.conf line is not used",
                service.baseId,
            )
            builder.problems.extend(_strictly([hidden], options.strict))
            continue
        if _blockId(service.block) in warned:
            builder.dropService(_blockId(service.block), service.block.location.path)
            continue
        builder.add(service.block)


def _blockId(block: Block) -> str:
    """
    The id a service block gives itself (its last C{id} line, else its
    name).
    """
    serviceId = block.name
    for line in block.lines:
        if isinstance(line, Line) and line.name == "id" and line.values:
            serviceId = line.values[0]
    return serviceId
