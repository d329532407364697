"""
Tests for L{xinetd_twisted.config.dump}: the rendered block reads back to
the same service.
"""

from __future__ import annotations

from typing import Any

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, parse, service
from xinetd_twisted.config import dumpService
from xinetd_twisted.config.model import ServiceConfig


class RoundTripTests(SynchronousTestCase):
    """
    dumpService(parse(x)) parses back to an equal ServiceConfig.
    """

    def roundTrip(self, text: str, **kw: Any) -> ServiceConfig:
        (original,) = parse(text, **kw).services
        dumped = dumpService(original)
        again = parse(dumped, path="dumped.conf", **kw)
        self.assertEqual(again.problems, (), dumped)
        (copy,) = again.services
        self.assertEqual(attr.evolve(copy, location=original.location), original)
        return original

    def test_everything(self) -> None:
        """
        A service using most attributes, with defaults, survives the trip.
        """
        original = self.roundTrip(
            "defaults\n{\n log_type = FILE /tmp/x 10K\n log_on_success = PID HOST\n"
            " instances = 4\n only_from = 10.0.0.0 128.138.{1,2}\n banner = /etc/issue\n}\n"
            + service(
                EXTERNAL
                + "\n flags = NAMEINARGS NODELAY IPv4\n server_args = foo -x\n group = root\n"
                " groups = yes\n cps = 3 4\n max_load = 2.5\n nice = 5\n umask = 022\n"
                " env = A=1\n passenv = PATH\n no_access = .evil.example localhost\n"
                " access_times = 08:00-12:00 13:00-23:59\n log_on_failure = HOST ATTEMPT\n"
                " banner_fail = /b\n deny_time = FOREVER\n rlimit_as = 1M\n"
                " rlimit_cpu = UNLIMITED\n libwrap = lw\n v6only = yes\n bind = 127.0.0.1\n"
                " per_source = 2"
            ),
            environ={"PATH": "/bin"},
        )
        self.assertEqual(original.argv, ("foo", "-x"))
        self.assertEqual(original.instances, 4)

    def test_redirect(self) -> None:
        """
        A redirect service survives the trip.
        """
        self.roundTrip(
            service(EXTERNAL.replace("server = /bin/cat", "redirect = 127.0.0.1 23"))
        )

    def test_internal(self) -> None:
        """
        Internal services survive the trip.
        """
        self.roundTrip(
            service(
                "type = INTERNAL\n socket_type = dgram\n wait = yes\n log_type = SYSLOG authpriv warning",
                name="echo",
            )
        )

    def test_shape(self) -> None:
        """
        The dump is a service block in xinetd.conf syntax.
        """
        text = dumpService(parse(service(EXTERNAL)).services[0])
        self.assertTrue(text.startswith("service svc\n{\n\tid              = svc\n"))
        self.assertTrue(text.endswith("\n}\n"))
