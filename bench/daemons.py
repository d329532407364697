"""
The super-servers the benchmarks start, and only those: how each is started
(real xinetd, ours under twistd), waiting for it to serve, stopping it by its
pid, and the facts about the machine a results table needs.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import attr
import benchlib
from benchlib import REPO, Workload

XINETD = "/usr/sbin/xinetd"
TCPSERVER = "/usr/bin/tcpserver"
"""ucspi-tcp's tcpserver: a small C fork server, the reference of the spawn rows."""
TWISTD = "from twisted.scripts.twistd import run; run()"
STARTED = "Started working"
"""What our daemon (and xinetd) log once every socket is bound."""
FORKSERVER_PREFIX = "forkserver"
"""
Names the reference C{bench/forkserver.c} with its process count
(C{forkserver1}, C{forkserver2}) or as C{forkserver-relay}.
"""
FORKSERVER_RELAY = "relay"
"""The C{--forkservers} item (and name suffix) of C{forkserver -r}."""
REUSEPORT_PREFIX = "ours-reuseport"
"""Names the daemon of several of ours sharing the ports: C{ours-reuseport2}."""


def hasTwisted(python: str) -> bool:
    """
    Whether C{python} can import twistd (so it can run our daemon).
    """
    probe = subprocess.run(
        [python, "-c", "import twisted.scripts.twistd"], capture_output=True
    )
    return probe.returncode == 0


def daemonPython(requested: str = "") -> str:
    """
    The interpreter that runs our daemon and the start-up floor: C{requested},
    else this one if it has Twisted, else the repository's C{.venv}.
    """
    if requested:
        return requested
    venv = REPO / ".venv" / "bin" / "python"
    if not hasTwisted(sys.executable) and venv.exists():
        return str(venv)
    return sys.executable


def oursEnv() -> Dict[str, str]:
    """
    The environment of our daemon: this one, with the repository first on
    C{PYTHONPATH} and bytecode caches allowed (as installed, the package has
    its bytecode compiled, as Twisted's is: without them ours would compile
    every module from source on each start).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    return env


def oursArgv(
    python: str,
    config: Path,
    options: Sequence[str] = (),
    twistdOptions: Sequence[str] = (),
) -> List[str]:
    """
    Our daemon in the foreground under twistd's own runner (it calls
    privilegedStartService, as the plugin expects), with C{options} after
    C{xinetd} and C{twistdOptions} before it.
    """
    argv = [python, "-c", TWISTD, "-n", "--pidfile=", *twistdOptions, "xinetd"]
    return argv + ["--config", str(config), *options]


def xinetdArgv(config: Path, log: Optional[Path] = None) -> List[str]:
    """
    Real xinetd in the foreground, staying alive, its log to C{log}.
    """
    argv = [XINETD, "-dontfork", "-stayalive", "-f", str(config)]
    return argv + (["-filelog", str(log)] if log is not None else [])


class Daemon:
    """
    One super-server process started by this script, and only that one.

    @ivar name: C{"xinetd"} or C{"ours"} (or C{"ours-<variant>"}).
    @ivar ports: service name to the port this daemon's config uses.
    @ivar newSession: start it in a session of its own, as systemd
        (C{SameProcessGroup=no}, the default) and a daemonizing start do.
        Under autogroup scheduling a session is also a CPU share: in the
        bench's own session a daemon would share one with the CPU burner.
    """

    def __init__(
        self,
        name: str,
        argv: List[str],
        ports: Dict[str, int],
        logPath: Path,
        cwd: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
        newSession: bool = True,
    ) -> None:
        self.name = name
        self.newSession = newSession
        self.argv = argv
        self.ports = ports
        self.logPath = logPath
        self.cwd = cwd
        self.env = env
        self.process: Optional[subprocess.Popen] = None
        self.idleRssKiB = 0
        self.idlePssKiB = 0
        self.idleProcesses = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def pids(self) -> List[int]:
        """
        The processes this daemon is, each the root of its own tree.
        """
        return [self.pid]

    def start(self) -> None:
        """
        Start the daemon in the foreground, its output into its log file.
        """
        log = open(self.logPath, "ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.newSession,
        )
        log.close()

    def _checkAlive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.process.returncode}"
            )

    def waitReady(self, service: str, expected: bytes, timeout: float = 30.0) -> None:
        """
        Wait until C{service} answers one connection with C{expected} bytes
        (or anything, when C{expected} is empty).

        @raise RuntimeError: the daemon exited or never answered in time.
        """
        deadline = time.monotonic() + timeout
        lastError = "no attempt"
        while time.monotonic() < deadline:
            self._checkAlive()
            try:
                reply = fetchOnce(self.ports[service])
                if not expected or reply == expected:
                    return
                lastError = f"unexpected reply {reply[:80]!r}"
                print(f"  {self.name}: {service}: {lastError}; retrying")
            except ConnectionRefusedError as e:
                lastError = str(e)  # not listening yet: the normal case
            except OSError as e:
                # Accepted but no EOF in time, or reset: worth seeing, since
                # each such attempt is one more connection in the logs.
                lastError = str(e)
                print(f"  {self.name}: {service}: {lastError}; retrying")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not serving {service}: {lastError}")

    def waitStarted(self, timeout: float = 60.0) -> None:
        """
        Wait until our daemon's log says it has started working (every
        socket it could bind is bound).

        @raise RuntimeError: it exited or did not get there in time.
        """
        deadline = time.monotonic() + timeout
        while STARTED not in self.log():
            self._checkAlive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start working")
            time.sleep(0.05)

    def waitListening(self, timeout: float = 120.0) -> None:
        """
        Wait until every port of the daemon listens, without connecting
        (see L{benchlib.listeningPorts}).

        @raise RuntimeError: the daemon exited or some port never listened.
        """
        deadline = time.monotonic() + timeout
        wanted = set(self.ports.values())
        while True:
            self._checkAlive()
            missing = wanted - benchlib.listeningPorts()
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {len(missing)} ports not listening")
            time.sleep(0.05)

    def stop(self) -> None:
        """
        SIGTERM the daemon by its pid; SIGKILL if it lingers.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        try:
            return self.logPath.read_text(errors="replace")
        except OSError:
            return ""


