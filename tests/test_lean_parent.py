"""The ``-workers`` parent process, ``-version`` and ``-help`` load no server code.

The parent serves no request: importing Trio, the HTTP stacks and the stores there
would cost every deployment with ``-workers`` memory for nothing (issue 15), and every
``tusd-trio -version`` start-up time.  Python's ``-X importtime`` lists on stderr every
module a process imports; the worker processes are started without it, so the lines
are the parent's alone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests._support.daemon import REPO_ROOT, Daemon, daemon_env

#: Modules only a process that serves needs.
SERVER_MODULES = {
    "trio",
    "h11",
    "h2",
    "httptools",
    "trio_websocket",
    "prometheus_client",
    "tusd_trio.server",
    "tusd_trio.cli.serve",
    "tusd_trio.stores.file",
    "tusd_trio.lockers.file",
    "tusd_trio.hooks.dispatcher",
}
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|(\s*)(\S+)\s*$")


def imported(output: str) -> set[str]:
    """The modules named by ``-X importtime`` lines in ``output``."""
    return {m.group(2) for m in map(IMPORT_LINE.match, output.splitlines()) if m is not None}


def test_workers_parent_imports_no_server_code(tmp_path: Path) -> None:
    daemon = Daemon(
        tmp_path / "uploads",
        ["-workers", "2"],
        command=[sys.executable, "-X", "importtime", "-m", "tusd_trio"],
        merge_stderr=True,
    )
    try:
        daemon.start()  # the banner: both workers serve
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    modules = imported(daemon.output())
    assert {"tusd_trio.cli.main", "tusd_trio._workers", "tusd_trio.config"} <= modules
    assert modules & SERVER_MODULES == set()


def test_version_and_help_import_no_server_code() -> None:
    for flag in ("-version", "-help"):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "tusd_trio", flag],
            cwd=REPO_ROOT,
            env=daemon_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        modules = imported(result.stderr)
        assert "tusd_trio.cli.main" in modules, flag
        assert modules & SERVER_MODULES == set(), flag
