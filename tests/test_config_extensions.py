"""
Tests for our extension attributes (issue 10): C{max_duration} and
C{per_source_cps} parse, come from C{defaults}, are dumped, and their
errors name FILE:LINE; RPC services load.
"""

from __future__ import annotations

import attr
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config_support import EXTERNAL, messages, parse, service
from xinetd_twisted.config.dump import dumpService
from xinetd_twisted.config.model import ServiceConfig, Severity


def one(extra: str, body: str = EXTERNAL, header: str = "") -> ServiceConfig:
    config = parse(service(body + "\n" + extra, header=header))
    assert len(config.services) == 1, [str(p) for p in config.problems]
    return config.services[0]


DEFAULTS = "defaults\n{\n max_duration = 30\n per_source_cps = 4 20\n}\n"


class MaxDurationTests(SynchronousTestCase):
    """
    C{max_duration = SECONDS}.
    """

    def test_value(self) -> None:
        """
        A number of seconds lands in C{maxDuration}.
        """
        self.assertEqual(one("max_duration = 90").maxDuration, 90)

    def test_unset(self) -> None:
        """
        Not written: no limit.
        """
        self.assertIsNone(one("").maxDuration)

    def test_fromDefaults(self) -> None:
        """
        Allowed in defaults, which a service inherits and may override.
        """
        self.assertEqual(one("", header=DEFAULTS).maxDuration, 30)
        self.assertEqual(one("max_duration = 5", header=DEFAULTS).maxDuration, 5)

    def test_bad(self) -> None:
        """
        Zero, negative or non-numbers drop the service with FILE:LINE.
        """
        for word in ("0", "-3", "soon", "1.5"):
            config = parse(service(EXTERNAL + "\n max_duration = " + word))
            self.assertEqual(config.services, (), word)
            [message] = messages(config)
            self.assertIn("test.conf:10:", message)
            self.assertIn(f"bad max_duration: {word}", message)

    def test_count(self) -> None:
        """
        Exactly one value.
        """
        config = parse(service(EXTERNAL + "\n max_duration = 1 2"))
        self.assertIn("test.conf:10:", messages(config)[0])

    def test_internalDatagramWarns(self) -> None:
        """
        On a datagram internal service there is nothing to limit: a warning.
        """
        config = parse(
            service(
                "type = INTERNAL\n socket_type = dgram\n wait = yes\n max_duration = 4",
                name="echo",
            )
        )
        self.assertEqual(len(config.services), 1)
        [warning] = messages(config, Severity.WARNING)
        self.assertIn("max_duration has nothing to limit", warning)
        self.assertIn("test.conf:6:", warning)

    def test_tcpmuxSubserviceWarns(self) -> None:
        """
        On a tcpmux sub-service the multiplexer's limit applies: a warning.
        """
        body = EXTERNAL.replace("UNLISTED", "UNLISTED TCPMUX").replace(
            "port = 4000", "max_duration = 4"
        )
        config = parse(service(body))
        self.assertEqual(len(config.services), 1)
        [warning] = messages(config, Severity.WARNING)
        self.assertIn("the tcpmux service's max_duration applies", warning)


class PerSourceCpsTests(SynchronousTestCase):
    """
    C{per_source_cps = RATE WAIT}.
    """

    def test_value(self) -> None:
        """
        Rate and wait land in C{perSourceCps}.
        """
        self.assertEqual(one("per_source_cps = 3 15").perSourceCps, (3, 15))

    def test_fromDefaults(self) -> None:
        """
        Allowed in defaults.
        """
        self.assertEqual(one("", header=DEFAULTS).perSourceCps, (4, 20))

    def test_bad(self) -> None:
        """
        A zero or non-numeric rate or wait drops the service with FILE:LINE.
        """
        for value, text in (
            ("0 10", "bad per_source_cps rate: 0"),
            ("x 10", "bad per_source_cps rate: x"),
            ("5 0", "bad per_source_cps wait: 0"),
            ("5 y", "bad per_source_cps wait: y"),
        ):
            config = parse(service(EXTERNAL + "\n per_source_cps = " + value))
            self.assertEqual(config.services, (), value)
            [message] = messages(config)
            self.assertIn("test.conf:10:", message)
            self.assertIn(text, message)

    def test_count(self) -> None:
        """
        Exactly two values: otherwise the line is ignored with a warning
        naming it, as xinetd does for every attribute.
        """
        config = parse(service(EXTERNAL + "\n per_source_cps = 5"))
        self.assertIsNone(config.services[0].perSourceCps)
        [warning] = messages(config, Severity.WARNING)
        self.assertIn("test.conf:10:", warning)
        self.assertIn("per_source_cps expects 2 values", warning)


class DumpTests(SynchronousTestCase):
    """
    C{check --dump} shows both, and reads back the same.
    """

    def test_roundTrip(self) -> None:
        """
        Dumped values read back to the same service.
        """
        original = one("", header=DEFAULTS)
        dumped = dumpService(original)
        self.assertIn("max_duration    = 30\n", dumped)
        self.assertIn("per_source_cps  = 4 20\n", dumped)
        (copy,) = parse(dumped, path="dumped.conf").services
        self.assertEqual(attr.evolve(copy, location=original.location), original)


class RpcTests(SynchronousTestCase):
    """
    RPC services load (they used to be refused).
    """

    def test_twoRpcServicesBothPortZero(self) -> None:
        """
        Two RPC services with no port are not duplicates of each other.
        """
        body = (
            EXTERNAL.replace("UNLISTED", "RPC UNLISTED")
            .replace("port = 4000", "")
            .replace("stream", "dgram")
            .replace("tcp", "udp")
            .replace("wait = no", "wait = yes")
        )
        text = service(
            body + "\n rpc_version = 1\n rpc_number = 300001", name="a"
        ) + service(body + "\n rpc_version = 1\n rpc_number = 300002", name="b")
        config = parse(text)
        self.assertEqual(messages(config), [])
        self.assertEqual([s.port for s in config.services], [0, 0])

    def test_roundTrip(self) -> None:
        """
        An RPC service survives the dump.
        """
        body = EXTERNAL.replace("UNLISTED", "RPC").replace("port = 4000", "")
        original = parse(service(body + "\n rpc_version = 1-2", name="rusersd"))
        (service1,) = original.services
        (copy,) = parse(dumpService(service1), path="dumped.conf").services
        self.assertEqual(attr.evolve(copy, location=service1.location), service1)
