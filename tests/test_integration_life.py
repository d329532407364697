"""
Integration tests of the daemon's life with the real C{twistd -n xinetd}:
reload (SIGHUP) under load and with connections in flight, SIGTERM,
SIGQUIT, the graceful stop, the SIGUSR1 dump, and running out of file
descriptors.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import threading
import time
from typing import Callable, List

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import Daemon, fetch, freePort

HOST = "127.0.0.1"


def _requireRoot() -> None:
    if os.geteuid() != 0:
        raise SkipTest("needs root: services run as user root (CI runs as root)")


def shService(
    serviceId: str, port: int, script: str, logPath: str = "", extra: str = ""
) -> str:
    """
    A service running C{/bin/sh SCRIPT} (C{script} is a path plus
    arguments: xinetd's server_args has no quoting).
    """
    log = (
        f"log_type = FILE {logPath}\nlog_on_success = PID HOST EXIT\n"
        "log_on_failure = HOST\n"
        if logPath
        else ""
    )
    return f"""
service {serviceId}
{{
	type		= UNLISTED
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= {HOST}
	user		= root
	server		= /bin/sh
	server_args	= {script}
	{log}
	{extra}
}}
"""


def echoService(serviceId: str, port: int) -> str:
    return f"""
service echo
{{
	type		= INTERNAL UNLISTED
	id		= {serviceId}
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= {HOST}
	cps		= 1000 1
}}
"""


def waitUntil(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class LifeTestCase(TestCase):
    def setUp(self) -> None:
        _requireRoot()

    def daemon(self, configText: str, args: List[str] = ()) -> Daemon:  # type: ignore[assignment]
        d = Daemon(configText, list(args))
        self.addCleanup(d.cleanup)
        self.addCleanup(self._keepLog, d)
        return d

    def _keepLog(self, daemon: Daemon) -> None:
        # The daemon's log outlives its directory, for a failing test.
        with open(os.path.abspath(f"{self.id()}.twistd.log"), "w") as f:
            f.write(daemon.log())

    def script(self, body: str) -> str:
        """
        Write a shell script for a backend and return its path.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(body + "\n")
        return path

    def connect(self, port: int) -> socket.socket:
        s = socket.create_connection((HOST, port), timeout=10)
        self.addCleanup(s.close)
        return s

    def reloadWith(self, daemon: Daemon, text: str, count: int) -> None:
        """
        Rewrite the configuration, SIGHUP, wait for reload number C{count}.
        """
        with open(daemon.configPath, "w") as f:
            f.write(text)
        daemon.signal(signal.SIGHUP)
        waitUntil(
            lambda: (
                (
                    daemon.log().count("Reconfigured:")
                    + daemon.log().count("reconfiguration failed")
                )
                >= count
            )
        )

    def serviceLog(self, path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""


class ReloadTests(LifeTestCase):
    def test_reloadUnderLoadDropsNothing(self) -> None:
        """Ten reloads that keep a service, while clients hammer it: no connection fails."""
        port, other = freePort(), freePort()
        script = self.script("echo ok$1")
        # cps off: a quick client reaches xinetd's default limit (and would
        # trip any fixed one) by itself, which is not what is tested here.
        base = shService("hammer", port, script, extra="cps = 0 0")
        d = self.daemon(base)
        d.start(waitFor=(HOST, port))
        failures: List[str] = []
        served = [0]
        stop = threading.Event()

        def hammer() -> None:
            deadline = time.monotonic() + 20
            for _ in range(3000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    reply = fetch(HOST, port, timeout=10)
                    if not reply.startswith(b"ok"):
                        failures.append(repr(reply))
                    served[0] += 1
                except OSError as e:
                    failures.append(repr(e))

        client = threading.Thread(target=hammer)
        client.start()
        try:
            for n in range(10):
                time.sleep(0.2)
                text = shService("hammer", port, f"{script} {n}", extra="cps = 0 0")
                if n % 2 == 0:
                    text += echoService("toggled", other)
                self.reloadWith(d, text, n + 1)
        finally:
            stop.set()
            client.join(60)
        self.assertEqual(failures, [])
        self.assertGreater(served[0], 20)
        self.assertEqual(d.log().count("readjusting service hammer"), 10)

    def test_connectionInFlightSurvives(self) -> None:
        """A server running during a reload that keeps its service finishes its work."""
        port = freePort()
        log = os.path.abspath(self.mktemp())
        d = self.daemon(shService("slow", port, self.script("sleep 2; echo done"), log))
        d.start(waitFor=(HOST, port))
        s = self.connect(port)
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        self.reloadWith(
            d, shService("slow", port, self.script("sleep 2; echo again"), log), 1
        )
        self.assertEqual(s.makefile("rb").read(), b"done\n")
        self.assertEqual(fetch(HOST, port), b"again\n")

    def test_removedServiceChildKilled(self) -> None:
        """Removing a service SIGKILLs its running servers: the client sees the connection end."""
        port, other = freePort(), freePort()
        log = os.path.abspath(self.mktemp())
        d = self.daemon(
            shService("slow", port, self.script("exec sleep 60"), log)
            + echoService("other", other)
        )
        d.start(waitFor=(HOST, port))
        s = self.connect(port)
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        started = time.monotonic()
        self.reloadWith(d, echoService("other", other), 1)
        self.assertEqual(s.recv(1), b"")
        self.assertLess(time.monotonic() - started, 10)
        waitUntil(lambda: "EXIT: slow signal=9" in self.serviceLog(log))
        self.assertIn("Sending signal 9 to slow server", d.log())
        self.assertRaises(OSError, socket.create_connection, (HOST, port), 2)

    def test_removedInternalServiceConnectionsEnd(self) -> None:
        """
        Removing an internal service ends its in-process connections, as
        xinetd ends the servers it forked for them; other services' stay.
        """
        port, other = freePort(), freePort()
        d = self.daemon(echoService("gone", port) + echoService("other", other))
        d.start(waitFor=(HOST, port))
        gone = self.connect(port)
        kept = self.connect(other)
        for s in (gone, kept):
            s.sendall(b"x")
            self.assertEqual(s.recv(1), b"x")
        self.reloadWith(d, echoService("other", other), 1)
        gone.settimeout(10)
        try:
            self.assertEqual(gone.recv(1), b"")
        except ConnectionResetError:
            pass  # aborted: a reset is as good as an EOF here
        kept.sendall(b"y")
        self.assertEqual(kept.recv(1), b"y")

    def test_badConfigKeepsServing(self) -> None:
        """A configuration that fails to load on reload leaves the service running."""
        port = freePort()
        d = self.daemon(shService("svc", port, self.script("echo up")))
        d.start(waitFor=(HOST, port))
        self.reloadWith(d, "defaults\n{\n\tinstances = lots\n}\n", 1)
        self.assertIn("reconfiguration failed", d.log())
        self.assertEqual(fetch(HOST, port), b"up\n")


class StopTests(LifeTestCase):
    def test_sigquitLeavesServers(self) -> None:
        """SIGQUIT closes the sockets and exits 0; a running server finishes its work."""
        port = freePort()
        log = os.path.abspath(self.mktemp())
        d = self.daemon(shService("slow", port, self.script("sleep 1; echo done"), log))
        d.start(waitFor=(HOST, port))
        s = self.connect(port)
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        d.signal(signal.SIGQUIT)
        assert d.process is not None
        self.assertEqual(d.process.wait(timeout=10), 0)
        self.assertIn("Exiting...", d.log())
        self.assertRaises(OSError, socket.create_connection, (HOST, port), 2)
        self.assertEqual(s.makefile("rb").read(), b"done\n")

    def test_sigtermLeavesServersEndsInternal(self) -> None:
        """SIGTERM exits 0, leaves ordinary servers running and ends internal services' connections."""
        port, echo = freePort(), freePort()
        log = os.path.abspath(self.mktemp())
        d = self.daemon(
            shService("slow", port, self.script("sleep 1; echo done"), log)
            + echoService("echo", echo)
        )
        d.start(waitFor=(HOST, port))
        s = self.connect(port)
        e = self.connect(echo)
        e.sendall(b"x")
        self.assertEqual(e.recv(1), b"x")
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        d.signal(signal.SIGTERM)
        assert d.process is not None
        self.assertEqual(d.process.wait(timeout=10), 0)
        self.assertEqual(e.recv(1), b"")
        self.assertEqual(s.makefile("rb").read(), b"done\n")

    def test_gracefulWaitsForServers(self) -> None:
        """With --graceful-stop, SIGTERM stops accepting at once and exits when the servers are done."""
        port = freePort()
        log = os.path.abspath(self.mktemp())
        d = self.daemon(
            shService("slow", port, self.script("sleep 2; echo done"), log),
            ["--graceful-stop", "20"],
        )
        d.start(waitFor=(HOST, port))
        s = self.connect(port)
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        d.signal(signal.SIGTERM)
        waitUntil(lambda: "Graceful stop" in d.log())
        self.assertRaises(OSError, socket.create_connection, (HOST, port), 2)
        assert d.process is not None
        self.assertEqual(d.process.wait(timeout=15), 0)
        self.assertEqual(s.makefile("rb").read(), b"done\n")
        self.assertIn("EXIT: slow status=0", self.serviceLog(log))

    def test_gracefulTermsLateServers(self) -> None:
        """With --graceful-stop, servers still running at the deadline get SIGTERM."""
        port = freePort()
        log = os.path.abspath(self.mktemp())
        d = self.daemon(
            shService("slow", port, self.script("exec sleep 60"), log),
            ["--graceful-stop", "1"],
        )
        d.start(waitFor=(HOST, port))
        s = self.connect(port)
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        d.signal(signal.SIGTERM)
        assert d.process is not None
        self.assertEqual(d.process.wait(timeout=15), 0)
        self.assertEqual(s.recv(1), b"")
        self.assertIn("EXIT: slow signal=15", self.serviceLog(log))


class DumpTests(LifeTestCase):
    def test_sigusr1DumpsAndRotates(self) -> None:
        """SIGUSR1 appends a dump with the running server and still rotates twistd's log."""
        port = freePort()
        log = os.path.abspath(self.mktemp())
        dump = os.path.join(os.path.abspath(self.mktemp()))
        d = self.daemon(
            shService("slow", port, self.script("sleep 3"), log), ["--dump-file", dump]
        )
        d.start(waitFor=(HOST, port))
        self.connect(port)
        waitUntil(lambda: "START: slow" in self.serviceLog(log))
        d.signal(signal.SIGUSR1)
        waitUntil(lambda: os.path.exists(dump) and "END OF DUMP" in open(dump).read())
        text = open(dump).read()
        self.assertIn("Service = slow", text)
        self.assertRegex(text, r"pid=\d+ from=127\.0\.0\.1")
        self.assertEqual(os.stat(dump).st_mode & 0o777, 0o644)
        waitUntil(lambda: os.path.exists(d.logPath + ".1"))

    def test_dumpRefusesSymlink(self) -> None:
        """The dump is never written through a symlink planted at its path."""
        port = freePort()
        target = os.path.abspath(self.mktemp())
        with open(target, "w") as f:
            f.write("precious\n")
        dump = os.path.abspath(self.mktemp())
        os.symlink(target, dump)
        d = self.daemon(
            shService("svc", port, self.script("echo up")), ["--dump-file", dump]
        )
        d.start(waitFor=(HOST, port))
        d.signal(signal.SIGUSR1)
        waitUntil(lambda: "cannot write the state dump" in d.log())
        self.assertIn("Too many levels of symbolic links", d.log())
        self.assertEqual(open(target).read(), "precious\n")


class DescriptorTests(LifeTestCase):
    def test_outOfDescriptors(self) -> None:
        """Out of descriptors the daemon keeps running, logs once, and serves again when they free up."""
        if not hasattr(resource, "prlimit"):
            raise SkipTest("resource.prlimit is missing")
        port = freePort()
        d = self.daemon(echoService("echo", port))
        d.start(waitFor=(HOST, port))
        assert d.process is not None
        pid = d.process.pid
        # Let the start-up probe connection close first: a descriptor freed
        # later would (rightly) end the episode early.
        fds: List[int] = []
        for _ in range(40):
            time.sleep(0.1)
            now = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
            if now == fds:
                break
            fds = now
        limit = max(len(fds) + 4, fds[-1] + 1)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        held = [self.connect(port) for _ in range(12)]
        for s in held:
            s.settimeout(0.3)
            try:
                s.sendall(b"x")
                s.recv(1)
            except OSError:
                pass
        waitUntil(lambda: "cannot accept" in d.log())
        time.sleep(1)  # several accept retries inside one episode
        self.assertIsNone(d.process.poll())
        self.assertEqual(d.log().count("cannot accept"), 1)
        for s in held:
            s.close()
        self.assertEqual(fetch(HOST, port, b"back", timeout=10), b"back")
        self.assertIn("descriptors available again", d.log())
        self.assertIsNone(d.process.poll())
