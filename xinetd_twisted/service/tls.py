# -*- test-case-name: tests.test_service_tls -*-
"""
TLS in front of a stream service (C{tls_certificate}, our extension),
with Twisted's TLS (L{twisted.protocols.tls}): the daemon terminates TLS,
and the service's factory door serves the plaintext (a program gets a
socketpair the daemon relays).

pyOpenSSL is imported only when a TLS service exists (it costs ~13 MB):
nothing here imports it at module level, nor the reading of the files
(L{xinetd_twisted.config.tls}), which only L{ServiceTLS} uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple

from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, ISSLTransport
from twisted.logger import Logger
from zope.interface import implementer

from xinetd_twisted.config.model import ServiceConfig

if TYPE_CHECKING:
    from xinetd_twisted.config.tls import TLSFiles

TLS_REFUSED = "tls"
"""
The FAIL reason of a connection whose TLS handshake did not complete.
"""

TLS_HANDSHAKE_TIMEOUT = 30.0
"""
Seconds a client has to complete its TLS handshake.
"""


def tlsEnvironment(transport: Any) -> Tuple[Tuple[str, str], ...]:
    """
    What a spawned program learns of a TLS connection: C{SSL_PROTOCOL}
    (C{TLSv1.3}), and with a client certificate C{SSL_CLIENT_DN} and
    C{SSL_CLIENT_I_DN} (its subject and issuer, RFC 4514).  C{()} for a
    transport that is not TLS.
    """
    if not ISSLTransport.providedBy(transport):
        return ()
    variables = []
    tls: Any = transport
    handle = tls.getHandle()
    version = getattr(handle, "get_protocol_version_name", None)
    if version is not None:
        variables.append(("SSL_PROTOCOL", version()))
    certificate = tls.getPeerCertificate()
    if certificate is not None:
        x509 = certificate.to_cryptography()
        variables.append(("SSL_CLIENT_DN", x509.subject.rfc4514_string()))
        variables.append(("SSL_CLIENT_I_DN", x509.issuer.rfc4514_string()))
    return tuple(variables)


class ServiceTLS:
    """
    A service's TLS server side: its current options, read from its files
    at load and again at every reload; a reload that cannot read them keeps
    the options it has (connections open keep theirs anyway).

    @ivar files: the files the options were read from.
    @ivar options: the L{CertificateOptions}, or L{None} when the files
        could not be read at load (every handshake then fails).
    """

    daemonLog = Logger(namespace="xinetd_twisted.service")

    def __init__(self, service: ServiceConfig) -> None:
        self.files: Optional[TLSFiles] = None
        self.options: Any = None
        self.reload(service)

    def reload(self, service: ServiceConfig) -> bool:
        """
        Read the service's TLS files again.

        @return: whether the new options are in use.
        """
        from xinetd_twisted.config.tls import TLSFileError, TLSFiles, serverOptions

        files = TLSFiles.forService(service)
        if files is None:
            return False
        try:
            options = serverOptions(files)
        except TLSFileError as e:
            where = service.locations.get(e.attribute, service.location)
            self.daemonLog.error(
                "{where}: service {service}: attribute {attribute}: {message}; {kept}",
                where=where,
                service=service.serviceId,
                attribute=e.attribute,
                problem=e.message,
                kept="keeping the certificate in use"
                if self.options is not None
                else "TLS handshakes will fail",
            )
            return False
        self.files, self.options = files, options
        return True

    def connectionCreator(self) -> Any:
        """
        The L{IOpenSSLServerConnectionCreator} that serves each new
        connection with the options current when it arrives.
        """
        return _CurrentOptions(self)

    def wrap(self, factory: Any) -> Any:
        """
        C{factory} behind TLS (server side).
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return TLSMemoryBIOFactory(self.connectionCreator(), False, factory)


@implementer(IOpenSSLServerConnectionCreator)
class _CurrentOptions:
    """
    A new connection gets the service's TLS options current when it
    arrives.
    """

    def __init__(self, tls: ServiceTLS) -> None:
        self._tls = tls

    def serverConnectionForTLS(self, protocol: Any) -> Any:
        from OpenSSL.SSL import Connection

        from xinetd_twisted.config.tls import TLSFileError

        options = self._tls.options
        if options is None:
            raise TLSFileError("tls_certificate", "the TLS files could not be read")
        return Connection(options.getContext(), None)
