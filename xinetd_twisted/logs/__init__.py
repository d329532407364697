"""
Logs: xinetd's service lines (L{service}), their sinks, FILE and SYSLOG
(L{sinks}), and the daemon's own messages to syslog (L{daemonsyslog}).

May import config/ (for a service's log settings) and protocols/ident (for
USERID results); nothing of service/ or daemon/.

C{jsonLogger} is here for C{twistd --logger=xinetd_twisted.logs.jsonLogger}.
"""

from xinetd_twisted.logs.service import jsonLogger

__all__ = ["jsonLogger"]
