# -*- test-case-name: tests.test_spawn_helper -*-
"""
The seam between "a connection should get a server" and "a process exists".

Every child, whatever path starts it (stream nowait, stream wait, dgram wait,
tcpmux sub-services), goes through one L{ISpawner} and one L{ChildSetup}: the
single credential-dropping routine that CVE-2013-4342 teaches us to keep.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import attr
from zope.interface import Attribute, Interface

from xinetd_twisted.records import plainRepr


@plainRepr
@attr.s(frozen=True, auto_attribs=True, cache_hash=True, repr=False, slots=True)
class ChildSetup:
    """
    Everything about a child that is the same for every connection of a
    service: computed once when the configuration loads, reused per spawn.

    The child is set up in this order, as xinetd's child.c does (plus chroot):
    new session (setsid), chroot + chdir, supplementary groups, setgid,
    setuid, umask, nice, rlimits, fds 0/1/2 = the socket, close every other
    fd, signals at their defaults with an empty mask, execve.

    @ivar executable: path of the program to exec (inside the new root when
        C{chroot} is set).
    @ivar argv: the full argv, argv[0] included.
    @ivar environment: C{((name, value), ...)}: the base environment; the
        per-connection extra (REMOTE_HOST) is appended at spawn time.
    @ivar uid: setuid to this, or L{None} to keep the spawner's uid.
    @ivar gid: setgid to this, or L{None} to keep the spawner's gid.
    @ivar supplementaryGroups: setgroups to exactly these (C{()} clears them),
        or L{None} to leave them alone (only when not root).
    @ivar umask: the child's umask.
    @ivar nice: relative nice increment, or L{None}.
    @ivar rlimits: C{((resource, soft, hard), ...)} with C{resource} a
        C{resource.RLIMIT_*} constant and C{resource.RLIM_INFINITY} allowed:
        the limits the child must have.  L{childSetupFor} lists every
        resource (the service's value, else the daemon's own), so that a
        child never inherits a limit from whatever process starts it.
    @ivar chroot: change root to this directory before dropping privileges,
        or L{None}.
    @ivar workingDirectory: chdir here (after chroot); xinetd uses C{/}.
    @ivar newSession: call setsid() (xinetd always does).
    @ivar noNewPrivileges: set PR_SET_NO_NEW_PRIVS before exec (our
        C{no_new_privileges}): setuid programs gain nothing.
    """

    executable: str
    argv: Tuple[str, ...]
    environment: Tuple[Tuple[str, str], ...] = ()
    uid: Optional[int] = None
    gid: Optional[int] = None
    supplementaryGroups: Optional[Tuple[int, ...]] = None
    umask: int = 0o022
    nice: Optional[int] = None
    rlimits: Tuple[Tuple[int, int, int], ...] = ()
    chroot: Optional[str] = None
    workingDirectory: str = "/"
    newSession: bool = True
    noNewPrivileges: bool = False


CredentialKey = Tuple[Optional[int], Optional[int], Optional[Tuple[int, ...]]]
"""
C{(uid, gid, supplementaryGroups)}: children with the same key are started
by the same sub-helper, so they back up (and recover) together.
"""


def credentialKey(setup: ChildSetup) -> CredentialKey:
    """
    The credential set a child of C{setup} runs with.
    """
    return (setup.uid, setup.gid, setup.supplementaryGroups)


PressureObserver = Callable[[Optional[CredentialKey], bool], None]
"""
Told C{(key, True)} when spawns for credential set C{key} start to queue and
C{(key, False)} when they have caught up; C{key} L{None} means every
credential set at once (the path shared by all is backed up).  A spawner
may tell C{(key, True)} for several keys at once, and each C{False} only
ends that key's pause: pause the services whose C{credentialKey(setup)} is
C{key} (all spawning services for L{None}) while any applies to them.
"""


class SpawnError(Exception):
    """
    No child could be created (fork failed, the spawn helper is gone).

    @ivar connection: a descriptor of the client connection that the
        spawner gives back with a failure reported after C{spawn} returned
        (see L{ISpawner.givesConnectionBack}); its receiver owns it.  C{-1}
        when there is none.
    """

    connection = -1


class ISpawner(Interface):
    """
    Starts children that get one socket as their fds 0, 1 and 2.
    """

    givesConnectionBack = Attribute(
        """
        Whether a spawn that fails after C{spawn} returned gives the
        connection back (L{SpawnError.connection}) when it still has it, so
        that a caller needs no copy of its own for a retry (a copy that
        would keep the client from seeing EOF until the caller closes it).
        """
    )

    def spawn(
        processProtocol: object,
        setup: ChildSetup,
        socketFD: int,
        extraEnvironment: Tuple[Tuple[str, str], ...],
    ) -> object:
        """
        Start a child.

        The caller may close C{socketFD} as soon as this returns: the spawner
        has handed it on or duplicated it.

        @param processProtocol: an L{IProcessProtocol}.  Its C{makeConnection}
            is called with an L{IProcessTransport} (whose C{pid} is set) once
            the child exists, and its C{processEnded} with
            L{twisted.internet.error.ProcessDone} or
            L{twisted.internet.error.ProcessTerminated} once it has been
            reaped.  A child whose exec fails ends with exit code 127 and the
            spawner logs C{execv( PATH ) failed: REASON}.
        @param setup: the service's L{ChildSetup}.
        @param socketFD: the descriptor to put on the child's fds 0, 1 and 2.
        @param extraEnvironment: per-connection variables (C{REMOTE_HOST}),
            appended to C{setup.environment}.
        @return: a L{Deferred} that fires with the transport after
            C{makeConnection}, or fails with L{SpawnError}.
        """

    def signalChild(pid: int, signal: int) -> None:
        """
        Send C{signal} to a running child of this spawner.  Does nothing when
        the child has already been reaped, so a recycled pid is never hit.
        """

    def observePressure(observer: Optional[PressureObserver]) -> None:
        """
        Set (or, with L{None}, clear) the one L{PressureObserver}, so that
        listeners can stop accepting for the services whose children back
        up instead of queueing without bound.
        """

    def start() -> object:  # type: ignore[misc]
        """
        Get ready to spawn (for example start a helper process).  Called in
        C{privilegedStartService}, before twistd drops privileges.

        @return: a L{Deferred} that fires when spawning is possible.
        """

    def stop() -> object:  # type: ignore[misc]
        """
        Release resources.  Running children are left alone (xinetd leaves
        ordinary servers running at exit).

        @return: a L{Deferred} that fires when done.
        """
