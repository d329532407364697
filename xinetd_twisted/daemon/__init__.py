"""
The super-server itself: the L{MultiService} of every service runtime, the
reload plan, signals and the state dump.

The only package that knows every other part.
"""
