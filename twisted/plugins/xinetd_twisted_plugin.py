"""
The twistd plugin: C{twistd -n xinetd --config /etc/xinetd.conf}.
"""

from twisted.application.service import ServiceMaker

xinetd = ServiceMaker(
    "xinetd-twisted",
    "xinetd_twisted.tap",
    "An xinetd(8) replacement: the Internet super-server.",
    "xinetd",
)
