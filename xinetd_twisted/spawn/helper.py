# -*- test-case-name: tests.test_spawn_helper -*-
"""
The spawn helper ("fork server") and the wire format the daemon uses with it
(the daemon's side of which is L{xinetd_twisted.spawn.wire}: the daemon
does not import this module).

The daemon starts this file once, while still root, with C{python -I -S}
and its L{main} called on FD 3, one end of a C{SOCK_SEQPACKET} socketpair
(the file is imported, so it starts from its cached bytecode: see
L{xinetd_twisted.spawn.launcher.helperArguments}).  The helper stays small
(standard library C modules where those suffice, gc frozen, one thread),
so creating a child costs a fork of a small process instead of the
daemon's heap, and the reactor only pays for one C{sendmsg} per connection.

Every message is a L{marshal}-encoded tuple (both ends run the same
interpreter).  Daemon to helper:

  - C{("T", templateId, part, final, index)}: register a template (the
    encoded L{ChildSetup} fields, see L{encodeTemplate}), in parts when
    large; part C{index} 0 starts it afresh;
  - C{("S", requestId, templateId, extraEnv, lane)} with the connection fd
    in C{SCM_RIGHTS}: start a child (the root helper forwards a child that
    needs credentials to the sub-helper of that credential set and C{lane},
    see below);
  - C{("K", pid, signal)}: signal a child if it is still unreaped;
  - C{("X", subId)} (root helper only): SIGKILL sub-helper C{subId}, which
    the daemon found stuck or idle; the next spawn of its credentials
    starts another;
  - C{("Q",)} (root helper only): the daemon found this helper idle and
    sends nothing more until it answers: C{("q",)} and exit when it has
    no child at all (no sub-helper, no server, no adopted orphan), else
    C{("n",)} and go on.
  - C{("L", listenerId, templateId)} with a listening socket, and
    C{("U", listenerId)}: accept on that socket and start each
    connection's server as a spawn of the template, and stop (see
    L{xinetd_twisted.spawn.delegation}); only the compiled sub-helper
    does, this one answers C{("u", listenerId)} to both.

Helper to daemon, one message holding a list of events:

  - C{("r", helperPid)}: ready;
  - C{("s", requestId, pid)}: started;
  - C{("f", requestId, errno, why, hasFd)}: no child (fork failed,
    unknown template; C{why} is C{"rlimits"} when a sub-helper's limits
    were lowered beyond repair, else L{None}); when C{hasFd} the
    message's C{SCM_RIGHTS} carry (in event order) the connection back,
    for a retry;
  - C{("x", pid, errno, stage)}: the child could not exec (stage C{"exec"})
    or failed while setting itself up (stage C{"setup"});
  - C{("e", pid, status)}: reaped, raw wait status (127 after an C{"x"});
  - C{("c", subId, templateId, hasFd, subPid, lane)}: the template's
    children of C{lane} are started by sub-helper C{subId} (process
    C{subPid}); when C{hasFd} the message's C{SCM_RIGHTS} carry (in event
    order) a socket connected to that new sub-helper;
  - C{("g", [requestId, ...], subId)}: sub-helper C{subId} died (and has
    been reaped); those of these requests, and of those sent to it
    directly, not yet reported started never will be;
  - C{("q",)} / C{("n",)}: the answer to C{"Q"};
  - C{("l", listenerId)} / C{("u", listenerId)} (the compiled sub-helper):
    it accepts on that socket / it does not (any more);
    C{("a", listenerId, pid, host, port)}: it accepted a connection there
    and started server C{pid} for it; C{("h", listenerId)}: a connection
    it accepted and could not start, in the message's C{SCM_RIGHTS}.

Children that need credentials (and nothing that needs Python in the child)
are started by a sub-helper per credential set and lane, forked from this
helper with those credentials, which can then use vfork (the compiled one
a clone that shares its memory without waiting for the exec): several times
cheaper than forking this helper.  Once it has them, the fork execs the
compiled sub-helper (C{subhelper.c}, built beside this file) where it is
built, which speaks a sub-helper's side of this wire without Python;
otherwise it goes on as L{_Helper} with C{isSub}.  A sub-helper has only
so many children setting up at once (one with vfork, until it has
exec'd; the compiled one with clone, one per CPU), so the daemon
spreads a busy credential set's spawns over a few lanes, one sub-helper
each, started when the first falls behind (silent for a few milliseconds
while spawns wait on it, or with many waiting).  The first spawns of a
template reach it through this helper; then the daemon registers the
template with and sends its spawns (C{"T"}, C{"S"}, C{"K"} as above)
straight to the sub-helper on the socket of the C{"c"} event, one process
hop less per connection.
A sub-helper sends its events on that same socket: it holds nothing of the
root helper's channel to the daemon nor of any other credential set (its
stdio is C{/dev/null}), so a sub-helper that is stopped or slow only delays
its own credential set.  It is dead (and all its events are in the daemon's
socket) when the root helper reports its C{"g"}.

Sub-helpers start on first use and end when idle.  The daemon, which knows
everything in flight, retires a sub-helper that has no spawn waiting on it
(on its socket, or on this helper's for its credential set, which would be
forwarded to it), no unreaped child it still follows, and has said nothing
for the idle timeout: it stops sending that set's spawns to it, then sends
C{"X"}.  Its later spawns come here after the C{"X"}, so this helper, which
has forgotten the old sub-helper by then, forks a new one for them (a
C{"c"} with its socket) and the direct path resumes; the old one's C{"g"}
fails nothing, as nothing was in flight.  (A sub-helper whose socket from
the daemon closes exits at once, leaving any children to this helper, the
subreaper; the daemon closes it only when it stops.)  The root helper
ends the same way once it has no sub-helper left: the daemon, finding it
idle too, sends C{"Q"} and holds every later message until the answer, so
nothing follows the C{"Q"}; this helper checks with C{waitid} that it has
no child at all (a server's orphaned background process, which only it
knows of, keeps it) before it says C{"q"} and exits.

What the service's user can do to a sub-helper (it runs with their
credentials) is signal it and change its resource limits with prlimit(2):

  - the root helper never blocks on a sub-helper: it forwards without
    waiting, and a spawn the sub-helper cannot take now fails (C{EAGAIN});
    a stuck one is found by the daemon and killed with C{"X"};
  - every template carries every resource limit the child must have, and a
    helper checks its own limits before the C{fork_exec} children of each
    wake-up (they inherit them; the Python child path sets them all
    itself): once per template for the requests read together.  A limit a
    sub-helper cannot restore (a lowered hard limit) fails that spawn and
    ends the sub-helper, so the next spawn starts a fresh one;
  - when a sub-helper dies its children become the root helper's (a child
    subreaper), which reaps them, reports their status and still signals
    them (it checks with C{waitid(WNOWAIT)} that the pid is its unreaped
    child, so a recycled pid is never hit);
  - when the root helper dies the sub-helpers keep reaping, reporting and
    signalling the children they started, until the daemon closes their
    socket.

This module must import nothing outside the standard library: the helper
runs with C{-I -S} and no package on C{sys.path}.
"""

