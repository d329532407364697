# -*- test-case-name: tests.test_server_dump -*-
"""
The SIGUSR1 state dump: what the daemon serves and what is running now,
appended to a file as xinetd appends to C{/var/run/xinetd.dump}.

Unlike xinetd, the file is opened with C{O_NOFOLLOW}: a symlink planted at
the dump path cannot make the daemon (root) append to another file.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, List, Optional

from xinetd_twisted import __version__
from xinetd_twisted.config.dump import dumpService

DUMP_MODE = 0o644

END_OF_DUMP = "END OF DUMP"


def _when(seconds: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(seconds))


def _state(runtime: Any) -> str:
    if runtime.reactivationPending:
        return "deactivated (connections per second), reactivation pending"
    if runtime.active:
        return "active"
    return "inactive"


def _runtimeLines(runtime: Any, draining: bool = False) -> List[str]:
    spec = runtime.spec
    lines = [
        f"Service = {runtime.serviceId}",
        f"\tKind = {runtime.kindName}",
        f"\tState = {'removed, servers still running' if draining else _state(runtime)}",
        f"\tSocket = {spec.describe() if spec is not None else '(none)'}",
        f"\tConnections = {runtime.connections}",
        f"\tRefused = {runtime.refused}",
        f"\tRunning servers = {len(runtime.servers)}",
    ]
    for pid, child in sorted(runtime.servers.items()):
        peer = child.peer if child.peer is not None else "<no address>"
        lines.append(f"\t\tpid={pid} from={peer} since={_when(child.started)}")
    retrying = runtime.retrying
    lines.append(f"\tSpawn retries pending = {len(retrying)}")
    if not draining:
        lines.append("\tConfiguration:")
        for line in dumpService(runtime.service).splitlines():
            lines.append(f"\t\t{line}")
    return lines


def formatDump(
    server: Any, now: Optional[float] = None, pid: Optional[int] = None
) -> str:
    """
    The text of one dump of C{server} (a L{xinetd_twisted.daemon.superserver.SuperServer}).

    @param now: seconds since the epoch (for tests).
    @param pid: the daemon's pid (for tests).
    """
    if now is None:
        now = time.time()
    if pid is None:
        pid = os.getpid()
    policy = server.context.policy
    lines = [
        f"xinetd-twisted Version {__version__} (pid {pid})",
        f"Dump time: {_when(now)}",
        f"Configuration file: {server.configPath}",
        f"Services: {len(server.runtimes)}",
        f"Running servers, all services (process limit counter): "
        f"{policy.processLimit.running}"
        + (
            f" of {policy.processLimit.limit}"
            if policy.processLimit.limit is not None
            else ""
        ),
        "",
    ]
    for runtime in sorted(server.runtimes.values(), key=lambda r: r.serviceId):
        lines.extend(_runtimeLines(runtime))
        lines.append("")
    for runtime in getattr(server, "draining", ()):
        lines.extend(_runtimeLines(runtime, draining=True))
        lines.append("")
    lines.extend(_sensorLines(policy.sensorList, now))
    lines.append(END_OF_DUMP)
    return "\n".join(lines) + "\n"


def _sensorLines(sensorList: Any, now: float) -> Iterable[str]:
    entries = list(sensorList.entries()) if sensorList is not None else []
    yield f"Global no_access list (SENSOR): {len(entries)} address(es)"
    for address, expiry in sorted(entries):
        until = "FOREVER" if expiry == float("inf") else f"{expiry - now:.0f} s left"
        yield f"\t{address} ({until})"


def appendDump(path: str, text: str) -> None:
    """
    Append C{text} to the dump file, created with mode 0644.

    @raise OSError: when the file cannot be opened or written (a symlink
        at C{path} gives C{ELOOP}).
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_EXCL, DUMP_MODE)
    except FileExistsError:
        fd = os.open(path, flags, DUMP_MODE)
    else:
        # twistd daemonizes with umask 077; the dump is 0644 as xinetd's.
        os.fchmod(fd, DUMP_MODE)
    try:
        view = memoryview(text.encode("utf-8", "replace"))
        for _ in range(64):
            if not view:
                break
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
