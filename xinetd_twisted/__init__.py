"""
xinetd-twisted: the Internet super-server xinetd, rebuilt on Twisted.
"""

__version__ = "0.1.0"
