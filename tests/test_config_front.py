"""
Tests for the front attributes (our extensions): C{tls_certificate},
C{tls_key}, C{tls_client_ca} and C{proxy_protocol}, filled and checked
with C{file:line} errors.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, messages, parse, service, words
from tests.tlsfiles import makePKI
from xinetd_twisted.config.dump import dumpService
from xinetd_twisted.config.model import Severity


class TLSAttributeTests(SynchronousTestCase):
    """
    tls_certificate, tls_key, tls_client_ca.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="xt-front-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.pki = makePKI(self.directory)

    def parseTLS(self, lines: str, body: str = EXTERNAL):
        return parse(service(body + "\n" + lines))

    def errors(self, lines: str, body: str = EXTERNAL) -> list:
        config = self.parseTLS(lines, body)
        self.assertEqual(config.services, ())
        return messages(config, Severity.ERROR)

    def test_certificateAndKey(self) -> None:
        """
        A certificate and its key are kept as absolute paths.
        """
        (s,) = self.parseTLS(
            f"tls_certificate = {self.pki.certificate}\ntls_key = {self.pki.key}"
        ).services
        self.assertEqual(
            (s.tlsCertificate, s.tlsKey), (self.pki.certificate, self.pki.key)
        )
        self.assertIsNone(s.tlsClientCA)

    def test_keyInCertificateFile(self) -> None:
        """
        Without tls_key, the key is read from the certificate file.
        """
        (s,) = self.parseTLS(f"tls_certificate = {self.pki.combined}").services
        self.assertEqual((s.tlsCertificate, s.tlsKey), (self.pki.combined, None))

    def test_relativePath(self) -> None:
        """
        A relative path is made absolute.
        """
        cwd = os.getcwd()
        os.chdir(self.directory)
        self.addCleanup(os.chdir, cwd)
        (s,) = self.parseTLS("tls_certificate = combined.pem").services
        self.assertEqual(s.tlsCertificate, self.pki.combined)

    def test_missingCertificate(self) -> None:
        """
        A certificate file that cannot be read drops the service at its line.
        """
        missing = os.path.join(self.directory, "nope.pem")
        (error,) = self.errors(f"tls_certificate = {missing}")
        self.assertIn("test.conf:10: service svc: attribute tls_certificate:", error)
        self.assertIn(f"cannot read {missing}: No such file or directory", error)

    def test_noKey(self) -> None:
        """
        A certificate file without a key and no tls_key is an error.
        """
        (error,) = self.errors(f"tls_certificate = {self.pki.certificate}")
        self.assertIn("attribute tls_certificate:", error)
        self.assertIn(f"no PEM private key in {self.pki.certificate}", error)

    def test_notACertificate(self) -> None:
        """
        A certificate file with no certificate in it is an error.
        """
        (error,) = self.errors(f"tls_certificate = {self.pki.key}")
        self.assertIn(f"no PEM certificate in {self.pki.key}", error)

    def test_unreadableKey(self) -> None:
        """
        A key file that cannot be read is reported at tls_key's line.
        """
        # Unreadable even by root: a directory.
        os.remove(self.pki.key)
        os.mkdir(self.pki.key)
        (error,) = self.errors(
            f"tls_certificate = {self.pki.certificate}\ntls_key = {self.pki.key}"
        )
        self.assertIn("test.conf:11: service svc: attribute tls_key:", error)
        self.assertIn(f"cannot read {self.pki.key}: Is a directory", error)

    def test_keyDoesNotMatch(self) -> None:
        """
        A key that is not the certificate's is an error at tls_key.
        """
        (error,) = self.errors(
            f"tls_certificate = {self.pki.certificate}\ntls_key = {self.pki.otherKey}"
        )
        self.assertIn("attribute tls_key:", error)
        self.assertIn("does not match the certificate", error)

    def test_encryptedKey(self) -> None:
        """
        An encrypted key is refused with a message saying so.
        """
        path = os.path.join(self.directory, "encrypted.key")
        with open(path, "w") as f:
            f.write("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n")
            f.write("-----END ENCRYPTED PRIVATE KEY-----\n")
        (error,) = self.errors(
            f"tls_certificate = {self.pki.certificate}\ntls_key = {path}"
        )
        self.assertIn("is encrypted (not supported)", error)

    def test_clientCA(self) -> None:
        """
        tls_client_ca is kept when it holds a certificate.
        """
        (s,) = self.parseTLS(
            f"tls_certificate = {self.pki.combined}\ntls_client_ca = {self.pki.ca}"
        ).services
        self.assertEqual(s.tlsClientCA, self.pki.ca)

    def test_clientCAWithoutCertificates(self) -> None:
        """
        A tls_client_ca file with no certificate is an error at its line.
        """
        (error,) = self.errors(
            f"tls_certificate = {self.pki.combined}\ntls_client_ca = {self.pki.key}"
        )
        self.assertIn("test.conf:11: service svc: attribute tls_client_ca:", error)

    def test_keyWithoutCertificate(self) -> None:
        """
        tls_key alone is an error.
        """
        (error,) = self.errors(f"tls_key = {self.pki.key}")
        self.assertIn("attribute tls_key: error: tls_key needs tls_certificate", error)

    def test_notOnDatagram(self) -> None:
        """
        TLS needs a stream service that does not wait.
        """
        body = EXTERNAL.replace("wait = no", "wait = yes")
        (error,) = self.errors(f"tls_certificate = {self.pki.combined}", body)
        self.assertIn("tls_certificate needs a stream service with wait = no", error)

    def test_dumped(self) -> None:
        """
        check --dump writes the TLS attributes, and reading them back gives
        the same service.
        """
        (s,) = self.parseTLS(
            f"tls_certificate = {self.pki.certificate}\ntls_key = {self.pki.key}\n"
            f"tls_client_ca = {self.pki.ca}"
        ).services
        text = dumpService(s)
        self.assertIn(
            f"tls_certificate = {self.pki.certificate}", " ".join(text.split())
        )
        (again,) = parse(text).services
        self.assertEqual(again, s)


class ProxyAttributeTests(SynchronousTestCase):
    """
    proxy_protocol.
    """

    def test_addresses(self) -> None:
        """
        proxy_protocol takes an only_from address list.
        """
        (s,) = parse(
            service(EXTERNAL + "\nproxy_protocol = 127.0.0.1 10.0.0.0/8")
        ).services
        self.assertEqual(words(s.proxyProtocol), ["127.0.0.1", "10.0.0.0/8"])

    def test_notSet(self) -> None:
        """
        Without proxy_protocol no connection is parsed for a header.
        """
        (s,) = parse(service(EXTERNAL)).services
        self.assertIsNone(s.proxyProtocol)

    def test_notOnWait(self) -> None:
        """
        A wait = yes service cannot read headers: the service is dropped.
        """
        body = EXTERNAL.replace("wait = no", "wait = yes")
        config = parse(service(body + "\nproxy_protocol = 127.0.0.1"))
        self.assertEqual(config.services, ())
        (error,) = messages(config, Severity.ERROR)
        self.assertIn("test.conf:10: service svc: attribute proxy_protocol:", error)

    def test_dumped(self) -> None:
        """
        check --dump writes proxy_protocol back.
        """
        (s,) = parse(service(EXTERNAL + "\nproxy_protocol = 127.0.0.1")).services
        (again,) = parse(dumpService(s)).services
        self.assertEqual(again, s)
