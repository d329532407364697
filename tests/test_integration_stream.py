"""
Integration tests: the real C{twistd -n xinetd} serving stream C{wait = no}
services that spawn programs, driven over loopback.

Each test writes a configuration, starts the daemon as a subprocess, and
talks to it with plain sockets.  The backend is C{tests/probe.py}, which
reports what the child process got: fds, argv, environment, credentials,
session, umask, limits.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import socket
import subprocess
import time

from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import PROBE, Daemon, fetch, freePort

SYSTEM_PYTHON = "/usr/bin/python3"


def _requireRoot() -> None:
    if os.geteuid() != 0:
        raise SkipTest("needs root: the daemon switches users (CI runs as root)")


def _interpreter() -> str:
    """
    A Python any user can run (the probe is run as nobody in some tests).
    """
    if os.access(SYSTEM_PYTHON, os.X_OK):
        return SYSTEM_PYTHON
    raise SkipTest(f"{SYSTEM_PYTHON} is missing: no interpreter every user can run")


class DaemonTestCase(TestCase):
    """
    Starts daemons and cleans them up.
    """

    def daemon(self, configText: str, **kw: object) -> Daemon:
        d = Daemon(configText, **kw)  # type: ignore[arg-type]
        self.addCleanup(d.cleanup)
        return d

    def probeIn(self, daemon: Daemon) -> str:
        """
        A copy of the probe in the daemon's (world-readable) directory, so
        that any user can run it wherever the repository lives.
        """
        path = os.path.join(daemon.directory, "probe.py")
        shutil.copy(PROBE, path)
        os.chmod(path, 0o755)
        return path


def probeService(
    name: str, port: int, interpreter: str, probe: str, extra: str = "", args: str = ""
) -> str:
    return f"""
service {name}
{{
	type		= UNLISTED
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= 127.0.0.1
	server		= {interpreter}
	server_args	= -I -S {probe} {args}
{extra}
}}
"""


class SpawnTests(DaemonTestCase):
    """
    What a spawned server gets, exactly as xinetd gives it.
    """

    def start(self, extra: str = "", args: str = "", user: str = "nobody") -> dict:
        port = freePort()
        placeholder = "@PROBE@"
        userLine = f"\tuser\t\t= {user}\n" if user else ""
        text = probeService(
            "probe", port, _interpreter(), placeholder, userLine + extra, args
        )
        d = self.daemon("")
        probe = self.probeIn(d)
        with open(d.configPath, "w") as f:
            f.write(text.replace(placeholder, probe))
        d.start(waitFor=("127.0.0.1", port))
        self.d = d
        self.port = port
        self.probe = probe
        return json.loads(fetch("127.0.0.1", port))

    def test_socketOnStdio(self) -> None:
        """
        fds 0, 1 and 2 are the connected socket, peer = the client; nothing
        else is open; the socket is blocking.
        """
        _requireRoot()
        report = self.start()
        self.assertEqual(report["fds"], [0, 1, 2])
        for fd in ("0", "1", "2"):
            stdio = report["stdio"][fd]
            self.assertTrue(stdio["socket"])
            self.assertEqual(stdio["type"], "SOCK_STREAM")
            self.assertFalse(stdio["listening"])
            self.assertFalse(stdio["nonblocking"])
            self.assertEqual(stdio["peer"][0], "127.0.0.1")
            self.assertEqual(stdio["sock"], ["127.0.0.1", self.port])

    def test_argvAndEnvironment(self) -> None:
        """
        argv[0] is the server's basename followed by server_args; the
        environment is the daemon's plus C{env} plus REMOTE_HOST.
        """
        _requireRoot()
        report = self.start(extra="\tenv\t\t= PROBE_ONE=1 PROBE_TWO=two\n")
        self.assertEqual(report["argv"][0], self.probe)
        env = report["env"]
        self.assertEqual(env["REMOTE_HOST"], "127.0.0.1")
        self.assertEqual(env["PROBE_ONE"], "1")
        self.assertEqual(env["PROBE_TWO"], "two")
        self.assertEqual(env.get("PATH"), os.environ.get("PATH"))

    def test_passenv(self) -> None:
        """
        With C{passenv} the child gets only the listed variables, C{env}
        and REMOTE_HOST.
        """
        _requireRoot()
        report = self.start(extra="\tpassenv\t\t= PATH\n\tenv\t\t= ONLY=me\n")
        self.assertEqual(set(report["env"]), {"PATH", "ONLY", "REMOTE_HOST"})

    def test_credentialsSessionUmask(self) -> None:
        """
        The server runs as the configured user with its primary group and no
        supplementary groups (groups = no), in a new session, in /, with
        the daemon's umask | 022.
        """
        _requireRoot()
        nobody = pwd.getpwnam("nobody")
        report = self.start()
        self.assertEqual(
            (report["uid"], report["euid"]), (nobody.pw_uid, nobody.pw_uid)
        )
        self.assertEqual(
            (report["gid"], report["egid"]), (nobody.pw_gid, nobody.pw_gid)
        )
        self.assertEqual(report["groups"], [])
        self.assertEqual(report["sid"], report["pid"])
        self.assertEqual(report["cwd"], "/")
        self.assertEqual(report["umask"] & 0o022, 0o022)

    def test_groupsYes(self) -> None:
        """
        C{groups = yes} gives the user's supplementary groups.
        """
        _requireRoot()
        nobody = pwd.getpwnam("nobody")
        report = self.start(extra="\tgroups\t\t= yes\n")
        expected = sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))
        self.assertEqual(sorted(set(report["groups"]) | {nobody.pw_gid}), expected)

    def test_umaskNiceRlimits(self) -> None:
        """
        C{umask}, C{nice} and C{rlimit_*} are applied; RLIMIT_NOFILE defaults
        to the daemon's hard limit, soft and hard.
        """
        _requireRoot()
        report = self.start(
            extra="\tumask\t\t= 027\n\tnice\t\t= 5\n\trlimit_cpu\t= 30\n"
        )
        self.assertEqual(report["umask"], 0o027)
        self.assertEqual(report["nice"], 5)
        self.assertEqual(report["rlimits"]["CPU"], [30, 30])
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.assertEqual(report["rlimits"]["NOFILE"], [hard, hard])

    def test_rlimitFiles(self) -> None:
        """
        C{rlimit_files} sets RLIMIT_NOFILE soft and hard.
        """
        _requireRoot()
        report = self.start(extra="\trlimit_files\t= 77\n")
        self.assertEqual(report["rlimits"]["NOFILE"], [77, 77])

    def test_exitCodeAndEOF(self) -> None:
        """
        The client gets EOF as soon as the server exits (the daemon keeps no
        copy of the connection), and the exit status is logged.
        """
        _requireRoot()
        self.start(
            extra="\tlog_type\t= FILE @LOG@\n\tlog_on_success\t= PID HOST EXIT\n".replace(
                "@LOG@", "/dev/null"
            ),
            args="--exit 3",
        )
        started = time.monotonic()
        fetch("127.0.0.1", self.port, timeout=5)
        self.assertLess(time.monotonic() - started, 5)
        deadline = time.monotonic() + 5
        while "status=3" not in self.d.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("EXIT: probe status=3", self.d.log())


class DaemonBehaviourTests(DaemonTestCase):
    """
    The daemon as a whole: bundled configuration, one bad service, zombies.
    """

    def test_bundledConfiguration(self) -> None:
        """
        The README's configuration serves the article's find walkthrough.
        """
        _requireRoot()
        root = "/tmp/xinetd"
        os.makedirs(os.path.join(root, "a"), exist_ok=True)
        marker = os.path.join(root, "a", f"integration-{os.getpid()}.txt")
        open(marker, "w").close()
        self.addCleanup(os.unlink, marker)
        conf = os.path.join(os.path.dirname(PROBE), "..", "conf", "xinetd.conf")
        with open(conf) as f:
            text = f.read()
        d = self.daemon(text)
        if not _traversable(os.path.dirname(os.path.abspath(conf))):
            raise SkipTest("the checkout is not reachable by nobody")
        d.start(waitFor=("127.0.0.1", 11000))
        self.assertIn(marker.encode(), fetch("127.0.0.1", 11000))
        self.assertEqual(fetch("127.0.0.1", 11001), b"Hello, 127.0.0.1.\n")

    def test_portInUseDeactivatesOnlyThatService(self) -> None:
        """
        A service whose port is taken is logged and deactivated; the others
        run.
        """
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        free = freePort()
        text = f"""
