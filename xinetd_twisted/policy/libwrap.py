# -*- test-case-name: tests.test_policy_hostsaccess -*-
"""
What every configuration needs of xinetd's C{libwrap} check: the daemon
name a service is checked under, and reading C{hosts.allow} and
C{hosts.deny}.  Their rules are parsed (by
L{xinetd_twisted.policy.hostsaccess}, imported only then) when the files
have any; files with none check nothing, so the parser is not loaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, List, Optional, Tuple

from xinetd_twisted.config.model import Location, Problem, ServiceConfig, Severity

if TYPE_CHECKING:
    from xinetd_twisted.policy.hostsaccess import HostsAccess

LIBWRAP = "libwrap"


def libwrapName(service: ServiceConfig) -> Optional[str]:
    """
    The daemon name xinetd gives tcp_wrappers for C{service}, or L{None}
    when the check is skipped (C{flags = NOLIBWRAP}).

    The C{libwrap} attribute wins; redirect and internal services use the
    service name; with NAMEINARGS the basename of argv[0]; else the basename
    of C{server}.
    """
    if "NOLIBWRAP" in service.flags:
        return None
    if service.libwrap is not None:
        return service.libwrap
    if service.redirect is not None or service.isInternal:
        return service.name
    if "NAMEINARGS" in service.flags and service.argv:
        return os.path.basename(service.argv[0])
    if service.server is not None:
        return os.path.basename(service.server)
    if service.argv:
        return service.argv[0]
    return service.name


def readHostsFiles(
    allowPath: str, denyPath: str
) -> Tuple[Tuple[str, str], List[Problem]]:
    """
    The text of both files (a missing or unreadable file gives C{""}) and
    a problem for each that cannot be read.
    """
    texts = []
    problems: List[Problem] = []
    for path in (allowPath, denyPath):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        except FileNotFoundError:
            texts.append("")
        except OSError as e:
            problems.append(
                Problem(Location(path, 0), Severity.ERROR, f"cannot read: {e}")
            )
            texts.append("")
    return (texts[0], texts[1]), problems


def _mayHaveRules(text: str) -> bool:
    # Only blank and comment lines: nothing to parse.  (A continued comment
    # stays a comment; a line that is neither counts, whatever it holds.)
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return True
    return False


def loadHostsAccess(allowPath: str, denyPath: str) -> Optional[HostsAccess]:
    """
    The parsed files, or L{None} when they hold no rule and could be read
    (as no rule grants every client, then there is nothing to check).
    """
    texts, problems = readHostsFiles(allowPath, denyPath)
    if not problems and not any(_mayHaveRules(text) for text in texts):
        return None
    from xinetd_twisted.policy.hostsaccess import HostsAccess

    return HostsAccess.fromTexts(allowPath, denyPath, texts, problems)
