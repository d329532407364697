"""
Tests for UNIX-domain listening sockets: the C{listen_path},
C{socket_owner} and C{socket_mode} attributes (config/listening.py), the
socket file's life (listen/unix.py) and the client's credentials.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
import stat
import tempfile

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import messages, parse, service
from xinetd_twisted.config.dump import dumpService
from xinetd_twisted.config.model import Severity
from xinetd_twisted.daemon.plan import sameSocket
from xinetd_twisted.listen.sockets import SocketSpec, specFor
from xinetd_twisted.listen.unix import (
    BoundPath,
    PeerCredentials,
    openUnixSocket,
    peerCredentials,
)
from xinetd_twisted.service.connection import Connection, peerLabel


def unixBody(path: str, extra: str = "") -> str:
    """
    A valid stream service on C{path}, with C{extra} lines.
    """
    return (
        "    type = UNLISTED\n    socket_type = stream\n    wait = no\n"
        f"    user = root\n    server = /bin/cat\n    listen_path = {path}\n{extra}"
    )


def temporaryDirectory(case: SynchronousTestCase) -> str:
    directory = tempfile.mkdtemp(prefix="xt-unix-")
    case.addCleanup(_removeTree, directory)
    return directory


def _removeTree(directory: str) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


class ConfigTests(SynchronousTestCase):
    """
    C{listen_path} and its companions in the configuration.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.path = os.path.join(self.directory, "svc.sock")

    def problems(self, body: str) -> list:
        return messages(parse(service(body)), Severity.ERROR)

    def test_noPortNeeded(self) -> None:
        """An UNLISTED stream service with listen_path needs no port, bind or protocol."""
        config = parse(service(unixBody(self.path)))
        [svc] = config.services
        self.assertEqual(
            (svc.listenPath, svc.port, svc.socketMode), (self.path, None, 0o666)
        )
        self.assertEqual(messages(config), [])

    def test_listedNameNotLookedUp(self) -> None:
        """A service whose name is in no services file is fine on a listen_path."""
        body = unixBody(self.path).replace("    type = UNLISTED\n", "")
        config = parse(service(body, name="no-such-service-name"))
        self.assertEqual(len(config.services), 1, messages(config))

    def test_ownerAndMode(self) -> None:
        """socket_owner = USER:GROUP and socket_mode = octal are resolved at load."""
        body = unixBody(
            self.path, "    socket_owner = nobody:0\n    socket_mode = 0660\n"
        )
        [svc] = parse(service(body)).services
        nobody = pwd.getpwnam("nobody").pw_uid
        self.assertEqual(
            (svc.socketOwner, svc.socketUid, svc.socketGid, svc.socketMode),
            ("nobody:0", nobody, 0, 0o660),
        )

    def test_ownerWithoutGroup(self) -> None:
        """socket_owner = USER leaves the group alone."""
        body = unixBody(self.path, "    socket_owner = 123\n")
        [svc] = parse(service(body)).services
        self.assertEqual((svc.socketUid, svc.socketGid), (123, None))

    def test_relativePath(self) -> None:
        """A relative listen_path is an error at its line."""
        [problem] = self.problems(unixBody("x.sock"))
        self.assertIn("test.conf:8: service svc: attribute listen_path", problem)
        self.assertIn("must be absolute", problem)

    def test_longPath(self) -> None:
        """A path longer than a sockaddr_un holds is an error."""
        [problem] = self.problems(unixBody("/" + "x" * 120))
        self.assertIn("longer than 107 bytes", problem)

    def test_missingDirectory(self) -> None:
        """A listen_path in a directory that does not exist is an error."""
        [problem] = self.problems(unixBody("/nonexistent-dir/x.sock"))
        self.assertIn("test.conf:8: service svc: attribute listen_path", problem)
        self.assertIn("does not exist", problem)

    def test_regularFile(self) -> None:
        """A listen_path naming a regular file is an error (never replaced)."""
        with open(self.path, "w"):
            pass
        [problem] = self.problems(unixBody(self.path))
        self.assertIn("exists and is not a socket", problem)

    def test_symlink(self) -> None:
        """A listen_path naming a symlink is an error, even to a socket."""
        os.symlink("/dev/log", self.path)
        [problem] = self.problems(unixBody(self.path))
        self.assertIn("exists and is not a socket", problem)

    def test_badMode(self) -> None:
        """socket_mode must be octal, at most 0777."""
        for mode in ("0999", "rw", "01777"):
            [problem] = self.problems(
                unixBody(self.path, f"    socket_mode = {mode}\n")
            )
            self.assertIn("test.conf:9: service svc: attribute socket_mode", problem)

    def test_unknownUser(self) -> None:
        """socket_owner naming an unknown user or group is an error at its line."""
        for owner in ("no-such-user-xt", "root:no-such-group-xt", "root:"):
            [problem] = self.problems(
                unixBody(self.path, f"    socket_owner = {owner}\n")
            )
            self.assertIn("test.conf:9: service svc: attribute socket_owner", problem)

    def test_portExcluded(self) -> None:
        """A listen_path service that also names a port or bind is an error."""
        for line in ("    port = 4000\n", "    bind = 127.0.0.1\n"):
            [problem] = self.problems(unixBody(self.path, line))
            self.assertIn("listen_path replaces port and bind", problem)

    def test_streamOnly(self) -> None:
        """listen_path needs socket_type = stream."""
        body = unixBody(self.path).replace("stream", "dgram").replace("no", "yes")
        [problem] = self.problems(body)
        self.assertIn("needs socket_type = stream", problem)

    def test_samePathTwice(self) -> None:
        """Two services on one listen_path: the second is dropped."""
        text = service(unixBody(self.path), name="a") + service(
            unixBody(self.path), name="b"
        )
        config = parse(text)
        self.assertEqual([s.serviceId for s in config.services], ["a"])
        self.assertIn("already the socket of service a", messages(config)[0])

    def test_withoutPathWarns(self) -> None:
        """socket_mode without listen_path is a warning: it does nothing."""
        body = unixBody(self.path).replace(f"    listen_path = {self.path}\n", "")
        config = parse(service(body + "    port = 4000\n    socket_mode = 0600\n"))
        self.assertIn(
            "socket_mode has no effect", messages(config, Severity.WARNING)[0]
        )

    def test_notRootOtherOwner(self) -> None:
        """An unprivileged daemon cannot give the socket to another user."""
        other = 0 if os.geteuid() != 0 else 12345
        body = unixBody(self.path, f"    socket_owner = {other}\n").replace(
            "    user = root\n", ""
        )
        config = parse(service(body), isRoot=False)
        if os.geteuid() == other:
            raise self.skipTest("the test's user is the other user")
        self.assertIn("cannot give the socket", messages(config, Severity.ERROR)[0])

    def test_dumpReadsBack(self) -> None:
        """check --dump writes the three attributes and reads back the same."""
        body = unixBody(
            self.path, "    socket_owner = 123:45\n    socket_mode = 0640\n"
        )
        [svc] = parse(service(body)).services
        [again] = parse(dumpService(svc)).services
        self.assertEqual(attr.evolve(again, location=svc.location), svc)

    def test_internal(self) -> None:
        """An internal stream service may listen on a path."""
        body = (
            "    type = INTERNAL\n    socket_type = stream\n    wait = no\n"
            f"    listen_path = {self.path}\n"
        )
        [svc] = parse(service(body, name="echo")).services
        self.assertEqual(specFor(svc), SocketSpec.forService(svc))


