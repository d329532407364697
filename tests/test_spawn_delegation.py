"""
Tests for L{xinetd_twisted.spawn.delegation}: which sub-helpers are
offered a listening socket, what their answers mean to the service, and
taking the socket back.  The channels are real sockets; the sub-helpers are
this test, reading what the daemon sent.
"""

from __future__ import annotations

import array
import marshal
import os
import socket
from typing import Any, List, Optional, Tuple

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.test_spawn_helper import (
    COMPILED,
    NOBODY,
    PYTHON_SUBHELPERS,
    ROOT,
    SpawnerCase,
)
from xinetd_twisted.spawn.channel import Channel
from xinetd_twisted.spawn.children import Children
from xinetd_twisted.spawn.delegation import Delegations
from xinetd_twisted.spawn.helperspawner import HelperSpawner
from xinetd_twisted.spawn.interfaces import ChildSetup
from xinetd_twisted.spawn.templates import Templates

KEY = (65534, 65534, ())
SETUP = ChildSetup(executable="/bin/echo", argv=("echo", "hi"))


class _Owner:
    """The channels' owner: nothing here reads events."""

    def waitingOn(self, channel: Channel) -> None:
        pass

    def queueChanged(self, channel: Channel, backedUp: bool) -> None:
        pass

    def channelLost(self, channel: Channel, why: str) -> None:
        pass


class _Proto:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.transport: Any = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport


class DelegationsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.templates = Templates(iter(range(1, 1000)))
        self.children = Children(None, None)  # type: ignore[arg-type]
        self.stuck: List[Tuple[Channel, float]] = []
        self.delegations = Delegations(
            self.clock,
            self.templates,
            self.children,
            lambda: 5.0,
            lambda channel, quiet: self.stuck.append((channel, quiet)),
            lambda templateId: (
                list(self.lanes) if templateId == self.templateId else []
            ),
        )
        self.lanes: List[Channel] = []
        self.addCleanup(self.delegations.stop)
        self.told: List[bool] = []
        self.accepted: List[_Proto] = []
        self.handedBack: List[Tuple[int, Any]] = []
        self.listener = socket.socket()
        self.addCleanup(self.listener.close)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.control = self.channel(None)
        self.templateId = self.templates.register(SETUP, self.control)

    def channel(self, subId: Optional[int]) -> Channel:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.setblocking(False)
        self.addCleanup(theirs.close)
        channel = Channel(self.clock, _Owner(), ours, subId, KEY, 100)  # type: ignore[arg-type]
        self.addCleanup(channel.close)
        channel.peer = theirs  # type: ignore[attr-defined]
        return channel

    def sent(self, channel: Channel) -> List[Tuple[tuple, int]]:
        """
        What the daemon sent C{channel}'s peer: each message with the
        number of descriptors beside it (closed here).
        """
        messages = []
        while True:
            try:
                data, anc, _f, _a = channel.peer.recvmsg(  # type: ignore[attr-defined]
                    65536, socket.CMSG_SPACE(16)
                )
            except BlockingIOError:
                return messages
            fds = array.array("i")
            for _level, _kind, payload in anc:
                fds.frombytes(payload[: len(payload) // 4 * 4])
            for fd in fds:
                os.close(fd)
            messages.append((marshal.loads(data), len(fds)))

    def delegate(self, channels: List[Channel]) -> Any:
        """
        Delegate the listener with C{channels} routed (after any lanes the
        test routed already).
        """
        self.lanes.extend(c for c in channels if c not in self.lanes)
        return self.delegations.add(
            self.listener,
            SETUP,
            lambda host, port: (
                self.accepted.append(_Proto(host, port)) or self.accepted[-1]
            ),
            lambda fd, address: self.handedBack.append((fd, address)),
            self.told.append,
        )

    def test_offeredToItsSubHelpers(self) -> None:
        """
        The socket goes to a sub-helper given (its template registered
        first where it does not know it), never to the root helper, and
        to one at a time: while one holds it, no other lane is offered it.
        """
        first, second = self.channel(1), self.channel(2)
        self.delegate([self.control, first, second])
        kinds = [(m[0], n) for m, n in self.sent(first)]
        self.assertEqual(kinds, [("T", 0), ("L", 1)])
        self.assertEqual(self.sent(self.control)[-1][0][0], "T")
        self.assertEqual(self.sent(second), [])
        self.delegations.listening(first, 1)
        second.templates.add(self.templateId)
        self.delegations.offer(second, self.templateId)
        self.delegations.offer(self.channel(3), self.templateId + 1)
        self.assertEqual(self.sent(second), [])

    def test_routedLater(self) -> None:
        """Offered before any sub-helper runs, it goes to the first routed."""
        self.delegate([])
        first = self.channel(1)
        first.templates.add(self.templateId)
        self.delegations.offer(first, self.templateId)
        self.assertEqual(self.sent(first), [(("L", 1, self.templateId), 1)])

    def test_anotherLaneTakesOver(self) -> None:
        """
        When the sub-helper holding it ends, another routed lane is
        offered it; one that refused is not offered it again.
        """
        first, second, third = self.channel(1), self.channel(2), self.channel(3)
        for channel in (second, third):
            channel.templates.add(self.templateId)
        self.lanes[:] = [first, second, third]
        self.delegate([first])
        self.sent(first)
        self.delegations.listening(first, 1)
        first.close()
        self.delegations.channelLost(first)
        self.assertEqual(self.sent(second), [(("L", 1, self.templateId), 1)])
        self.delegations.unlistened(second, 1)  # refused (Python, say)
        self.assertEqual(self.sent(second), [])
        self.assertEqual(self.sent(third), [(("L", 1, self.templateId), 1)])
        self.delegations.listening(third, 1)
        self.assertEqual(self.told, [True, False, True])

    def test_notToASubHelperOnItsWayOut(self) -> None:
        """Retired, stuck and orphaned sub-helpers are offered nothing."""
        channels = [self.channel(k) for k in (1, 2, 3)]
        channels[0].retired = True
        channels[1].stuck = True
        channels[2].orphaned = True
        self.delegate(channels)
        for channel in channels:
            self.assertEqual(self.sent(channel), [])

    def test_accepting(self) -> None:
        """
        The service is told once that a sub-helper accepts, and once that
        none does any more.
        """
        first = self.channel(1)
        self.delegate([first])
        self.delegations.listening(first, 1)
        self.assertEqual(self.told, [True])
        self.delegations.channelLost(first)
        self.assertEqual(self.told, [True, False])

    def test_refused(self) -> None:
        """A sub-helper that answers C{"u"} at once changes nothing."""
        first = self.channel(1)
        self.delegate([first])
        self.delegations.unlistened(first, 1)
        self.assertEqual(self.told, [])
        self.assertFalse(self.delegations.holds(first))

    def test_accepted(self) -> None:
        """
        C{"a"}: the service's process protocol for the client follows the
        server as a child of that sub-helper.
        """
        first = self.channel(1)
        self.delegate([first])
        self.delegations.listening(first, 1)
        self.delegations.accepted(first, ("a", 1, 4242, "127.0.0.1", 5555))
        [proto] = self.accepted
        self.assertEqual((proto.host, proto.port), ("127.0.0.1", 5555))
        process = self.children.running[4242]
        self.assertIs(proto.transport, process)
        self.assertIs(process.channel, first)
        self.assertIs(process.setup, SETUP)

    def test_handedBack(self) -> None:
        """C{"h"}: the connection is the service's, with its peer's address."""
        first = self.channel(1)
        self.delegate([first])
        client = socket.create_connection(self.listener.getsockname())
        self.addCleanup(client.close)
        conn, _ = self.listener.accept()
        fds = [conn.detach()]
        self.delegations.handedBack(1, fds)
        self.assertEqual(fds, [])
        [(fd, address)] = self.handedBack
        os.close(fd)
        self.assertEqual(address, client.getsockname())

    def test_withdraw(self) -> None:
        """
        Withdrawn: every sub-helper offered or accepting is sent C{"U"}; a
        server reported before its C{"u"} is still followed; after the last
        C{"u"} the copy of the socket is closed.
        """
        first, second = self.channel(1), self.channel(2)
        self.lanes[:] = [first, second]
        delegation = self.delegate([first])
        self.sent(first)
        self.delegations.listening(first, 1)
        delegation.withdraw()
        self.assertEqual(self.sent(first), [(("U", 1), 0)])
        self.delegations.accepted(first, ("a", 1, 4242, "127.0.0.1", 5555))
        self.assertEqual(len(self.accepted), 1)
        fd = delegation.fd
        os.fstat(fd)
        self.delegations.unlistened(first, 1)
        self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(self.told, [True])
        self.assertEqual(self.sent(second), [])  # withdrawn: no other lane

    def test_withdrawnWhileOffered(self) -> None:
        """An offer crossed by our C{"U"}: its C{"l"} changes nothing."""
        first = self.channel(1)
        delegation = self.delegate([first])
        fd = delegation.fd
        delegation.withdraw()
        self.delegations.listening(first, 1)
        self.delegations.unlistened(first, 1)
        self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(self.told, [])

    def test_withdrawnBeforeAnyOffer(self) -> None:
        """With no sub-helper yet, withdrawing closes the copy at once."""
        delegation = self.delegate([])
        fd = delegation.fd
        delegation.withdraw()
        self.assertRaises(OSError, os.fstat, fd)
        self.delegations.offer(self.channel(1), self.templateId)

    def test_release(self) -> None:
        """
        L{Delegations.release} takes back what one sub-helper accepts on
        and calls back once it has answered for all; at once when it holds
        nothing.
        """
        first, second = self.channel(1), self.channel(2)
        self.delegate([first])
        self.sent(first)
        self.delegations.listening(first, 1)
        released: List[str] = []
        self.delegations.release(second, lambda: released.append("second"))
        self.assertEqual(released, ["second"])
        self.delegations.release(first, lambda: released.append("first"))
        self.assertEqual(self.sent(first), [(("U", 1), 0)])
        self.assertEqual(released, ["second"])
        # Not offered again while it gives it back.
        self.delegations.offer(first, self.templateId)
        self.assertEqual(self.sent(first), [])
        self.delegations.unlistened(first, 1)
        self.assertEqual(released, ["second", "first"])
        self.assertEqual(self.told, [True, False])

    def test_releasedByItsEnd(self) -> None:
        """A sub-helper that ends while giving sockets back has."""
        first = self.channel(1)
        self.delegate([first])
        released: List[bool] = []
        self.delegations.release(first, lambda: released.append(True))
        self.delegations.channelLost(first)
        self.assertEqual(released, [True])

    def test_stuck(self) -> None:
        """
        A sub-helper that accepts on the socket and has said nothing for
        the stuck timeout while a client waits there is found stuck; one
        with no client waiting, or that spoke since, is not.
        """
        first = self.channel(1)
        self.delegate([first])
        self.delegations.listening(first, 1)
        first.progress = self.clock.seconds()
        self.clock.advance(5)
        self.assertEqual(self.stuck, [])
        client = socket.create_connection(self.listener.getsockname())
        self.addCleanup(client.close)
        self.clock.advance(2)
        first.progress = self.clock.seconds()
        self.clock.advance(3)
        self.assertEqual(self.stuck, [])
        self.clock.advance(5)
        self.assertEqual(self.stuck, [(first, 8.0)])

    def test_stop(self) -> None:
        """Stopped, it forgets its sockets; a later withdraw is harmless."""
        first = self.channel(1)
        delegation = self.delegate([first])
        self.delegations.listening(first, 1)
        fd = delegation.fd
        self.delegations.stop()
        self.assertRaises(OSError, os.fstat, fd)
        delegation.withdraw()
        self.assertEqual(self.told, [True])

    def test_releaseGivenUp(self) -> None:
        """
        A sub-helper that does not answer C{"U"} within the stuck timeout
        is given up on: what it held is forgotten and the caller goes on.
        """
        first = self.channel(1)
        self.delegate([first])
        self.delegations.listening(first, 1)
        released: List[bool] = []
        self.delegations.release(first, lambda: released.append(True))
        self.clock.advance(4.9)
        self.assertEqual(released, [])
        self.clock.advance(0.1)
        self.assertEqual(released, [True])
        self.assertEqual(self.told, [True, False])
        self.assertFalse(self.delegations.holds(first))


class _Server(ProcessProtocol):
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.ended: defer.Deferred = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


class SpawnerTests(SpawnerCase):
    """
    L{HelperSpawner.delegate} with its real helpers: the compiled
    sub-helper takes the socket once the first spawn has started it.
    """

    def setUp(self) -> Any:
        if not ROOT:
            raise SkipTest("needs root: sub-helpers are per service user")
        self.listener = socket.socket()
        self.addCleanup(self.listener.close)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.setup = ChildSetup(
            "/bin/sh",
            ("sh", "-c", 'echo "hi $REMOTE_HOST"'),
            environment=(("PATH", "/bin"),),
            uid=NOBODY.pw_uid,
            gid=NOBODY.pw_gid,
            supplementaryGroups=(),
        )
        self.told: List[bool] = []
        self.servers: List[_Server] = []
        return super().setUp()

    def delegate(self) -> Any:
        def accepted(host: str, port: int) -> _Server:
            self.servers.append(_Server(host, port))
            return self.servers[-1]

        return self.spawner.delegate(
            self.listener, self.setup, accepted, self.fail, self.told.append
        )

    @defer.inlineCallbacks
    def until(self, condition: Any) -> Any:
        for _ in range(500):
            if condition():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        self.fail("timed out")

    def fetch(self) -> bytes:
        with socket.create_connection(self.listener.getsockname(), 10) as client:
            output = b""
            while chunk := client.recv(100):
                output += chunk
            return output

    @defer.inlineCallbacks
    def test_compiled(self) -> Any:
        """
        Offered before the sub-helper exists, the socket goes to it once
        routed; its servers are followed to their end; withdrawn, it is
        given back.  (The socket is a blocking one: the sub-helper makes
        it non-blocking, as the daemon's own are.)
        """
        if not COMPILED:
            raise SkipTest("the compiled sub-helper is not built")
        delegation = self.delegate()
        channel = yield self.routed(self.setup)
        yield self.until(lambda: self.told == [True])
        output = yield deferToThread(self.fetch)
        self.assertEqual(output, b"hi 127.0.0.1\n")
        yield self.until(lambda: self.servers)
        [server] = self.servers
        reason = yield server.ended
        self.assertIsInstance(reason, ProcessDone)
        self.assertEqual(server.host, "127.0.0.1")
        delegation.withdraw()
        yield self.until(lambda: not self.spawner._delegations.holds(channel))

    @defer.inlineCallbacks
    def test_pythonSubHelper(self) -> Any:
        """
        The Python sub-helper says it does not take the socket: the caller
        is never told to stop accepting.
        """
        self.spawner.stop()
        self.spawner = HelperSpawner(
            reactor, lanes=1, helperEnvironment=PYTHON_SUBHELPERS
        )
        self.addCleanup(self.spawner.stop)
        yield self.spawner.start()
        self.delegate()
        channel = yield self.routed(self.setup)
        yield self.until(lambda: not self.spawner._delegations.holds(channel))
        self.assertEqual(self.told, [])
