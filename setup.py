"""
Build the compiled sub-helper (xinetd_twisted/spawn/subhelper.c) into the
package; the metadata and options are in setup.cfg.  Without a C compiler
the package installs without it and the Python sub-helper serves.
"""

import os
import shlex
import subprocess
import sysconfig

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

SOURCE = os.path.join("xinetd_twisted", "spawn", "subhelper.c")
PROGRAM = os.path.join("xinetd_twisted", "spawn", "xinetd-subhelper")


class BuildPyWithSubhelper(build_py):
    def run(self):
        super().run()
        target = os.path.join(self.build_lib, PROGRAM)
        compiler = shlex.split(
            os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
        )
        command = [*compiler, "-O2", "-Wall", "-Wextra", "-o", target, SOURCE]
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            self.warn(f"{SOURCE} not built ({e}): the Python sub-helper serves")


class BinaryDistribution(Distribution):
    """A wheel with a compiled program in it is for one platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithSubhelper}, distclass=BinaryDistribution)
