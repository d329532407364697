# -*- test-case-name: tests.test_spawn_delegation -*-
"""
Delegated accepting: the listening socket of a plain service handed to
the compiled sub-helper that starts its servers, which then accepts each
connection and starts its server itself, and reports it.

A connection the daemon accepts costs it a wake-up, an C{accept}, a start
request and the sub-helper's wake-up before the server can start; one the
sub-helper accepts costs the daemon only the report (C{"a"}: the server's
pid and the client's address), read after the server has started.  That is
worth it only where the daemon has nothing to decide for a connection: a
service with nothing but a program behind the socket (see
L{xinetd_twisted.service.program.ProgramKind} for when a service is
delegated).  The daemon still follows every server as one it started
(START and EXIT lines, the running table, signals, the exit status).

The wire (see L{xinetd_twisted.spawn.helper}): C{("L", listenerId,
templateId)} with the socket offers it to a sub-helper, which answers
C{("l", listenerId)} once it accepts on it, or C{("u", listenerId)} when it
will not (the Python sub-helper ignores C{"L"}: there the daemon goes on
accepting, as it does until the first C{"l"}).  C{("U", listenerId)} takes
it back; C{"u"} answers, after every C{"a"} of that socket.  A connection
the sub-helper cannot start comes back in C{("h", listenerId)} with its
descriptor, and the daemon serves it as one it accepted.

One sub-helper at a time has the socket, though a busy credential set
may have several (lanes): two sub-helpers accepting on one socket start
up to twice as many servers at once, and on 2 CPUs that doubled the
servers' p99 at C=8 for no more rate.  When it lets go, another routed
lane of the template is offered it.  The daemon and that sub-helper may
accept at the same time (each connection goes to one of them), so nothing
waits for an answer: the daemon stops reading the
socket on the first C{"l"} and reads it again when no sub-helper accepts on
it any more (the last C{"u"}, or the sub-helper's end).  A sub-helper is
retired only once it has given back its sockets (L{Delegations.release}),
so that every server it starts is reported.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Any, Callable, Dict, Iterable, Iterator, List, Set, Tuple

from twisted.logger import Logger

from xinetd_twisted.readiness import waiting
from xinetd_twisted.spawn import wire as _wire
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.interfaces import ChildSetup
from xinetd_twisted.spawn.templates import Templates

_log = Logger(namespace="xinetd_twisted.spawn")

Accepted = Callable[[str, int], Any]
"""
C{accepted(host, port)}: a sub-helper started a server for a client at
C{host}, C{port}; returns the process protocol that follows it.
"""

HandBack = Callable[[int, object], None]
"""
C{handBack(fd, address)}: serve this connection as one the daemon accepted
(C{fd} is closed when it returns).
"""

Accepting = Callable[[bool], None]
"""
C{accepting(True)}: a sub-helper accepts on the socket (the daemon may stop
reading it); C{accepting(False)}: none does any more.
"""


class Delegation:
    """
    One listening socket and the setup of its servers, offered to the
    sub-helpers that start them.

    @ivar listenerId: names it on the wire.
    @ivar offered: channels sent C{"L"} that have not answered.
    @ivar taken: channels whose peer accepts on it.
    @ivar refused: channels whose peer answered an offer with C{"u"} (the
        Python sub-helper, one out of descriptors): not offered it again.
    @ivar withdrawn: taken back for good (L{withdraw}).
    """

    def __init__(
        self,
        owner: Delegations,
        listenerId: int,
        fd: int,
        setup: ChildSetup,
        accepted: Accepted,
        handBack: HandBack,
        accepting: Accepting,
    ) -> None:
        self._owner = owner
        self.listenerId = listenerId
        self.fd = fd
        self.setup = setup
        self.accepted = accepted
        self.handBack = handBack
        self.accepting = accepting
        self.offered: Set[Channel] = set()
        self.taken: Set[Channel] = set()
        self.refused: Set[Channel] = set()
        self.withdrawn = False
        self.told = False

    def withdraw(self) -> None:
        """
        Take the socket back from every sub-helper: the caller reads it
        again itself (or closes it).  Servers started meanwhile are still
        reported to C{accepted}.
        """
        self._owner.withdraw(self)


class StuckAcceptors:
    """
    Looks, every stuck timeout while sockets are handed over, for a holder
    that has said nothing for that long while a connection waits on its
    socket: the daemon cannot tell it from one whose user stopped it, and
    ends it.
    """

    def __init__(
        self,
        reactor: Any,
        timeout: Callable[[], float],
        stuck: Callable[[Channel, float], None],
        taken: Callable[[], Iterable[Tuple[int, Channel]]],
    ) -> None:
        """
        @param taken: each socket handed over (its fd) with its holder.
        """
        self._reactor = reactor
        self._timeout = timeout
        self._stuck = stuck
        self._taken = taken
        self._check: Any = None

    def watch(self) -> None:
        """Look in a stuck timeout, unless a look is due already."""
        timeout = self._timeout()
        if self._check is None and timeout > 0:
            self._check = self._reactor.callLater(timeout, self._look)

    def _look(self) -> None:
        self._check = None
        timeout = self._timeout()
        now = self._reactor.seconds()
        anyTaken = False
        for fd, channel in self._taken():
            anyTaken = True
            quiet = now - channel.progress
            if quiet >= timeout and not channel.stuck and waiting(fd):
                self._stuck(channel, quiet)
        if anyTaken:
            self.watch()

    def stop(self) -> None:
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None


class Delegations:
    """
    The sockets handed (or offered) to sub-helpers, by listener id.
    """

    def __init__(
        self,
        reactor: Any,
        templates: Templates,
        children: Children,
        stuckTimeout: Callable[[], float],
        stuck: Callable[[Channel, float], None],
        routed: Callable[[int], List[Channel]] = lambda templateId: [],
    ) -> None:
        """
        @param stuckTimeout: seconds a sub-helper that accepts on a socket
            may leave a connection waiting there and say nothing.
        @param stuck: C{stuck(channel, quiet)} ends that sub-helper (its
            user stopped it, say): the daemon then reads the socket again.
        @param routed: the channels of the sub-helpers that start a
            template's servers now (one per lane).
        """
        self._reactor = reactor
        self._templates = templates
        self._children = children
        self._stuckTimeout = stuckTimeout
        self._routed = routed
        self._stuckWatch = StuckAcceptors(reactor, stuckTimeout, stuck, self._taken)
        self._ids = itertools.count(1)
        self._byId: Dict[int, Delegation] = {}
        self._releasing: Dict[Channel, Callable[[], None]] = {}

    def add(
        self,
        sock: socket.socket,
        setup: ChildSetup,
        accepted: Accepted,
        handBack: HandBack,
        accepting: Accepting,
    ) -> Delegation:
        """
        Offer C{sock} (a copy of it: the caller keeps its own) to a
        sub-helper routed for C{setup}'s template, or to the first that
        is (L{offer}).
        """
        delegation = Delegation(
            self,
            next(self._ids),
            os.dup(sock.fileno()),
            setup,
            accepted,
            handBack,
            accepting,
        )
        self._byId[delegation.listenerId] = delegation
        templateId = self._templates.ids.get(setup)
        if templateId is not None:
            for channel in self._routed(templateId):
                self._send(delegation, channel, templateId)
        return delegation

    def offer(self, channel: Channel, templateId: int) -> None:
        """
        C{channel}'s peer starts the servers of C{templateId} from now on:
        offer it the sockets of that template.
        """
        for delegation in list(self._byId.values()):
            if self._templates.ids.get(delegation.setup) == templateId:
                self._send(delegation, channel, templateId)

    def _send(self, delegation: Delegation, channel: Channel, templateId: int) -> None:
        if (
            delegation.withdrawn
            or delegation.offered
            or delegation.taken
            or channel.subId is None
            or channel.closed
            or channel.retired
            or channel.stuck
            or channel.orphaned
            or channel in delegation.refused
            or channel in self._releasing
        ):
            return
        if templateId not in channel.templates:
            if not self._templates.registerOn(channel, templateId, delegation.setup):
                return
        message = _wire.listenMessage(delegation.listenerId, templateId)
        if channel.send(message, delegation.fd):
            delegation.offered.add(channel)

    def _taken(self) -> Iterator[Tuple[int, Channel]]:
        """Each socket handed over, with the channel of its holder."""
        for delegation in list(self._byId.values()):
            for channel in list(delegation.taken):
                yield delegation.fd, channel

    def holds(self, channel: Channel) -> bool:
        """
        Whether C{channel}'s peer accepts on (or was offered) a socket.
        """
        return any(
            channel in d.taken or channel in d.offered for d in self._byId.values()
        )

    # --- the sub-helpers' answers ------------------------------------------

    def listening(self, channel: Channel, listenerId: int) -> None:
        """
        C{"l"}: C{channel}'s peer accepts on the socket.
        """
        delegation = self._byId.get(listenerId)
        if delegation is None:
            return
        delegation.offered.discard(channel)
        if delegation.withdrawn or channel.closed:
            return  # our "U" (or its end) follows
        delegation.taken.add(channel)
        if not delegation.told:
            delegation.told = True
            delegation.accepting(True)
        self._stuckWatch.watch()

    def unlistened(self, channel: Channel, listenerId: int) -> None:
        """
        C{"u"}: C{channel}'s peer does not accept on the socket (any more).
        """
        delegation = self._byId.get(listenerId)
        if delegation is not None:
            if channel in delegation.offered:
                delegation.refused.add(channel)
            delegation.offered.discard(channel)
            delegation.taken.discard(channel)
            self._settle(delegation)
        self._released(channel)

    def accepted(self, channel: Channel, event: tuple) -> None:
        """
        C{("a", listenerId, pid, host, port)}: follow the server started.
        """
        _, listenerId, pid, host, port = event
        delegation = self._byId.get(listenerId)
        if delegation is None:  # pragma: no cover - kept until its last "u"
            _log.error(
                "spawn sub-helper reported server {pid} for an unknown socket",
                pid=pid,
            )
            return
        proto = delegation.accepted(host, port)
        process = self._children.started(pid, proto, delegation.setup, channel)
        proto.makeConnection(process)

    def handedBack(self, listenerId: int, fds: List[int]) -> None:
        """
        C{("h", listenerId)}: serve the connection the sub-helper could not
        start.
        """
        if not fds:
            return
        fd = fds.pop(0)
        delegation = self._byId.get(listenerId)
        try:
            address = socket.socket(fileno=os.dup(fd))
            try:
                peer = address.getpeername()
            finally:
                address.close()
        except OSError:
            os.close(fd)
            return
        if delegation is None:  # pragma: no cover - kept until its last "u"
            os.close(fd)
            return
        delegation.handBack(fd, peer)

    def channelLost(self, channel: Channel) -> None:
        """
        C{channel}'s peer has ended: it accepts on nothing any more.
        """
        for delegation in list(self._byId.values()):
            if channel in delegation.offered or channel in delegation.taken:
                delegation.offered.discard(channel)
                delegation.taken.discard(channel)
                self._settle(delegation)
        self._released(channel)

    # --- taking sockets back -------------------------------------------------

    def withdraw(self, delegation: Delegation) -> None:
        """
        See L{Delegation.withdraw}.
        """
        if delegation.withdrawn:
            return
        delegation.withdrawn = True
        delegation.told = False  # the caller knows: it withdrew
        for channel in delegation.offered | delegation.taken:
            channel.send(_wire.unlistenMessage(delegation.listenerId), -1)
        self._settle(delegation)

    def release(self, channel: Channel, then: Callable[[], None]) -> None:
        """
        Take back every socket C{channel}'s peer accepts on (the daemon
        reads them again), then call C{then}: at once if it holds none,
        else once it has answered for all, or ended, or said nothing for
        the stuck timeout (it is given up on: what it holds is forgotten).
        """
        held = [
            d for d in self._byId.values() if channel in d.taken or channel in d.offered
        ]
        if not held:
            then()
            return
        self._releasing[channel] = then
        for delegation in held:
            channel.send(_wire.unlistenMessage(delegation.listenerId), -1)
        timeout = self._stuckTimeout()
        if timeout > 0:
            self._reactor.callLater(timeout, self._givenUp, channel, then)

    def _givenUp(self, channel: Channel, then: Callable[[], None]) -> None:
        if self._releasing.get(channel) is then:
            self.channelLost(channel)

    def _released(self, channel: Channel) -> None:
        then = self._releasing.get(channel)
        if then is not None and not self.holds(channel):
            del self._releasing[channel]
            then()

    def _settle(self, delegation: Delegation) -> None:
        if delegation.taken or delegation.offered:
            return
        if delegation.told:
            delegation.told = False
            delegation.accepting(False)
        if delegation.withdrawn and delegation.listenerId in self._byId:
            del self._byId[delegation.listenerId]
            os.close(delegation.fd)
            return
        templateId = self._templates.ids.get(delegation.setup)
        if templateId is not None and delegation.listenerId in self._byId:
            # Another lane takes it, if there is one that may.
            for channel in self._routed(templateId):
                self._send(delegation, channel, templateId)

    def stop(self) -> None:
        """
        The spawner stops: forget every socket (its sub-helpers end).
        """
        self._stuckWatch.stop()
        delegations, self._byId = self._byId, {}
        self._releasing.clear()
        for delegation in delegations.values():
            os.close(delegation.fd)


__all__ = ["Delegation", "Delegations", "StuckAcceptors"]
