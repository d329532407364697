# -*- test-case-name: tests.test_builtins_stream -*-
"""
xinetd's internal services, served in-process: echo, discard, daytime, time,
chargen (stream and datagram) and the tcpmux multiplexer.

The integrator looks a service up by its xinetd C{name} and socket type:
L{streamFactory} gives a L{ServerFactory} to adopt on a stream socket,
L{datagramProtocol} a L{DatagramProtocol} for a datagram socket.  Both report
to an L{IBuiltinObserver}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime

from .datagram import (
    DATAGRAM_SERVICES,
    AmplificationBudget,
    InternalDatagramProtocol,
    LoopGuard,
    Peer,
    ReplyBudget,
)
from .formats import ChargenRing, globalChargenRing
from .observe import IBuiltinObserver, NullObserver

if TYPE_CHECKING:
    from .stream import InternalStreamFactory

__all__ = [
    "UnknownBuiltin",
    "streamFactory",
    "datagramProtocol",
    "IBuiltinObserver",
    "NullObserver",
    "LoopGuard",
    "AmplificationBudget",
    "ReplyBudget",
    "ChargenRing",
    "globalChargenRing",
]


def __getattr__(name: str) -> Any:
    """
    The stream side (C{STREAM_PROTOCOLS}, C{InternalStreamFactory}), imported
    on first use: the daemon imports this package for the datagram budgets
    of every start, the stream protocols only with an internal stream
    service.
    """
    if name in ("STREAM_PROTOCOLS", "InternalStreamFactory"):
        from . import stream

        return getattr(stream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnknownBuiltin(KeyError):
    """
    No internal service has this name and socket type; xinetd logs
    C{No such internal service: NAME/TYPE - DISABLING}.
    """


def streamFactory(
    name: str,
    serviceId: str,
    clock: IReactorTime,
    observer: Optional[IBuiltinObserver] = None,
    ring: Optional[ChargenRing] = None,
) -> InternalStreamFactory:
    """
    The factory of the internal stream service C{name} (tcpmux excepted: see
    L{xinetd_twisted.builtins.tcpmux.TcpmuxFactory}).

    @raise UnknownBuiltin: for any other name.
    """
    from .stream import STREAM_PROTOCOLS, InternalStreamFactory

    try:
        protocol = STREAM_PROTOCOLS[name]
    except KeyError:
        raise UnknownBuiltin(f"{name}/stream") from None
    return InternalStreamFactory(serviceId, protocol, clock, observer, ring)


def datagramProtocol(
    name: str,
    serviceId: str,
    clock: IReactorTime,
    observer: Optional[IBuiltinObserver] = None,
    guard: Optional[LoopGuard] = None,
    budget: Optional[ReplyBudget] = None,
    ring: Optional[ChargenRing] = None,
    admit: Optional[Callable[[Peer], bool]] = None,
    amplification: Optional[AmplificationBudget] = None,
) -> InternalDatagramProtocol:
    """
    The protocol of the internal datagram service C{name}.  Pass the same
    L{LoopGuard} and L{AmplificationBudget} to every one of them.

    @raise UnknownBuiltin: for an unknown name.
    """
    try:
        reply = DATAGRAM_SERVICES[name]
    except KeyError:
        raise UnknownBuiltin(f"{name}/dgram") from None
    return InternalDatagramProtocol(
        serviceId, reply, clock, observer, guard, budget, ring, admit, amplification
    )
