"""
Tests for L{xinetd_twisted.records}.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import attr
from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.config.model import Location
from xinetd_twisted.records import plainRepr


def _pair(**options: Any) -> Tuple[Any, Any]:
    """
    The same class made twice: with attrs' generated C{__repr__} and with
    L{plainRepr}.
    """

    def body() -> Any:
        class Sample:
            name: str
            count: int = 0
            hidden: str = attr.ib(default="secret", repr=False)
            late: Optional[int] = attr.ib(default=None, init=False)
            shown: Any = attr.ib(default=None, repr=lambda v: f"<{v}>")
            child: Any = None

        return Sample

    generated = attr.s(auto_attribs=True, **options)(body())
    shared = plainRepr(attr.s(auto_attribs=True, repr=False, **options)(body()))
    return generated, shared


class PlainReprTests(SynchronousTestCase):
    """
    L{plainRepr} writes what attrs' generated C{__repr__} writes.
    """

    def assertSameRepr(self, **options: Any) -> None:
        generated, shared = _pair(**options)
        for make in (
            lambda cls: cls("a"),
            lambda cls: cls("b", 3, "x", shown=[1], child=cls("c")),
            lambda cls: cls("d", child=Location("/etc/xinetd.conf", 4)),
        ):
            self.assertEqual(repr(make(shared)), repr(make(generated)))

    def test_plain(self) -> None:
        """
        Fields in order, C{repr=False} ones left out, a custom repr used.
        """
        self.assertSameRepr()
        _, shared = _pair()
        self.assertEqual(
            repr(shared("a", 2)),
            "Sample(name='a', count=2, late=None, shown=<None>, child=None)",
        )

    def test_slotsFrozen(self) -> None:
        """
        Slotted and frozen classes, whose unset C{init=False} field is
        shown as attrs shows it.
        """
        self.assertSameRepr(slots=True, frozen=True)
        generated, shared = _pair(slots=True)
        self.assertEqual(repr(shared("a")), repr(generated("a")))

    def test_recursive(self) -> None:
        """
        An object met again inside its own representation is C{...}.
        """
        generated, shared = _pair()
        a, b = shared("a"), generated("a")
        a.child, b.child = a, b
        self.assertEqual(repr(a), repr(b))
        self.assertIn("child=...", repr(a))

    def test_projectClass(self) -> None:
        """
        The daemon's classes use it.
        """
        self.assertEqual(
            repr(Location("/etc/xinetd.conf", 4)),
            "Location(path='/etc/xinetd.conf', line=4)",
        )
