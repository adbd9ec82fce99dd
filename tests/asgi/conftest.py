"""The ASGI app served by a real hypercorn (trio worker) in the test's Trio loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests._support.server import AsgiHostFactory, asgi_host_pool


@pytest.fixture
async def host(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[AsgiHostFactory]:
    async with asgi_host_pool(nursery, tmp_path / "data") as pool:
        yield pool.start


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c
