# -*- test-case-name: tests.test_spawn_reactorspawner -*-
"""
L{ReactorSpawner}: the plain L{ISpawner} on C{reactor.spawnProcess}, for
embedding and as the baseline the helper is measured against.

C{spawnProcess} has no pre-exec hook, so this spawner cannot honour:

  - C{newSession} (no setsid: the child stays in the daemon's session);
  - C{nice}, C{chroot};
  - C{rlimits}, except limits equal to the daemon's own (inherited);
  - C{supplementaryGroups}: with a uid Twisted calls initgroups(), giving
    the user's whole group list, not the exact list (C{()} for xinetd's
    default C{groups = no});
  - C{uid}/C{gid} other than the daemon's own when the daemon is not root.

A setup that needs any of these raises L{SpawnError}, unless the spawner was
built with C{lenient=True}, which ignores them.  C{umask} is honoured by
setting the daemon's umask around the call (safe: the daemon has no
threads).  Giving a uid or gid makes Twisted fork the whole daemon
(milliseconds per connection); without them it uses posix_spawn.  An exec
failure in the fork path shows as exit code 1 with a traceback written to
the child's fd 2, which is the client's socket.
"""

from __future__ import annotations

import os
import resource
from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from xinetd_twisted.spawn.interfaces import (
    ChildSetup,
    ISpawner,
    PressureObserver,
    SpawnError,
)


@implementer(ISpawner)
class ReactorSpawner:
    """
    Spawns with C{reactor.spawnProcess(childFDs={0: fd, 1: fd, 2: fd})}.

    @cvar givesConnectionBack: its spawns fail before C{spawn} returns, if
        at all.
    """

    givesConnectionBack = False

    def __init__(self, reactor: Any, lenient: bool = False) -> None:
        self._reactor = reactor
        self._lenient = lenient
        self._running: dict = {}

    def unsupported(self, setup: ChildSetup) -> List[str]:
        """
        Name the fields of C{setup} this spawner cannot honour.
        """
        missing = []
        if setup.newSession:
            missing.append("newSession")
        if setup.nice:
            missing.append("nice")
        if setup.chroot is not None:
            missing.append("chroot")
        if setup.noNewPrivileges:
            missing.append("noNewPrivileges")
        for r, soft, hard in setup.rlimits:
            if resource.getrlimit(r) != (soft, hard):
                missing.append(f"rlimit {r}")
        root = os.getuid() == 0
        creds = root and (setup.uid is not None or setup.gid is not None)
        if setup.supplementaryGroups is not None and (
            creds or sorted(setup.supplementaryGroups) != sorted(os.getgroups())
        ):
            missing.append("supplementaryGroups")
        if not root:
            if setup.uid not in (None, os.getuid()):
                missing.append("uid")
            if setup.gid not in (None, os.getgid()):
                missing.append("gid")
        return missing

    def spawn(
        self,
        processProtocol: Any,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> Deferred:
        """
        See L{ISpawner.spawn}.
        """
        missing = self.unsupported(setup)
        if missing and not self._lenient:
            return fail(
                SpawnError("ReactorSpawner cannot honour " + ", ".join(missing))
            )
        env = dict(setup.environment)
        env.update(extraEnvironment)
        creds = {}
        if os.getuid() == 0 and (setup.uid is not None or setup.gid is not None):
            creds = {"uid": setup.uid, "gid": setup.gid}
        old = os.umask(setup.umask)
        try:
            transport = self._reactor.spawnProcess(
                processProtocol,
                setup.executable,
                list(setup.argv),
                env=env,
                path=setup.workingDirectory,
                childFDs={0: socketFD, 1: socketFD, 2: socketFD},
                **creds,
            )
        except OSError as e:
            return fail(SpawnError(f"spawn failed: {e}"))
        finally:
            os.umask(old)
        if len(self._running) > 64:
            self._running = {
                p: t for p, t in self._running.items() if t.pid is not None
            }
        self._running[transport.pid] = transport
        return succeed(transport)

    def signalChild(self, pid: int, signal: int) -> None:
        """
        See L{ISpawner.signalChild}; Twisted's transport knows whether the
        child has been reaped.
        """
        transport = self._running.get(pid)
        if transport is None:
            return
        if transport.pid is None:
            del self._running[pid]
            return
        transport.signalProcess(signal)

    def observePressure(self, observer: Optional[PressureObserver]) -> None:
        """
        See L{ISpawner.observePressure}: C{spawnProcess} never queues, so
        the observer is never called.
        """

    def start(self) -> Deferred:
        """
        Nothing to prepare.
        """
        return succeed(None)

    def stop(self) -> Deferred:
        """
        Nothing to release; children are left alone.
        """
        self._running.clear()
        return succeed(None)
