"""
Tests for L{xinetd_twisted.daemon.rpc}: which mappings an RPC service
sets and unsets, and when the super-server asks (bind, reload, stop), with
a fake portmap client.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from tests.test_daemon_superserver import ServerHarness
from xinetd_twisted.config.model import Location, ServiceConfig
from xinetd_twisted.daemon.rpc import Registration, RpcRegistrations, registrationsFor


class FakeClient:
    """
    Records calls; answers with C{answer} (or holds them when L{None}).
    """

    def __init__(self, answer: Any = True) -> None:
        self.answer = answer
        self.calls: List[tuple] = []
        self.held: List[Deferred] = []
        self.closed = False

    def _answer(self) -> Deferred:
        if self.answer is None:
            d: Deferred = Deferred()
            self.held.append(d)
            return d
        return succeed(self.answer)

    def set(self, program: int, version: int, protocol: int, port: int) -> Deferred:
        self.calls.append(("set", program, version, protocol, port))
        return self._answer()

    def unset(self, program: int, version: int) -> Deferred:
        self.calls.append(("unset", program, version))
        return self._answer()

    def close(self) -> Deferred:
        self.closed = True
        return succeed(None)


def rpcService(**kw: Any) -> ServiceConfig:
    base: dict = dict(
        name="rstatd",
        serviceId="rstatd",
        location=Location("t.conf", 1),
        socketType="dgram",
        protocol="udp",
        wait=True,
        types=frozenset({"RPC"}),
        rpcNumber=100001,
        rpcVersion=(2, 4),
        port=0,
    )
    base.update(kw)
    return ServiceConfig(**base)


class RegistrationsForTests(SynchronousTestCase):
    """
    The mappings of one service.
    """

    def test_everyVersion(self) -> None:
        """
        One mapping per version of the range, on the protocol's number.
        """
        self.assertEqual(
            registrationsFor(rpcService(), 700),
            tuple(Registration(100001, v, 17, 700) for v in (2, 3, 4)),
        )

    def test_tcp(self) -> None:
        """
        tcp is protocol 6.
        """
        (one,) = registrationsFor(rpcService(protocol="tcp", rpcVersion=(1, 1)), 9)
        self.assertEqual(one.protocol, 6)

    def test_notRpc(self) -> None:
        """
        Services that are not RPC register nothing.
        """
        self.assertEqual(registrationsFor(rpcService(types=frozenset()), 9), ())


class SyncTests(SynchronousTestCase):
    """
    L{RpcRegistrations.sync} and L{RpcRegistrations.remove}.
    """

    def test_setThenUnset(self) -> None:
        """
        Setting registers every version; removing unsets each.
        """
        client = FakeClient()
        registrations = RpcRegistrations(client)  # type: ignore[arg-type]
        registrations.sync("rstatd", registrationsFor(rpcService(), 700))
        self.assertEqual(client.calls, [("set", 100001, v, 17, 700) for v in (2, 3, 4)])
        client.calls.clear()
        registrations.remove("rstatd")
        self.assertEqual(client.calls, [("unset", 100001, v) for v in (2, 3, 4)])
        self.assertEqual(registrations.registered("rstatd"), ())

    def test_unchanged(self) -> None:
        """
        The same mappings again send nothing.
        """
        client = FakeClient()
        registrations = RpcRegistrations(client)  # type: ignore[arg-type]
        wanted = registrationsFor(rpcService(), 700)
        registrations.sync("rstatd", wanted)
        client.calls.clear()
        registrations.sync("rstatd", wanted)
        self.assertEqual(client.calls, [])

    def test_moveWaitsForUnset(self) -> None:
        """
        New mappings (a new port) are set only once the old ones are unset.
        """
        client = FakeClient(answer=None)
        registrations = RpcRegistrations(client)  # type: ignore[arg-type]
        registrations.sync("rstatd", registrationsFor(rpcService(rpcVersion=(2, 2)), 1))
        client.held.pop().callback(True)
        client.calls.clear()
        registrations.sync("rstatd", registrationsFor(rpcService(rpcVersion=(2, 2)), 2))
        self.assertEqual(client.calls, [("unset", 100001, 2)])
        client.held.pop().callback(True)
        self.assertEqual(client.calls[-1], ("set", 100001, 2, 17, 2))

    def test_unsetKeepsOtherProtocol(self) -> None:
        """
        Unsetting a udp service re-sets the tcp service of the same program
        (PMAP UNSET clears every protocol).
        """
        client = FakeClient()
        registrations = RpcRegistrations(client)  # type: ignore[arg-type]
        udp = rpcService(rpcVersion=(2, 2))
        tcp = rpcService(serviceId="rstatd-tcp", protocol="tcp", rpcVersion=(2, 2))
        registrations.sync("rstatd", registrationsFor(udp, 1))
        registrations.sync("rstatd-tcp", registrationsFor(tcp, 5))
        client.calls.clear()
        registrations.remove("rstatd")
        self.assertEqual(client.calls, [("unset", 100001, 2), ("set", 100001, 2, 6, 5)])

    def test_failureLogged(self) -> None:
        """
        A refused SET is logged as xinetd logs it.
        """
        client = FakeClient(answer=False)
        registrations = RpcRegistrations(client)  # type: ignore[arg-type]
        messages: list = []
        from twisted.logger import globalLogPublisher

        observer: Any = messages.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        registrations.sync("rstatd", registrationsFor(rpcService(rpcVersion=(3, 3)), 1))
        texts = [m["log_format"].format(**m) for m in messages if "log_format" in m]
        self.assertIn("pmap_set failed. service=rstatd program=100001 version=3", texts)

    def test_stop(self) -> None:
        """
        Stopping unsets everything and closes the client.
        """
        client = FakeClient()
        registrations = RpcRegistrations(client)  # type: ignore[arg-type]
        registrations.sync("rstatd", registrationsFor(rpcService(rpcVersion=(2, 2)), 1))
        client.calls.clear()
        registrations.stop()
        self.assertEqual(client.calls, [("unset", 100001, 2)])
        self.assertTrue(client.closed)


RPC_BLOCK = """
service rpcprobe
{{
	type		= RPC UNLISTED
	socket_type	= dgram
	protocol	= udp
	wait		= yes
	bind		= 127.0.0.1
	user		= root
	server		= /bin/cat
	rpc_number	= 300123
	rpc_version	= {versions}
}}
"""


class SuperServerTests(SynchronousTestCase):
    """
    The super-server registers at bind, re-registers on reload, unsets at
    removal and stop.
    """

    def harness(self) -> tuple:
        h = ServerHarness(self, "")
        client = FakeClient()
        h.server.rpc = RpcRegistrations(client)  # type: ignore[arg-type]
        return h, client

    def port(self, h: ServerHarness) -> int:
        sock = h.server.runtimes["rpcprobe"].listeningSocket()
        assert sock is not None
        return int(sock.getsockname()[1])

    def test_registeredOnActualPort(self) -> None:
        """
        An RPC service with no port binds a free one and registers it.
        """
        h, client = self.harness()
        h.reload(RPC_BLOCK.format(versions="1-2"))
        port = self.port(h)
        self.assertNotEqual(port, 0)
        self.assertEqual(
            client.calls,
            [("set", 300123, 1, 17, port), ("set", 300123, 2, 17, port)],
        )

    def test_reloadChangesVersions(self) -> None:
        """
        A reload with other versions keeps the socket and moves the
        mappings.
        """
        h, client = self.harness()
        h.reload(RPC_BLOCK.format(versions="1-2"))
        port = self.port(h)
        client.calls.clear()
        h.reload(RPC_BLOCK.format(versions="3"))
        self.assertEqual(self.port(h), port)
        self.assertEqual(
            client.calls,
            [("unset", 300123, 1), ("unset", 300123, 2), ("set", 300123, 3, 17, port)],
        )

    def test_reloadRemoves(self) -> None:
        """
        A reload that removes the service unsets it.
        """
        h, client = self.harness()
        h.reload(RPC_BLOCK.format(versions="1"))
        client.calls.clear()
        h.reload("")
        self.assertEqual(client.calls, [("unset", 300123, 1)])

    def test_stop(self) -> None:
        """
        Stopping the daemon unsets every registration.
        """
        h, client = self.harness()
        h.reload(RPC_BLOCK.format(versions="1"))
        client.calls.clear()
        h.server.stopService()
        self.assertEqual(client.calls, [("unset", 300123, 1)])
        self.assertTrue(client.closed)
