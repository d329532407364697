"""
in.tftpd (tftpd-hpa) as a C{dgram wait = yes} service: the real tftp-hpa
client gets and puts files through it, and after the server's idle timeout
the daemon starts a new one for the next client.
"""

from __future__ import annotations

import os
import pwd
import socket

from tests.daemon import Daemon
from tests.interop import (
    HOST,
    InteropTestCase,
    freePort,
    requireProgram,
    requireRoot,
    run,
    waitFor,
)

TFTPD = "/usr/sbin/in.tftpd"


class TftpTests(InteropTestCase):
    """
    in.tftpd in inetd mode (it reads requests from the inherited socket,
    forks a transfer child per request, and exits after C{-t} idle seconds).
    """

    def setUp(self) -> None:
        requireRoot()
        tftpd = requireProgram(TFTPD, "tftpd-hpa")
        self.tftpClient = requireProgram("tftp", "tftp-hpa")
        self.port = freePort(socket.SOCK_DGRAM)

        def build(d: Daemon) -> str:
            self.root = os.path.join(d.directory, "tftproot")
            os.mkdir(self.root)
            # tftpd drops to nobody itself: nobody must be able to create.
            os.chmod(self.root, 0o777)
            self.content = os.urandom(70000)
            with open(os.path.join(self.root, "boot.bin"), "wb") as f:
                f.write(self.content)
            return self.programService(
                "tftp",
                self.port,
                "root",
                tftpd,
                socket_type="dgram",
                protocol="udp",
                wait="yes",
                server_args=f"-s {self.root} -c -t 1 -u nobody",
            )

        self.startDaemon(build)
        self.client = os.path.join(self.d.directory, "client")
        os.mkdir(self.client)

    def tftp(self, *command: str) -> None:
        result = run(
            [self.tftpClient, HOST, str(self.port), "-m", "binary", "-c", *command],
            cwd=self.client,
        )
        self.assertEqual(result.returncode, 0, self.explain(result))
        # tftp-hpa exits 0 even when the transfer failed: it says so.
        self.assertNotIn(b"Error", result.stdout + result.stderr, self.explain(result))

    def get(self, name: str, local: str) -> bytes:
        self.tftp("get", name, local)
        with open(os.path.join(self.client, local), "rb") as f:
            return f.read()

    def exits(self) -> int:
        return sum(1 for line in self.logLines() if "EXIT: tftp" in line)

    def test_getAndPut(self) -> None:
        """
        A file is fetched byte for byte, and an upload lands in the served
        directory, created by tftpd as nobody.
        """
        self.assertEqual(self.get("boot.bin", "got.bin"), self.content)
        upload = os.urandom(30000)
        with open(os.path.join(self.client, "up.bin"), "wb") as f:
            f.write(upload)
        self.tftp("put", "up.bin", "up.bin")
        stored = os.path.join(self.root, "up.bin")
        with open(stored, "rb") as f:
            self.assertEqual(f.read(), upload)
        self.assertEqual(os.stat(stored).st_uid, pwd.getpwnam("nobody").pw_uid)

    def test_severalClientsAndRestart(self) -> None:
        """
        Several clients in a row are served; once the server has exited
        (idle timeout) the daemon watches the socket again and the next
        client gets a new server.
        """
        for n in range(3):
            self.assertEqual(self.get("boot.bin", f"a{n}.bin"), self.content)
        self.assertTrue(waitFor(lambda: self.exits() >= 1), self.logLines())
        self.assertEqual(self.get("boot.bin", "after.bin"), self.content)
        self.assertTrue(waitFor(lambda: self.exits() >= 2), self.logLines())
        starts = [line for line in self.logLines() if "START: tftp" in line]
        self.assertEqual(len(starts), 2, self.logLines())
        self.assertIn("from=127.0.0.1", starts[0])
        self.assertEqual(self.get("boot.bin", "again.bin"), self.content)
