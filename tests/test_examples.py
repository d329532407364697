"""
The runnable examples under examples/ work as their docstrings say.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

from twisted.application.service import IService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.daemon import REPO, freePort


class _ReadAll(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.data)


def _load(name: str) -> object:
    path = os.path.join(REPO, "examples", name)
    spec = importlib.util.spec_from_file_location("example_" + name[:-3], path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ComposeExampleTests(TestCase):
    async def test_servesOnBothSockets(self) -> None:
        """
        examples/compose.py serves its hello service on the configured port
        and on the extra UNIX endpoint it adds.
        """
        compose = _load("compose.py")
        directory = tempfile.mkdtemp(prefix="xt-example-")
        port = freePort()
        config = os.path.join(directory, "compose.conf")
        with open(os.path.join(REPO, "examples", "compose.conf")) as f:
            text = f.read().replace("11101", str(port))
        if os.geteuid() != 0:
            text = text.replace("\tuser\t\t= nobody\n", "")
        with open(config, "w") as f:
            f.write(text)
        sockPath = os.path.join(directory, "hello.sock")
        application = compose.makeApplication(  # type: ignore[attr-defined]
            config, extraEndpoint=f"unix:{sockPath}"
        )
        service = IService(application)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        for endpoint in (
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            UNIXClientEndpoint(reactor, sockPath),
        ):
            client = _ReadAll()
            await connectProtocol(endpoint, client)
            self.assertEqual(await client.done, b"hello from xinetd-twisted\n")
