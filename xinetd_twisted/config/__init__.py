"""
Configuration: xinetd.conf/inetd.conf text to an immutable, checked model.

Knows nothing of sockets, processes or the reactor.
"""
