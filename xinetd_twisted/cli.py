# -*- test-case-name: tests.test_cli -*-
"""
C{xinetd-twisted} command line: C{check} validates a configuration the way
the daemon would load it; C{convert} turns an inetd.conf into xinetd.conf.

Each subcommand is a function taking the parsed arguments and the output
streams; add one by writing it and registering it in L{_parser}.

Exit status: 0 when every service would run, 1 when a service would be
dropped, an error was found or the configuration would be refused, 2 when
the named file cannot be read at all.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Callable, List, Optional, TextIO, Tuple

from xinetd_twisted import __version__
from xinetd_twisted.config import dumpService, loadConfig
from xinetd_twisted.config.files import FileRefused, decodeConfig, readConfigFile
from xinetd_twisted.config.inetdconf import parseInetdConf, renderXinetd
from xinetd_twisted.config.model import (
    Config,
    ConfigError,
    Severity,
    UnreadableConfig,
)
from xinetd_twisted.config.sysfiles import readServices

DEFAULT_CONFIG = "/etc/xinetd.conf"

OK = 0
"""Exit status: every service would run (with --strict: and no warning)."""
PROBLEMS = 1
"""Exit status: a service would be dropped, an error was found, or the
configuration would be refused (a reload would keep the running one)."""
UNREADABLE = 2
"""Exit status: the file named on the command line cannot be read at all
(or the command line is wrong, as argparse exits)."""


def _load(
    options: argparse.Namespace, report: TextIO, err: TextIO
) -> Tuple[Optional[Config], int]:
    """
    Load the configuration as the daemon would: C{(config, 0)}, or
    C{(None, status)} after saying why it cannot be used (the problems of
    a refused configuration on C{report}, an unreadable file in one line on
    C{err}).
    """
    try:
        config = loadConfig(
            options.config, inetdConf=options.inetd_compat, strict=options.strict
        )
    except UnreadableConfig as e:
        print(f"xinetd-twisted: cannot read {e.path}: {e.reason}", file=err)
        return None, UNREADABLE
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=report)
        print(
            "configuration refused: the daemon would not start, and a reload "
            "would keep the running configuration",
            file=report,
        )
        return None, PROBLEMS
    return config, OK


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def summary(config: Config) -> str:
    """
    C{N services would run: a, b (D dropped, E errors, W warnings)}.
    """
    count = len(config.services)
    line = f"{count} {'service' if count == 1 else 'services'} would run"
    names = ", ".join(s.serviceId for s in config.services)
    if names:
        line += f": {names}"
    errors = config.count(Severity.ERROR)
    warnings = config.count(Severity.WARNING)
    return (
        f"{line} ({len(config.dropped)} dropped, {_plural(errors, 'error')}, "
        f"{_plural(warnings, 'warning')})"
    )


def verdict(config: Config) -> int:
    """
    L{OK} when nothing was dropped and no error was found, else
    L{PROBLEMS}: exactly what L{summary} counts (under strict loading every
    warning is an error already).
    """
    if config.dropped or config.count(Severity.ERROR):
        return PROBLEMS
    return OK


def check(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print every problem and a summary; the status is L{verdict}'s, or
    L{PROBLEMS} when the configuration is refused, L{UNREADABLE} when the
    file cannot be read.
    """
    config, status = _load(options, out, err)
    if config is None:
        return status
    for problem in config.problems:
        print(problem, file=out)
    print(summary(config), file=out)
    if options.dump:
        for service in config.services:
            print(file=out)
            out.write(dumpService(service))
    return verdict(config)


