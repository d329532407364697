"""
Helpers shared by the configuration tests (no tests here): fixture system
files and a one-call parser.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

from xinetd_twisted.config import parseConfigText
from xinetd_twisted.config.model import AddressEntry, Config, Severity

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "config")
ETC = os.path.join(FIXTURES, "etc")
SYSFILES = dict(
    servicesFile=os.path.join(ETC, "services"),
    protocolsFile=os.path.join(ETC, "protocols"),
    rpcFile=os.path.join(ETC, "rpc"),
    networksFile=os.path.join(ETC, "networks"),
)


def parse(text: str, path: str = "test.conf", **kw: Any) -> Config:
    """
    Parse C{text} with the fixture system files, as root, with an empty
    environment unless told otherwise.
    """
    options: dict = dict(SYSFILES, environ={}, isRoot=True, warnWritable=False)
    options.update(kw)
    return parseConfigText(text, path, **options)


def service(body: str, name: str = "svc", header: str = "") -> str:
    """
    A configuration with one service block around C{body}.
    """
    return f"{header}service {name}\n{{\n{body}\n}}\n"


EXTERNAL = """\
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    server = /bin/cat
    type = UNLISTED
    port = 4000"""
"""A valid external service body to add lines to."""


def messages(config: Config, severity: Severity | None = None) -> list:
    """
    The problem strings of C{config}, optionally of one severity.
    """
    return [
        str(p) for p in config.problems if severity is None or p.severity is severity
    ]


def words(entries: Optional[Tuple[AddressEntry, ...]]) -> List[str]:
    """
    The words of an address list that must be set.
    """
    assert entries is not None
    return [e.word for e in entries]
