# -*- test-case-name: tests.test_config_front -*-
"""
What stands in front of a stream service (our extensions): TLS
(C{tls_certificate}, C{tls_key}, C{tls_client_ca}) and the PROXY header
from trusted proxies (C{proxy_protocol}).  Filled and checked after
xinetd's own checks; a problem drops the service with the C{file:line} of
the attribute at fault.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from xinetd_twisted.config.model import ServiceConfig, evolveService

TLS_ATTRIBUTES = ("tls_certificate", "tls_key", "tls_client_ca")
FRONT_ATTRIBUTES = TLS_ATTRIBUTES + ("proxy_protocol",)
"""The attributes L{fillFront} reads."""


class FrontError(ValueError):
    """
    The service cannot have this front: C{(attribute, message)}.
    """

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute
        self.message = message


def _path(value: Any) -> Any:
    return None if value is None else os.path.abspath(value)


def fillFront(
    values: Mapping[str, Any], specified: Any, service: ServiceConfig
) -> ServiceConfig:
    """
    C{service} with the front attributes of its block (C{values} by
    attribute) filled in and checked, the TLS files read.

    @raise FrontError: the service must be dropped.
    """
    written = [a for a in FRONT_ATTRIBUTES if a in specified]
    if not written:
        return service
    service = evolveService(
        service,
        tlsCertificate=_path(values.get("tls_certificate")),
        tlsKey=_path(values.get("tls_key")),
        tlsClientCA=_path(values.get("tls_client_ca")),
        proxyProtocol=values.get("proxy_protocol"),
    )
    stream = (
        service.socketType == "stream"
        and not service.wait
        and not service.isTcpmuxSubservice
    )
    if not stream:
        raise FrontError(
            written[0],
            f"{written[0]} needs a stream service with wait = no and a socket "
            "of its own",
        )
    if service.tlsCertificate is None:
        for attribute in ("tls_key", "tls_client_ca"):
            if attribute in specified:
                raise FrontError(attribute, f"{attribute} needs tls_certificate")
        return service
    # Imported only for a TLS service: it loads pyOpenSSL's side of Twisted.
    from xinetd_twisted.config.tls import TLSFileError, TLSFiles, serverOptions

    files = TLSFiles.forService(service)
    assert files is not None
    try:
        serverOptions(files)
    except TLSFileError as e:
        raise FrontError(e.attribute, e.message) from None
    return service
