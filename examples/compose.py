"""
Compose the super-server into your own Twisted application, and serve one
of its services on an extra endpoint of your choosing.

Run it with:  twistd -n -y examples/compose.py
(or import L{makeApplication} and start it yourself, as its test does).
"""

from __future__ import annotations

import os
from typing import Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Application
from twisted.internet import endpoints

from xinetd_twisted.server import DaemonOptions, superServerFromPath

CONFIG = os.environ.get(
    "XINETD_EXAMPLE_CONFIG",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "compose.conf"),
)


def makeApplication(
    configPath: str = CONFIG,
    extraEndpoint: str = "unix:/tmp/xinetd-example-hello.sock",
    serviceId: str = "hello",
    reactor: Optional[object] = None,
) -> Application:
    """
    An application holding the super-server of C{configPath}, plus the
    service C{serviceId} served on C{extraEndpoint} too.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    application = Application("xinetd-example")
    # Our application keeps its own signal handlers: the super-server takes
    # only SIGHUP (reload) here, not SIGTERM/SIGQUIT/SIGUSR1.
    options = DaemonOptions(stopSignals=False, hostsAllow=None)
    server = superServerFromPath(configPath, reactor=reactor, options=options)
    server.setServiceParent(application)
    hello = server.getServiceNamed(serviceId)
    StreamServerEndpointService(
        endpoints.serverFromString(reactor, extraEndpoint), hello.factory
    ).setServiceParent(application)
    return application


application = makeApplication()
