"""Shared fixtures for the tusd-trio end-to-end tests.

The daemon under test runs as a real subprocess (tests/_support/daemon.py) listening on
127.0.0.1 with an ephemeral port and a temporary upload dir; its base URL is taken from
the banner line it prints on stdout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._support.daemon import Daemon, DaemonFactory
from tests._support.sync_http import http_client

E2E_DIR = Path(__file__).resolve().parent


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
def http() -> Iterator[httpx.Client]:
    with http_client() as client:
        yield client
