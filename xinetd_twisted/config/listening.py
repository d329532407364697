# -*- test-case-name: tests.test_listen_unix -*-
"""
UNIX-domain listening sockets in the configuration (our extension):
C{listen_path}, C{socket_owner} and C{socket_mode}, their parsers and the
checks a service using them must pass.
"""

from __future__ import annotations

import os
import stat
from typing import AbstractSet, Any, Dict, List, Optional, Sequence, Tuple

from xinetd_twisted.config import values as v
from xinetd_twisted.config.model import ServiceConfig

SUN_PATH_MAX = 107
"""
The longest path (in bytes) a C{sockaddr_un} holds, its NUL aside.
"""

Owner = Tuple[str, int, Optional[int]]
"""
C{socket_owner}: C{(asWritten, uid, gid or None)}.
"""


def listenPath(words: Sequence[str], ctx: v.ParseContext) -> str:
    """
    C{listen_path}: an absolute path short enough for a UNIX socket
    address.
    """
    path = words[0]
    if not path.startswith("/"):
        raise ValueError(f"bad listen_path {path}: the path must be absolute")
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise ValueError(
            f"bad listen_path {path}: longer than {SUN_PATH_MAX} bytes, "
            "the most a UNIX socket address holds"
        )
    if path.endswith("/"):
        raise ValueError(f"bad listen_path {path}: names a directory")
    return path


def socketOwner(words: Sequence[str], ctx: v.ParseContext) -> Owner:
    """
    C{socket_owner = USER[:GROUP]}: names or numbers; the group is left as
    created when not given.
    """
    written = words[0]
    userPart, colon, groupPart = written.partition(":")
    if not userPart or (colon and not groupPart):
        raise ValueError(f"bad socket_owner {written}: expected USER or USER:GROUP")
    _, uid, _ = v.user([userPart], ctx)
    gid = v.group([groupPart], ctx)[1] if colon else None
    return (written, uid, gid)


def socketMode(words: Sequence[str], ctx: v.ParseContext) -> int:
    """
    C{socket_mode}: octal permissions, at most C{0777}.
    """
    text = words[0]
    digits = text[2:] if text.lower().startswith("0o") else text
    if not digits or any(c not in "01234567" for c in digits):
        raise ValueError(f"bad socket_mode {text}: expected an octal mode such as 0660")
    mode = int(digits, 8)
    if mode > 0o777:
        raise ValueError(f"bad socket_mode {text}: permissions go up to 0777")
    return mode


# xinetd.conf attribute -> ServiceConfig field, for the attributes only a
# listen_path service may use.
_UNIX_ONLY = ("socket_owner", "socket_mode")
_EXCLUDED = ("port", "bind", "interface")


def listeningFields(values: Dict[str, Any]) -> Dict[str, Any]:
    """
    The L{ServiceConfig} fields of this extension, from a block's values.
    """
    fields: Dict[str, Any] = {"listenPath": values.get("listen_path")}
    owner: Optional[Owner] = values.get("socket_owner")  # type: ignore[assignment]
    if owner is not None:
        fields.update(socketOwner=owner[0], socketUid=owner[1], socketGid=owner[2])
    mode = values.get("socket_mode")
    if mode is not None:
        fields["socketMode"] = mode
    return fields


class ListeningProblem(Exception):
    """
    The service cannot run: C{(message, attribute)} (turned into the
    filler's C{Drop}).
    """

    def __init__(self, message: str, attribute: Optional[str]) -> None:
        super().__init__(message)
        self.message = message
        self.attribute = attribute


def checkListening(
    service: ServiceConfig,
    specified: AbstractSet[str],
    isRoot: bool,
    byPath: Dict[str, ServiceConfig],
    warnings: List[Tuple[str, Optional[str]]],
) -> None:
    """
    The checks of C{listen_path}, C{socket_owner} and C{socket_mode}.

    @param specified: the attributes written in the service's block.
    @param byPath: the services kept so far, by listen_path.
    @raise ListeningProblem: the service must be dropped.
    """
    path = service.listenPath
    if path is None:
        for attribute in _UNIX_ONLY:
            if attribute in specified:
                warnings.append(
                    (f"{attribute} has no effect without listen_path", attribute)
                )
        return
    sid = service.serviceId
    for attribute in _EXCLUDED:
        if attribute in specified:
            raise ListeningProblem(
                f"service {sid} listens on {path}: listen_path replaces port and bind",
                attribute,
            )
    if service.socketType != "stream":
        raise ListeningProblem(
            f"listen_path needs socket_type = stream (service {sid} "
            f"has {service.socketType or 'none'})",
            "listen_path",
        )
    other = byPath.get(path)
    if other is not None:
        raise ListeningProblem(
            f"service {sid}: listen_path {path} is already the socket of "
            f"service {other.serviceId} at {other.location}",
            "listen_path",
        )
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ListeningProblem(
            f"the directory of listen_path {path} does not exist", "listen_path"
        )
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ListeningProblem(
            f"cannot check listen_path {path}: {e.strerror}", "listen_path"
        ) from None
    else:
        if not stat.S_ISSOCK(status.st_mode):
            raise ListeningProblem(
                f"listen_path {path} exists and is not a socket "
                "(only a stale socket is replaced)",
                "listen_path",
            )
    if not isRoot and service.socketUid is not None:
        if service.socketUid != os.geteuid() or (
            service.socketGid is not None
            and service.socketGid not in (os.getegid(), *os.getgroups())
        ):
            raise ListeningProblem(
                f"daemon is not root: cannot give the socket to {service.socketOwner}",
                "socket_owner",
            )