def dump(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print the effective configuration of every service that would run (in
    xinetd.conf syntax, after defaults and implied values); problems go to
    C{err}.  L{PROBLEMS} when the configuration is refused.
    """
    config, status = _load(options, err, err)
    if config is None:
        return status
    for problem in config.problems:
        print(problem, file=err)
    for index, service in enumerate(config.services):
        if index:
            print(file=out)
        out.write(dumpService(service))
    return OK


def convert(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Write the xinetd.conf equivalent of an inetd.conf (a file, or standard
    input) to C{out}; lines that cannot be converted go to C{err} with
    their line number, and make the status 1.
    """
    name = "<stdin>" if options.inetdconf == "-" else options.inetdconf
    try:
        if options.inetdconf == "-":
            source, text = "standard input", _readStdin()
        else:
            source = options.inetdconf
            text = readConfigFile(source).text
    except FileRefused as e:
        if e.systemError:
            print(f"{name}: cannot read: {e.reason}", file=err)
        else:
            print(e.problem, file=err)
        return UNREADABLE
    conf = parseInetdConf(text, name, readServices(options.services))
    for problem in conf.problems:
        print(problem, file=err)
    out.write(renderXinetd(conf, source))
    failed = any(p.severity is not Severity.WARNING for p in conf.problems)
    return PROBLEMS if failed else OK


def _readStdin() -> str:
    """
    Standard input as configuration text (refused when it is not text).
    """
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # replaced by a text stream
        return sys.stdin.read()
    return decodeConfig(buffer.read(), "<stdin>")


Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xinetd-twisted",
        description="xinetd, the Internet super-server, on Twisted",
    )
    parser.add_argument(
        "--version", action="version", version=f"xinetd-twisted {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    checkParser = commands.add_parser(
        "check", help="validate a configuration and report every problem"
    )
    checkParser.add_argument(
        "--dump", action="store_true", help="print the effective configuration"
    )
    checkParser.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    checkParser.set_defaults(run=check)
    dumpParser = commands.add_parser(
        "dump", help="print the effective configuration of every service"
    )
    dumpParser.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    dumpParser.set_defaults(run=dump)
    for sub in (checkParser, dumpParser):
        sub.add_argument(
            "--inetd-compat",
            metavar="INETD_CONF",
            default=None,
            help="also read this inetd.conf, as the daemon's --inetd-compat does",
        )
        sub.add_argument(
            "--strict",
            action="store_true",
            help="treat every warning as an error, as the daemon's --strict does",
        )
    convertParser = commands.add_parser(
        "convert",
        help="write the xinetd.conf equivalent of an inetd.conf to standard output",
    )
    convertParser.add_argument(
        "--services",
        default="/etc/services",
        help="services database used to find ports (default /etc/services)",
    )
    convertParser.add_argument(
        "inetdconf",
        nargs="?",
        default="-",
        metavar="FILE",
        help="the inetd.conf to convert (default: standard input)",
    )
    convertParser.set_defaults(run=convert)
    from xinetd_twisted import status

    statusParser = commands.add_parser(
        "status", help="one line per service of a running daemon"
    )
    status.addArguments(statusParser)
    statusParser.set_defaults(run=status.run)
    return parser


def main(
    argv: Optional[List[str]] = None,
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
) -> int:
    """
    Run a subcommand and return its exit status.

    A reader that goes away (C{check --dump | head}) ends the output
    quietly, status 1.

    @param argv: arguments without the program name; default C{sys.argv[1:]}.
    """
    options = _parser().parse_args(argv)
    run: Command = options.run
    for standard in (sys.stdout, sys.stderr):
        # A file name that is not UTF-8 is written as its bytes, as ls
        # does, not as a UnicodeEncodeError.
        if isinstance(standard, io.TextIOWrapper) and standard.errors == "strict":
            standard.reconfigure(errors="surrogateescape")
    stream = out or sys.stdout
    try:
        status = run(options, stream, err or sys.stderr)
        stream.flush()
    except BrokenPipeError:
        if stream is sys.stdout:
            # Python flushes stdout again at exit: point it at /dev/null so
            # that flush cannot fail with a second traceback.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return PROBLEMS
    return status


if __name__ == "__main__":
    sys.exit(main())
