# -*- test-case-name: tests.test_builtins_stream -*-
"""
How the internal services tell the rest of the server what they did, so that
START/FAIL lines, instance counts and per-source counts can be kept by code
that knows nothing of echo or chargen.
"""

from __future__ import annotations

from typing import Tuple

from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = ["IBuiltinObserver", "NullObserver"]


class IBuiltinObserver(Interface):
    """
    Told of every connection and datagram an internal service handles.

    One observer may serve many services: every call names the service.
    Calls happen in the reactor thread and must not raise.
    """

    def connectionMade(serviceId: str, peer: IAddress) -> None:
        """
        A stream connection was accepted and the service starts on it.
        """

    def connectionLost(serviceId: str, peer: IAddress, reason: Failure) -> None:
        """
        A stream connection the service was handling is closed.  Called once
        per C{connectionMade}, except for a tcpmux connection handed to a
        sub-service (see L{xinetd_twisted.builtins.tcpmux}).
        """

    def datagramServed(serviceId: str, peer: Tuple[str, int]) -> None:
        """
        A datagram passed the checks and was answered (or, for discard,
        consumed).  xinetd logs START with C{pid=0} for each.
        """

    def datagramRefused(serviceId: str, peer: Tuple[str, int], reason: str) -> None:
        """
        A datagram got no answer because of the loop/reflection guard or the
        reply budget.  C{reason} is one of C{"source port"}, C{"own service"},
        C{"rate"}, C{"amplification"} or C{"policy"}.  These can arrive at line rate: an observer
        that logs them should aggregate.
        """


@implementer(IBuiltinObserver)
class NullObserver:
    """
    An observer that ignores everything; the default.
    """

    def connectionMade(self, serviceId: str, peer: IAddress) -> None:
        pass

    def connectionLost(self, serviceId: str, peer: IAddress, reason: Failure) -> None:
        pass

    def datagramServed(self, serviceId: str, peer: Tuple[str, int]) -> None:
        pass

    def datagramRefused(
        self, serviceId: str, peer: Tuple[str, int], reason: str
    ) -> None:
        pass
