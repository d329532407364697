"""
C{git daemon --inetd} as a stream C{wait = no} service: C{git clone
git://...} of a repository the test creates.
"""

from __future__ import annotations

import os
import pwd

from tests.daemon import Daemon
from tests.interop import (
    HOST,
    InteropTestCase,
    freePort,
    requireProgram,
    requireRoot,
    run,
)


class GitDaemonTests(InteropTestCase):
    """
    git daemon in inetd mode, run as nobody.
    """

    def test_clone(self) -> None:
        """
        A clone over git:// gets the repository's commit and file.
        """
        requireRoot()
        git = requireProgram("/usr/bin/git", "git")
        port = freePort()
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.invalid",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.invalid",
            GIT_CONFIG_NOSYSTEM="1",
            HOME="/nonexistent",
        )

        def build(d: Daemon) -> str:
            base = os.path.join(d.directory, "git")
            work = os.path.join(base, "repo")
            os.makedirs(work)
            with open(os.path.join(work, "README"), "w") as f:
                f.write("served through xinetd-twisted\n")
            for argv in (
                ["init", "-q", "-b", "main"],
                ["add", "README"],
                ["commit", "-q", "-m", "first"],
            ):
                result = run([git, *argv], cwd=work, env=env)
                self.assertEqual(result.returncode, 0, result.stderr)
            # git refuses repositories owned by another user (safe.directory):
            # hand the tree to the user the service runs as.
            nobody = pwd.getpwnam("nobody").pw_uid
            for top, dirs, files in os.walk(base):
                for name in dirs + files:
                    os.lchown(os.path.join(top, name), nobody, -1)
            os.lchown(base, nobody, -1)
            return self.programService(
                "git",
                port,
                "nobody",
                git,
                server_args=f"daemon --inetd --export-all --base-path={base}",
            )

        self.startDaemon(build, (HOST, port))
        dest = os.path.join(self.d.directory, "clone")
        result = run([git, "clone", "-q", f"git://{HOST}:{port}/repo", dest], env=env)
        self.assertEqual(result.returncode, 0, self.explain(result))
        with open(os.path.join(dest, "README")) as f:
            self.assertEqual(f.read(), "served through xinetd-twisted\n")
        log = run([git, "log", "--format=%s"], cwd=dest, env=env)
        self.assertEqual(log.stdout, b"first\n")
