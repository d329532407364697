"""
The public entry point for composing the super-server into a Twisted
application::

    from xinetd_twisted.server import superServerFromPath
    superServerFromPath("/etc/xinetd.conf").setServiceParent(application)

See docs/api.md.
"""

from xinetd_twisted.daemon.superserver import (
    DaemonOptions,
    SuperServer,
    makeSpawner,
    superServerFromPath,
)

__all__ = ["DaemonOptions", "SuperServer", "makeSpawner", "superServerFromPath"]
