"""
Tests for L{xinetd_twisted.spawn.setup} and the spawn helper's wire format.
"""

from __future__ import annotations

import resource

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import UNLIMITED, Location, ServiceConfig
from xinetd_twisted.spawn import helper, wire
from xinetd_twisted.spawn.interfaces import ChildSetup
from xinetd_twisted.spawn.setup import (
    DAEMON_RLIMITS,
    childSetupFor,
    connectionEnvironment,
)


def _service(**kw: object) -> ServiceConfig:
    values: dict = dict(
        name="probe",
        serviceId="probe",
        location=Location("t.conf", 1),
        socketType="stream",
        protocol="tcp",
        wait=False,
        server="/usr/sbin/in.probe",
        argv=("in.probe", "-x"),
        user="nobody",
        uid=65534,
        gid=65534,
    )
    values.update(kw)
    return ServiceConfig(**values)  # type: ignore[arg-type]


def _setup(service: ServiceConfig, **kw: object) -> ChildSetup:
    args: dict = dict(
        daemonEnviron={"PATH": "/bin", "HOME": "/root"},
        daemonUmask=0o077,
        isRoot=True,
        nofileHardLimit=4096,
    )
    args.update(kw)
    return childSetupFor(service, **args)


class ChildSetupForTests(SynchronousTestCase):
    def test_wholeEnvironmentWithoutPassenv(self) -> None:
        """Without passenv the child gets the daemon's whole environment plus env."""
        setup = _setup(_service(env=("A=1",)))
        self.assertEqual(
            setup.environment, (("PATH", "/bin"), ("HOME", "/root"), ("A", "1"))
        )

    def test_passenvOnlyListedNamesThatExist(self) -> None:
        """passenv keeps only the listed names the daemon has, in passenv order."""
        setup = _setup(_service(passenv=("HOME", "NOPE", "PATH")))
        self.assertEqual(setup.environment, (("HOME", "/root"), ("PATH", "/bin")))

    def test_emptyPassenvPassesNothing(self) -> None:
        """An empty passenv passes nothing but env."""
        setup = _setup(_service(passenv=(), env=("X=y=z",)))
        self.assertEqual(setup.environment, (("X", "y=z"),))

    def test_envOverridesPassedVariable(self) -> None:
        """env replaces a passed variable of the same name instead of duplicating it."""
        setup = _setup(_service(env=("PATH=/x",)))
        self.assertEqual(setup.environment, (("HOME", "/root"), ("PATH", "/x")))

    def test_umaskDefaultsToDaemonUmaskOr022(self) -> None:
        """Without umask the child gets the daemon's umask | 022."""
        self.assertEqual(_setup(_service(), daemonUmask=0o002).umask, 0o022)
        self.assertEqual(_setup(_service(), daemonUmask=0o077).umask, 0o077)

    def test_umaskAttribute(self) -> None:
        """The umask attribute is used as is."""
        self.assertEqual(_setup(_service(umask=0o007)).umask, 0o007)

    def test_nofileDefaultsToHardLimit(self) -> None:
        """Without rlimit_files the child gets soft = hard = the daemon's hard limit."""
        setup = _setup(_service(), nofileHardLimit=1234)
        self.assertIn((resource.RLIMIT_NOFILE, 1234, 1234), setup.rlimits)

    def test_everyOtherLimitIsTheDaemons(self) -> None:
        """Every limit the service does not set is the daemon's own, captured at start."""
        daemon = {resource.RLIMIT_CORE: (0, 10), resource.RLIMIT_NPROC: (5, 6)}
        setup = _setup(_service(), nofileHardLimit=99, daemonRlimits=daemon)
        self.assertEqual(
            setup.rlimits,
            tuple(
                sorted(
                    [
                        (resource.RLIMIT_CORE, 0, 10),
                        (resource.RLIMIT_NPROC, 5, 6),
                        (resource.RLIMIT_NOFILE, 99, 99),
                    ]
                )
            ),
        )

    def test_defaultLimitsCoverEveryResource(self) -> None:
        """By default the setup carries every RLIMIT_* the platform has, once."""
        setup = _setup(_service())
        names = {getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")}
        self.assertEqual({r for r, _s, _h in setup.rlimits}, names)
        self.assertEqual(len(setup.rlimits), len(names))
        for r, soft, hard in setup.rlimits:
            if r != resource.RLIMIT_NOFILE:
                self.assertEqual((soft, hard), DAEMON_RLIMITS[r])

    def test_writtenRlimits(self) -> None:
        """Written rlimits become soft = hard, UNLIMITED is RLIM_INFINITY."""
        setup = _setup(
            _service(rlimits=(("RLIMIT_NOFILE", 77), ("RLIMIT_CPU", UNLIMITED))),
            daemonRlimits={resource.RLIMIT_CPU: (1, 2), resource.RLIMIT_CORE: (3, 4)},
        )
        infinity = resource.RLIM_INFINITY
        self.assertEqual(
            setup.rlimits,
            tuple(
                sorted(
                    [
                        (resource.RLIMIT_NOFILE, 77, 77),
                        (resource.RLIMIT_CPU, infinity, infinity),
                        (resource.RLIMIT_CORE, 3, 4),
                    ]
                )
            ),
        )

    def test_servicesShareEnvironmentAndLimits(self) -> None:
        """
        Services with the same environment and limits share one tuple of
        each (a thousand services cost one copy).
        """
        first = _setup(_service(name="a", serviceId="a", env=("X=1",)))
        second = _setup(_service(name="b", serviceId="b", env=("X=1",), uid=1))
        self.assertIs(first.environment, second.environment)
        self.assertIs(first.rlimits, second.rlimits)

    def test_differentEnvironmentsKeptApart(self) -> None:
        """
        A service with another C{env} or C{rlimit_*} gets its own values.
        """
        first = _setup(_service(env=("X=1",)))
        second = _setup(_service(env=("X=2",), rlimits=(("RLIMIT_CPU", 5),)))
        self.assertIn(("X", "2"), second.environment)
        self.assertNotIn(("X", "2"), first.environment)
        self.assertIn((resource.RLIMIT_CPU, 5, 5), second.rlimits)
        self.assertNotIn((resource.RLIMIT_CPU, 5, 5), first.rlimits)

    def test_credentialsWhenRoot(self) -> None:
        """A root daemon sets uid, gid and the exact supplementary groups."""
        setup = _setup(_service(groups=True, supplementaryGroups=(5, 6)))
        self.assertEqual(
            (setup.uid, setup.gid, setup.supplementaryGroups), (65534, 65534, (5, 6))
        )

    def test_groupsClearedByDefault(self) -> None:
        """groups = no gives an empty supplementary list, which clears them."""
        self.assertEqual(_setup(_service()).supplementaryGroups, ())

    def test_noCredentialsWhenNotRoot(self) -> None:
        """A daemon that is not root changes no credentials."""
        setup = _setup(_service(), isRoot=False)
        self.assertEqual(
            (setup.uid, setup.gid, setup.supplementaryGroups), (None, None, None)
        )

    def test_programFields(self) -> None:
        """executable, argv, nice, chroot, cwd / and a new session come from the service."""
        setup = _setup(_service(nice=5, chroot="/srv/jail"))
        self.assertEqual(
            (setup.executable, setup.argv, setup.nice, setup.chroot),
            ("/usr/sbin/in.probe", ("in.probe", "-x"), 5, "/srv/jail"),
        )
        self.assertEqual((setup.workingDirectory, setup.newSession), ("/", True))

    def test_connectionEnvironment(self) -> None:
        """The per-connection environment is REMOTE_HOST only."""
        self.assertEqual(
            connectionEnvironment("::ffff:1.2.3.4"),
            (("REMOTE_HOST", "::ffff:1.2.3.4"),),
        )


class WireFormatTests(SynchronousTestCase):
    def test_endsAgree(self) -> None:
        """
        The daemon's side of the wire (L{wire}) and the helper program,
        which cannot import it, have the same limits and read the same
        resource limits.
        """
        self.assertEqual(
            (wire.MAX_MESSAGE, wire.MAX_EVENTS_PER_MESSAGE, wire.allRlimits()),
            (helper.MAX_MESSAGE, helper.MAX_EVENTS_PER_MESSAGE, helper.allRlimits()),
        )

    def test_spawnMessageRoundTrip(self) -> None:
        """A spawn message carries request id, template id, NAME=value bytes and the lane."""
        data = wire.spawnMessage(7, 3, (("REMOTE_HOST", "1.2.3.4"),), 1)
        self.assertEqual(wire.decode(data), ("S", 7, 3, [b"REMOTE_HOST=1.2.3.4"], 1))

    def test_spawnMessageFirstLane(self) -> None:
        """Without a lane a spawn goes to the first."""
        self.assertEqual(wire.decode(wire.spawnMessage(7, 3, ()))[4], 0)

    def test_killSubMessageRoundTrip(self) -> None:
        """A kill-sub-helper message carries the sub-helper's id."""
        self.assertEqual(wire.decode(wire.killSubMessage(4)), ("X", 4))

    def test_signalMessageRoundTrip(self) -> None:
        """A signal message carries pid and signal number."""
        self.assertEqual(wire.decode(wire.signalMessage(42, 15)), ("K", 42, 15))

    def test_templateRoundTrip(self) -> None:
        """An encoded template decodes in the helper to the same fields."""
        blob = wire.encodeTemplate(
            "/bin/x",
            ("x", "-y"),
            (("A", "b"),),
            1,
            2,
            (3,),
            0o22,
            4,
            ((7, 8, 9),),
            "/j",
            "/",
            True,
        )
        t = helper._Template(blob, {}, False)
        self.assertEqual(
            (t.executable, t.argv, t.env, t.uid, t.gid, t.groups, t.umask, t.nice),
            (b"/bin/x", [b"x", b"-y"], [b"A=b"], 1, 2, [3], 0o22, 4),
        )
        self.assertEqual(
            (t.rlimits, t.chroot, t.cwd, t.newSession), ([(7, 8, 9)], b"/j", b"/", True)
        )

    def test_inheritedLimitsKeepTheFastPath(self) -> None:
        """Limits equal to the helper's own keep fork_exec; they stay in the template."""
        blob = wire.encodeTemplate(
            "/x",
            ("x",),
            (),
            None,
            None,
            None,
            0o22,
            None,
            ((7, 8, 8),),
            None,
            "/",
            True,
        )
        t = helper._Template(blob, {7: (8, 8)}, False)
        self.assertEqual(
            (t.rlimits, t.fast), ([(7, 8, 8)], helper._FORK_EXEC is not None)
        )
        self.assertFalse(helper._Template(blob, {7: (8, 9)}, False).fast)

    def test_credentialTemplatesGoToASubHelper(self) -> None:
        """A template with credentials and no Python-only setting is keyed by them."""
        blob = wire.encodeTemplate(
            "/x", ("x",), (), 1, 2, (), 0o22, None, (), None, "/", True
        )
        self.assertEqual(helper._Template(blob, {}, False).credentials, (1, 2, ()))

    def test_subHelperDropsCredentials(self) -> None:
        """In a sub-helper the template carries no credentials (it already has them)."""
        blob = wire.encodeTemplate(
            "/x", ("x",), (), 1, 2, (), 0o22, None, (), None, "/", True
        )
        t = helper._Template(blob, {}, True)
        self.assertEqual(
            (t.uid, t.gid, t.groups, t.credentials), (None, None, None, None)
        )

    def test_niceKeepsTemplateInRootHelper(self) -> None:
        """nice needs Python in the child, done by the root helper before setuid."""
        blob = wire.encodeTemplate(
            "/x", ("x",), (), 1, 2, (), 0o22, 5, (), None, "/", True
        )
        t = helper._Template(blob, {}, False)
        self.assertEqual((t.fast, t.credentials), (False, None))

    def test_largeTemplateInParts(self) -> None:
        """A template larger than one message is split and reassembles exactly."""
        blob = bytes(range(256)) * 600
        messages = wire.templateMessages(9, blob)
        self.assertGreater(len(messages), 1)
        decoded = [wire.decode(m) for m in messages]
        self.assertTrue(all(len(m) <= wire.MAX_MESSAGE for m in messages))
        self.assertEqual(b"".join(d[2] for d in decoded), blob)
        self.assertEqual([d[3] for d in decoded], [False] * (len(decoded) - 1) + [True])
        self.assertEqual([d[4] for d in decoded], list(range(len(decoded))))