class DaemonGroup(Daemon):
    """
    Several of our daemons on one configuration whose services have
    C{flags = REUSEPORT}, so that they share every port: measured, started
    and stopped as one daemon.

    @ivar members: the processes, each a L{Daemon} of its own.
    """

    def __init__(self, name: str, members: Sequence[Daemon]) -> None:
        first = members[0]
        super().__init__(name, first.argv, first.ports, first.logPath)
        self.members = list(members)

    @property
    def pid(self) -> int:
        return self.members[0].pid

    @property
    def pids(self) -> List[int]:
        return [m.pid for m in self.members]

    def start(self) -> None:
        for m in self.members:
            m.start()
        # Each binds its sockets as it starts: wait for all of them to be
        # listening, so that no member joins a port after the clients came.
        for m in self.members:
            m.waitStarted()

    def _checkAlive(self) -> None:
        for m in self.members:
            m._checkAlive()

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def log(self) -> str:
        return "".join(m.log() for m in self.members)


def fetchOnce(port: int, timeout: float = 2.0) -> bytes:
    """
    Connect to 127.0.0.1:C{port} and read until EOF (bounded in bytes and time).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.shutdown(socket.SHUT_WR)
        chunks = []
        total = 0
        while total < 65536:
            data = s.recv(4096)
            if not data:
                break
            chunks.append(data)
            total += len(data)
        return b"".join(chunks)


def daemonNames(
    only: str,
    spawners: Sequence[str] = (),
    metrics: bool = False,
    tcpserver: bool = False,
    reuseport: int = 0,
    forkservers: Sequence[str] = (),
) -> List[str]:
    """
    The daemons one run compares: C{xinetd}, then ours (one per C{--spawner}
    value, plus C{ours-metrics}, plus C{ours-reuseportN} for C{reuseport}
    processes sharing the ports), keeping those C{only} selects; then, with
    both asked for, the references: C{tcpserver} (see L{tcpserverArgv})
    and a forkserver for each item of C{forkservers}: C{forkserverN} for a
    process count N, C{forkserver-relay} for L{FORKSERVER_RELAY} (see
    L{forkserverArgv}).
    """
    ours = [f"ours-{s}" for s in spawners] or ["ours"]
    if metrics:
        ours.append("ours-metrics")
    if reuseport > 1:
        ours.append(f"{REUSEPORT_PREFIX}{reuseport}")
    names = [n for n in ["xinetd", *ours] if only == "both" or n.startswith(only)]
    if only != "both":
        return names
    references = ["tcpserver"] if tcpserver else []
    for item in forkservers:
        relay = item == FORKSERVER_RELAY
        references.append(f"{FORKSERVER_PREFIX}{'-' if relay else ''}{item}")
    return names + references


def tcpserverArgv(service: Workload, port: int) -> Optional[List[str]]:
    """
    tcpserver serving the one spawned service C{service} on 127.0.0.1:C{port}
    as its user (no remote lookups, no connection limit that a run could
    reach), or L{None} if it is not installed or the service is internal.
    """
    if service.server is None or not os.path.exists(TCPSERVER):
        return None
    import pwd

    user = pwd.getpwnam(service.user or "nobody")
    ids = ["-u", str(user.pw_uid), "-g", str(user.pw_gid)]
    fixed = ["-R", "-H", "-l0", "-c", "10000", "-b", "64"]
    return [TCPSERVER, *fixed, *ids, "127.0.0.1", str(port), service.server]


def forkserverArgv(
    service: Workload, port: int, name: str, out: Path = benchlib.OUT
) -> Optional[List[str]]:
    """
    C{bench/forkserver.c} (built into C{out}) serving the one spawned
    service C{service} on 127.0.0.1:C{port} as its user, or L{None} if the
    service is internal or the program cannot be built.

    @param name: C{forkserverN} for N processes accepting,
        C{forkserver-relay} for one accepting and a second starting (C{-r}).
    """
    if service.server is None:
        return None
    try:
        program = benchlib.compileIfStale(
            benchlib.BENCH / "forkserver.c", out / "forkserver", []
        )
    except RuntimeError:
        return None
    import pwd

    user = pwd.getpwnam(service.user or "nobody")
    how = name[len(FORKSERVER_PREFIX) :]
    mode = ["-r"] if how == f"-{FORKSERVER_RELAY}" else ["-p", how]
    ids = ["-u", str(user.pw_uid), "-g", str(user.pw_gid)]
    return [str(program), *mode, *ids, "127.0.0.1", str(port), service.server]


def _referenceArgv(
    name: str, services: Sequence[Workload], port: Dict[str, int]
) -> Optional[List[str]]:
    """
    The command of reference daemon C{name} (C{tcpserver} or a
    forkserver): one program a process, so only for a phase of one spawned
    service.
    """
    if len(services) != 1:
        return None
    (one,) = services
    if name == "tcpserver":
        return tcpserverArgv(one, port[one.name])
    return forkserverArgv(one, port[one.name], name)


def makeDaemons(
    names: Sequence[str],
    tmp: Path,
    services: Sequence[Workload],
    tag: str,
    python: str,
    serviceLog: bool = False,
    oursOptions: Sequence[str] = (),
    newSession: bool = True,
) -> List[Daemon]:
    """
    Write one config per daemon (the same text, own ports) and describe how
    each daemon is started; nothing runs yet.

    @param names: from L{daemonNames}; the references (C{tcpserver}, the
        forkservers) only in a phase of one spawned service,
        C{ours-reuseportN} only in a phase of internal services (where one
        reactor thread can be the limit).
    @param tag: names this set's configs and logs in C{tmp}.
    @param serviceLog: FILE logging of successes (see L{benchlib.renderConfig}).
    @param oursOptions: more options for each of our daemons.
    @param newSession: start each daemon in a session of its own (see
        L{Daemon}); false keeps them in the bench's session, the burner's.
    """
    ports = iter(benchlib.freePorts(len(names) * len(services)))
    daemons = []
    for name in names:
        own = {w.name: next(ports) for w in services}
        if name == "tcpserver" or name.startswith(FORKSERVER_PREFIX):
            argv = _referenceArgv(name, services, own)
            if argv is not None:
                log = tmp / f"{tag}-{name}.log"
                daemons.append(Daemon(name, argv, own, log, newSession=newSession))
            continue
        if name.startswith(REUSEPORT_PREFIX):
            if all(w.server is None for w in services):
                count = int(name[len(REUSEPORT_PREFIX) :])
                daemons.append(
                    reuseportGroup(
                        name, count, tmp, services, own, tag, python, newSession
                    )
                )
            continue
        logFile = tmp / f"{tag}-{name}-services.log" if serviceLog else None
        cfg = tmp / f"{tag}-{name}.conf"
        cfg.write_text(benchlib.renderConfig(services, own, logFile))
        daemonLog = tmp / f"{tag}-{name}.log"
        if name == "xinetd":
            argv = xinetdArgv(cfg, daemonLog)
            daemons.append(Daemon(name, argv, own, daemonLog, newSession=newSession))
            continue
        options = list(oursOptions)
        if name == "ours-metrics":
            where = f"tcp:{benchlib.freePort()}:interface=127.0.0.1"
            options += ["--metrics", where]
        elif name != "ours":
            options += ["--spawner", name[len("ours-") :]]
        argv = oursArgv(python, cfg, options)
        daemons.append(
            Daemon(
                name,
                argv,
                own,
                daemonLog,
                cwd=REPO,
                env=oursEnv(),
                newSession=newSession,
            )
        )
    return daemons


def reuseportGroup(
    name: str,
    count: int,
    tmp: Path,
    services: Sequence[Workload],
    ports: Dict[str, int],
    tag: str,
    python: str,
    newSession: bool = True,
) -> DaemonGroup:
    """
    C{count} of our daemons on one config, the same as the others' but for
    C{flags += REUSEPORT} on each service, all on C{ports}.
    """
    shared = [
        attr.evolve(w, attributes=(*w.attributes, ("flags", "REUSEPORT")))
        for w in services
    ]
    cfg = tmp / f"{tag}-{name}.conf"
    cfg.write_text(benchlib.renderConfig(shared, ports))
    members = [
        Daemon(
            f"{name}.{i}",
            oursArgv(python, cfg),
            ports,
            tmp / f"{tag}-{name}.{i}.log",
            cwd=REPO,
            env=oursEnv(),
            newSession=newSession,
        )
        for i in range(count)
    ]
    return DaemonGroup(name, members)


def loadavg() -> str:
    """
    The 1, 5 and 15 minute load averages: other work on the machine skews
    every number here, and this is how the reader sees it.
    """
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpuTimes(stat: Path = Path("/proc/stat")) -> Optional[List[int]]:
    """
    The machine's CPU time so far, in clock ticks, from the C{cpu} line of
    C{stat}: user, nice, system, idle, iowait, irq, softirq, steal...; or
    L{None} when it cannot be read.
    """
    try:
        for line in stat.read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "cpu":
                return [int(f) for f in fields[1:]]
    except (OSError, ValueError):
        pass
    return None


STEAL_FIELD = 7
"""The index of steal time among L{cpuTimes}' fields."""

