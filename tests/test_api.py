"""
The super-server as a Twisted developer composes it: a configuration path in,
a Service out, attached to an application and run by the real reactor.
"""

from __future__ import annotations

import os
import tempfile

from twisted.application.service import Application, IService, IServiceCollection
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.daemon import freePort
from xinetd_twisted.config.model import ConfigError
from xinetd_twisted.daemon.superserver import SuperServer, superServerFromPath


class _ReadAll(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.data)


class ComposeTests(TestCase):
    """
    L{superServerFromPath} gives a Service any application can run.
    """

    def write(self, text: str) -> str:
        fd, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_badConfigurationRaises(self) -> None:
        """
        A configuration that cannot be used raises L{ConfigError} at once.
        """
        path = self.write("defaults\n{\n\tinstances = many\n}\n")
        self.assertRaises(ConfigError, superServerFromPath, path)

    async def test_servesInsideAnApplication(self) -> None:
        """
        Attached to an application and started, it serves its services with
        the running reactor, both internal and spawned, and stops cleanly.
        """
        daytime, spawned = freePort(), freePort()
        user = "\tuser = nobody\n" if os.geteuid() == 0 else ""
        path = self.write(
            f"""
service daytime
{{
	type = INTERNAL UNLISTED
	port = {daytime}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
}}
service hello
{{
	type = UNLISTED
	port = {spawned}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
	server = /bin/echo
	server_args = composed
{user}}}
"""
        )
        application = Application("test")
        server = superServerFromPath(path)
        self.assertIsInstance(server, SuperServer)
        server.setServiceParent(application)
        collection = IServiceCollection(application)
        self.assertIn(server, list(collection))
        IService(application).privilegedStartService()
        IService(application).startService()
        self.addCleanup(IService(application).stopService)
        for port, check in (
            (daytime, lambda data: data.endswith(b"\r\n")),
            (spawned, lambda data: data == b"composed\n"),
        ):
            proto = _ReadAll()
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
            data = await proto.done
            self.assertTrue(check(data), data)
