"""The one place the tests build a tusd-trio server and run it in process.

Every test that needs a server in its own Trio loop goes through here: the
``make_server`` / ``srv`` fixtures (tests/conftest.py), the TLS and hostile-input
tests, the fuzz model's threaded server and the ASGI app under hypercorn.  When the
way a server is put together changes, :func:`build_server` and
:func:`build_asgi_app` are the only code to change.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import Framework

from tusd_trio.asgi import TusASGIApp, create_app
from tusd_trio.config import Config
from tusd_trio.hooks.dispatcher import HookDispatcher
from tusd_trio.lockers.base import Locker
from tusd_trio.protocol.config import ProtocolConfig
from tusd_trio.server import Server
from tusd_trio.stores.base import Store

from .daemon import TEST_HTTP1_PARSER
from .tus import OCTET, TUS

#: Settings of every test server unless a test says otherwise: loopback, a free port,
#: quiet logs, the parser above.
TEST_SETTINGS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "verbose": False,
    "show_startup_logs": False,
    "http1_parser": TEST_HTTP1_PARSER,
}


def make_config(
    upload_dir: Path, protocol: dict[str, Any] | None = None, **overrides: Any
) -> Config:
    """A :class:`Config` with :data:`TEST_SETTINGS`, ``upload_dir`` and ``overrides``;
    ``protocol`` holds :class:`ProtocolConfig` fields."""
    settings: dict[str, Any] = {**TEST_SETTINGS, "upload_dir": str(upload_dir), **overrides}
    return Config(protocol=ProtocolConfig(**(protocol or {})), **settings)


def build_server(
    config: Config,
    *,
    store: Store | None = None,
    locker: Locker | None = None,
    hooks: HookDispatcher | None = None,
) -> Server:
    """The server for ``config`` (not started); store, locker and hooks replace the ones
    the configuration names."""
    return Server(config, store=store, locker=locker, hooks=hooks)


def build_asgi_app(config: Config) -> TusASGIApp:
    """The ASGI app for ``config`` (not started: its host's lifespan starts it)."""
    return create_app(config)


def server_url(server: Server) -> str:
    """The creation URL of a started server."""
    return f"http://127.0.0.1:{server.bound_port}{server.config.protocol.base_path}"


@dataclasses.dataclass
class Running:
    """A started server, its creation URL and an HTTP client closed with it."""

    server: Server
    url: str
    port: int
    client: httpx.AsyncClient
    upload_dir: Path

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
        return str(r.headers["location"])

    async def patch(
        self, location: str, offset: int, data: bytes, **headers: str
    ) -> httpx.Response:
        hdrs = dict(OCTET)
        hdrs["Upload-Offset"] = str(offset)
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        return await self.client.patch(location, headers=hdrs, content=data)

    async def head(self, location: str) -> httpx.Response:
        return await self.client.head(location, headers=TUS)

    def path_of(self, location: str) -> str:
        """The request target of an upload URL on this server."""
        return self.server.config.protocol.base_path + location.rsplit("/", 1)[1]


class ServerFactory(Protocol):
    """``await make_server(protocol={...}, store=..., locker=..., hooks=..., **config)``"""

    async def __call__(
        self,
        protocol: dict[str, Any] | None = None,
        *,
        store: Store | None = None,
        locker: Locker | str | None = None,
        hooks: HookDispatcher | None = None,
        **overrides: Any,
    ) -> Running: ...


class ServerPool:
    """Servers started in one nursery, all shut down by :func:`server_pool`."""

    def __init__(self, nursery: trio.Nursery, upload_dir: Path) -> None:
        self.nursery = nursery
        self.upload_dir = upload_dir
        self.servers: list[Server] = []
        self.clients: list[httpx.AsyncClient] = []

    async def start(
        self,
        protocol: dict[str, Any] | None = None,
        *,
        store: Store | None = None,
        locker: Locker | str | None = None,
        hooks: HookDispatcher | None = None,
        **overrides: Any,
    ) -> Running:
        """Start a server on a free loopback port; ``locker`` is a locker or the name of
        one (the ``-locker`` flag), the other keywords are :class:`Config` fields."""
        if isinstance(locker, str):
            overrides["locker"] = locker
            locker = None
        overrides.setdefault("upload_dir", str(self.upload_dir))
        config = make_config(Path(overrides.pop("upload_dir")), protocol, **overrides)
        server = build_server(config, store=store, locker=locker, hooks=hooks)
        await self.nursery.start(server.serve)
        self.servers.append(server)
        client = httpx.AsyncClient(timeout=30)
        self.clients.append(client)
        return Running(
            server, server_url(server), server.bound_port, client, Path(config.upload_dir)
        )

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
        for server in self.servers:
            server.request_shutdown()
        for server in self.servers:
            with trio.move_on_after(15):
                await server.wait_stopped()


@asynccontextmanager
async def server_pool(nursery: trio.Nursery, upload_dir: Path) -> AsyncIterator[ServerPool]:
    """A :class:`ServerPool` whose servers (upload directory ``upload_dir`` unless a test
    gives another) are shut down on exit."""
    pool = ServerPool(nursery, upload_dir)
    try:
        yield pool
    finally:
        await pool.aclose()


class ThreadedServer:
    """A server in a thread with a Trio loop of its own, for blocking test code
    (hypothesis state machines); ``start()`` returns its creation URL."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: Server | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tusd-trio", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            self.server = build_server(self.config)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.server.serve)
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> str:
        self._thread.start()
        assert self._ready.wait(20), "server did not start"
        assert self.server is not None and self.error is None, self.error
        return server_url(self.server)

    def stop(self) -> None:
        if self.server is not None and self.token is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self.server.request_shutdown, trio_token=self.token)
        self._thread.join(30)
        assert not self._thread.is_alive(), "server did not stop"
        assert self.error is None, self.error


# --- the ASGI app under a real hypercorn (trio worker) ---------------------------------------


@dataclasses.dataclass
class Hosted:
    """An ASGI app served by hypercorn on a free loopback port."""

    app: TusASGIApp
    port: int
    shutdown: trio.Event
    done: trio.Event

    def url(self, path: str = "/files/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class AsgiHostFactory(Protocol):
    """``await host(protocol={...}, root_path="", wrap=None, **config)``"""

    async def __call__(
        self,
        *,
        protocol: dict[str, Any] | None = None,
        root_path: str = "",
        wrap: Callable[[TusASGIApp], Framework] | None = None,
        **overrides: Any,
    ) -> Hosted: ...


class AsgiHostPool:
    """ASGI apps hosted in one nursery, all stopped by :func:`asgi_host_pool`."""

    def __init__(self, nursery: trio.Nursery, upload_dir: Path) -> None:
        self.nursery = nursery
        self.upload_dir = upload_dir
        self.hosted: list[Hosted] = []

    async def start(
        self,
        *,
        protocol: dict[str, Any] | None = None,
        root_path: str = "",
        wrap: Callable[[TusASGIApp], Framework] | None = None,
        **overrides: Any,
    ) -> Hosted:
        """Host the app of a test configuration (``wrap`` puts middleware around it)."""
        settings: dict[str, Any] = {
            "upload_dir": str(self.upload_dir),
            "verbose": False,
            "show_startup_logs": False,
            **overrides,
        }
        self.upload_dir.mkdir(exist_ok=True)
        app = build_asgi_app(Config(protocol=ProtocolConfig(**(protocol or {})), **settings))
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.root_path = root_path
        config.graceful_timeout = 5
        config.accesslog = None
        shutdown = trio.Event()
        done = trio.Event()
        # TusASGIApp takes any scope mapping; hypercorn's type names its own TypedDicts.
        served: Framework = wrap(app) if wrap else app  # type: ignore[assignment]

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            try:
                await hypercorn_serve(
                    served, config, shutdown_trigger=shutdown.wait, task_status=task_status
                )
            finally:
                done.set()

        binds: list[str] = await self.nursery.start(run)
        port = int(binds[0].rsplit(":", 1)[1])
        item = Hosted(app, port, shutdown, done)
        self.hosted.append(item)
        return item

    async def aclose(self) -> None:
        for item in self.hosted:
            item.shutdown.set()
        for item in self.hosted:
            with trio.move_on_after(15):
                await item.done.wait()


@asynccontextmanager
async def asgi_host_pool(nursery: trio.Nursery, upload_dir: Path) -> AsyncIterator[AsgiHostPool]:
    pool = AsgiHostPool(nursery, upload_dir)
    try:
        yield pool
    finally:
        await pool.aclose()