from __future__ import annotations

# _signal, _socket and _collections: the C modules under signal.py,
# socket.py and collections, which import enum, selectors and more (about
# 1 MB in the helper, touched in every sub-helper) for nothing used here.
import _signal as signal
import _socket as socket
import errno
import gc
import marshal
import os
import resource
import select
import sys
from _collections import deque

try:
    import _posixsubprocess
except ImportError:  # pragma: no cover - not CPython
    _posixsubprocess = None  # type: ignore[assignment]

# Not typing itself (as in schedslice.py): it would cost every helper.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType


def _sibling(name: str) -> ModuleType:
    """
    The module C{name} of this package, loaded from beside this file: the
    helper runs with C{-I -S} and no package on C{sys.path}, so it reads
    the few standard-library-only modules it shares with the daemon
    (L{xinetd_twisted.spawn.wire}, L{xinetd_twisted.spawn.schedslice}) by
    path.
    """
    import _frozen_importlib as b
    import _frozen_importlib_external as e

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = e.spec_from_file_location("xinetd_twisted_" + name, path)
    assert spec is not None and spec.loader is not None
    module = b.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The two ends' shared limits and the limits both read the same way, from
# the daemon's side of the wire format.
_wire = _sibling("wire")
MAX_MESSAGE: int = _wire.MAX_MESSAGE
MAX_EVENTS_PER_MESSAGE: int = _wire.MAX_EVENTS_PER_MESSAGE
allRlimits = _wire.allRlimits
_BATCH = 64  # requests handled per wake-up before reaping and replying


# --- the helper process ---------------------------------------------------