QUIET_STEAL = 0.02
"""
The most hypervisor steal (a share of all CPU time) a quiet machine shows:
on a virtual machine whose host is busy, every wake-up of an idle CPU waits
for the host, and the C=1 rows measure the host instead of the daemons.
"""


def stealShare(
    before: Optional[List[int]], after: Optional[List[int]]
) -> Optional[float]:
    """
    The share of the machine's CPU time between two L{cpuTimes} readings
    that the hypervisor gave to others (steal), or L{None} if unknown.
    """
    if not before or not after or min(len(before), len(after)) <= STEAL_FIELD:
        return None
    # guest and guest_nice (fields 8-9) are already counted in user and nice.
    kept = STEAL_FIELD + 1
    deltas = [b - a for a, b in zip(before[:kept], after[:kept], strict=True)]
    total = sum(deltas)
    return deltas[STEAL_FIELD] / total if total > 0 else None


BUSY_FIELDS = (0, 1, 2, 5, 6)
"""user, nice, system, irq and softirq among L{cpuTimes}' fields."""


def busyTicks(before: Optional[List[int]], after: Optional[List[int]]) -> Optional[int]:
    """
    The clock ticks the machine's CPUs spent working (not idle, waiting for
    I/O or stolen) between two L{cpuTimes} readings, or L{None} if unknown.
    """
    if not before or not after or min(len(before), len(after)) <= max(BUSY_FIELDS):
        return None
    return sum(after[i] - before[i] for i in BUSY_FIELDS)


