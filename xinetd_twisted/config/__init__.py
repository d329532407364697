"""
Configuration: xinetd.conf/inetd.conf text to an immutable, checked model.

Knows nothing of sockets, processes or the reactor.
"""

from xinetd_twisted.config.dump import dumpService
from xinetd_twisted.config.reader import loadConfig, parseConfigText

__all__ = ["loadConfig", "parseConfigText", "dumpService"]