class _Template:
    __slots__ = (
        "executable",
        "argv",
        "env",
        "uid",
        "gid",
        "groups",
        "umask",
        "nice",
        "rlimits",
        "chroot",
        "cwd",
        "newSession",
        "noNewPrivileges",
        "fast",
        "credentials",
        "limits",
    )

    def __init__(self, blob: bytes, currentLimits: dict, dropCredentials: bool) -> None:
        (
            self.executable,
            self.argv,
            self.env,
            self.uid,
            self.gid,
            self.groups,
            self.umask,
            self.nice,
            self.rlimits,
            self.chroot,
            self.cwd,
            self.newSession,
            self.noNewPrivileges,
        ) = marshal.loads(blob)
        # Every limit the child must have.  When they all equal the
        # helper's own, a fork_exec child inherits them (the helper checks
        # its own limits before such spawns: see _Spawner.woken).
        self.rlimits = [tuple(limit) for limit in self.rlimits]
        self.limits = _Limits(self.rlimits)
        inherited = all(currentLimits.get(r) == (s, h) for r, s, h in self.rlimits)
        if dropCredentials:  # a sub-helper already runs with them
            self.uid = self.gid = self.groups = None
        self.fast = (
            _FORK_EXEC is not None
            and inherited
            and not self.nice
            and self.chroot is None
            and not self.noNewPrivileges
        )
        self.credentials = None
        if self.fast and not (
            self.uid is None and self.gid is None and self.groups is None
        ):
            groups = None if self.groups is None else tuple(self.groups)
            self.credentials = (self.uid, self.gid, groups)


def _forkExecCaller():
    """
    Return C{call(t, argv, env, fd, errR, errW) -> pid} built on
    C{_posixsubprocess.fork_exec} (no Python runs in the child), or L{None}
    when its signature is one we do not know.
    """
    if _posixsubprocess is None:
        return None
    try:
        _posixsubprocess.fork_exec()
    except TypeError as e:
        words = str(e).split()
    else:  # pragma: no cover
        return None
    arity = next((int(w) for w in words if w.isdigit()), 0)
    forkExec = _posixsubprocess.fork_exec

    def call(t, argv, env, fd, errR, errW):
        head = (argv, [t.executable], True, (errW,), t.cwd, env)
        head += (fd, -1, -1, fd, -1, fd, errR, errW, True, t.newSession)
        tail = (t.gid, t.groups, t.uid, t.umask, None)
        if arity == 21:  # 3.10
            return forkExec(*head, *tail)
        if arity == 22:  # 3.11.0-3.11.x, 3.13: process_group added
            return forkExec(*head, -1, *tail)
        return forkExec(*head, -1, *tail, True)  # allow_vfork

    return call if arity in (21, 22, 23) else None


_FORK_EXEC = _forkExecCaller()

_SLICE = None
"""The root helper's C{SliceSetter} (see L{_startSlice}), for its sub-helpers."""

SUBHELPER_NAME = "xinetd-subhelper"
"""The compiled sub-helper (C{subhelper.c}), built beside this file."""

SUBHELPER_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), SUBHELPER_NAME
)
"""Where the compiled sub-helper is, when it is built."""

_SUBHELPER: str | None = None
"""
The compiled sub-helper's path when it is built and wanted (see L{main}):
a sub-helper execs it once it has its credentials, instead of running
L{_Helper}.  It speaks the same wire, without Python: the daemon and its
helpers spend a quarter less CPU a connection, and a sub-helper takes
1.3 MB instead of 7.
"""


def _isChild(pid: int) -> bool:
    """
    Whether C{pid} is an unreaped child of ours (started by us or adopted
    as a subreaper), so that signalling it cannot hit a recycled pid.
    """
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return False
    return True


