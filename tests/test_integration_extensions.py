"""
Integration tests of our extensions (issue 10) with the real
C{twistd -n xinetd}: C{max_duration} on real servers and in-process
connections, C{per_source_cps} from two loopback sources, and C{type = RPC}
services registered with Debian's rpcbind (checked with C{rpcinfo -p} and
C{rup}, serving C{rpc.rstatd}) in network and mount namespaces the test
creates, so that no host rpcbind is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import List, Optional

from twisted.trial.unittest import SkipTest, TestCase

import tests.daemon
from tests.daemon import Daemon, freePort, waitForPort
from tests.test_integration_life import _requireRoot as requireRoot
from tests.test_integration_life import waitUntil

HOST = "127.0.0.1"


def requirePrograms(*paths: str) -> None:
    for path in paths:
        if os.path.isabs(path):
            found = os.access(path, os.X_OK)
        else:
            found = shutil.which(path) is not None
        if not found:
            raise SkipTest(
                f"{path} is not installed (Debian: rpcbind rstatd rstat-client)"
            )


def readFile(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class DaemonCase(TestCase):
    """
    Starts daemons and cleans them up.
    """

    def daemon(self, text: str) -> Daemon:
        d = Daemon(text)
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def serviceLogPath(self) -> str:
        path = os.path.join(self.mktemp() + "-service.log")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        return os.path.abspath(path)

    def killLater(self, logPath: str, serviceId: str) -> None:
        """
        Kill (by pid, from their START lines) the servers of C{serviceId}
        still running at the end: xinetd leaves its servers running when
        it stops, and so do we.
        """

        def kill() -> None:
            for line in readFile(logPath).splitlines():
                if f"START: {serviceId} pid=" in line:
                    pid = int(line.split("pid=")[1].split()[0])
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass

        self.addCleanup(kill)


def programService(
    serviceId: str, port: int, server: str, args: str, logPath: str, extra: str = ""
) -> str:
    return f"""
service {serviceId}
{{
	type		= UNLISTED
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= {HOST}
	user		= root
	server		= {server}
	server_args	= {args}
	log_type	= FILE {logPath}
	log_on_success	= PID HOST EXIT DURATION
	log_on_failure	= HOST
	{extra}
}}
"""


def echoService(serviceId: str, port: int, logPath: str, extra: str = "") -> str:
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
	log_type	= FILE {logPath}
	log_on_success	= PID HOST EXIT
	log_on_failure	= HOST
	{extra}
}}
"""


class MaxDurationTests(DaemonCase):
    """
    C{max_duration} through the real daemon.
    """

    def setUp(self) -> None:
        requireRoot()

    def test_serverTerminated(self) -> None:
        """
        A sleeping server is sent SIGTERM after max_duration: its EXIT line
        says signal=15 and the daemon's log names it.
        """
        port = freePort()
        log = self.serviceLogPath()
        self.killLater(log, "sleeper")
        d = self.daemon(
            programService("sleeper", port, "/bin/sleep", "60", log, "max_duration = 1")
        )
        waitForPort(HOST, port)
        client = socket.create_connection((HOST, port))
        self.addCleanup(client.close)
        started = time.monotonic()
        waitUntil(lambda: "EXIT: sleeper signal=15" in readFile(log))
        self.assertLess(time.monotonic() - started, 10)
        self.assertIn(
            "still running after max_duration 1 s: sending signal 15", d.log()
        )
        self.assertNotIn("sending signal 9", d.log())

    def test_serverKilledAfterGrace(self) -> None:
        """
        A server that ignores SIGTERM is sent SIGKILL 5 s later: EXIT
        signal=9.
        """
        port = freePort()
        log = self.serviceLogPath()
        self.killLater(log, "stubborn")
        script = os.path.abspath(self.mktemp())
        with open(script, "w") as f:
            f.write("trap '' TERM\nwhile :; do sleep 0.2; done\n")
        d = self.daemon(
            programService("stubborn", port, "/bin/sh", script, log, "max_duration = 1")
        )
        waitForPort(HOST, port)
        client = socket.create_connection((HOST, port))
        self.addCleanup(client.close)
        waitUntil(lambda: "sending signal 15" in d.log())
        termAt = time.monotonic()
        waitUntil(lambda: "EXIT: stubborn signal=9" in readFile(log), timeout=20)
        self.assertGreater(time.monotonic() - termAt, 4.0)
        self.assertIn("sending signal 9", d.log())

    def test_inProcessConnectionClosed(self) -> None:
        """
        An internal echo connection is closed after max_duration, logged.
        """
        port = freePort()
        log = self.serviceLogPath()
        d = self.daemon(echoService("echo-limited", port, log, "max_duration = 1"))
        waitForPort(HOST, port)
        with socket.create_connection((HOST, port)) as client:
            client.settimeout(10)
            client.sendall(b"hello")
            self.assertEqual(client.recv(5), b"hello")
            started = time.monotonic()
            try:
                rest = client.recv(1)
            except ConnectionResetError:
                rest = b""
            self.assertEqual(rest, b"")
            self.assertLess(time.monotonic() - started, 8)
        waitUntil(lambda: "after max_duration 1 s" in d.log())
        self.assertIn(
            "service echo-limited: closing the connection from 127.0.0.1", d.log()
        )

    def test_redirectClosed(self) -> None:
        """
        A redirected connection is closed after max_duration, with its
        TRAFFIC and EXIT lines.
        """
        echoPort, port = freePort(), freePort()
        log = self.serviceLogPath()
        redirect = f"""
service relay
{{
	type		= UNLISTED
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= {HOST}
	user		= root
	redirect	= {HOST} {echoPort}
	max_duration	= 1
	log_type	= FILE {log}
	log_on_success	= PID HOST EXIT TRAFFIC
}}
"""
        d = self.daemon(echoService("echo-behind", echoPort, log) + redirect)
        waitForPort(HOST, port)
        with socket.create_connection((HOST, port)) as client:
            client.settimeout(10)
            client.sendall(b"hello")
            self.assertEqual(client.recv(5), b"hello")
            try:
                rest = client.recv(1)
            except ConnectionResetError:
                rest = b""
            self.assertEqual(rest, b"")
        # The start-up probe was a relayed connection too (in=0 out=0).
        waitUntil(lambda: "TRAFFIC: relay in=5(bytes) out=5(bytes)" in readFile(log))
        waitUntil(lambda: readFile(log).count("EXIT: relay") == 2)
        self.assertIn("service relay: closing the connection from 127.0.0.1", d.log())


