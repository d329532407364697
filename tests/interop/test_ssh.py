"""
C{sshd -i} as a stream C{wait = no} service with a throw-away host key and
user key: C{ssh} runs a command through it.
"""

from __future__ import annotations

import os

from tests.daemon import Daemon
from tests.interop import (
    HOST,
    InteropTestCase,
    freePort,
    requireProgram,
    requireRoot,
    run,
)

PRIVSEP_DIR = "/run/sshd"


class SshdTests(InteropTestCase):
    """
    OpenSSH's inetd mode: sshd reads its keys per connection and speaks SSH
    on fds 0 and 1.
    """

    def test_runCommand(self) -> None:
        """
        C{ssh root@127.0.0.1 echo hello} authenticates with the user key and
        prints the command's output.
        """
        requireRoot()
        sshd = requireProgram("/usr/sbin/sshd", "openssh-server")
        ssh = requireProgram("/usr/bin/ssh", "openssh-client")
        keygen = requireProgram("/usr/bin/ssh-keygen", "openssh-client")
        # sshd's privilege separation needs this empty directory.
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        port = freePort()
        paths = {}

        def build(d: Daemon) -> str:
            for name in ("host", "user"):
                paths[name] = os.path.join(d.directory, f"{name}_ed25519")
                result = run(
                    [keygen, "-q", "-t", "ed25519", "-N", "", "-f", paths[name]]
                )
                self.assertEqual(result.returncode, 0, result.stderr)
            keys = os.path.join(d.directory, "authorized_keys")
            with open(paths["user"] + ".pub") as src, open(keys, "w") as dst:
                dst.write(src.read())
            config = os.path.join(d.directory, "sshd_config")
            with open(config, "w") as f:
                f.write(
                    f"HostKey {paths['host']}\n"
                    f"AuthorizedKeysFile {keys}\n"
                    "PidFile none\n"
                    "UsePAM no\n"
                    "StrictModes no\n"
                    "PermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\n"
                    "LogLevel ERROR\n"
                )
            return self.programService(
                "ssh", port, "root", sshd, server_args=f"-i -f {config}"
            )

        self.startDaemon(build, (HOST, port))
        result = run(
            [
                ssh,
                "-F",
                "/dev/null",
                "-p",
                str(port),
                "-i",
                paths["user"],
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                f"root@{HOST}",
                "echo hello",
            ]
        )
        self.assertEqual(result.returncode, 0, self.explain(result))
        self.assertEqual(result.stdout, b"hello\n")
