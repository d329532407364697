"""
Certificates for the TLS tests (no tests here): a CA, a server certificate
it signed for localhost, a client certificate it signed, and a client
certificate from another CA, written as PEM files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any, Optional

import attr


@attr.s(frozen=True, auto_attribs=True)
class PKI:
    """
    The files of L{makePKI}.

    @ivar ca: the CA certificate.
    @ivar certificate: the server's certificate, then the CA (a chain).
    @ivar key: the server's private key.
    @ivar combined: the server's certificate, the CA and the key in one file.
    @ivar clientCertificate: a client certificate signed by the CA.
    @ivar clientKey: its key.
    @ivar strangerCertificate: a client certificate signed by another CA.
    @ivar strangerKey: its key.
    @ivar otherKey: a key that matches no certificate here.
    """

    ca: str
    certificate: str
    key: str
    combined: str
    clientCertificate: str
    clientKey: str
    strangerCertificate: str
    strangerKey: str
    otherKey: str


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str, org: str = "xinetd-twisted tests") -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _certificate(
    subject: Any,
    key: Any,
    issuer: Any,
    issuerKey: Any,
    ca: bool = False,
    host: Optional[str] = None,
) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if host is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(host),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuerKey, hashes.SHA256())


def _pem(thing: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if hasattr(thing, "private_bytes"):
        return thing.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return thing.public_bytes(serialization.Encoding.PEM)  # type: ignore[no-any-return]


def makePKI(directory: str) -> PKI:
    """
    Write the test certificates under C{directory} (readable by everyone,
    so a daemon reading them as root or not both can).
    """
    caKey, strangerCAKey = _key(), _key()
    caName, strangerCAName = _name("Test CA"), _name("Stranger CA", "elsewhere")
    ca = _certificate(caName, caKey, caName, caKey, ca=True)
    serverKey, clientKey, strangerKey, otherKey = _key(), _key(), _key(), _key()
    server = _certificate(
        _name("localhost"), serverKey, caName, caKey, host="localhost"
    )
    client = _certificate(_name("alice"), clientKey, caName, caKey)
    stranger = _certificate(
        _name("mallory"), strangerKey, strangerCAName, strangerCAKey
    )

    def write(name: str, *parts: Any) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(b"".join(_pem(p) for p in parts))
        os.chmod(path, 0o644)
        return path

    return PKI(
        ca=write("ca.pem", ca),
        certificate=write("server.pem", server, ca),
        key=write("server.key", serverKey),
        combined=write("combined.pem", server, ca, serverKey),
        clientCertificate=write("client.pem", client),
        clientKey=write("client.key", clientKey),
        strangerCertificate=write("stranger.pem", stranger),
        strangerKey=write("stranger.key", strangerKey),
        otherKey=write("other.key", otherKey),
    )
