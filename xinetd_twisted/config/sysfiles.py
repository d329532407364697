# -*- test-case-name: tests.test_config_sysfiles -*-
"""
Readers for the system databases xinetd consults while loading: services,
protocols, rpc and networks.

xinetd calls getservbyname() and friends; we read the files ourselves so the
paths can be injected (tests, chroots) and so a load never blocks on NSS.
Each file is parsed once per (path, mtime, size) and cached, until
L{forgetParsed} (which the daemon calls once a configuration is loaded).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple, TypeVar

import attr

from xinetd_twisted.records import plainRepr

T = TypeVar("T")

_cache: Dict[Tuple[str, str], Tuple[Tuple[float, int], object]] = {}


def isNumber(text: str) -> bool:
    """
    ASCII decimal digits only (C{str.isdigit} also takes C{"²"}, which
    C{int} refuses).
    """
    return text.isascii() and text.isdigit()


def _cached(kind: str, path: str, parse: Callable[[str], T]) -> T:
    """
    Parse C{path} with C{parse}, reusing the last result while the file is
    unchanged.  A missing file reads as empty.
    """
    try:
        st = os.stat(path)
        stamp: Tuple[float, int] = (st.st_mtime, st.st_size)
    except OSError:
        return parse("")
    hit = _cache.get((kind, path))
    if hit is not None and hit[0] == stamp:
        return hit[1]  # type: ignore[return-value]
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    value = parse(text)
    _cache[(kind, path)] = (stamp, value)
    return value


def forgetParsed() -> None:
    """
    Drop every parsed file.  The daemon calls it after each configuration
    load: between reloads it would keep the services database (about
    100 KB for a usual C{/etc/services}) for a parse of a few
    milliseconds at the next reload.
    """
    _cache.clear()


def _lines(text: str):
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            yield words


@plainRepr
@attr.s(frozen=True, auto_attribs=True, repr=False)
class Services:
    """
    The services database: C{(name, protocol) -> port}, aliases included.
    Names and protocols are stored lower-case (xinetd compares
    case-insensitively).
    """

    ports: Dict[Tuple[str, str], int]

    def port(self, name: str, protocol: str) -> Optional[int]:
        """
        The port of C{name}/C{protocol}, or L{None} when not listed.
        """
        return self.ports.get((name.lower(), protocol.lower()))

    def name(self, port: int, protocol: str) -> Optional[str]:
        """
        The first name listed for C{port}/C{protocol}, or L{None}.
        """
        for (n, p), value in self.ports.items():
            if value == port and p == protocol.lower():
                return n
        return None


def _parseServices(text: str) -> Services:
    ports: Dict[Tuple[str, str], int] = {}
    for words in _lines(text):
        if len(words) < 2 or "/" not in words[1]:
            continue
        portText, _, proto = words[1].partition("/")
        if not isNumber(portText):
            continue
        for name in [words[0], *words[2:]]:
            ports.setdefault((name.lower(), proto.lower()), int(portText))
    return Services(ports)


def _parseNames(text: str) -> Dict[str, int]:
    """
    C{name number alias...} files (protocols, rpc): every name and alias,
    lower-case, to the number.
    """
    table: Dict[str, int] = {}
    for words in _lines(text):
        if len(words) < 2 or not isNumber(words[1]):
            continue
        for name in [words[0], *words[2:]]:
            table.setdefault(name.lower(), int(words[1]))
    return table


def _parseNetworks(text: str) -> Dict[str, str]:
    """
    C{/etc/networks}: name and aliases to the dotted network number, padded
    to four octets (C{10.1} -> C{10.1.0.0}).
    """
    table: Dict[str, str] = {}
    for words in _lines(text):
        if len(words) < 2:
            continue
        octets = words[1].split(".")
        if not all(isNumber(o) and int(o) < 256 for o in octets) or len(octets) > 4:
            continue
        number = ".".join(octets + ["0"] * (4 - len(octets)))
        for name in [words[0], *words[2:]]:
            table.setdefault(name.lower(), number)
    return table


def readServices(path: str) -> Services:
    """
    The services file at C{path}, parsed and cached.
    """
    return _cached("services", path, _parseServices)


def readProtocols(path: str) -> Dict[str, int]:
    """
    The protocols file at C{path}: name -> protocol number.
    """
    return _cached("protocols", path, _parseNames)


def readRpc(path: str) -> Dict[str, int]:
    """
    The rpc file at C{path}: program name -> program number.
    """
    return _cached("rpc", path, _parseNames)


def readNetworks(path: str) -> Dict[str, str]:
    """
    The networks file at C{path}: network name -> dotted IPv4 network.
    """
    return _cached("networks", path, _parseNetworks)
