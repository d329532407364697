"""
Tests for L{xinetd_twisted.service.banners}: banner files the root daemon
reads for a configuration.
"""

from __future__ import annotations

import os
from typing import List, Optional, cast

from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Location, ServiceConfig
from xinetd_twisted.service.banners import (
    BANNER_LIMIT,
    NO_BANNERS,
    Banners,
    loadBanner,
    readBanner,
)

OTHER_UID = 4321
"""
A uid that is neither root nor the test's (links and files chowned to it).
"""

needsRoot = None if os.geteuid() == 0 else "chown to another user needs root"


def service(banner: Optional[str] = None, fail: Optional[str] = None) -> ServiceConfig:
    return ServiceConfig(
        name="echo",
        serviceId="echo-stream",
        location=Location("x.conf", 1),
        socketType="stream",
        protocol="tcp",
        wait=False,
        banner=banner,
        bannerFail=fail,
        locations={
            "banner": Location("x.conf", 7),
            "banner_fail": Location("x.conf", 8),
        },
    )


class ReadBannerTests(SynchronousTestCase):
    """
    Tests for L{readBanner} and L{loadBanner}.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def write(self, name: str, data: bytes, mode: int = 0o644) -> str:
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def test_regularFile(self) -> None:
        """A regular file's bytes are the banner."""
        self.assertEqual(readBanner(self.write("b", b"hello\r\n")), b"hello\r\n")

    def test_unset(self) -> None:
        """No path, no banner."""
        self.assertEqual(readBanner(None), b"")

    def test_bounded(self) -> None:
        """At most BANNER_LIMIT bytes are read."""
        path = self.write("big", b"x" * (BANNER_LIMIT + 10))
        self.assertEqual(len(readBanner(path)), BANNER_LIMIT)

    def test_missing(self) -> None:
        """A missing file gives nothing, and says why."""
        data, problem = loadBanner(self.path("nope"))
        self.assertEqual((data, problem), (b"", "No such file or directory"))

    def test_fifoDoesNotHang(self) -> None:
        """A FIFO is refused at once (no writer needed, nothing blocks)."""
        os.mkfifo(self.path("fifo"))
        self.assertEqual(
            loadBanner(self.path("fifo")), (b"", "it is not a regular file")
        )

    def test_deviceRefused(self) -> None:
        """A device (here one that never ends) is not a banner."""
        self.assertEqual(loadBanner("/dev/zero"), (b"", "it is not a regular file"))

    def test_ownSymlink(self) -> None:
        """A link owned by the owner of its target is followed."""
        self.write("target", b"mine\n")
        os.symlink("target", self.path("link"))
        self.assertEqual(readBanner(self.path("link")), b"mine\n")

    def test_absoluteSymlink(self) -> None:
        """An absolute link target is followed too."""
        os.symlink(self.write("target", b"abs\n"), self.path("link"))
        self.assertEqual(readBanner(self.path("link")), b"abs\n")

    def test_linkToLinkRefused(self) -> None:
        """Only one level of link is followed."""
        self.write("target", b"x")
        os.symlink("target", self.path("one"))
        os.symlink("one", self.path("two"))
        self.assertEqual(loadBanner(self.path("two")), (b"", "it is a link to a link"))

    def test_symlinkToFifoRefused(self) -> None:
        """A link to a FIFO is refused without hanging."""
        os.mkfifo(self.path("fifo"))
        os.symlink("fifo", self.path("link"))
        self.assertEqual(readBanner(self.path("link")), b"")

    def test_otherUsersLinkToRootFileRefused(self) -> None:
        """
        A link planted by another user, pointing at a file of root's that
        this user could not read, is not followed.
        """
        secret = self.write("shadow", b"root:secret\n", mode=0o600)
        link = self.path("banner")
        os.symlink(secret, link)
        os.lchown(link, OTHER_UID, OTHER_UID)
        self.assertEqual(
            loadBanner(link),
            (b"", f"it is a symbolic link of uid {OTHER_UID} to a file of uid 0"),
        )

    test_otherUsersLinkToRootFileRefused.skip = needsRoot  # type: ignore[attr-defined]

    def test_otherUsersLinkToOwnFile(self) -> None:
        """Another user's link to that user's own file is followed."""
        own = self.write("own", b"motd\n")
        os.chown(own, OTHER_UID, OTHER_UID)
        link = self.path("banner")
        os.symlink(own, link)
        os.lchown(link, OTHER_UID, OTHER_UID)
        self.assertEqual(readBanner(link), b"motd\n")

    test_otherUsersLinkToOwnFile.skip = needsRoot  # type: ignore[attr-defined]

    def test_otherUsersLinkToDeviceRefused(self) -> None:
        """Another user's link to a root device is refused before opening it."""
        link = self.path("banner")
        os.symlink("/dev/zero", link)
        os.lchown(link, OTHER_UID, OTHER_UID)
        self.assertEqual(readBanner(link), b"")

    test_otherUsersLinkToDeviceRefused.skip = needsRoot  # type: ignore[attr-defined]

    def test_rootLinkToOtherUsersFile(self) -> None:
        """A link owned by root is followed wherever it points."""
        other = self.write("other", b"hi\n")
        os.chown(other, OTHER_UID, OTHER_UID)
        os.symlink(other, self.path("link"))
        self.assertEqual(readBanner(self.path("link")), b"hi\n")

    test_rootLinkToOtherUsersFile.skip = needsRoot  # type: ignore[attr-defined]


class ForServiceTests(SynchronousTestCase):
    """
    Tests for L{Banners.forService}.
    """

    def setUp(self) -> None:
        self.events: List[dict] = []
        self.log = Logger(observer=cast(ILogObserver, self.events.append))

    def test_reads(self) -> None:
        """The banner files a service names are read; no warning."""
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"welcome\n")
        banners = Banners.forService(service(banner=path), log=self.log)
        self.assertEqual(banners, Banners(connect=b"welcome\n"))
        self.assertEqual(self.events, [])

    def test_noBannersShared(self) -> None:
        """Services that name no banner all get the one empty L{Banners}."""
        self.assertIs(Banners.forService(service(), log=self.log), NO_BANNERS)
        self.assertEqual(NO_BANNERS, Banners())

    def test_warnsOncePerBanner(self) -> None:
        """
        A banner that is not sent is warned about once, naming the service,
        the attribute, the path and where the attribute was written.
        """
        fifo = os.path.abspath(self.mktemp())
        os.mkfifo(fifo)
        banners = Banners.forService(service(fail=fifo), log=self.log)
        self.assertEqual(banners, Banners())
        self.assertEqual(
            [formatEvent(e) for e in self.events],
            [
                f"x.conf:8: service echo-stream: banner_fail {fifo} "
                "is not sent: it is not a regular file"
            ],
        )
