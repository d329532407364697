"""
Network protocols the services use: the ident client (USERID), the
non-blocking reverse resolver (host names in access rules), and the
redirect relay.

May import config/ values; nothing of service/ or daemon/.
"""
