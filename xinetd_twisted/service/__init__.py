"""
One runtime per configured service: an L{IService} with a C{factory},
built from parts with one job each (admission, children, listener) and the
kind of service (program, wait, internal, redirect, tcpmux).

May import config/, policy/, spawn/, listen/, builtins/, protocols/ and
logs/; never daemon/.
"""