class SpecTests(SynchronousTestCase):
    """
    A UNIX socket's spec, and what a reload keeps.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.path = os.path.join(self.directory, "svc.sock")

    def one(self, body: str):
        [svc] = parse(service(body)).services
        return svc

    def test_spec(self) -> None:
        """The spec is AF_UNIX on the path, with the owner and mode."""
        svc = self.one(unixBody(self.path, "    socket_mode = 0600\n"))
        spec = SocketSpec.forService(svc)
        self.assertEqual(
            (spec.family, spec.address, spec.port, spec.mode),
            (socket.AF_UNIX, self.path, 0, 0o600),
        )
        self.assertEqual(spec.describe(), f"unix:{self.path}")

    def test_samePathKept(self) -> None:
        """A reload keeps the socket when only the owner or mode changed."""
        old = self.one(unixBody(self.path))
        new = self.one(unixBody(self.path, "    socket_mode = 0600\n"))
        self.assertTrue(sameSocket(old, new))

    def test_otherPathRebinds(self) -> None:
        """A new path is a new socket."""
        old = self.one(unixBody(self.path))
        new = self.one(unixBody(self.path + "2"))
        self.assertFalse(sameSocket(old, new))


class SocketFileTests(SynchronousTestCase):
    """
    openUnixSocket and BoundPath: the socket file from bind to removal.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.path = os.path.join(self.directory, "svc.sock")

    def spec(self, **kw) -> SocketSpec:
        return SocketSpec(
            family=socket.AF_UNIX,
            socketType=socket.SOCK_STREAM,
            protocol="unix",
            address=self.path,
            port=0,
            **kw,
        )

    def open(self, **kw):
        sock, bound = openUnixSocket(self.spec(**kw))
        self.addCleanup(sock.close)
        return sock, bound

    def test_listens(self) -> None:
        """The socket is bound, listening, non-blocking, with mode 0666 by default."""
        sock, bound = self.open()
        self.assertFalse(sock.getblocking())
        self.assertEqual(stat.S_IMODE(os.lstat(self.path).st_mode), 0o666)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(self.path)
        self.assertTrue(bound.isOurs())

    def test_modeAndOwner(self) -> None:
        """socket_owner and socket_mode are applied to the file."""
        if os.geteuid() != 0:
            raise self.skipTest("chown to another user needs root")
        self.open(uid=65534, gid=65534, mode=0o660)
        status = os.lstat(self.path)
        self.assertEqual(
            (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)),
            (65534, 65534, 0o660),
        )

    def test_staleReplaced(self) -> None:
        """A socket file nobody listens on is replaced."""
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.path)
        stale.close()
        self.open()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(self.path)

    def test_liveRefused(self) -> None:
        """A socket someone listens on is not taken over."""
        live = socket.socket(socket.AF_UNIX)
        self.addCleanup(live.close)
        live.bind(self.path)
        live.listen(1)
        error = self.assertRaises(OSError, openUnixSocket, self.spec())
        self.assertEqual(error.errno, errno.EADDRINUSE)

    def test_regularFileRefused(self) -> None:
        """A regular file at the path is refused and left alone."""
        with open(self.path, "w") as f:
            f.write("keep")
        error = self.assertRaises(OSError, openUnixSocket, self.spec())
        self.assertEqual(error.errno, errno.EEXIST)
        with open(self.path) as f:
            self.assertEqual(f.read(), "keep")

    def test_symlinkRefused(self) -> None:
        """A symlink at the path is refused and left alone."""
        target = os.path.join(self.directory, "target")
        os.symlink(target, self.path)
        error = self.assertRaises(OSError, openUnixSocket, self.spec())
        self.assertEqual(error.errno, errno.EEXIST)
        self.assertTrue(os.path.islink(self.path))

    def test_removed(self) -> None:
        """remove() removes our socket file."""
        sock, bound = self.open()
        self.assertTrue(bound.remove())
        self.assertFalse(os.path.lexists(self.path))

    def test_replacedNotRemoved(self) -> None:
        """remove() leaves a socket someone else bound at the path since."""
        sock, bound = self.open()
        os.unlink(self.path)
        other = socket.socket(socket.AF_UNIX)
        self.addCleanup(other.close)
        other.bind(self.path)
        self.assertFalse(bound.remove())
        self.assertTrue(os.path.exists(self.path))

    def test_applyRefusesReplaced(self) -> None:
        """apply() does not chmod what replaced our socket."""
        sock, bound = self.open()
        os.unlink(self.path)
        with open(self.path, "w"):
            pass
        os.chmod(self.path, 0o600)
        self.assertRaises(OSError, bound.apply, self.spec(mode=0o666))
        self.assertEqual(stat.S_IMODE(os.lstat(self.path).st_mode), 0o600)

    def test_boundPathCompares(self) -> None:
        """A BoundPath of another inode is not ours."""
        sock, bound = self.open()
        self.assertFalse(BoundPath(self.path, bound.device, bound.inode + 1).isOurs())


class CredentialsTests(SynchronousTestCase):
    """
    SO_PEERCRED to REMOTE_UID, REMOTE_GID, REMOTE_PID.
    """

    def test_peerCredentials(self) -> None:
        """The peer of a socketpair is this process."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(
            peerCredentials(a.fileno()),
            PeerCredentials(os.getpid(), os.geteuid(), os.getegid()),
        )

    def test_connectionEnvironment(self) -> None:
        """A UNIX connection has no peer and its credentials as variables."""
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        connection = Connection.fromDescriptor(a.fileno(), "", socket.AF_UNIX)
        self.assertIsNone(connection.peer)
        self.assertEqual(
            dict(connection.environment),
            {
                "REMOTE_UID": str(os.geteuid()),
                "REMOTE_GID": str(os.getegid()),
                "REMOTE_PID": str(os.getpid()),
            },
        )

    def test_label(self) -> None:
        """Logs write uid:N for a client with credentials and no host."""
        self.assertEqual(peerLabel(None, (("REMOTE_UID", "1000"),)), "uid:1000")
        self.assertEqual(peerLabel("10.0.0.1", (("REMOTE_UID", "1000"),)), "10.0.0.1")
        self.assertIsNone(peerLabel(None, ()))
