# -*- test-case-name: tests.test_config_fill -*-
"""
Equal values of different services as one object: a thousand services
written alike (C{socket_type = stream}, the same server, no flags) hold one
copy of each value instead of a thousand.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, TypeVar

from xinetd_twisted.config.model import Location, Locations, ServiceConfig

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
    "env",
    "passenv",
    "cps",
    "logType",
    "supplementaryGroups",
    "onlyFrom",
    "noAccess",
    "accessTimes",
    "rlimits",
)
"""
The fields of L{ServiceConfig} that L{SharedValues.fieldsOf} shares (the
checker shares C{types}, C{flags} and the log masks as it builds them).
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

    def locations(self, locations: Mapping[str, Location]) -> Locations:
        """
        C{locations} compact, its names and paths shared.
        """
        compact = Locations.fromMapping(locations)
        return Locations(self(compact.names), self(compact.paths), compact.lines)

    def fieldsOf(self, service: ServiceConfig) -> Dict[str, Any]:
        """
        The fields of C{service} (of L{SHARED_FIELDS}) that an equal value
        seen before can replace, by name, for C{attr.evolve}.
        """
        changes = {}
        for name in SHARED_FIELDS:
            value = getattr(service, name)
            if value is not None:
                shared = self(value)
                if shared is not value:
                    changes[name] = shared
        return changes
