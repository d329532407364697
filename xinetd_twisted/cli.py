# -*- test-case-name: tests.test_cli -*-
"""
C{xinetd-twisted} command line: C{check} validates a configuration the way
the daemon would load it.

Each subcommand is a function taking the parsed arguments and the output
streams; add one by writing it and registering it in L{_parser}.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional, TextIO

from xinetd_twisted.config import dumpService, loadConfig
from xinetd_twisted.config.model import ConfigError, Severity

DEFAULT_CONFIG = "/etc/xinetd.conf"


def check(options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Print every problem and a summary; 1 when a service was dropped, an
    error was found, or the configuration is refused.
    """
    try:
        config = loadConfig(options.config)
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
