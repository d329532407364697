# -*- test-case-name: tests.test_spawn_setup -*-
"""
The daemon's side of the spawn helper's wire format (described in
L{xinetd_twisted.spawn.helper}): the messages it sends, how it decodes the
helper's, and the resource limits it reads the same way as the helper.

The helper program itself is not imported into the daemon: it is a larger
module that only the helper process runs.  Like it, this module imports
only the standard library.
"""

from __future__ import annotations

import marshal
import os
import resource
import sys

MAX_MESSAGE = 65536
"""Largest message either side sends; templates above it go in parts."""

TEMPLATE_PART = 60000
MAX_EVENTS_PER_MESSAGE = 128


def allRlimits() -> dict:
    """
    C{{resource: (soft, hard)}} for every C{RLIMIT_*} this platform has
    (aliases such as C{RLIMIT_OFILE} once).
    """
    limits: dict = {}
    for name in sorted(dir(resource)):
        if name.startswith("RLIMIT_"):
            r = getattr(resource, name)
            try:
                limits.setdefault(r, resource.getrlimit(r))
            except (OSError, ValueError):  # pragma: no cover - not on Linux
                pass
    return limits


def encodeTemplate(
    executable: str,
    argv: tuple,
    environment: tuple,
    uid: int | None,
    gid: int | None,
    supplementaryGroups: tuple | None,
    umask: int,
    nice: int | None,
    rlimits: tuple,
    chroot: str | None,
    workingDirectory: str,
    newSession: bool,
    noNewPrivileges: bool = False,
) -> bytes:
    """
    Encode the fields of a C{ChildSetup} (names as there) for the helper.
    """
    return marshal.dumps(
        (
            os.fsencode(executable),
            [os.fsencode(a) for a in argv],
            [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in environment],
            uid,
            gid,
            None if supplementaryGroups is None else list(supplementaryGroups),
            umask,
            nice,
            [(int(r), int(s), int(h)) for r, s, h in rlimits],
            None if chroot is None else os.fsencode(chroot),
            os.fsencode(workingDirectory),
            bool(newSession),
            bool(noNewPrivileges),
        )
    )


def templateMessages(templateId: int, blob: bytes) -> list[bytes]:
    """
    Split an encoded template into C{"T"} messages that each fit.
    """
    parts = [blob[i : i + TEMPLATE_PART] for i in range(0, len(blob), TEMPLATE_PART)]
    parts = parts or [b""]
    return [
        marshal.dumps(("T", templateId, part, i == len(parts) - 1, i))
        for i, part in enumerate(parts)
    ]


_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
# What os.fsencode does, in one call per variable (the start request's
# hot path).


def spawnMessage(
    requestId: int, templateId: int, extraEnvironment: tuple, lane: int = 0
) -> bytes:
    """
    Encode a start request (the fd travels beside it in C{SCM_RIGHTS});
    C{lane} picks which of the sub-helpers of its credential set starts it.
    """
    env = [f"{k}={v}".encode(_FS_ENCODING, _FS_ERRORS) for k, v in extraEnvironment]
    return marshal.dumps(("S", requestId, templateId, env, lane))


def signalMessage(pid: int, signalNumber: int) -> bytes:
    """
    Encode a request to signal a child.
    """
    return marshal.dumps(("K", pid, signalNumber))


def killSubMessage(subId: int) -> bytes:
    """
    Encode a request to the root helper to kill a stuck sub-helper.
    """
    return marshal.dumps(("X", subId))


def listenMessage(listenerId: int, templateId: int) -> bytes:
    """
    Encode the offer of a listening socket (in C{SCM_RIGHTS} beside it) to
    a compiled sub-helper, which then accepts on it and starts each
    connection's server as a spawn of C{templateId} (see
    L{xinetd_twisted.spawn.delegation}).
    """
    return marshal.dumps(("L", listenerId, templateId))


def unlistenMessage(listenerId: int) -> bytes:
    """
    Encode taking a listening socket back from a sub-helper.
    """
    return marshal.dumps(("U", listenerId))


def retireMessage() -> bytes:
    """
    Encode the daemon's request to an idle root helper to exit.
    """
    return marshal.dumps(("Q",))


def decode(data: bytes) -> tuple:
    """
    Decode one message from either side.
    """
    return marshal.loads(data)  # type: ignore[no-any-return]