class PerSourceCpsTests(DaemonCase):
    """
    C{per_source_cps} through the real daemon, from two loopback sources.
    """

    def setUp(self) -> None:
        requireRoot()

    def connect(self, port: int, source: str) -> bytes:
        with socket.socket() as s:
            s.settimeout(5)
            s.bind((source, 0))
            s.connect((HOST, port))
            try:
                s.sendall(b"x")
                return s.recv(1)
            except (ConnectionResetError, BrokenPipeError):
                return b""

    def test_oneSourceRefused(self) -> None:
        """
        The third connection within a second from one address is refused
        with FAIL per_source_cps; another address still gets served.
        """
        port = freePort()
        log = self.serviceLogPath()
        self.daemon(echoService("echo-rated", port, log, "per_source_cps = 2 30"))
        waitForPort(HOST, port)
        # waitForPort's own connection counted for 127.0.0.1: use others.
        results = [self.connect(port, "127.0.0.3") for _ in range(3)]
        self.assertEqual(results, [b"x", b"x", b""])
        self.assertEqual(self.connect(port, "127.0.0.4"), b"x")
        self.assertEqual(self.connect(port, "127.0.0.3"), b"")
        waitUntil(lambda: "FAIL: echo-rated per_source_cps" in readFile(log))
        fails = [
            line for line in readFile(log).splitlines() if "FAIL: echo-rated" in line
        ]
        self.assertEqual(len(fails), 2)
        self.assertTrue(all("from=127.0.0.3" in line for line in fails), fails)


RSTATD = "/usr/sbin/rpc.rstatd"


