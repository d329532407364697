# -*- test-case-name: tests.test_cli -*-
"""
C{xinetd-twisted} command line: C{check} validates a configuration the way
the daemon would load it; C{convert} turns an inetd.conf into xinetd.conf.

Each subcommand is a function taking the parsed arguments and the output
streams; add one by writing it and registering it in L{_parser}.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional, TextIO

from xinetd_twisted.config import dumpService, loadConfig
from xinetd_twisted.config.inetdconf import parseInetdConf, renderXinetd
from xinetd_twisted.config.model import ConfigError, Severity
from xinetd_twisted.config.sysfiles import readServices

DEFAULT_CONFIG = "/etc/xinetd.conf"


def check(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print every problem and a summary; 1 when a service was dropped, an
    error was found, or the configuration is refused.
    """
    try:
        config = loadConfig(options.config, inetdConf=options.inetd_compat)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=out)
        print("configuration refused: no services would run", file=out)
        return 1
    for problem in config.problems:
        print(problem, file=out)
    names = ", ".join(s.serviceId for s in config.services)
    count = len(config.services)
    noun = "service" if count == 1 else "services"
    line = f"{count} {noun} would run"
    if names:
        line += f": {names}"
    line += f" ({len(config.dropped)} dropped)"
    print(line, file=out)
    if options.dump:
        for service in config.services:
            print(file=out)
            out.write(dumpService(service))
    failed = any(p.severity is not Severity.WARNING for p in config.problems)
    return 1 if config.dropped or failed else 0


def dump(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print the effective configuration of every service that would run (in
    xinetd.conf syntax, after defaults and implied values); problems go to
    C{err}.  1 when the configuration is refused.
    """
    try:
        config = loadConfig(options.config, inetdConf=options.inetd_compat)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=err)
        return 1
    for problem in config.problems:
        print(problem, file=err)
    for index, service in enumerate(config.services):
        if index:
            print(file=out)
        out.write(dumpService(service))
    return 0


def convert(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Write the xinetd.conf equivalent of an inetd.conf (a file, or standard
    input) to C{out}; lines that cannot be converted go to C{err} with
    their line number, and make the status 1.
    """
    if options.inetdconf == "-":
        source, text = "standard input", sys.stdin.read()
    else:
        source = options.inetdconf
        try:
            with open(source, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError as e:
            print(f"{source}: cannot read: {e.strerror}", file=err)
            return 1
    name = "<stdin>" if options.inetdconf == "-" else options.inetdconf
    conf = parseInetdConf(text, name, readServices(options.services))
    for problem in conf.problems:
        print(problem, file=err)
    out.write(renderXinetd(conf, source))
    failed = any(p.severity is not Severity.WARNING for p in conf.problems)
    return 1 if failed else 0


Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xinetd-twisted",
        description="xinetd, the Internet super-server, on Twisted",
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

    @param argv: arguments without the program name; default C{sys.argv[1:]}.
    """
    options = _parser().parse_args(argv)
    run: Command = options.run
    return run(options, out or sys.stdout, err or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
