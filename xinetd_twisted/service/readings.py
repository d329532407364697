# -*- test-case-name: tests.test_daemon_superserver -*-
"""
What the dump, the metrics, the RPC registrations and back-pressure read
of a service runtime, and never on the connection path.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from xinetd_twisted.spawn.interfaces import ChildSetup, CredentialKey

if TYPE_CHECKING:
    from xinetd_twisted.service.children import Child, SpawnAttempt
    from xinetd_twisted.service.parts import ServiceParts


class RuntimeReadings:
    """
    The read-only views of L{ServiceRuntime}: its children, counters, kind
    and socket as its readers see them.  A mixin (no object per service):
    the views read the parts only once they are built, so reading never
    builds them.

    @ivar parts: the runtime's parts.
    @ivar kind: how its connections are served.
    """

    parts: ServiceParts
    kind: Any
    _reactivation: Any

    @property
    def servers(self) -> Dict[int, Child]:
        """
        Its children started and not yet reaped, by pid.
        """
        parts = self.parts
        return parts.children.running if parts.built("children") else {}

    @property
    def connections(self) -> int:
        parts = self.parts
        return parts.admission.connections if parts.built("admission") else 0

    @property
    def refused(self) -> int:
        parts = self.parts
        return parts.admission.refused if parts.built("admission") else 0

    @property
    def kindName(self) -> str:
        """
        What kind of service it is (for the dump).
        """
        return type(self.kind).__name__

    @property
    def retrying(self) -> List[SpawnAttempt]:
        """
        Connections waiting for a spawn retry.
        """
        parts = self.parts
        return parts.children.retrying if parts.built("children") else []

    @property
    def reactivationPending(self) -> bool:
        return self._reactivation is not None

    @property
    def setup(self) -> Optional[ChildSetup]:
        return getattr(self.kind, "setup", None)

    def listeningSocket(self) -> Optional[socket.socket]:
        """
        The socket it serves on, or L{None} while it is not active.
        """
        return self.kind.listeningSocket if self.parts.active else None  # type: ignore[no-any-return]

    def credentials(self) -> Optional[CredentialKey]:
        """
        The credential set its children run with, or L{None} when it starts
        none itself.
        """
        credentials = getattr(self.kind, "credentials", None)
        return None if credentials is None else credentials()  # type: ignore[no-any-return]
