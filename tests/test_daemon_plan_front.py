"""
Tests for the reload plan with TLS and PROXY (our extensions): turning
either on or off chooses another listener, so the service is rebound; new
certificate files or proxies are taken in place.
"""

from __future__ import annotations

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.test_daemon_plan import config, service
from xinetd_twisted.config.model import AddressEntry, AddressKind
from xinetd_twisted.daemon.plan import planReload

PROXY = (AddressEntry("127.0.0.2", AddressKind.HOST),)


class FrontPlanTests(SynchronousTestCase):
    def test_tlsOnRebinds(self) -> None:
        """Adding tls_certificate rebinds the service."""
        old = service("a")
        new = attr.evolve(old, tlsCertificate="/etc/ssl/a.pem")
        self.assertEqual(planReload({"a": old}, config(new)).rebound, ("a",))

    def test_newCertificateInPlace(self) -> None:
        """Another certificate file is taken in place (read at update)."""
        old = service("a", tlsCertificate="/etc/ssl/a.pem")
        new = attr.evolve(old, tlsCertificate="/etc/ssl/b.pem")
        self.assertEqual(planReload({"a": old}, config(new)).update, (("a", new),))

    def test_proxyOffRebinds(self) -> None:
        """Removing proxy_protocol rebinds the service."""
        old = service("a", proxyProtocol=PROXY)
        new = attr.evolve(old, proxyProtocol=None)
        self.assertEqual(planReload({"a": old}, config(new)).rebound, ("a",))

    def test_otherProxiesInPlace(self) -> None:
        """Another list of trusted proxies is taken in place."""
        old = service("a", proxyProtocol=PROXY)
        new = attr.evolve(old, proxyProtocol=())
        self.assertEqual(planReload({"a": old}, config(new)).update, (("a", new),))
