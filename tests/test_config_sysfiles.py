"""
Tests for L{xinetd_twisted.config.sysfiles}: our readers of the system
databases.
"""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.sysfiles import (
    forgetParsed,
    readNetworks,
    readProtocols,
    readRpc,
    readServices,
)


class ReaderTests(SynchronousTestCase):
    """
    services, protocols, rpc and networks files.
    """

    def write(self, text: str) -> FilePath:
        path = FilePath(self.mktemp())
        path.setContent(text.encode())
        return path

    def test_services(self) -> None:
        """
        Names and aliases map to the port per protocol, case-insensitively;
        comments and malformed lines are skipped.
        """
        path = self.write(
            "# c\necho 7/tcp\nsink 9/udp discard null # x\nbad line\nx y/tcp\n"
        )
        services = readServices(path.path)
        self.assertEqual(services.port("ECHO", "tcp"), 7)
        self.assertIsNone(services.port("echo", "udp"))
        self.assertEqual(services.port("null", "UDP"), 9)
        self.assertEqual(services.name(9, "udp"), "sink")

    def test_cacheFollowsChanges(self) -> None:
        """
        A changed file is read again; an unchanged one is not re-parsed.
        """
        path = self.write("echo 7/tcp\n")
        first = readServices(path.path)
        self.assertIs(readServices(path.path), first)
        path.setContent(b"echo 77/tcp   \n")
        os.utime(path.path, (1, 1))
        self.assertEqual(readServices(path.path).port("echo", "tcp"), 77)

    def test_forgetParsed(self) -> None:
        """
        After L{forgetParsed} an unchanged file is parsed again.
        """
        path = self.write("echo 7/tcp\n")
        first = readServices(path.path)
        forgetParsed()
        again = readServices(path.path)
        self.assertIsNot(again, first)
        self.assertEqual(again, first)

    def test_missingFile(self) -> None:
        """
        A missing file reads as empty.
        """
        self.assertIsNone(readServices("/nonexistent/services").port("echo", "tcp"))
        self.assertEqual(readRpc("/nonexistent/rpc"), {})

    def test_protocolsAndRpc(self) -> None:
        """
        protocols and rpc map names and aliases to numbers.
        """
        self.assertEqual(readProtocols(self.write("tcp 6 TCP\n").path), {"tcp": 6})
        self.assertEqual(
            readRpc(self.write("rstatd 100001 rstat\n").path),
            {"rstatd": 100001, "rstat": 100001},
        )

    def test_networks(self) -> None:
        """
        Network numbers are padded to four octets.
        """
        path = self.write("loopback 127\nnet 10.1 alias\nbad 1.2.3.4.5\n")
        self.assertEqual(
            readNetworks(path.path),
            {"loopback": "127.0.0.0", "net": "10.1.0.0", "alias": "10.1.0.0"},
        )