def _hasChildren() -> bool:
    """
    Whether we have any child, running or not yet reaped (also an orphan
    adopted as a subreaper, which we never started).
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _closeAllBut(keep: tuple) -> None:
    """
    Close every descriptor from 3 up except those in C{keep}.
    """
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


PR_SET_NO_NEW_PRIVS = 38

_SETUP_FAILED = frozenset({127, 255})
"""
Exit codes of a child that failed before its program ran (ours from
L{_forkChild}, C{_posixsubprocess}'s): only then may it have written why
on the error socket.
"""


def _noNewPrivileges() -> None:
    """
    PR_SET_NO_NEW_PRIVS for this process and what it executes.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def _forkChild(t, argv, env, fd, errW):
    """
    Create a child with C{os.fork} and set it up in Python: the path for
    chroot, nice and rlimits, which C{fork_exec} cannot do before setuid.
    """
    pid = os.fork()
    if pid:
        return pid
    stage = b"setup"
    err = 0
    try:
        if t.newSession:
            os.setsid()
        if t.chroot is not None:
            os.chroot(t.chroot)
        os.chdir(t.cwd)
        # nice and rlimits while still privileged, so a configured value is
        # never refused by the lowered credentials.
        if t.nice:
            os.nice(t.nice)
        # Every limit, whatever the helper's own are (a sub-helper's can
        # have been changed by prlimit(2)).
        if t.rlimits:
            for r, s, h in t.rlimits:
                resource.setrlimit(r, (s, h))
        if t.groups is not None:
            os.setgroups(t.groups)
        if t.gid is not None:
            os.setresgid(t.gid, t.gid, t.gid)
        if t.uid is not None:
            os.setresuid(t.uid, t.uid, t.uid)
        os.umask(t.umask)
        if t.noNewPrivileges:
            _noNewPrivileges()
        for target in (0, 1, 2):
            os.dup2(fd, target)
        os.closerange(3, errW)
        os.closerange(errW + 1, 1 << 20)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        envMap = dict(item.partition(b"=")[::2] for item in env)
        stage = b"exec"
        os.execve(t.executable, argv, envMap)
    except OSError as e:
        err = e.errno or 0
    except BaseException:
        pass
    try:
        os.write(errW, b"OSError:%x:%s" % (err, b"" if stage == b"exec" else b"noexec"))
    finally:
        os._exit(127)


class _Sub:
    """
    The root helper's handle on a sub-helper: a process that runs with one
    service's credentials and starts that service's children with vfork
    (C{fork_exec} without uid/gid/groups), avoiding a full fork of the
    helper, which costs several times more.

    @ivar daemonEnd: the fd of the socket for the daemon, until it is sent.
    """

    __slots__ = ("pid", "sock", "templates", "recent", "subId", "creds", "daemonEnd")

    def __init__(
        self, pid: int, sock: socket.socket, subId: int, creds: tuple, daemonEnd: int
    ) -> None:
        self.pid = pid
        self.sock = sock
        self.subId = subId
        self.creds = creds
        self.daemonEnd = daemonEnd
        self.templates: set = set()
        # Requests it may not have started yet when it dies.
        self.recent: deque = deque(maxlen=4096)

    def close(self) -> None:
        self.sock.close()  # idempotent
        if self.daemonEnd >= 0:
            os.close(self.daemonEnd)
            self.daemonEnd = -1


def _ownLimitsAre(rlimits: list) -> bool:
    """
    Make our own limits C{rlimits} (a fork_exec child inherits them);
    L{False} when one cannot be restored (a hard limit was lowered).
    """
    for r, soft, hard in rlimits:
        if resource.getrlimit(r) != (soft, hard):
            try:
                resource.setrlimit(r, (soft, hard))
            except (OSError, ValueError):
                return False
    return True


class _Limits:
    """
    Resource limits a helper must have itself (a C{fork_exec} child
    inherits them), checked in one pass of C calls: the common case,
    nothing changed, costs no Python loop over every limit.
    """

    __slots__ = ("items", "_kinds", "_values")

    def __init__(self, items: list) -> None:
        self.items = items
        self._kinds = tuple(r for r, _soft, _hard in items)
        self._values = [(soft, hard) for _r, soft, hard in items]

    def ensure(self) -> bool:
        """
        L{_ownLimitsAre} for these limits.
        """
        if list(map(resource.getrlimit, self._kinds)) == self._values:
            return True
        return _ownLimitsAre(self.items)


def _carriesFd(event: tuple) -> bool:
    """
    Whether an event has a descriptor in its message's C{SCM_RIGHTS}.
    """
    kind = event[0]
    return (kind == "c" and event[3]) or (kind == "f" and event[4])


class _Outbox:
    """
    The events for the daemon, sent in batches on its socket.

    @ivar events: the events not sent yet.
    @ivar fds: sockets for the daemon, in C{"c"} event order.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.events: list = []
        self.fds: list = []

    def close(self) -> None:
        self.sock.close()

    def failed(self, rid: int, err: int, fd: int, why: str | None = None) -> None:
        """
        Report spawn C{rid} failed with C{err}, giving back a copy of its
        connection C{fd} (if any) for the daemon to retry with.
        """
        copy = -1
        if fd >= 0:
            try:
                copy = os.dup(fd)  # the request's own copy is closed
            except OSError:
                pass
        if copy >= 0:
            self.fds.append(copy)
        self.events.append(("f", rid, err, why, copy >= 0))

    def flush(self) -> None:
        out, self.events = self.events, []
        if not self.fds and len(out) <= MAX_EVENTS_PER_MESSAGE:
            # The usual batch ("s", "e"): no descriptor rides with it.
            self.sock.send(marshal.dumps(out), socket.MSG_NOSIGNAL)
            return
        fds, self.fds = self.fds, []
        sent = list(fds)
        try:
            for i in range(0, len(out), MAX_EVENTS_PER_MESSAGE):
                chunk = out[i : i + MAX_EVENTS_PER_MESSAGE]
                data = marshal.dumps(chunk)
                n = sum(1 for e in chunk if _carriesFd(e))
                if not n:
                    self.sock.send(data, socket.MSG_NOSIGNAL)
                    continue
                payload = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds[:n])
                del fds[:n]
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, payload)]
                self.sock.sendmsg([data], rights, socket.MSG_NOSIGNAL)
        finally:
            for fd in sent:  # the daemon has its copies
                os.close(fd)


class _Spawner:
    """
    Registers templates and starts their children (or has a sub-helper
    start them), then reports how each one ended.

    @ivar tampered: a sub-helper whose limits were lowered beyond repair:
        it must end.
    """

    def __init__(self, outbox: _Outbox, isSub: bool, limits: dict, forward) -> None:
        """
        @param forward: C{forward(credentials, tid, msg, fd)} hands a spawn
            that needs credentials to their sub-helper.
        """
        self.outbox = outbox
        self.isSub = isSub
        self.forward = forward
        self.rawTemplates: dict = {}  # tid -> [raw "T" messages]
        self.templates: dict = {}
        self.parts: dict = {}  # (inbox fd, tid) -> [parts]
        self.children: dict = {}  # pid -> None (unreaped)
        self.execErrors: dict = {}  # pid -> bytes written by the child
        self.limits = limits
        self.ownLimits = _Limits([(r, s, h) for r, (s, h) in limits.items()])
        self.checked: set = set()  # the _Limits ensured since this wake-up
        self.tampered = False
        self.errR, self.errW = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        # The kernel stamps every message with its sender's pid: children
        # share one error socket and still say who they are.
        self.errR.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.errR.setblocking(False)

    def closeErrorSocket(self) -> None:
        self.errR.close()
        self.errW.close()

    def woken(self) -> None:
        """
        A new wake-up: the requests read from now on check the limits of
        their template again, once for all of them (a batch of spawns costs
        one pass of C{getrlimit} calls per template, not one per spawn).
        """
        self.checked.clear()

    def register(self, inbox: int, msg: tuple, data: bytes) -> None:
        """
        Take one C{"T"} message (C{data}, decoded C{msg}) from C{inbox}.
        """
        _, tid, part, final, index = msg
        # Parts are per inbox: the root helper and the daemon may both
        # register a template with a sub-helper.  Part 0 starts afresh: a
        # registration cut short is sent again.
        if index == 0:
            self.parts[(inbox, tid)] = []
            if not self.isSub:
                self.rawTemplates[tid] = []
        self.parts.setdefault((inbox, tid), []).append(part)
        if not self.isSub:
            self.rawTemplates.setdefault(tid, []).append(data)
        if final:
            blob = b"".join(self.parts.pop((inbox, tid)))
            self.templates[tid] = _Template(blob, self.limits, self.isSub)
            if self.templates[tid].credentials is None:
                self.rawTemplates.pop(tid, None)

    def rawTemplate(self, tid: int) -> list:
        """
        The C{"T"} messages of a template, to register it with a sub-helper.
        """
        return self.rawTemplates[tid]  # type: ignore[no-any-return]

    def spawn(self, msg: tuple, fd: int) -> None:
        rid, tid, extra = msg[1], msg[2], msg[3]
        out = self.outbox.events
        t = self.templates.get(tid)
        if t is None or fd < 0:
            if fd < 0 and self.isSub and not self.ownLimits.ensure():
                # The descriptor did not fit under a lowered RLIMIT_NOFILE.
                self.outbox.failed(rid, errno.EPERM, -1, "rlimits")
                self.tampered = True
                return
            self.outbox.failed(rid, errno.EINVAL, fd)
            return
        if t.credentials is not None:
            self.forward(t.credentials, tid, msg, fd)
            return
        fast = t.fast
        if fast and t.limits not in self.checked:
            if t.limits.ensure():
                self.checked.add(t.limits)
            elif self.isSub:
                # Someone lowered our hard limits: no child of ours can
                # get the right ones.  The root helper starts a new one.
                self.outbox.failed(rid, errno.EPERM, fd, "rlimits")
                self.tampered = True
                return
            else:
                fast = False  # the child sets them itself
        env = t.env + extra if extra else t.env
        errW = self.errW.fileno()
        try:
            if fast:
                errR = self.errR.fileno()
                pid = _FORK_EXEC(t, t.argv, env, fd, errR, errW)  # type: ignore[misc]
            else:
                pid = _forkChild(t, t.argv, env, fd, errW)
        except OSError as e:
            self.outbox.failed(rid, e.errno or 0, fd)
            return
        self.children[pid] = None
        out.append(("s", rid, pid))

    def started(self, pid: int) -> bool:
        """
        Whether C{pid} is a child we started and have not reaped.
        """
        return pid in self.children

    def drainErrors(self) -> None:
        for _ in range(4096):
            try:
                data, anc, _flags, _addr = self.errR.recvmsg(256, 64)
            except BlockingIOError:
                return
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(payload[:4], sys.byteorder)
                    self.execErrors[pid] = self.execErrors.get(pid, b"") + data

    def reaped(self, pid: int, status: int) -> None:
        """
        Report a child (ours, or a sub-helper's orphan) reaped.
        """
        out = self.outbox.events
        if pid not in self.children:
            # A sub-helper's orphan, reparented to us (subreaper).
            out.append(("e", pid, status))
            return
        del self.children[pid]
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) in _SETUP_FAILED:
            # It may have written why before it exited: read it now.
            self.drainErrors()
        report = self.execErrors.pop(pid, None)
        if report is not None:
            parts = report.split(b":")
            try:
                err = int(parts[1], 16)
            except (IndexError, ValueError):
                err = 0
            stage = "setup" if report.endswith(b"noexec") else "exec"
            out.append(("x", pid, err, stage))
            status = 127 << 8
        out.append(("e", pid, status))


class _SubHelpers:
    """
    The root helper's sub-helpers, one per credential set: started on
    demand, sent the spawns that need their credentials, killed when the
    daemon finds one stuck, reported when reaped.
    """

    def __init__(self, outbox: _Outbox, rawTemplate, closeInChild) -> None:
        """
        @param rawTemplate: C{rawTemplate(tid)} gives a template's C{"T"}
            messages.
        @param closeInChild: closes, in a new sub-helper, what the root
            helper holds besides its sub-helpers.
        """
        self.outbox = outbox
        self.rawTemplate = rawTemplate
        self.closeInChild = closeInChild
        self.subs: dict[tuple, _Sub] = {}  # by (credentials, lane)
        self.subPids: dict[int, _Sub] = {}  # until reaped
        self.nextSubId = 1

    def isSub(self, pid: int) -> bool:
        """
        Whether C{pid} is one of our (unreaped) sub-helpers.
        """
        return pid in self.subPids

    def forward(self, credentials: tuple, tid: int, msg: tuple, fd: int) -> None:
        # Never wait for a sub-helper: one that is stopped must not stop
        # us (and every other credential set); the spawn fails instead.
        flags = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
        out = self.outbox
        err = 0
        lane = msg[4] if len(msg) > 4 else 0
        key = (credentials, lane)
        for _attempt in range(2):
            sub = self.subs.get(key)
            try:
                if sub is None:
                    sub = self.startSub(key)
                newTemplate = tid not in sub.templates
                if newTemplate:
                    for raw in self.rawTemplate(tid):
                        sub.sock.sendmsg([raw], [], flags)
                    sub.templates.add(tid)
                sub.sock.sendmsg([marshal.dumps(msg)], rights, flags)
            except (BrokenPipeError, ConnectionResetError) as e:
                # Dead but not yet reaped: replace it (reap reports it).
                if sub is not None and self.subs.get(key) is sub:
                    del self.subs[key]
                    sub.close()
                err = e.errno or 0
                continue
            except OSError as e:
                out.failed(msg[1], e.errno or 0, fd)
                return
            sub.recent.append(msg[1])
            if sub.daemonEnd >= 0:
                out.events.append(("c", sub.subId, tid, True, sub.pid, lane))
                out.fds.append(sub.daemonEnd)
                sub.daemonEnd = -1
            elif newTemplate:
                out.events.append(("c", sub.subId, tid, False, sub.pid, lane))
            return
        out.failed(msg[1], err, fd)

    def kill(self, subId: int) -> None:
        """
        Kill a sub-helper the daemon found stuck (ours and unreaped: the
        pid cannot be recycled); its reaping reports C{"g"}.
        """
        for creds, sub in list(self.subs.items()):
            if sub.subId == subId:
                del self.subs[creds]
                sub.close()
                try:
                    os.kill(sub.pid, signal.SIGKILL)
                except OSError:
                    pass

    def startSub(self, key: tuple) -> _Sub:
        """
        Start the sub-helper of C{key}, C{(credentials, lane)}.
        """
        credentials = key[0]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            daemonEnd, direct = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            ours.close()
            theirs.close()
            raise
        try:
            pid = os.fork()
        except OSError:
            for s in (ours, theirs, daemonEnd, direct):
                s.close()
            raise
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)  # ours is closed below
                # Whatever else the root helper holds right now (its own
                # channel and stdio, other sub-helpers' sockets, the
                # connection being forwarded, the daemon's ends of sockets
                # not yet sent) must not live on in the sub-helper: a client
                # would never see EOF, and a stopped sub-helper would hold
                # the root helper's pipes open.
                ours.close()
                daemonEnd.close()
                for other in self.subs.values():
                    other.sock.close()
                self.closeInChild()
                null = os.open(os.devnull, os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(null, target)
                _closeAllBut((theirs.fileno(), direct.fileno()))
                uid, gid, groups = credentials
                if groups is not None:
                    os.setgroups(groups)
                if gid is not None:
                    os.setresgid(gid, gid, gid)
                if uid is not None:
                    os.setresuid(uid, uid, uid)
                if _SUBHELPER is not None:
                    _execSubhelper(_SUBHELPER, theirs.fileno(), direct.fileno())
                _Helper([theirs, direct], direct, isSub=True).run()
            except BaseException:
                pass
            os._exit(0)
        theirs.close()
        direct.close()
        if _SLICE is not None:  # before anything is forwarded to it
            _SLICE.apply(pid)
        sub = _Sub(pid, ours, self.nextSubId, key, daemonEnd.detach())
        self.nextSubId += 1
        self.subs[key] = sub
        self.subPids[pid] = sub
        return sub

    def reaped(self, pid: int) -> bool:
        """
        Report sub-helper C{pid} reaped; L{False} if it is not one.
        """
        gone = self.subPids.pop(pid, None)
        if gone is None:
            return False
        if self.subs.get(gone.creds) is gone:
            del self.subs[gone.creds]
        gone.close()
        # The daemon fails those of these, and of the requests it sent
        # this sub-helper itself, it has not seen started.
        self.outbox.events.append(("g", list(gone.recent), gone.subId))
        return True


def _execSubhelper(path: str, fromRoot: int, direct: int) -> None:
    """
    Become the compiled sub-helper at C{path} on these sockets; return
    (with them as they were) only if it cannot be executed.
    """
    for fd in (fromRoot, direct):
        os.set_inheritable(fd, True)
    try:
        os.execv(path, [path, str(fromRoot), str(direct)])
    except OSError:
        pass
    for fd in (fromRoot, direct):
        os.set_inheritable(fd, False)


def _compiledSubhelper(environ) -> str | None:
    """
    The compiled sub-helper beside this file, unless it is not built or
    C{XINETD_TWISTED_PYTHON_SUBHELPERS} (or the tests' switch to the
    Python child path, C{XINETD_TWISTED_HELPER_NO_FORK_EXEC}) is set.
    """
    if environ.get("XINETD_TWISTED_PYTHON_SUBHELPERS") or environ.get(
        "XINETD_TWISTED_HELPER_NO_FORK_EXEC"
    ):
        return None
    return SUBHELPER_PATH if os.access(SUBHELPER_PATH, os.X_OK) else None


class _Helper:
    """
    The request loop of a helper (the root helper, or with C{isSub} a
    sub-helper): reads the requests on its inboxes, reaps on C{SIGCHLD},
    and sends what happened in batches.
    """

    def __init__(
        self, inboxes: list, outbox: socket.socket, isSub: bool = False
    ) -> None:
        self.inboxes = inboxes
        self.isSub = isSub
        self.outbox = _Outbox(outbox)
        self.retiring = False
        limits = allRlimits()
        self.nofile = _Limits(
            [(resource.RLIMIT_NOFILE, *limits[resource.RLIMIT_NOFILE])]
        )
        self.subs = _SubHelpers(self.outbox, self._rawTemplate, self._closeInSub)
        self.spawner = _Spawner(self.outbox, isSub, limits, self.subs.forward)

    def _rawTemplate(self, tid: int) -> list:
        return self.spawner.rawTemplate(tid)

    def _closeInSub(self) -> None:
        self.spawner.closeErrorSocket()
        self.outbox.close()

    def handle(self, inbox: int, data: bytes, ancdata: list) -> None:
        fds: list = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(payload) - len(payload) % 4
                fds.extend(memoryview(payload)[:n].cast("i"))
        try:
            msg = marshal.loads(data)
            kind = msg[0]
            if kind == "S":
                self.spawner.spawn(msg, fds[0] if fds else -1)
            elif kind == "T":
                self.spawner.register(inbox, msg, data)
            elif kind == "K":
                _, pid, sig = msg
                # Ours and unreaped (also an orphan of a dead sub-helper,
                # adopted): cannot be a recycled pid.
                if self.spawner.started(pid) or (
                    not self.subs.isSub(pid) and _isChild(pid)
                ):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
            elif kind == "X" and not self.isSub:
                self.subs.kill(msg[1])
            elif kind == "L" or kind == "U":
                # Only the compiled sub-helper accepts on a socket: say we
                # do not, so the daemon goes on accepting and retires us.
                self.outbox.events.append(("u", msg[1]))
            elif kind == "Q" and not self.isSub:
                self.retiring = not (self.subs.subPids or _hasChildren())
                self.outbox.events.append(("q",) if self.retiring else ("n",))
        finally:
            for fd in fds:
                os.close(fd)

    def reap(self) -> None:
        spawner = self.spawner
        for _ in range(65536):
            if self.isSub and not spawner.children:
                return  # a sub-helper has no other children to wait for
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if not self.subs.reaped(pid):
                spawner.reaped(pid, status)

    def run(self) -> None:
        wakeR, wakeW = os.pipe()
        os.set_blocking(wakeW, False)
        os.set_blocking(wakeR, False)
        signal.set_wakeup_fd(wakeW, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *args: None)
        poller = select.poll()
        inboxes = {inbox.fileno(): inbox for inbox in self.inboxes}
        for fd in inboxes:
            poller.register(fd, select.POLLIN)
        poller.register(wakeR, select.POLLIN)
        poller.register(self.spawner.errR.fileno(), select.POLLIN)
        flags = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
        ancSize = socket.CMSG_SPACE(16 * 4)
        outbox = self.outbox
        spawner = self.spawner
        if not self.isSub:
            outbox.events.append(("r", os.getpid()))
            outbox.flush()
        while True:
            events = poller.poll()
            spawner.woken()
            for fd, _ev in events:
                inbox = inboxes.get(fd)
                if inbox is not None:
                    if self.isSub:
                        # A lowered soft RLIMIT_NOFILE would drop the
                        # descriptors of the requests we are to read.
                        self.nofile.ensure()
                    for _ in range(_BATCH):
                        try:
                            data, anc, _f, _a = inbox.recvmsg(
                                MAX_MESSAGE, ancSize, flags
                            )
                        except BlockingIOError:
                            break
                        if not data:
                            if self.isSub and inbox is self.inboxes[0]:
                                # The root helper has gone: go on reaping,
                                # reporting and signalling our children
                                # for the daemon until it closes.
                                poller.unregister(fd)
                                break
                            outbox.flush()  # the daemon has gone: so do we
                            return
                        self.handle(fd, data, anc)
                        if self.retiring:
                            break  # nothing comes after "Q"
                elif fd == wakeR:
                    try:
                        os.read(wakeR, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                else:
                    spawner.drainErrors()
            if outbox.events:
                outbox.flush()
            if spawner.tampered or self.retiring:
                return


def _becomeSubreaper() -> None:
    """
    Make orphans of dead sub-helpers our children, so their exits are
    still reaped and reported.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (ImportError, OSError, AttributeError):
        pass


def _startSlice(microseconds: int, daemonPid: int) -> None:
    """
    Give this helper and the daemon the scheduler slice of C{--sched-slice}
    (and, through L{_SLICE}, each sub-helper; see
    L{xinetd_twisted.spawn.schedslice}, loaded from beside this file).
    """
    global _SLICE
    module = _sibling("schedslice")

    def warn(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    setter = module.setterFor(microseconds, warn)
    if setter is not None and setter.apply(os.getpid()):
        setter.apply(daemonPid)
        _SLICE = setter  # else the sub-helpers, forked from us, fare no better


def main(argv: list) -> None:
    """
    Run the helper on the control socket whose fd is C{argv[1]}; with
    C{argv[2:4]}, give it and the daemon (pid C{argv[3]}) a scheduler slice
    of C{argv[2]} microseconds.
    """
    global _FORK_EXEC, _SUBHELPER
    import resource

    # Children inherit xinetd's default RLIMIT_NOFILE (soft = hard) with no
    # per-child call.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass
    # Children start from default dispositions and an empty mask; the
    # SIGPIPE/SIGXFSZ ignores Python set are undone in the child.
    for sig in signal.valid_signals():
        if sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.chdir("/")
    if os.environ.get("XINETD_TWISTED_HELPER_NO_FORK_EXEC"):
        _FORK_EXEC = None
    _SUBHELPER = _compiledSubhelper(os.environ)
    ctl = socket.socket(fileno=int(argv[1]))
    os.set_inheritable(ctl.fileno(), False)
    ctl.setblocking(True)
    _becomeSubreaper()
    if len(argv) >= 4 and int(argv[2]) > 0:
        _startSlice(int(argv[2]), int(argv[3]))
    helper = _Helper([ctl], ctl)
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        helper.run()
    except (BrokenPipeError, ConnectionResetError):
        pass
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
