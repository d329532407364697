# -*- test-case-name: tests.test_daemon_superserver -*-
"""
xinetd's signals, taken over while the super-server runs and given back
when it stops: SIGHUP/SIGUSR2 reload, SIGTERM/SIGQUIT stop, SIGUSR1 dumps.

Handlers only schedule the work (they run between two bytecodes, possibly
inside reactor code).
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Dict, Iterable

from twisted.logger import Logger

_log = Logger(namespace="xinetd_twisted.daemon")


def signalName(signum: int) -> str:
    """
    C{SIGHUP} for 1, and so on.
    """
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SignalHandlers:
    """
    The handlers a super-server installed, to restore the previous ones.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._previous: Dict[int, Any] = {}

    def handle(
        self,
        signums: Iterable[int],
        action: Callable[[int], None],
        what: str,
        chain: bool = False,
    ) -> None:
        """
        On each of C{signums}, log it and run C{action(signum)} from the
        reactor.

        @param chain: call the previous handler first, in the signal's own
            context (twistd's SIGUSR1 log rotation, so that what the action
            logs goes to the new file).
        """
        for signum in signums:

            def handler(received: int, frame: Any) -> None:
                previous = self._previous.get(received)
                if chain and callable(previous):
                    previous(received, frame)
                self._reactor.callFromThread(self._run, received, action, what)

            previous = signal.signal(signum, handler)
            self._previous.setdefault(signum, previous)

    def _run(self, signum: int, action: Callable[[int], None], what: str) -> None:
        _log.info("{signal} received: {what}", signal=signalName(signum), what=what)
        action(signum)

    def restore(self) -> None:
        """
        Give every signal its previous handler back.
        """
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
