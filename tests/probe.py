#!/usr/bin/env python3
"""
A server program that describes the process it runs in, for tests.

Run it as a service's C{server} (with C{sys.executable} and this path as the
first two argv words, or directly: it has a shebang).  It writes ONE line of
JSON to fd 1 and exits 0.  Standard library only; runs under -I -S.  The keys
are stable, others rely on them:

  - C{argv}: C{sys.argv} (the script path first) as strings;
  - C{env}: the environment exactly as passed to execve, from
    /proc/self/environ (so Python's locale coercion does not show), as an
    object;
  - C{uid gid euid egid}: ints; C{groups}: sorted supplementary gids;
  - C{umask}: int; C{pid sid pgid ppid}: ints; C{cwd}: str;
  - C{root}: readlink of /proc/self/root (C{"/"} unless chrooted);
  - C{nice}: C{os.getpriority(PRIO_PROCESS, 0)};
  - C{rlimits}: C{{"AS": [soft, hard], ...}} for AS CPU DATA NOFILE RSS STACK,
    -1 meaning unlimited;
  - C{fds}: sorted list of open fd numbers;
  - C{stdio}: for "0", "1", "2": C{{"socket": false}} or C{{"socket": true,
    "type": "SOCK_STREAM", "family": "AF_UNIX", "peer": ..., "sock": ...,
    "listening": bool}}, plus C{"nonblocking": bool} for every open fd;
  - C{sigIgn sigBlk}: the sorted signal numbers ignored / blocked (from
    /proc/self/status);
  - C{argsExtra}: unused, reserved.

When argv[1] is C{--exit N} the probe exits with status N after writing;
C{--sleep S} sleeps S seconds first (so tests can signal it).
"""

import json
import os
import resource
import socket
import sys
import time


def _sigset(hexmask):
    mask = int(hexmask, 16)
    return [n + 1 for n in range(64) if mask & (1 << n)]


def _stdio(fd):
    info = {}
    try:
        import fcntl

        info["nonblocking"] = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    except OSError:
        return {"socket": False, "closed": True}
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        info["socket"] = False
        return info
    try:
        info["socket"] = True
        info["type"] = socket.SocketKind(s.type).name
        info["family"] = socket.AddressFamily(s.family).name
        for key, call in (("peer", s.getpeername), ("sock", s.getsockname)):
            try:
                value = call()
                info[key] = value if isinstance(value, str) else list(value)
            except OSError:
                info[key] = None
        info["listening"] = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    finally:
        s.close()
    return info


def describe():
    """
    Return the description as a dict.
    """
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    with open("/proc/self/environ", "rb") as f:
        raw = f.read()
    env = {}
    for item in raw.split(b"\0"):
        if item:
            k, _, v = item.partition(b"=")
            env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
    # the listing itself used one fd: keep only those still open now
    still = []
    for fd in fds:
        try:
            os.fstat(fd)
            still.append(fd)
        except OSError:
            pass
    mask = os.umask(0)
    os.umask(mask)
    limits = {}
    for name in ("AS", "CPU", "DATA", "NOFILE", "RSS", "STACK"):
        soft, hard = resource.getrlimit(getattr(resource, "RLIMIT_" + name))
        limits[name] = [soft, hard]
    return {
        "argv": sys.argv,
        "env": env,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "umask": mask,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "cwd": os.getcwd(),
        "root": os.readlink("/proc/self/root"),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "rlimits": limits,
        "fds": still,
        "stdio": {str(fd): _stdio(fd) for fd in (0, 1, 2)},
        "sigIgn": _sigset(status["SigIgn"]),
        "sigBlk": _sigset(status["SigBlk"]),
    }


def main():
    exitCode = 0
    args = sys.argv[1:]
    if args[:1] == ["--sleep"]:
        time.sleep(float(args[1]))
    # Describe before Python's own ignores could matter: SigIgn comes from
    # the kernel, and Python only ignores SIGPIPE/SIGXFSZ itself, which the
    # tests account for.
    line = json.dumps(describe(), sort_keys=True) + "\n"
    os.write(1, line.encode("utf-8"))
    if args[:1] == ["--exit"]:
        exitCode = int(args[1])
    os._exit(exitCode)


if __name__ == "__main__":
    main()