class RpcNamespace:
    """
    rpcbind in fresh network and mount namespaces (its own loopback and
    its own /run, so neither port 111 nor /run/rpcbind.sock of the host
    is involved), and a way to run commands inside.
    """

    def __init__(self, case: TestCase) -> None:
        self.process = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--mount",
                "sh",
                "-c",
                "ip link set lo up && mount -t tmpfs none /run && "
                "mkdir /run/rpcbind && exec rpcbind -f",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        case.addCleanup(self.stop)
        waitUntil(lambda: b"portmapper" in self.run("rpcinfo", "-p", HOST))

    @property
    def prefix(self) -> List[str]:
        return ["nsenter", "-t", str(self.process.pid), "--net", "--mount", "--"]

    def run(self, *command: str, timeout: float = 20) -> bytes:
        if self.process.poll() is not None:
            raise AssertionError("rpcbind exited")
        result = subprocess.run(
            self.prefix + list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        return result.stdout

    def mappings(self, program: str = "100001") -> List[List[str]]:
        """
        C{rpcinfo -p} rows of C{program}: C{[program, version, proto, port,
        name]}.
        """
        rows = [
            line.split() for line in self.run("rpcinfo", "-p").decode().splitlines()
        ]
        return [row for row in rows if row and row[0] == program]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def rstatdService(logPath: str, versions: str = "2-4") -> str:
    # As in /etc/rpc: no rpc_number, no port.
    return f"""
service rstatd
{{
	type		= RPC
	socket_type	= dgram
	protocol	= udp
	wait		= yes
	user		= root
	server		= {RSTATD}
	rpc_version	= {versions}
	log_type	= FILE {logPath}
	log_on_success	= PID EXIT
}}
"""


class RpcTests(DaemonCase):
    """
    C{type = RPC} with Debian's rpcbind, rpcinfo, rpc.rstatd and rup.
    """

    def setUp(self) -> None:
        requireRoot()
        requirePrograms("unshare", "nsenter", "ip", "rpcbind", "rpcinfo", "rup", RSTATD)
        self.namespace = RpcNamespace(self)
        original = tests.daemon.twistdCommand
        self.patch(
            tests.daemon, "twistdCommand", lambda: self.namespace.prefix + original()
        )

    def rstatd(self, versions: str = "2-4") -> tuple:
        log = self.serviceLogPath()
        self.killLater(log, "rstatd")
        d = self.daemon(rstatdService(log, versions))
        waitUntil(lambda: "Registered" in d.log())
        return d, log

    def test_registered(self) -> None:
        """
        Every rpc_version is registered for udp on the port the daemon
        bound, as C{rpcinfo -p} shows.
        """
        d, _ = self.rstatd()
        rows = self.namespace.mappings()
        self.assertEqual([row[1] for row in rows], ["2", "3", "4"], rows)
        self.assertEqual({row[2] for row in rows}, {"udp"})
        ports = {row[3] for row in rows}
        self.assertEqual(len(ports), 1)
        self.assertNotEqual(ports, {"0"})
        self.assertIn(f"Registered 3 versions of rstatd (port {ports.pop()})", d.log())

    def test_rup(self) -> None:
        """
        C{rup localhost} gets its answer from rpc.rstatd, started by the
        daemon on its first datagram.
        """
        _, log = self.rstatd()
        output = self.namespace.run("rup", "localhost").decode()
        self.assertIn(" up ", output)
        self.assertIn("load", output)
        waitUntil(lambda: "START: rstatd pid=" in readFile(log))

    def test_unregisteredAtStop(self) -> None:
        """
        Stopping the daemon removes its registrations.
        """
        d, _ = self.rstatd()
        d.stop()
        self.assertEqual(self.namespace.mappings(), [])

    def test_reloadRemoves(self) -> None:
        """
        A reload without the service unregisters it.
        """
        d, log = self.rstatd()
        with open(d.configPath, "w") as f:
            f.write(echoService("echo-left", freePort(), log))
        d.signal(signal.SIGHUP)
        waitUntil(lambda: "service rstatd deactivated" in d.log())
        waitUntil(lambda: self.namespace.mappings() == [])

    def test_reloadChangesVersions(self) -> None:
        """
        A reload with other versions re-registers the same port.
        """
        d, log = self.rstatd("2-4")
        (port,) = {row[3] for row in self.namespace.mappings()}
        with open(d.configPath, "w") as f:
            f.write(rstatdService(log, "3"))
        d.signal(signal.SIGHUP)

        def changed() -> Optional[bool]:
            return [row[1] for row in self.namespace.mappings()] == ["3"]

        waitUntil(lambda: bool(changed()))
        self.assertEqual({row[3] for row in self.namespace.mappings()}, {port})


class NoNewPrivilegesTests(TestCase):
    """
    C{no_new_privileges = yes} through the real daemon: the server runs with
    PR_SET_NO_NEW_PRIVS, the others do not.
    """

    def test_serverHasNoNewPrivs(self) -> None:
        """A server of a no_new_privileges service reads NoNewPrivs: 1."""
        from tests.daemon import Daemon, fetch, freePort

        user = "\tuser = nobody\n" if os.geteuid() == 0 else ""
        text = ""
        ports = {}
        for name, extra in (("nnp", "\tno_new_privileges = yes\n"), ("plain", "")):
            ports[name] = freePort()
            text += (
                f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {ports[name]}\n"
                "\tsocket_type = stream\n\twait = no\n\tbind = 127.0.0.1\n"
                f"\tserver = /bin/grep\n\tserver_args = NoNewPrivs /proc/self/status\n"
                f"{user}{extra}}}\n"
            )
        d = Daemon(text)
        self.addCleanup(d.cleanup)
        d.start(waitFor=("127.0.0.1", ports["plain"]))
        self.assertEqual(
            fetch("127.0.0.1", ports["nnp"]).split(), [b"NoNewPrivs:", b"1"]
        )
        self.assertEqual(
            fetch("127.0.0.1", ports["plain"]).split(), [b"NoNewPrivs:", b"0"]
        )
