# -*- test-case-name: tests.test_config_fill -*-
"""
Equal values of different services as one object: a thousand services
written alike (C{socket_type = stream}, the same server, no flags) hold one
copy of each value instead of a thousand.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, TypeVar

_T = TypeVar("_T", bound=Hashable)

SHARED_FIELDS = (
    "socketType",
    "protocol",
    "bind",
    "user",
    "group",
    "server",
    "serverArgs",
    "argv",
    "cps",
    "logType",
    "onlyFrom",
    "noAccess",
    "accessTimes",
)
"""
The fields of L{ServiceConfig} that L{SharedValues.share} shares when set.
"""

SHARED_SETS = ("types", "flags", "logOnSuccess", "logOnFailure")
"""
The frozensets every L{ServiceConfig} has, shared too.
"""


class SharedValues:
    """
    The immutable values of one configuration load, one object per value.
    """

    def __init__(self) -> None:
        self._values: Dict[Any, Any] = {}

    def __call__(self, value: _T) -> _T:
        """
        The object equal to C{value} seen first in this load (C{value}
        itself the first time).
        """
        return self._values.setdefault(value, value)

    def share(self, fields: Dict[str, Any]) -> None:
        """
        In C{fields}, the keyword arguments of a L{ServiceConfig} about to
        be made: each value of L{SHARED_FIELDS} and L{SHARED_SETS} replaced
        by the equal one seen first (the draft shares the locations'
        names and paths already).
        """
        # L{__call__} inlined: this runs for each field of each service.
        shared = self._values.setdefault
        for name in SHARED_FIELDS:
            value = fields.get(name)
            if value is not None:
                fields[name] = shared(value, value)
        for name in SHARED_SETS:
            value = fields[name]
            fields[name] = shared(value, value)
