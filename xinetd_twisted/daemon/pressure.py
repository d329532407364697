# -*- test-case-name: tests.test_service_parts -*-
"""
Spawner back-pressure: which credential sets the spawner cannot keep up
for, and pausing and resuming the services whose children it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Set

from xinetd_twisted.spawn.interfaces import CredentialKey

if TYPE_CHECKING:
    from xinetd_twisted.service.runtime import ServiceRuntime


class BackPressure:
    """
    Owns the credential sets the spawner reported backed up, and turns
    each report into pausing or resuming the runtimes of C{runtimes}.
    """

    def __init__(self, runtimes: Iterable[ServiceRuntime]) -> None:
        """
        @param runtimes: the daemon's runtimes, iterated anew on each
            report (a L{ServiceTable}).
        """
        self._runtimes = runtimes
        self._backedUp: Set[Optional[CredentialKey]] = set()

    def changed(self, key: Optional[CredentialKey], backedUp: bool) -> None:
        """
        The spawner cannot keep up for credential set C{key} (L{None}: all,
        the path every set shares): stop accepting for the services whose
        children it starts until it has caught up, instead of queueing
        without bound.  Several sets may be backed up at once: a service
        resumes only when neither its set nor the shared path is.
        """
        if backedUp:
            self._backedUp.add(key)
        else:
            self._backedUp.discard(key)
        for runtime in self._runtimes:
            credentials = runtime.credentials()
            if credentials is None:
                continue
            if None in self._backedUp or credentials in self._backedUp:
                runtime.pause()
            else:
                runtime.resume()