def describeSteal(share: Optional[float]) -> str:
    """
    The report's line on steal time, warning when the machine was not quiet.
    """
    if share is None:
        return "- hypervisor steal: unknown"
    line = f"- hypervisor steal: {share * 100:.1f}% of the CPU time during the run"
    if share > QUIET_STEAL:
        line += (
            f" (NOT a quiet machine: more than {QUIET_STEAL * 100:.0f}%; idle CPUs"
            " wake late, and the ratios near their goals are not judged fairly)"
        )
    return line


def machineFacts(python: str) -> str:
    """
    The facts a reader needs to compare a results table with another.

    @param python: the interpreter of our daemon, asked for its Twisted.
    """
    probe = subprocess.run(
        [
            python,
            "-c",
            "import sys, twisted; print(sys.version.split()[0], twisted.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    pythonVersion, _, twistedVersion = probe.stdout.strip().partition(" ")
    xinetdVersion = "absent"
    if os.path.exists(XINETD):
        out = subprocess.run([XINETD, "-version"], capture_output=True, text=True)
        xinetdVersion = (out.stdout + out.stderr).strip().splitlines()[0]
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; nproc {os.cpu_count()}; "
        f"cpu {model}; kernel {platform.release()}; "
        f"python {pythonVersion or '?'} ({python}); twisted {twistedVersion or 'absent'}; "
        f"xinetd {xinetdVersion}"
    )
