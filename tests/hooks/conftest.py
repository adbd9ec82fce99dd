from __future__ import annotations

import pytest
import trio

from tests._support.hookserver import HookServer


@pytest.fixture
async def hook_server(nursery: trio.Nursery) -> HookServer:
    server = HookServer()
    await nursery.start(server.serve)
    return server
