"""The single-file executable: scripts/build-pyz builds a .pyz that runs the daemon."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyz_builds_and_serves(tmp_path: Path) -> None:
    pyz = tmp_path / "tusd-trio.pyz"
    env = {**os.environ, "PYTHON": sys.executable, "SHIV_ROOT": str(tmp_path / "shiv")}
    build = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-pyz"), str(pyz)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    version = subprocess.run(
        [sys.executable, str(pyz), "-version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.stdout.startswith("tusd-trio ")
    daemon = subprocess.Popen(
        [sys.executable, str(pyz), "-port", "0", "-upload-dir", str(tmp_path / "data")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        assert daemon.stdout is not None
        banner = ""
        for _ in range(50):
            line = daemon.stdout.readline()
            if not line:
                break
            if "You can now upload files to:" in line:
                banner = line
                break
        assert re.search(r"http://127\.0\.0\.1:\d+/files/", banner), banner
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0
