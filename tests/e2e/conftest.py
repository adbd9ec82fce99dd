"""Shared fixtures for the tusd-trio end-to-end tests.

The daemon under test runs as a real subprocess (in its own process group)
listening on 127.0.0.1 with an ephemeral port and a temporary upload dir.
Its base URL is taken from the banner line it prints on stdout.

For developing these tests without the daemon, TUSD_TRIO_E2E_CMD may hold a
command (shell syntax) that replaces ``python -m tusd_trio``; the usual
``-host/-port/-upload-dir`` flags are appended to it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

E2E_DIR = Path(__file__).resolve().parent
if str(E2E_DIR) not in sys.path:  # make tusd_e2e importable under any --import-mode
    sys.path.insert(0, str(E2E_DIR))

from tusd_e2e import HTTP_TIMEOUT, Daemon, DaemonFactory  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test against a real daemon subprocess")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def daemon_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tusd-e2e")


@pytest.fixture(scope="session")
def tusd(daemon_root: Path) -> Iterator[Daemon]:
    """A daemon shared by the tests that do not restart or kill it."""
    factory = DaemonFactory(daemon_root / "shared")
    factory.root.mkdir()
    daemon = factory.new("uploads")
    try:
        daemon.start()
        yield daemon
    finally:
        factory.kill_all()


@pytest.fixture
def daemon_factory(daemon_root: Path, request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """Per-test factory for daemons that the test restarts or crashes itself."""
    root = daemon_root / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    root.mkdir()
    factory = DaemonFactory(root)
    try:
        yield factory
    finally:
        factory.kill_all()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=HTTP_TIMEOUT, headers={"Tus-Resumable": "1.0.0"}) as client:
        yield client
