"""
Tests for L{xinetd_twisted.daemon.superserver}: the reload diff, SIGTERM/SIGQUIT,
C{stayalive}, driven with a spawner spy, a memory reactor and real
loopback sockets (bound, never served).
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from typing import Any, List, Optional

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import freePort
from xinetd_twisted.config.model import Config
from xinetd_twisted.config.reader import loadConfig
from xinetd_twisted.daemon.superserver import DaemonOptions, SuperServer
from xinetd_twisted.spawn.testing import SpawnRecord, spawnerSpy


def serviceBlock(
    serviceId: str,
    port: int,
    bind: str = "127.0.0.1",
    args: str = "a",
    extra: str = "",
) -> str:
    return f"""
service {serviceId}
{{
	type		= UNLISTED
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= {bind}
	user		= root
	server		= /bin/cat
	server_args	= {args}
{extra}
}}
"""


class ServerHarness:
    """
    A super-server on a configuration file the test rewrites.
    """

    def __init__(self, case: SynchronousTestCase, text: str, **options: Any) -> None:
        self.directory = tempfile.mkdtemp(prefix="xt-server-")
        self.path = os.path.join(self.directory, "xinetd.conf")
        self.write(text)
        self.reactor = MemoryReactorClock()
        self.spawner, self.records = spawnerSpy()
        self.exits: List[int] = []
        options.setdefault("hostsAllow", None)
        options.setdefault("stopSignals", False)
        options.setdefault("reloadSignals", ())
        self.server = SuperServer(
            loadConfig(self.path),
            self.path,
            loadConfig,
            self.spawner,
            reactor=self.reactor,
            environ={},
            umask=0o022,
            options=DaemonOptions(**options),
            exitProcess=self.exits.append,
        )
        self.server.privilegedStartService()
        case.addCleanup(self.cleanup)

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text)

    def reload(self, text: str) -> Optional[Config]:
        self.write(text)
        return self.server.reload()

    def connect(self, serviceId: str) -> SpawnRecord:
        """
        Feed the service one connection (a socketpair end) and return the
        spawn it caused.
        """
        ours, theirs = socket.socketpair()
        self.sockets = getattr(self, "sockets", []) + [ours]
        before = len(self.records)
        runtime = self.server.runtimes[serviceId]
        runtime.kind.acceptRaw(theirs.detach(), ("127.0.0.1", 4242))  # type: ignore[union-attr]
        assert len(self.records) == before + 1, "no spawn"
        return self.records[-1]

    def cleanup(self) -> None:
        self.server.stopService()
        for s in getattr(self, "sockets", []):
            s.close()
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _portFreeEverywhere() -> int:
    """
    A port free on every address (a test rebinds it on 127.0.0.2).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


class ReloadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.port = _portFreeEverywhere()
        self.other = _portFreeEverywhere()

    def test_unchangedServiceKeepsSocketAndChildren(self) -> None:
        """A reload that keeps a service keeps its socket, runtime and children, with the new server_args."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        runtime = h.server.runtimes["probe"]
        sock = runtime.listeningSocket()
        h.connect("probe").started(100)
        h.reload(serviceBlock("probe", self.port, args="b"))
        self.assertIs(h.server.runtimes["probe"], runtime)
        self.assertIs(runtime.listeningSocket(), sock)
        self.assertEqual(list(runtime.servers), [100])
        self.assertEqual(h.spawner.signalled, [])
        assert runtime.setup is not None
        self.assertEqual(runtime.setup.argv, ("cat", "b"))

    def test_countersKept(self) -> None:
        """Connection counters and running-server counts survive a reload in place."""
        h = ServerHarness(self, serviceBlock("probe", self.port, extra="instances = 1"))
        h.connect("probe").started(100)
        h.reload(serviceBlock("probe", self.port, extra="instances = 1"))
        runtime = h.server.runtimes["probe"]
        self.assertEqual(runtime.connections, 1)
        self.assertIsNotNone(runtime.parts.admission.policy.check("127.0.0.1"))

    def test_changedBindRebindsAndKills(self) -> None:
        """A changed bind address rebinds the service and SIGKILLs its servers."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        old = h.server.runtimes["probe"]
        h.connect("probe").started(100)
        h.reload(serviceBlock("probe", self.port, bind="127.0.0.2"))
        self.assertIsNot(h.server.runtimes["probe"], old)
        self.assertFalse(old.active)
        self.assertEqual(h.spawner.signalled, [(100, signal.SIGKILL)])
        spec = h.server.runtimes["probe"].spec
        assert spec is not None
        self.assertEqual(spec.address, "127.0.0.2")

    def test_removedServiceClosedAndKilled(self) -> None:
        """A removed service's socket is closed and its servers SIGKILLed; it drains until they are reaped."""
        h = ServerHarness(
            self, serviceBlock("probe", self.port) + serviceBlock("other", self.other)
        )
        record = h.connect("probe")
        record.started(100)
        h.reload(serviceBlock("other", self.other))
        self.assertNotIn("probe", h.server.runtimes)
        self.assertFalse(_listening(self.port))
        self.assertEqual(h.spawner.signalled, [(100, signal.SIGKILL)])
        self.assertEqual(len(h.server.draining), 1)
        record.ended(signal.SIGKILL)
        self.assertEqual(h.server.runningChildren(), [])
        self.assertEqual(h.server.draining, [])

    def test_missingBraceKeepsRunningServices(self) -> None:
        """
        Deleting one closing brace swallows the next blocks: the services
        involved keep their old definition, socket and running servers
        (xinetd dropped them and SIGKILLed their servers).
        """
        third = _portFreeEverywhere()
        blocks = [
            serviceBlock("probe", self.port),
            serviceBlock("other", self.other),
            serviceBlock("third", third),
        ]
        h = ServerHarness(self, "".join(blocks))
        h.connect("other").started(100)
        before = dict(h.server.runtimes)
        broken = blocks[0].rstrip().rstrip("}") + "\n" + blocks[1] + blocks[2]
        h.reload(broken)
        self.assertEqual(h.server.runtimes, before)
        self.assertEqual(h.spawner.signalled, [])
        self.assertEqual(list(h.server.runtimes["other"].servers), [100])
        self.assertTrue(_listening(self.port) and _listening(third))
        self.flushLoggedErrors()

    def test_renamedServiceTakesPort(self) -> None:
        """A service removed and another added on its port in one reload: the new one binds."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        h.reload(serviceBlock("renamed", self.port))
        self.assertEqual(list(h.server.runtimes), ["renamed"])
        self.assertTrue(h.server.runtimes["renamed"].active)

    def test_badConfigKeepsEverything(self) -> None:
        """A configuration that fails to load (a defaults error) leaves the running services untouched."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        runtime = h.server.runtimes["probe"]
        config = h.server.config
        self.assertIsNone(h.reload("defaults\n{\n\tinstances = lots\n}\n"))
        self.assertIs(h.server.runtimes["probe"], runtime)
        self.assertTrue(runtime.active)
        self.assertIs(h.server.config, config)

    def test_missingConfigKeepsEverything(self) -> None:
        """A configuration file that vanished leaves the running services untouched."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        os.unlink(h.path)
        self.assertIsNone(h.server.reload())
        self.assertTrue(h.server.runtimes["probe"].active)
        h.write("")

    def test_addedService(self) -> None:
        """A service added by a reload is bound and served."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        h.reload(serviceBlock("probe", self.port) + serviceBlock("other", self.other))
        self.assertTrue(_listening(self.other))
        self.assertTrue(h.server.runtimes["other"].active)

    def test_noServicesAfterReloadExits(self) -> None:
        """Without stayalive, a reload that leaves no service exits with status 1."""
        h = ServerHarness(self, serviceBlock("probe", self.port), stayalive=False)
        h.reload("")
        self.assertEqual(h.exits, [1])

    def test_stayaliveKeepsRunning(self) -> None:
        """With stayalive, a reload that leaves no service does not exit."""
        h = ServerHarness(self, serviceBlock("probe", self.port), stayalive=True)
        h.reload("")
        self.assertEqual(h.exits, [])

    def test_noServicesAtStartExits(self) -> None:
        """Without stayalive, starting with no service exits with status 1."""
        h = ServerHarness(self, "", stayalive=False)
        h.server.startService()
        self.assertEqual(h.exits, [])
        h.reactor.run()
        self.assertEqual(h.exits, [1])


class StopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.port = freePort()

    def test_quitLeavesChildren(self) -> None:
        """SIGQUIT stops the reactor and signals no server."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        h.connect("probe").started(100)
        h.server.quit()
        self.assertTrue(h.reactor.hasStopped)
        self.assertEqual(h.spawner.signalled, [])

    def test_terminateLeavesChildren(self) -> None:
        """SIGTERM without graceful stop exits at once and leaves ordinary servers running."""
        h = ServerHarness(self, serviceBlock("probe", self.port))
        h.connect("probe").started(100)
        h.server.terminate()
        self.assertTrue(h.reactor.hasStopped)
        self.assertEqual(h.spawner.signalled, [])

    def test_gracefulWaitsThenTerms(self) -> None:
        """A graceful stop closes the sockets, waits the grace period, then SIGTERMs the servers."""
        h = ServerHarness(self, serviceBlock("probe", self.port), gracefulStop=3.0)
        record = h.connect("probe")
        record.started(100)
        h.server.terminate()
        self.assertFalse(h.server.runtimes["probe"].active)
        self.assertFalse(_listening(self.port))
        h.reactor.advance(2.9)
        self.assertEqual(h.spawner.signalled, [])
        h.reactor.pump([0.1] * 2)
        self.assertEqual(h.spawner.signalled, [(100, signal.SIGTERM)])
        self.assertFalse(h.reactor.hasStopped)
        record.ended(signal.SIGTERM)
        h.reactor.advance(0.1)
        self.assertTrue(h.reactor.hasStopped)

    def test_gracefulEndsEarly(self) -> None:
        """A graceful stop exits as soon as the last server has ended."""
        h = ServerHarness(self, serviceBlock("probe", self.port), gracefulStop=30.0)
        record = h.connect("probe")
        record.started(100)
        h.server.terminate()
        h.reactor.advance(1)
        record.ended(0)
        h.reactor.advance(0.1)
        self.assertTrue(h.reactor.hasStopped)
        self.assertEqual(h.spawner.signalled, [])

    def test_reloadIgnoredWhileStopping(self) -> None:
        """A reload during a graceful stop does not reopen sockets."""
        h = ServerHarness(self, serviceBlock("probe", self.port), gracefulStop=30.0)
        h.connect("probe").started(100)
        h.server.terminate()
        self.assertIsNone(h.server.reload())
        self.assertFalse(_listening(self.port))


class BrokenServiceTests(SynchronousTestCase):
    """
    One service whose runtime cannot be built is deactivated alone.
    """

    def test_othersRun(self) -> None:
        """
        An unexpected error while building one service's runtime is logged
        and that service skipped; the others listen.
        """
        import xinetd_twisted.service.runtime as runtimeModule

        real = runtimeModule.kindFor

        def breaking(parts: Any) -> Any:
            if parts.service.serviceId == "broken":
                raise RuntimeError("cannot build")
            return real(parts)

        self.patch(runtimeModule, "kindFor", breaking)
        h = ServerHarness(
            self,
            serviceBlock("broken", _portFreeEverywhere())
            + serviceBlock("fine", _portFreeEverywhere()),
        )
        self.assertEqual(list(h.server.runtimes), ["fine"])
        self.assertTrue(h.server.runtimes["fine"].active)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class PressureTests(SynchronousTestCase):
    """
    Spawner back-pressure pauses only the services of the credential set
    that is backed up.
    """

    def test_perCredentialSet(self) -> None:
        """A backed-up set pauses its services; others go on accepting."""
        first, second = _portFreeEverywhere(), _portFreeEverywhere()
        h = ServerHarness(
            self,
            serviceBlock("mine", first)
            + serviceBlock("theirs", second).replace(
                "user\t\t= root", "user\t\t= nobody"
            ),
        )
        mine, theirs = h.server.runtimes["mine"], h.server.runtimes["theirs"]
        observer = h.spawner.pressureObserver
        assert observer is not None
        observer(mine.credentials(), True)
        self.assertEqual([r.name for r in (mine, theirs) if r.paused], ["mine"])
        observer(None, True)
        observer(mine.credentials(), False)
        self.assertTrue(mine.paused and theirs.paused)
        observer(None, False)
        self.assertFalse(mine.paused or theirs.paused)


class ListeningLogTests(SynchronousTestCase):
    """
    The bound services say where they listen, one line each, in order: at
    start-up all in one event, on a reload one event per new service.
    """

    def _events(self) -> List[dict]:
        from twisted.logger import globalLogPublisher

        events: List[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_startUpLines(self) -> None:
        """
        The start-up binds make one event, one line per service in order;
        the text is made before the event is published (braces in an id
        stay as written), and the event carries each service and its
        address in its C{listening} field.
        """
        from twisted.logger import formatEvent

        events = self._events()
        first, second = _portFreeEverywhere(), _portFreeEverywhere()
        ServerHarness(self, serviceBlock("a{b}", first) + serviceBlock("plain", second))
        lines = [e for e in events if " listening on " in formatEvent(e)]
        self.assertEqual(len(lines), 1)
        self.assertEqual(
            formatEvent(lines[0]).splitlines(),
            [
                f"service a{{b}} listening on 127.0.0.1:{first}/tcp",
                f"service plain listening on 127.0.0.1:{second}/tcp",
            ],
        )
        self.assertEqual(
            lines[0]["listening"],
            [("a{b}", f"127.0.0.1:{first}/tcp"), ("plain", f"127.0.0.1:{second}/tcp")],
        )

    def test_reloadLines(self) -> None:
        """
        The services a reload adds say where they listen in one event of
        their own; the kept ones say nothing.
        """
        from twisted.logger import formatEvent

        first, second, third = (_portFreeEverywhere() for _ in range(3))
        h = ServerHarness(self, serviceBlock("one", first))
        events = self._events()
        h.reload(
            serviceBlock("one", first)
            + serviceBlock("two", second)
            + serviceBlock("three", third)
        )
        lines = [formatEvent(e) for e in events if " listening on " in formatEvent(e)]
        self.assertEqual(
            lines,
            [
                f"service two listening on 127.0.0.1:{second}/tcp\n"
                f"service three listening on 127.0.0.1:{third}/tcp"
            ],
        )

    def test_reactivationLine(self) -> None:
        """
        A service bound again on its own (after a cps pause) says where it
        listens in an event of its own.
        """
        from twisted.logger import formatEvent

        port = _portFreeEverywhere()
        h = ServerHarness(self, serviceBlock("paused", port))
        runtime = h.server.runtimes["paused"]
        runtime.deactivateFor(h.reactor.seconds() + 5)
        events = self._events()
        h.reactor.advance(5)
        lines = [e for e in events if " listening on " in formatEvent(e)]
        self.assertEqual(
            [e["listening"] for e in lines], [[("paused", f"127.0.0.1:{port}/tcp")]]
        )

    def test_failedBindLeftOut(self) -> None:
        """
        A service whose socket cannot be bound has no line; the others
        still share one event.
        """
        from twisted.logger import formatEvent

        events = self._events()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        free = _portFreeEverywhere()
        ServerHarness(self, serviceBlock("busy", busy) + serviceBlock("free", free))
        lines = [e for e in events if " listening on " in formatEvent(e)]
        self.assertEqual(
            [e["listening"] for e in lines], [[("free", f"127.0.0.1:{free}/tcp")]]
        )


class StartOrderTests(SynchronousTestCase):
    """
    The privileged start binds every socket, then starts the spawner.
    """

    def test_spawnerAfterSockets(self) -> None:
        """
        When the spawner is asked to start, every service already listens.
        """
        from xinetd_twisted.spawn.testing import SpawnerSpy

        ports = [_portFreeEverywhere(), _portFreeEverywhere()]
        seen: List[List[bool]] = []

        class Watching(SpawnerSpy):
            def start(self) -> Any:
                seen.append([_listening(p) for p in ports])
                return super().start()

        directory = tempfile.mkdtemp(prefix="xt-order-")
        path = os.path.join(directory, "xinetd.conf")
        with open(path, "w") as f:
            f.write(serviceBlock("a", ports[0]) + serviceBlock("b", ports[1]))
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.unlink, path)
        server = SuperServer(
            loadConfig(path),
            path,
            loadConfig,
            Watching([]),
            reactor=MemoryReactorClock(),
            environ={},
            umask=0o022,
            options=DaemonOptions(hostsAllow=None, stopSignals=False, reloadSignals=()),
            exitProcess=lambda status: None,
        )
        server.privilegedStartService()
        self.addCleanup(server.stopService)
        self.assertEqual(seen, [[True, True]])
