"""
Configuration: xinetd.conf/inetd.conf text to an immutable, checked model.

Knows nothing of sockets, processes or the reactor.
"""

from typing import TYPE_CHECKING, Any

from xinetd_twisted.config.reader import loadConfig, parseConfigText

if TYPE_CHECKING:
    from xinetd_twisted.config.dump import dumpService

__all__ = ["loadConfig", "parseConfigText", "dumpService"]


def __getattr__(name: str) -> Any:
    """
    L{dumpService}, imported on first use: the daemon reads configurations
    at every start, it renders them only for a dump.
    """
    if name == "dumpService":
        from xinetd_twisted.config.dump import dumpService

        return dumpService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
