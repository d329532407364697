"""
A shell-script backend: the simplest inetd program, reading the client on
stdin and answering on stdout.
"""

from __future__ import annotations

import os
import socket

from tests.daemon import Daemon, fetch
from tests.interop import (
    HOST,
    InteropTestCase,
    freePort,
    requireProgram,
    requireRoot,
)

SCRIPT = """#!/bin/sh
read -r name
printf 'hello %s from %s as %s\\n' "$name" "$REMOTE_HOST" "$(id -un)"
while read -r line; do
    printf '%s\\n' "$line" | tr a-z A-Z
done
echo bye
"""


class ShellBackendTests(InteropTestCase):
    """
    /bin/sh as the server: line protocol, environment, EOF both ways.
    """

    def start(self) -> int:
        requireRoot()
        requireProgram("/bin/sh", "dash")
        port = freePort()

        def build(d: Daemon) -> str:
            script = os.path.join(d.directory, "hello.sh")
            with open(script, "w") as f:
                f.write(SCRIPT)
            os.chmod(script, 0o755)
            return self.programService("hello", port, "nobody", script)

        self.startDaemon(build, (HOST, port))
        return port

    def test_conversation(self) -> None:
        """
        The script greets with REMOTE_HOST and its user, answers each line,
        and the client gets EOF after the script ends on the client's EOF.
        """
        port = self.start()
        reply = fetch(HOST, port, send=b"world\nabc\ndef\n")
        self.assertEqual(
            reply, b"hello world from 127.0.0.1 as nobody\nABC\nDEF\nbye\n"
        )

    def test_interactive(self) -> None:
        """
        Answers arrive line by line while the connection stays open.
        """
        port = self.start()
        with socket.create_connection((HOST, port), timeout=10) as s:
            f = s.makefile("rwb", buffering=0)
            f.write(b"you\n")
            self.assertEqual(f.readline(), b"hello you from 127.0.0.1 as nobody\n")
            f.write(b"ping\n")
            self.assertEqual(f.readline(), b"PING\n")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(f.readline(), b"bye\n")
            self.assertEqual(f.readline(), b"")
