# -*- test-case-name: tests.test_spawn_helper -*-
"""
Turning a raw wait status into the reason a L{IProcessProtocol} is told.
"""

from __future__ import annotations

import os

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure


def reasonForStatus(status: int) -> Failure:
    """
    Build the C{processEnded} reason for a raw C{waitpid} status, as Twisted's
    own L{twisted.internet.process.Process} does.

    @param status: the raw status.
    @return: a failure wrapping L{ProcessDone} (exit 0) or
        L{ProcessTerminated} (non-zero exit code, or killed by a signal).
    """
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == 0:
            return Failure(ProcessDone(status))
        return Failure(ProcessTerminated(exitCode=code, status=status))
    if os.WIFSIGNALED(status):
        return Failure(ProcessTerminated(signal=os.WTERMSIG(status), status=status))
    return Failure(ProcessTerminated(status=status))
