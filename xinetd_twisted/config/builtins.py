# -*- test-case-name: tests.test_config_fill -*-
"""
The one table of xinetd's internal services: which names exist for which
socket type, and how xinetd runs each (inline in the daemon, or in a forked
child that counts against C{instances} and gets an EXIT line).

Pure data, imported by config/ (which names are valid), the inetd.conf
reader (which names C{internal} may mean) and the runtime (how to serve and
count them).
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Optional, Tuple

import attr

from xinetd_twisted.records import plainRepr


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Builtin:
    """
    One internal service of xinetd's builtin table.

    @ivar name: the service name (xinetd's C{name}, lower case).
    @ivar socketType: C{"stream"} or C{"dgram"}.
    @ivar forks: xinetd serves it in a forked child: it counts towards
        C{instances} and C{per_source} and logs EXIT.  The others are
        answered inline (START with pid 0, no EXIT).
    @ivar inetd: offered by inetd.conf's C{internal} server.
    """

    name: str
    socketType: str
    forks: bool
    inetd: bool = True


def _table(*rows: Builtin) -> Dict[Tuple[str, str], Builtin]:
    return {(row.name, row.socketType): row for row in rows}


BUILTINS: Dict[Tuple[str, str], Builtin] = _table(
    Builtin("echo", "stream", forks=True),
    Builtin("echo", "dgram", forks=False),
    Builtin("discard", "stream", forks=True),
    Builtin("discard", "dgram", forks=False),
    Builtin("daytime", "stream", forks=False),
    Builtin("daytime", "dgram", forks=False),
    Builtin("time", "stream", forks=False),
    Builtin("time", "dgram", forks=False),
    Builtin("chargen", "stream", forks=True),
    Builtin("chargen", "dgram", forks=False),
    Builtin("tcpmux", "stream", forks=True, inetd=False),
    Builtin("sensor", "stream", forks=False, inetd=False),
    Builtin("sensor", "dgram", forks=False, inetd=False),
)
"""Internal services by C{(name, socket_type)}, as xinetd's builtin table."""

INETD_INTERNALS: FrozenSet[str] = frozenset(
    row.name for row in BUILTINS.values() if row.inetd
)
"""Names inetd.conf's C{internal} server may stand for."""


def builtinFor(name: str, socketType: Optional[str]) -> Optional[Builtin]:
    """
    The internal service called C{name} for C{socketType}, or L{None}.
    """
    if socketType is None:
        return None
    return BUILTINS.get((name.lower(), socketType))