service taken
{{
	type = INTERNAL UNLISTED
	id = taken
	port = {taken}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
}}
service daytime
{{
	type = INTERNAL UNLISTED
	port = {free}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
}}
"""
        text = text.replace("service taken", "service time", 1)
        d = self.daemon(text)
        d.start(waitFor=("127.0.0.1", free))
        self.assertTrue(fetch("127.0.0.1", free).endswith(b"\r\n"))
        self.assertIn("Service taken failed to start and is deactivated", d.log())

    def test_noZombies(self) -> None:
        """
        After many short-lived servers, none is left unreaped.
        """
        port = freePort()
        text = f"""
service quick
{{
	type = UNLISTED
	port = {port}
	socket_type = stream
	wait = no
	bind = 127.0.0.1
	server = /bin/true
	{"user = nobody" if os.geteuid() == 0 else ""}
}}
"""
        d = self.daemon(text)
        d.start(waitFor=("127.0.0.1", port))
        for _ in range(40):
            fetch("127.0.0.1", port)
        time.sleep(0.5)
        out = subprocess.run(
            ["ps", "-eo", "stat=,ppid=,pid="], capture_output=True, text=True
        ).stdout
        tree = _descendants(d.process.pid)
        zombies = [
            line
            for line in out.splitlines()
            if line.split()[0].startswith("Z") and int(line.split()[1]) in tree
        ]
        self.assertEqual(zombies, [])

    def test_nonRootRefusesOtherUser(self) -> None:
        """
        A daemon that is not root refuses, when the configuration loads, a
        service that names another user, naming the file and line.
        """
        from xinetd_twisted.config.reader import parseConfigText

        other = "nobody" if os.geteuid() != pwd.getpwnam("nobody").pw_uid else "root"
        config = parseConfigText(
            "service x\n{\n\ttype = UNLISTED\n\tport = 1\n\tsocket_type = stream\n"
            f"\twait = no\n\tuser = {other}\n\tserver = /bin/true\n}}\n",
            path="x.conf",
            isRoot=False,
        )
        self.assertEqual(config.services, ())
        self.assertTrue(
            any(
                str(p).startswith("x.conf:") and other in str(p)
                for p in config.problems
            ),
            config.problems,
        )


def _descendants(pid: int) -> set:
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True
    ).stdout
    children: dict = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found = {pid}
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _traversable(path: str) -> bool:
    """
    Whether every directory up to C{path} lets others through.
    """
    path = os.path.abspath(path)
    while path != "/":
        if not os.stat(path).st_mode & 0o001:
            return False
        path = os.path.dirname(path)
    return True
