# -*- test-case-name: tests.test_readiness -*-
"""
Whether more input waits on a descriptor, asked without reading it.

The daemon's read loops (the accept loop of a listening socket, the spawn
helper's event channels) take a batch per readiness event; after the first
item, L{waiting} tells whether another is there.  A zero-timeout poll that
finds nothing costs a fraction of the accept() or recvmsg() that would
fail with EAGAIN (and raise) to end every batch, which every lone
connection paid.
"""

from __future__ import annotations

import select

_POLL = select.poll()
"""
The one poll object every caller asks (registering a descriptor is a
dictionary entry, not a system call): one per listening socket cost some
280 bytes each, 280 KiB with a thousand services.
"""


def waiting(fileno: int) -> bool:
    """
    Whether input (a connection, a message) waits on C{fileno} now.
    """
    _POLL.register(fileno, select.POLLIN)
    try:
        return bool(_POLL.poll(0))
    finally:
        _POLL.unregister(fileno)
