# -*- test-case-name: tests.test_cli_tap -*-
"""
twistd support: C{twistd -n xinetd --config /etc/xinetd.conf}.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from xinetd_twisted import __version__
from xinetd_twisted.config.model import ConfigError, UnreadableConfig
from xinetd_twisted.config.reader import loadConfig
from xinetd_twisted.daemon.memory import pausedCollections

DEFAULT_SCHED_SLICE = 0
"""
C{--sched-slice}'s default: none (the kernel's own slice for every process).
A short slice lets the daemon and its helpers run sooner beside a busy
process, but each of their wake-ups then preempts a running server: under
load the servers' latency tail grew several times longer (docs/benchmarks.md,
the fourth pass).
"""


def deferOpenSSL() -> None:
    """
    Keep pyOpenSSL out of the daemon until a TLS service needs it: Twisted's
    TCP module imports it whenever it is installed (for C{startTLS}, which
    the daemon never uses).  Called when twistd imports this plugin, before
    the reactor; L{xinetd_twisted.config.tls.allowOpenSSL} lifts it.  (It
    lives here so that a daemon without TLS does not import that module.)
    """
    if "OpenSSL" not in sys.modules and "twisted.internet.tcp" not in sys.modules:
        sys.modules["OpenSSL"] = None  # type: ignore[assignment]


# twistd imports this before the reactor: keep pyOpenSSL (~13 MB) out
# until a TLS service needs it.
deferOpenSSL()


def _checkSchedSlice(microseconds: int) -> None:
    """
    Refuse a C{--sched-slice} out of the scheduler's bounds (0 and the
    default are fine, so that a start with them does not import
    L{xinetd_twisted.spawn.schedslice}).
    """
    if microseconds in (0, DEFAULT_SCHED_SLICE):
        return
    from xinetd_twisted.spawn.schedslice import MAX_SLICE_US, MIN_SLICE_US

    if not MIN_SLICE_US <= microseconds <= MAX_SLICE_US:
        raise usage.UsageError(
            f"--sched-slice must be 0 or {MIN_SLICE_US} to {MAX_SLICE_US} microseconds"
        )


class Options(usage.Options):
    """
    Command-line options of the xinetd plugin, named after xinetd's.
    """

    synopsis = "[options]"
    longdesc = (
        "Run the Internet super-server on an xinetd configuration: every "
        "service of /etc/xinetd.conf (with its includes) is listened for, and "
        "each connection is given to the configured program, internal "
        "service or redirect.  SIGHUP re-reads the configuration."
    )
    optParameters = [
        ["config", "f", "/etc/xinetd.conf", "The xinetd configuration file."],
        [
            "spawner",
            None,
            "helper",
            "How children are started: 'helper' (a privileged fork server, "
            "fast and faithful) or 'plain' (reactor.spawnProcess; cannot set "
            "a new session, nice, rlimits, chroot or exact groups).",
        ],
        [
            "helper-idle",
            None,
            None,
            "Seconds a spawn helper with nothing to do lives on before it "
            "exits: a sub-helper (one per service user; the next server of "
            "that user starts another, a few ms), then the root helper once "
            "it has none (the next connection starts both, ~20 ms).  0: "
            "never (default 10).",
            float,
        ],
        [
            "sched-slice",
            None,
            DEFAULT_SCHED_SLICE,
            "Scheduler slice in microseconds of the daemon and its spawn "
            "helpers (Linux 6.12+; 100 to 100000), so that beside busy "
            "processes they run soon after each wake-up, at the cost of the "
            "servers' latency under load; the servers keep the kernel's "
            "default.  0 (default): the kernel's default for all.",
            int,
        ],
    ]
    optParameters += [
        [
            "limit",
            None,
            None,
            "Most servers running at once, all services together (xinetd's "
            "-limit); beyond it connections fail with process_limit.",
            int,
        ],
        [
            "syslog-path",
            None,
            "/dev/log",
            "The syslog socket that services with log_type = SYSLOG write to.",
        ],
        [
            "hosts-allow",
            None,
            "/etc/hosts.allow",
            "tcp_wrappers allow file (libwrap-compatible checks).",
        ],
        ["hosts-deny", None, "/etc/hosts.deny", "tcp_wrappers deny file."],
        [
            "syslog-facility",
            None,
            None,
            "Also send the daemon's own messages to syslog at this facility "
            "(xinetd's -syslog), through --syslog-path.",
        ],
        [
            "inetd-compat",
            None,
            None,
            "Also read this inetd.conf after the xinetd files (xinetd's "
            "-inetd_compat; conventionally /etc/inetd.conf).",
        ],
        [
            "dump-file",
            None,
            "/var/run/xinetd-twisted.dump",
            "Where SIGUSR1 appends the state dump (never through a symlink).",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this Twisted server "
            "endpoint (e.g. tcp:9100:interface=127.0.0.1); off by default.",
        ],
        [
            "graceful-stop",
            None,
            None,
            "On SIGTERM, stop accepting and wait up to this many seconds for "
            "running servers, then send them SIGTERM (default: leave them "
            "running, as xinetd).",
            float,
        ],
    ]
    optFlags = [
        [
            "accept-in-daemon",
            None,
            "Accept every connection in the daemon: do not hand the socket "
            "of a plain service (a program, nothing to check: no cps, "
            "access list, limit, banner, TLS or PROXY) to the compiled "
            "sub-helper of its user, which otherwise accepts and starts "
            "its servers itself.",
        ],
        ["no-libwrap", None, "Do not consult hosts.allow/hosts.deny at all."],
        [
            "service-events",
            None,
            "Also send every service event (start, exit, refusal, bytes) to "
            "twistd's log as structured events (on with --logger="
            "xinetd_twisted.logs.jsonLogger).",
        ],
        [
            "stayalive",
            None,
            "Keep running when no service is available (xinetd's -stayalive; "
            "implied by twistd -n, as -dontfork implies it).",
        ],
        [
            "strict",
            None,
            "Treat every configuration warning as an error: the service it "
            "concerns is not run (a warning in defaults refuses the "
            "configuration), at start and on every reload; as "
            "'xinetd-twisted check --strict'.",
        ],
    ]
    compData = usage.Completions(optActions={"config": usage.CompleteFiles("*.conf")})

    def opt_version(self) -> None:
        """
        Print the version of xinetd-twisted and exit.
        """
        print(f"xinetd-twisted {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self["spawner"] not in ("helper", "plain"):
            raise usage.UsageError("--spawner must be 'helper' or 'plain'")
        if self["graceful-stop"] is not None and self["graceful-stop"] < 0:
            raise usage.UsageError("--graceful-stop must be a number of seconds")
        if self["helper-idle"] is not None and self["helper-idle"] < 0:
            raise usage.UsageError("--helper-idle must be a number of seconds")
        _checkSchedSlice(self["sched-slice"])
        facility = self["syslog-facility"]
        if facility is not None:
            from xinetd_twisted.logs.sinks import SYSLOG_FACILITIES

            if facility.lower() not in SYSLOG_FACILITIES:
                raise usage.UsageError(f"Bad syslog facility: {facility}")
            self["syslog-facility"] = facility.lower()
        try:
            with pausedCollections():
                config = loadConfig(
                    self["config"],
                    inetdConf=self["inetd-compat"],
                    strict=self["strict"],
                )
        except UnreadableConfig as e:
            # One line: twistd would print its whole usage for a UsageError.
            raise SystemExit(f"twistd: cannot read {e.path}: {e.reason}") from None
        except ConfigError as e:
            for problem in e.problems:
                print(problem, file=sys.stderr)
            raise SystemExit(
                f"twistd: configuration {self['config']} refused (see above)"
            ) from None
        # Before twistd daemonizes, so the operator sees them on the terminal;
        # the service logs them again once logging is up.
        for problem in config.problems:
            print(problem, file=sys.stderr)
        self["loadedConfig"] = config


def makeService(options: Any) -> IService:
    """
    Build the super-server for twistd.
    """
    from functools import partial

    with pausedCollections():
        # Most of the daemon's modules: their import makes objects that
        # all stay, as the configuration's do.
        from xinetd_twisted.daemon.superserver import (
            DaemonOptions,
            SuperServer,
            makeSpawner,
        )

    if options["service-events"]:
        from xinetd_twisted.logs.service import enableServiceEvents

        enableServiceEvents(True)

    daemonOptions = DaemonOptions(
        processLimit=options["limit"],
        syslogPath=options["syslog-path"],
        hostsAllow=None if options["no-libwrap"] else options["hosts-allow"],
        hostsDeny=options["hosts-deny"],
        stayalive=options["stayalive"] or _foreground(options),
        dumpFile=options["dump-file"],
        gracefulStop=options["graceful-stop"],
        syslogFacility=options["syslog-facility"],
        metrics=options["metrics"],
    )
    with pausedCollections():
        return SuperServer(
            options["loadedConfig"],
            options["config"],
            partial(
                loadConfig, inetdConf=options["inetd-compat"], strict=options["strict"]
            ),
            makeSpawner(
                options["spawner"],
                helperIdle=options["helper-idle"],
                schedSlice=options["sched-slice"],
                delegating=not options["accept-in-daemon"],
            ),
            options=daemonOptions,
        )


def _foreground(options: Any) -> bool:
    """
    Whether twistd runs in the foreground (C{-n}): like xinetd's
    C{-dontfork}, that implies C{--stayalive} (a supervisor restarting a
    daemon that exits for want of services would only loop).
    """
    parent = getattr(options, "parent", None)
    try:
        return bool(parent is not None and parent["nodaemon"])
    except KeyError:
        return False
