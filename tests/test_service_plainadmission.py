"""
Tests for the plain admission of inline daytime and time
(L{xinetd_twisted.service.admission.Admission.plain},
L{xinetd_twisted.policy.access.ServicePolicy.checkPlain}): the short path
is taken only when the service configures nothing it skips, every limit
still applies on it, and a reload decides anew.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import freePort
from tests.test_daemon_superserver import ServerHarness, serviceBlock
from xinetd_twisted.service.inprocess import replyAndClose


def daytimeBlock(port: int, extra: str = "", name: str = "daytime") -> str:
    """
    An inline daytime service without limits, plus C{extra}, which may
    set C{instances}, C{per_source} or C{cps} instead.
    """
    limits = "".join(
        f"\t{attribute} = {value}\n"
        for attribute, value in (
            ("instances", "UNLIMITED"),
            ("per_source", "UNLIMITED"),
            ("cps", "0 0"),
        )
        if not extra.startswith(attribute + " ")
    )
    return f"""
service {name}
{{
	type		= INTERNAL UNLISTED
	id		= {name}-stream
	port		= {port}
	socket_type	= stream
	wait		= no
	bind		= 127.0.0.1
{limits}{extra}
}}
"""


_NOT_PLAIN = [
    "only_from = 10.0.0.1",
    "no_access = 10.0.0.1",
    "access_times = 01:00-01:01",
    "per_source = 5",
    "instances = 5",
    "max_load = 100",
    "flags = SENSOR",
    "log_on_success = HOST USERID",
    "banner_success = /etc/hostname",
    "banner = /etc/hostname",
    "per_source_cps = 5 10",
]


class PlainAdmissionTests(SynchronousTestCase):
    """
    Inline daytime through the super-server's fast door.
    """

    def setUp(self) -> None:
        self.port = freePort()
        self.server = ServerHarness(self, daytimeBlock(self.port))
        self.clients: List[socket.socket] = []
        self.addCleanup(self._closeClients)

    def _closeClients(self) -> None:
        for client in self.clients:
            client.close()

    def runtime(self, serviceId: str = "daytime-stream") -> Any:
        return self.server.server.runtimes[serviceId]

    def connect(self, serviceId: str = "daytime-stream") -> bytes:
        """
        Feed one connection to the service; what the client received
        before the daemon closed its end.
        """
        ours, theirs = socket.socketpair()
        self.clients.append(ours)
        self.runtime(serviceId).kind.acceptRaw(theirs.detach(), ("127.0.0.1", 4242))
        ours.setblocking(False)
        data = b""
        while True:
            try:
                chunk = ours.recv(4096)
            except BlockingIOError:
                self.fail("the daemon kept the connection open")
            if not chunk:
                return data
            data += chunk

    def test_plainAnswered(self) -> None:
        """
        A daytime service with no limit is plain and answered inline, and
        the connection is counted.
        """
        admission = self.runtime().parts.admission
        self.assertTrue(admission.plain)
        self.assertTrue(self.connect().endswith(b"\r\n"))
        self.assertEqual((admission.connections, admission.refused), (1, 0))

    def test_limitsAreNotPlain(self) -> None:
        """
        Every attribute the short path does not check makes the service
        take the general path.
        """
        for extra in _NOT_PLAIN:
            self.server.reload(daytimeBlock(self.port, extra))
            self.assertFalse(self.runtime().parts.admission.plain, extra)

    def test_reloadRestricts(self) -> None:
        """
        A reload that adds only_from is applied to the next connection, and
        one that removes it again makes the service plain again.
        """
        self.connect()
        self.server.reload(daytimeBlock(self.port, "only_from = 10.0.0.1"))
        admission = self.runtime().parts.admission
        self.assertEqual(self.connect(), b"")
        self.assertEqual(admission.refused, 1)
        self.server.reload(daytimeBlock(self.port))
        self.assertTrue(admission.plain)
        self.assertTrue(self.connect().endswith(b"\r\n"))
        self.assertEqual(admission.refused, 1)

    def test_cps(self) -> None:
        """
        cps applies on the short path, and the refused client gets no
        answer.
        """
        self.server.reload(daytimeBlock(self.port, "cps = 2 10"))
        admission = self.runtime().parts.admission
        self.assertTrue(admission.plain)
        answers = [self.connect() for _ in range(4)]
        self.assertIn(b"", answers)
        self.assertGreater(admission.refused, 0)
        self.assertEqual(answers.count(b""), admission.refused)

    def test_sensorList(self) -> None:
        """
        A client on the global SENSOR list is refused on the short path.
        """
        sensors = self.server.server.context.policy.sensorList
        sensors.add("127.0.0.1", 5)
        admission = self.runtime().parts.admission
        self.assertEqual(self.connect(), b"")
        self.assertEqual(admission.refused, 1)

    def test_processLimit(self) -> None:
        """
        The daemon-wide process limit applies on the short path.
        """
        self.server.server.context.policy.processLimit.limit = 0
        admission = self.runtime().parts.admission
        self.assertEqual(self.connect(), b"")
        self.assertEqual(admission.refused, 1)

    def test_bannerFail(self) -> None:
        """
        A refusal on the short path sends banner_fail.
        """
        self.server.reload(daytimeBlock(self.port, "banner_fail = /etc/hostname"))
        self.assertTrue(self.runtime().parts.admission.plain)
        self.server.server.context.policy.processLimit.limit = 0
        with open("/etc/hostname", "rb") as f:
            banner = f.read()
        self.assertEqual(self.connect(), banner)

    def test_startLine(self) -> None:
        """
        The short path still writes the START line log_on_success asks
        for.
        """
        path = self.server.path + ".log"
        self.server.reload(
            daytimeBlock(
                self.port, f"log_type = FILE {path}\n\tlog_on_success = HOST PID"
            )
        )
        self.connect()
        with open(path) as f:
            self.assertIn("START: daytime-stream pid=0 from=127.0.0.1", f.read())


class PlainProgramTests(SynchronousTestCase):
    """
    A spawned service's plain admission (L{Admission.admit} through
    L{ServicePolicy.checkPlain}).
    """

    def setUp(self) -> None:
        self.port = freePort()
        self.server = ServerHarness(self, serviceBlock("cat", self.port))
        self.admission = self.server.server.runtimes["cat"].parts.admission

    def refusedConnect(self) -> None:
        """
        Feed one connection that must be refused (no spawn).
        """
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        before = len(self.server.records)
        runtime = self.server.server.runtimes["cat"]
        runtime.kind.acceptRaw(theirs.detach(), ("127.0.0.1", 4242))
        self.assertEqual(len(self.server.records), before)

    def test_plainSpawns(self) -> None:
        """
        Without limits the admission is plain and the connection spawns.
        """
        self.assertTrue(self.admission.policy.plain)
        self.server.connect("cat")
        self.assertEqual((self.admission.connections, self.admission.refused), (1, 0))

    def test_plainSpawnSameAsGeneral(self) -> None:
        """
        The plain door hands the server what the general one does: the
        client's host in REMOTE_HOST, its address for the logs, the
        instance counted.
        """
        children = self.server.server.runtimes["cat"].parts.children
        seen = []
        for extra in ("", "only_from = 127.0.0.1"):
            self.server.reload(serviceBlock("cat", self.port, extra=extra))
            self.assertEqual(self.admission.plain, not extra)
            record = self.server.connect("cat")
            record.started(1000 + len(seen))
            child = children.running[1000 + len(seen)]
            seen.append((record.extraEnvironment, child.peer, child.shown))
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[0][0], (("REMOTE_HOST", "127.0.0.1"),))
        self.assertEqual(seen[0][2], ("127.0.0.1", 4242))
        self.assertEqual(self.admission.policy.limits.runningFrom("127.0.0.1"), 2)

    def test_plainRefusalLogged(self) -> None:
        """
        A refusal on the plain door of a spawned service writes its FAIL
        line.
        """
        path = self.server.path + ".log"
        self.server.reload(
            serviceBlock(
                "cat",
                self.port,
                extra=f"log_type = FILE {path}\n\tlog_on_failure = HOST",
            )
        )
        self.assertTrue(self.admission.plain)
        self.server.server.context.policy.processLimit.limit = 0
        self.refusedConnect()
        with open(path) as f:
            self.assertIn("FAIL: cat process_limit from=127.0.0.1", f.read())

    def test_reloadAddsOnlyFrom(self) -> None:
        """
        only_from added by a reload refuses the next connection; removed
        again, the service spawns again.
        """
        self.server.reload(serviceBlock("cat", self.port, extra="only_from = 10.0.0.1"))
        self.assertFalse(self.admission.policy.plain)
        self.refusedConnect()
        self.assertEqual(self.admission.refused, 1)
        self.server.reload(serviceBlock("cat", self.port))
        self.assertTrue(self.admission.policy.plain)
        self.server.connect("cat")

    def test_sensorList(self) -> None:
        """
        The global SENSOR list refuses on the plain path.
        """
        self.server.server.context.policy.sensorList.add("127.0.0.1", 5)
        self.refusedConnect()
        self.assertEqual(self.admission.refused, 1)

    def test_processLimit(self) -> None:
        """
        The daemon-wide process limit refuses on the plain path.
        """
        self.server.server.context.policy.processLimit.limit = 0
        self.refusedConnect()
        self.assertEqual(self.admission.refused, 1)


class ReplyAndCloseTests(SynchronousTestCase):
    """
    L{replyAndClose} writes the inline reply and closes the descriptor,
    and a client gone before the reply never raises SIGPIPE, whatever the
    application around the daemon did to that signal.
    """

    def pair(self) -> Any:
        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        return ours.detach(), theirs

    def replyToGoneClient(self, disposition: Any) -> Tuple[int, bool]:
        """
        L{replyAndClose} to a client that has closed its end, with SIGPIPE
        set to C{disposition} meanwhile: the descriptor and whether the reply
        was written.
        """
        fd, theirs = self.pair()
        theirs.close()
        previous = signal.signal(signal.SIGPIPE, disposition)
        try:
            return fd, replyAndClose(fd, b"reply\r\n")
        finally:
            signal.signal(signal.SIGPIPE, previous)

    def test_written(self) -> None:
        """The reply arrives, then EOF; the descriptor is closed."""
        fd, theirs = self.pair()
        self.assertTrue(replyAndClose(fd, b"Tue Dec  1 23:09:22 2026\r\n"))
        self.assertEqual(theirs.recv(100), b"Tue Dec  1 23:09:22 2026\r\n")
        self.assertEqual(theirs.recv(100), b"")
        self.assertRaises(OSError, os.fstat, fd)

    def test_goneClientWithSigpipeDefault(self) -> None:
        """
        With SIGPIPE back at its default (which would end the process on a
        plain write to a reset connection), a client that has gone gets no
        reply and the daemon lives on: the descriptor is closed all the same.
        """
        fd, written = self.replyToGoneClient(signal.SIG_DFL)
        self.assertFalse(written)
        self.assertRaises(OSError, os.fstat, fd)

    def test_goneClientWithSigpipeIgnored(self) -> None:
        """SIGPIPE ignored, as Python sets it: the plain write fails quietly."""
        fd, written = self.replyToGoneClient(signal.SIG_IGN)
        self.assertFalse(written)
        self.assertRaises(OSError, os.fstat, fd)
