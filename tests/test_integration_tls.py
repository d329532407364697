"""
Integration tests: TLS in front of stream services (C{tls_certificate},
our extension) through the real C{twistd -n xinetd}, driven by the real
C{openssl s_client}.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from typing import Callable, List

from twisted.trial.unittest import TestCase

from tests.daemon import Daemon, freePort
from tests.tlsfiles import PKI, makePKI

HOST = "127.0.0.1"

BACKEND = """#!/bin/sh
echo "proto=$SSL_PROTOCOL"
echo "dn=$SSL_CLIENT_DN"
echo "idn=$SSL_CLIENT_I_DN"
echo "from=$REMOTE_HOST"
read line
echo "got $line"
"""


def waitUntil(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


class TLSTestCase(TestCase):
    """
    A daemon with TLS services and an s_client to talk to them.
    """

    def setUp(self) -> None:
        self.openssl = shutil.which("openssl")
        if self.openssl is None:
            self.skipTest("needs openssl (Debian package openssl)")
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        os.chmod(self.directory, 0o755)
        self.pki: PKI = makePKI(self.directory)
        self.logPath = os.path.join(self.directory, "services.log")
        self.script = os.path.join(self.directory, "backend.sh")
        with open(self.script, "w") as f:
            f.write(BACKEND)
        os.chmod(self.script, 0o755)

    def block(
        self, serviceId: str, port: int, body: str, types: str = "UNLISTED"
    ) -> str:
        user = "\tuser = root\n" if os.geteuid() == 0 and types == "UNLISTED" else ""
        return (
            f"service {serviceId}\n{{\n\ttype = {types}\n\tsocket_type = stream\n"
            f"\tprotocol = tcp\n\twait = no\n\tbind = {HOST}\n\tport = {port}\n"
            f"\tlog_type = FILE {self.logPath}\n"
            "\tlog_on_success = PID HOST EXIT\n\tlog_on_failure = HOST\n"
            f"{user}{body}}}\n"
        )

    def program(self, serviceId: str, port: int, extra: str = "") -> str:
        return self.block(
            serviceId,
            port,
            f"\tserver = {self.script}\n\ttls_certificate = {self.pki.certificate}\n"
            f"\ttls_key = {self.pki.key}\n{extra}",
        )

    def daemon(self, text: str) -> Daemon:
        daemon = Daemon(text)
        self.addCleanup(daemon.cleanup)
        self.addCleanup(self._keepLog, daemon)
        daemon.start()
        return daemon

    def _keepLog(self, daemon: Daemon) -> None:
        with open(os.path.abspath(f"{self.id()}.twistd.log"), "w") as f:
            f.write(daemon.log())

    def serviceLog(self) -> str:
        try:
            with open(self.logPath) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def client(
        self,
        port: int,
        send: bytes = b"",
        args: List[str] = (),
        quiet: bool = True,  # type: ignore[assignment]
    ) -> subprocess.CompletedProcess:
        """
        C{openssl s_client} to the port: C{send}, then read until the
        server closes.
        """
        assert self.openssl is not None
        command = [self.openssl, "s_client", "-connect", f"{HOST}:{port}"]
        command += ["-CAfile", self.pki.ca, "-verify_return_error"]
        if quiet:
            command.append("-quiet")
        return subprocess.run(
            command + list(args),
            input=send,
            capture_output=True,
            timeout=20,
        )

    def untilLogged(self, word: str, count: int = 1) -> List[str]:
        waitUntil(lambda: self.serviceLog().count(word) >= count)
        return [line for line in self.serviceLog().splitlines() if word in line]


class ProgramTests(TLSTestCase):
    """
    A program behind TLS on the daemon's own socket.
    """

    def test_plaintextToProgram(self) -> None:
        """
        The program reads and writes plaintext; it learns the protocol
        (SSL_PROTOCOL) and, without a client certificate, no DN.
        """
        port = freePort()
        self.daemon(self.program("tlshello", port))
        result = self.client(port, b"secret\n")
        out = result.stdout.decode()
        self.assertIn("proto=TLSv1.3\n", out)
        self.assertIn("dn=\nidn=\n", out)
        self.assertIn(f"from={HOST}\n", out)
        self.assertIn("got secret\n", out)
        (start,) = self.untilLogged("START: tlshello")
        self.assertRegex(start, rf"START: tlshello pid=\d+ from={HOST}")
        self.untilLogged("EXIT: tlshello")

    def test_clientCertificate(self) -> None:
        """
        With tls_client_ca, a client certificate signed by it is accepted
        and its subject and issuer reach the program (RFC 4514).
        """
        port = freePort()
        self.daemon(self.program("tlsca", port, f"\ttls_client_ca = {self.pki.ca}\n"))
        result = self.client(
            port,
            b"hi\n",
            ["-cert", self.pki.clientCertificate, "-key", self.pki.clientKey],
        )
        out = result.stdout.decode()
        self.assertIn("dn=CN=alice,O=xinetd-twisted tests\n", out)
        self.assertIn("idn=CN=Test CA,O=xinetd-twisted tests\n", out)
        self.assertIn("got hi\n", out)

    def test_clientWithoutCertificateRefused(self) -> None:
        """
        With tls_client_ca, a client without a certificate fails the
        handshake: FAIL with reason tls and from=, no START, no program.
        """
        port = freePort()
        self.daemon(self.program("tlsca", port, f"\ttls_client_ca = {self.pki.ca}\n"))
        result = self.client(port, b"hi\n")
        self.assertNotIn(b"got hi", result.stdout)
        (fail,) = self.untilLogged("FAIL: tlsca")
        self.assertRegex(fail, rf"FAIL: tlsca tls from={HOST}$")
        self.assertNotIn("START", self.serviceLog())

    def test_strangerCertificateRefused(self) -> None:
        """
        A client certificate from another CA fails the handshake.
        """
        port = freePort()
        self.daemon(self.program("tlsca", port, f"\ttls_client_ca = {self.pki.ca}\n"))
        result = self.client(
            port,
            b"hi\n",
            ["-cert", self.pki.strangerCertificate, "-key", self.pki.strangerKey],
        )
        self.assertNotIn(b"got hi", result.stdout)
        self.untilLogged("FAIL: tlsca tls")
        self.assertNotIn("START", self.serviceLog())

    def test_tls11Refused(self) -> None:
        """
        TLS 1.1 is refused (OpenSSL 3 needs SECLEVEL=0 to even try it).
        """
        port = freePort()
        self.daemon(self.program("tlsold", port))
        result = self.client(
            port, b"hi\n", ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn(b"got hi", result.stdout)
        self.untilLogged("FAIL: tlsold tls")
        self.assertNotIn("START", self.serviceLog())

    def test_tls12Accepted(self) -> None:
        """
        TLS 1.2 is accepted, and SSL_PROTOCOL says so.
        """
        port = freePort()
        self.daemon(self.program("tls12", port))
        result = self.client(port, b"x\n", ["-tls1_2"])
        self.assertIn(b"proto=TLSv1.2\n", result.stdout)

    def test_rotationOnReload(self) -> None:
        """
        SIGHUP reads the certificate again: new connections get the new
        one, a connection already open keeps going.
        """
        port = freePort()
        daemon = self.daemon(self.program("tlsrot", port))
        first = self.client(port, quiet=False)
        self.assertIn(b"CN = localhost", first.stdout)
        # An open connection, in the middle of its conversation.
        held = subprocess.Popen(
            [self.openssl, "s_client", "-connect", f"{HOST}:{port}", "-quiet"],  # type: ignore[list-item]
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(held.kill)
        self.untilLogged("START: tlsrot", 2)
        os.mkdir(os.path.join(self.directory, "new"))
        newPKI = makePKI(os.path.join(self.directory, "new"))
        shutil.copy(newPKI.certificate, self.pki.certificate)
        shutil.copy(newPKI.key, self.pki.key)
        daemon.signal(signal.SIGHUP)
        waitUntil(lambda: "Reconfigured:" in daemon.log())
        second = self.client(port, quiet=False, args=["-CAfile", newPKI.ca])
        self.assertIn(b"Verify return code: 0 (ok)", second.stdout)
        out, _ = held.communicate(b"still here\n", timeout=20)
        self.assertIn(b"got still here\n", out)


class InProcessTests(TLSTestCase):
    """
    Internal services and redirect behind TLS.
    """

    def test_internalService(self) -> None:
        """
        An internal daytime service answers over TLS.
        """
        port = freePort()
        self.daemon(
            self.block(
                "daytime",
                port,
                f"\ttls_certificate = {self.pki.combined}\n",
                types="INTERNAL UNLISTED",
            )
        )
        result = self.client(port)
        self.assertRegex(result.stdout.decode(), r"\d\d:\d\d:\d\d .*\r\n$")
        self.untilLogged("START: daytime")

    def test_redirectCountsPlaintext(self) -> None:
        """
        redirect from TLS to a plain upstream; TRAFFIC counts plaintext.
        """
        upstream, port = freePort(), freePort()
        text = self.block(
            "daytime", upstream, "", types="INTERNAL UNLISTED"
        ) + self.block(
            "tlsredirect",
            port,
            f"\tredirect = {HOST} {upstream}\n"
            f"\ttls_certificate = {self.pki.combined}\n"
            "\tlog_on_success += TRAFFIC\n",
        )
        self.daemon(text)
        result = self.client(port)
        (traffic,) = self.untilLogged("TRAFFIC: tlsredirect")
        match = re.search(r"in=(\d+)\(bytes\) out=(\d+)\(bytes\)", traffic)
        assert match is not None, traffic
        self.assertEqual(int(match.group(2)), len(result.stdout))
        self.assertEqual(int(match.group(1)), 0)


class ImportCostTests(TestCase):
    """
    pyOpenSSL (and cryptography under it: ~13 MB) is loaded into the real
    daemon only when a TLS service exists.
    """

    def loaded(self, text: str) -> bool:
        daemon = Daemon(text)
        self.addCleanup(daemon.cleanup)
        daemon.start()
        assert daemon.process is not None
        with open(f"/proc/{daemon.process.pid}/maps") as f:
            return "/cryptography/" in f.read()

    def block(self, extra: str = "") -> str:
        return (
            "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
            f"\twait = no\n\tport = {freePort()}\n\tbind = {HOST}\n{extra}}}\n"
        )

    def test_noTLSNoOpenSSL(self) -> None:
        """
        A daemon without TLS services has no pyOpenSSL.
        """
        self.assertFalse(self.loaded(self.block()))

    def test_tlsLoadsOpenSSL(self) -> None:
        """
        A TLS service does (the check itself reads its files).
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        pki = makePKI(directory)
        self.assertTrue(
            self.loaded(self.block(f"\ttls_certificate = {pki.combined}\n"))
        )
