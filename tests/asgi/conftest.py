"""The ASGI app served by a real hypercorn (trio worker) in the test's Trio loop."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from tusd_trio.asgi import TusASGIApp, create_app
from tusd_trio.config import Config
from tusd_trio.protocol.config import ProtocolConfig


@dataclasses.dataclass
class Hosted:
    app: TusASGIApp
    port: int
    shutdown: trio.Event
    done: trio.Event

    def url(self, path: str = "/files/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def host(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    hosted: list[Hosted] = []

    async def factory(
        asgi: Callable[..., Any] | None = None,
        *,
        protocol: dict[str, Any] | None = None,
        root_path: str = "",
        wrap: Callable[[TusASGIApp], Any] | None = None,
        **overrides: Any,
    ) -> Hosted:
        settings: dict[str, Any] = {
            "upload_dir": str(tmp_path / "data"),
            "verbose": False,
            "show_startup_logs": False,
        }
        settings.update(overrides)
        (tmp_path / "data").mkdir(exist_ok=True)
        app = create_app(Config(protocol=ProtocolConfig(**(protocol or {})), **settings))
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.root_path = root_path
        config.graceful_timeout = 5
        config.accesslog = None
        shutdown = trio.Event()
        done = trio.Event()

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await serve(
                    wrap(app) if wrap else app,  # type: ignore[arg-type]
                    config,
                    shutdown_trigger=shutdown.wait,
                    task_status=task_status,
                )
            finally:
                done.set()

        binds = await nursery.start(run)
        port = int(binds[0].rsplit(":", 1)[1])
        item = Hosted(app, port, shutdown, done)
        hosted.append(item)
        return item

    yield factory
    for item in hosted:
        item.shutdown.set()
    for item in hosted:
        with trio.move_on_after(15):
            await item.done.wait()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c
