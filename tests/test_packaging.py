"""The single-file executable and the lock files: scripts/build-pyz builds a .pyz
from the pinned versions that runs the daemon from a clean directory with a plain
interpreter (no virtual environment), a tus client uploads a file to it, and the
same sources built elsewhere give the same bytes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests._support.daemon import Daemon
from tests._support.sync_http import uploader_url

ROOT = Path(__file__).resolve().parents[1]
#: The interpreter the virtual environment was made from: no project packages in it.
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")


def _build_pyz(source: Path, pyz: Path, shiv_root: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "SHIV_ROOT": str(shiv_root)}
    build = subprocess.run(
        ["bash", str(source / "scripts" / "build-pyz"), str(pyz)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]


@pytest.fixture(scope="module")
def built_pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pyz = tmp_path_factory.mktemp("pyz") / "tusd-trio.pyz"
    _build_pyz(ROOT, pyz, pyz.parent / "shiv")
    return pyz


def test_pyz_builds_and_serves(built_pyz: Path, tmp_path: Path) -> None:
    pyz = tmp_path / "tusd-trio.pyz"
    shutil.copyfile(built_pyz, pyz)
    # A clean directory, a plain interpreter in isolated mode, no venv variables.
    clean = tmp_path / "clean"
    clean.mkdir()
    plain_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("COV")
    }
    plain_env["SHIV_ROOT"] = str(tmp_path / "shiv")
    plain_env["PATH"] = os.pathsep.join(
        p for p in plain_env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    assert sys.prefix != sys.base_prefix, "the tests run in the project's virtual environment"
    probe = subprocess.run(
        [BASE_PYTHON, "-I", "-c", "import tusd_trio"],
        env=plain_env,
        cwd=clean,
        capture_output=True,
        check=False,
    )
    assert probe.returncode != 0, "the plain interpreter must not see tusd_trio outside the .pyz"
    version = subprocess.run(
        [BASE_PYTHON, "-I", str(pyz), "-version"],
        env=plain_env,
        cwd=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.stdout.startswith("tusd-trio ")
    daemon = Daemon(
        None,
        command=[BASE_PYTHON, "-I", str(pyz)],
        host=None,  # the default host
        env=plain_env,
        cwd=clean,
        log_dir=tmp_path,
        merge_stderr=True,
    )
    daemon.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/files/", daemon.base_url), daemon.base_url
        # A real tus client uploads a file in chunks; the bytes come back identical.
        import httpx
        from tusclient import client as tus_client

        source = tmp_path / "payload.bin"
        data = os.urandom(3 * 1024 * 1024 + 17)
        source.write_bytes(data)
        uploader = tus_client.TusClient(daemon.base_url).uploader(
            file_path=str(source), chunk_size=1024 * 1024, metadata={"filename": "p.bin"}
        )
        uploader.upload()
        assert uploader.offset == len(data)
        got = httpx.get(uploader_url(uploader), timeout=30).content
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        upload_id = uploader_url(uploader).rsplit("/", 1)[1]
        assert (clean / "data" / upload_id).read_bytes() == data  # ./data by default
    finally:
        returncode = daemon.stop(signal.SIGTERM, timeout=30)
    assert returncode == 0


def test_pyz_build_is_reproducible(built_pyz: Path, tmp_path: Path) -> None:
    """The same sources and lock files in another directory build the same bytes."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path / "elsewhere" / "tusd-trio"
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    again = tmp_path / "again.pyz"
    _build_pyz(copy, again, tmp_path / "shiv")
    first = hashlib.sha256(built_pyz.read_bytes()).hexdigest()
    assert hashlib.sha256(again.read_bytes()).hexdigest() == first


def test_build_group_holds_the_build_requirements() -> None:
    """scripts/lock pins the build backend through the "build" dependency group."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build_group = project["dependency-groups"]["build"]
    assert set(project["build-system"]["requires"]) <= set(build_group)
