"""
Tests for how L{xinetd_twisted.spawn.launcher} starts the helper process:
from its cached bytecode, importing no more than it needs.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from xinetd_twisted.spawn.launcher import HELPER_PATH, helperArguments

_IMPORTS = """\
import sys, _frozen_importlib as b, _frozen_importlib_external as e
before = set(sys.modules)
spec = e.spec_from_file_location("helper", sys.argv[1])
spec.loader.exec_module(b.module_from_spec(spec))
print(" ".join(sorted(set(sys.modules) - before)))
"""


class HelperStartTests(SynchronousTestCase):
    """
    The helper's command line and what the helper imports.
    """

    def python(self, *argv: str) -> str:
        result = subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def test_loadedThroughTheImportSystem(self) -> None:
        """
        The helper file is imported (so its cached bytecode is used and
        written), not run as a script, and its C{main} gets the file and
        the channel's fd number.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        stub = os.path.join(directory, "stub.py")
        with open(stub, "w") as f:
            f.write("def main(argv):\n    print(repr(argv), __name__)\n")
        output = self.python(*helperArguments(stub))
        self.assertEqual(output, f"{[stub, '3']!r} xinetd_twisted_helper\n")
        self.assertEqual(
            os.listdir(os.path.join(directory, "__pycache__")),
            [f"stub.{sys.implementation.cache_tag}.pyc"],
        )
        self.assertEqual(helperArguments()[:2], ["-I", "-S"])
        self.assertEqual(helperArguments()[-2:], [HELPER_PATH, "3"])

    def test_importsOnlyWhatItNeeds(self) -> None:
        """
        The helper imports none of the pure-Python modules above the C
        modules it uses (each would cost memory in it and in every fork).
        """
        imported = set(self.python("-I", "-S", "-c", _IMPORTS, HELPER_PATH).split())
        heavy = {"enum", "socket", "signal", "selectors", "collections", "ctypes"}
        self.assertEqual(imported & heavy, set())
        self.assertIn("_socket", imported)
