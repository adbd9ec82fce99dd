"""Run a real tusd-trio server in the test's Trio loop, on a real socket."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from tusd_trio.config import Config
from tusd_trio.protocol.config import ProtocolConfig
from tusd_trio.server import Server

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


@dataclasses.dataclass
class Running:
    server: Server
    url: str
    port: int
    client: httpx.AsyncClient

    @property
    def base(self) -> str:
        return self.url

    async def create(self, length: int | None = None, **headers: str) -> str:
        hdrs = dict(TUS)
        if length is not None:
            hdrs["Upload-Length"] = str(length)
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        r = await self.client.post(self.url, headers=hdrs)
        assert r.status_code == 201, r.text
        return r.headers["location"]

    async def patch(
        self, location: str, offset: int, data: bytes, **headers: str
    ) -> httpx.Response:
        hdrs = dict(OCTET)
        hdrs["Upload-Offset"] = str(offset)
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        return await self.client.patch(location, headers=hdrs, content=data)

    async def head(self, location: str) -> httpx.Response:
        return await self.client.head(location, headers=TUS)


Factory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_server(nursery: trio.Nursery, tmp_path: Any) -> AsyncIterator[Factory]:
    servers: list[Server] = []
    clients: list[httpx.AsyncClient] = []

    async def factory(protocol: dict[str, Any] | None = None, **overrides: Any) -> Running:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "upload_dir": str(tmp_path / "data"),
            "verbose": False,
            "show_startup_logs": False,
        }
        settings.update(overrides)
        store = settings.pop("store", None)
        hooks = settings.pop("hooks", None)
        locker = settings.pop("locker_instance", None) or (
            settings.pop("locker") if not isinstance(settings.get("locker", ""), str) else None
        )
        config = Config(protocol=ProtocolConfig(**(protocol or {})), **settings)
        server = Server(config, store=store, locker=locker, hooks=hooks)
        await nursery.start(server.serve)
        servers.append(server)
        client = httpx.AsyncClient(timeout=30)
        clients.append(client)
        port = server.bound_port
        return Running(server, f"http://127.0.0.1:{port}{config.protocol.base_path}", port, client)

    yield factory
    for client in clients:
        await client.aclose()
    for server in servers:
        server.request_shutdown()
    for server in servers:
        with trio.move_on_after(15):
            await server.wait_stopped()


@pytest.fixture
async def srv(make_server: Factory) -> Running:
    return await make_server()


async def raw_request(port: int, data: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        chunks = []
        with trio.move_on_after(read_timeout):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)
