# -*- test-case-name: tests.test_config_front -*-
"""
The TLS files of a service (C{tls_certificate}, C{tls_key},
C{tls_client_ca}, our extension) read into the server's TLS options.

Used twice: by C{check} and the configuration load, to say which file is
wrong, and by the runtime, at load and at every reload (certificate
rotation).  pyOpenSSL costs the daemon ~13 MB: it is imported here, on
first use, and only a configuration with a TLS service uses it.
"""

from __future__ import annotations

import re
import sys
from typing import Any, List, Optional

import attr

from xinetd_twisted.records import plainRepr

_PEM = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?\r?\n-----END \1-----", re.DOTALL
)


def allowOpenSSL() -> None:
    """
    Let pyOpenSSL be imported (a TLS service exists), which the twistd
    plugin kept out (L{xinetd_twisted.tap.deferOpenSSL}).  TLS in front of a
    service works over any transport (L{TLSMemoryBIOFactory}), so a TCP
    module imported without pyOpenSSL does not matter.
    """
    if "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is None:
        del sys.modules["OpenSSL"]


class TLSFileError(ValueError):
    """
    A TLS file cannot be used: C{(attribute, message)}, the attribute being
    the one that names the file.
    """

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class TLSFiles:
    """
    Where a service's TLS material is.

    @ivar certificate: PEM: the certificate, then its chain (and possibly
        the key).
    @ivar key: PEM: the private key (may be C{certificate}).
    @ivar clientCA: PEM: the CA certificates clients must be signed by, or
        L{None} for no client certificates.
    """

    certificate: str
    key: str
    clientCA: Optional[str] = None

    @classmethod
    def forService(cls, service: Any) -> Optional[TLSFiles]:
        """
        The files of a L{ServiceConfig}, or L{None} when it has no TLS.
        """
        if service.tlsCertificate is None:
            return None
        return cls(
            service.tlsCertificate,
            service.tlsKey or service.tlsCertificate,
            service.tlsClientCA,
        )


def _read(path: str, attribute: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSFileError(attribute, f"cannot read {path}: {e.strerror}") from None


def _blocks(data: bytes, kinds: tuple) -> List[bytes]:
    return [m.group(0) for m in _PEM.finditer(data) if m.group(1) in kinds]


def _certificates(path: str, attribute: str) -> List[Any]:
    from cryptography import x509

    found = _blocks(_read(path, attribute), (b"CERTIFICATE",))
    if not found:
        raise TLSFileError(attribute, f"no PEM certificate in {path}")
    try:
        return [x509.load_pem_x509_certificate(block) for block in found]
    except ValueError as e:
        raise TLSFileError(attribute, f"bad certificate in {path}: {e}") from None


def _privateKey(path: str, attribute: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    kinds = (b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY")
    data = _read(path, attribute)
    found = _blocks(data, kinds)
    if not found:
        if _blocks(data, (b"ENCRYPTED PRIVATE KEY",)):
            raise TLSFileError(
                attribute, f"the private key in {path} is encrypted (not supported)"
            )
        raise TLSFileError(attribute, f"no PEM private key in {path}")
    try:
        return load_pem_private_key(found[0], password=None)
    except (ValueError, TypeError) as e:
        raise TLSFileError(attribute, f"bad private key in {path}: {e}") from None


def serverOptions(files: TLSFiles) -> Any:
    """
    The L{twisted.internet.ssl.CertificateOptions} for C{files}: TLS 1.2 or
    newer, the chain sent after the certificate, and with C{clientCA} a
    client certificate signed by it required.  Its context is built here,
    so that a key that does not match the certificate is found now.

    @raise TLSFileError: naming the attribute of the file at fault.
    """
    allowOpenSSL()
    from OpenSSL import SSL, crypto
    from twisted.internet import ssl

    keyAttribute = "tls_key" if files.key != files.certificate else "tls_certificate"
    chain = _certificates(files.certificate, "tls_certificate")
    key = _privateKey(files.key, keyAttribute)
    authorities = None
    if files.clientCA is not None:
        authorities = ssl.trustRootFromCertificates(
            [
                ssl.Certificate(crypto.X509.from_cryptography(c))
                for c in _certificates(files.clientCA, "tls_client_ca")
            ]
        )
    options = ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(chain[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        # A trust root also makes a client certificate required.
        trustRoot=authorities,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )
    try:
        options.getContext()
    except SSL.Error as e:
        raise TLSFileError(
            keyAttribute,
            f"the private key in {files.key} does not match the certificate "
            f"in {files.certificate} ({e})",
        ) from None
    return options
