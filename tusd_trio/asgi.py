"""tusd-trio as an ASGI application, for Trio-based ASGI servers and frameworks.

::

    from tusd_trio.asgi import create_app
    from tusd_trio.config import Config

    app = create_app(Config(upload_dir="/srv/uploads"))

The app is built from the same :class:`~tusd_trio.config.Config` as the daemon and
serves requests with the same handler and protocol core.  Its long-lived tasks
(hook notifications, the file locker's stop-request watcher, the expiry janitor)
run from ASGI ``lifespan`` startup until shutdown; a framework that does not
forward lifespan events to mounted apps can run them itself with
``async with tus_app.running(): ...``.

Run it directly with hypercorn's Trio worker, configured by tusd-trio flags in
``TUSD_TRIO_ARGS``::

    TUSD_TRIO_ARGS="-upload-dir ./data -base-path /files/" \\
        hypercorn --worker-class trio --workers 0 tusd_trio.asgi:app

Mounted under a prefix (ASGI ``root_path``), URLs (``Location``, the health,
metrics and profiling paths) include the prefix.

**Trio only.**  The stores and lockers are written for Trio, so the app refuses
to run under asyncio servers (uvicorn, hypercorn's asyncio worker, daphne): the
lifespan startup fails with a message saying so, and a request gets a 500 with
the same message.

Not available over ASGI: request trailers (the ``checksum-trailer`` extension
answers that the announced trailer is missing), 1xx informational responses, the
``/events`` WebSocket, and the daemon's own connection limits and timeouts
(``-max-connections``, idle and header timeouts are the ASGI server's).  The body
read timeout (``-network-timeout``) still applies per chunk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import trio

from .cli.build import build_config
from .cli.flags import parse_args
from .config import Config
from .hooks.dispatcher import HookDispatcher
from .lockers.base import Locker
from .protocol import errors
from .protocol.messages import Headers, Request
from .server import (
    ASGIExchange,
    ConnectionClosedError,
    Runtime,
    TusHandler,
    build_runtime,
    refusal,
)
from .stores.base import Store

log = logging.getLogger("tusd_trio")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ENV_ARGS = "TUSD_TRIO_ARGS"
NOT_TRIO_MESSAGE = (
    "tusd-trio's ASGI app needs a Trio event loop (its stores and lockers are Trio "
    "code); run it with a Trio ASGI server, e.g. `hypercorn --worker-class trio`"
)
NOT_STARTED_MESSAGE = (
    "tusd-trio's ASGI app has not been started: the ASGI server or framework must "
    "send lifespan events to it, or wrap the host app's lifespan in "
    "`async with tus_app.running():`"
)
#: At most this many distinct mount prefixes get their own routing (each is small).
_MAX_MOUNTS = 32


def running_under_trio() -> bool:
    """Whether the caller runs in a Trio event loop."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


class TusASGIApp:
    """An ASGI 3 application serving the tus protocol from a :class:`Runtime`.

    ``runtime`` holds what the native daemon serves with (store, locker, hooks,
    supervisor, metrics); no socket is opened by the app itself.
    """

    def __init__(self, runtime: Runtime, *, attached: bool = False) -> None:
        """``attached``: the runtime's lifecycle is run by someone else (the native
        daemon's :meth:`Server.serve`); the app then serves at once and ignores
        lifespan events."""
        self.runtime = runtime
        self._handlers: dict[str, TusHandler] = {"": runtime.handler}
        self._attached = attached
        self._started = attached
        self._inflight = 0
        self._idle = trio.Event()
        self._idle.set()

    @property
    def started(self) -> bool:
        return self._started

    # --- lifecycle ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TusASGIApp]:
        """Run the background tasks for the duration of the block.

        On exit new uploads are refused, running body reads end with 503
        ``ERR_SERVER_SHUTDOWN`` (their bytes are kept), and the store is closed.
        """
        if not running_under_trio():
            raise RuntimeError(NOT_TRIO_MESSAGE)
        if self._started:
            raise RuntimeError("the tusd-trio ASGI app is already running")
        runtime = self.runtime
        runtime.state.accept_requests()
        try:
            async with trio.open_nursery() as nursery:
                await runtime.start_background(nursery)
                self._started = True
                try:
                    yield self
                finally:
                    self._started = False
                    runtime.state.begin_shutdown()
                    with trio.CancelScope(shield=True):
                        await self._drain()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await runtime.aclose()

    async def _drain(self) -> None:
        with trio.move_on_after(self.runtime.config.shutdown_timeout):
            while self._inflight:
                self.runtime.state.interrupt_all(errors.ServerShutdownError)
                with trio.move_on_after(0.05):
                    await self._idle.wait()

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            if self._attached:
                return
            await self._lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message.get("type") != "lifespan.startup":  # pragma: no cover - ASGI order
            return
        if not running_under_trio():
            log.error("%s", NOT_TRIO_MESSAGE)
            await send({"type": "lifespan.startup.failed", "message": NOT_TRIO_MESSAGE})
            return
        started = False
        try:
            async with self.running():
                started = True
                await send({"type": "lifespan.startup.complete"})
                while (await receive()).get("type") != "lifespan.shutdown":
                    pass
        except Exception as exc:
            if started:
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
            log.error("tusd-trio failed to start: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": f"tusd-trio: {exc}"})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not running_under_trio():
            log.error("%s", NOT_TRIO_MESSAGE)
            await _send_refusal(send, errors.TusError(NOT_TRIO_MESSAGE))
            return
        if not self._started:
            await _send_refusal(send, errors.ServerNotStartedError(NOT_STARTED_MESSAGE))
            return
        prefix, target = _split_target(scope)
        handler = self._handler_for(prefix)
        exchange = self._exchange(scope, receive, send, target)
        self._inflight += 1
        self._idle = trio.Event()
        try:
            await handler(exchange)
        except ConnectionClosedError:
            pass
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    def _exchange(self, scope: Scope, receive: Receive, send: Send, target: str) -> ASGIExchange:
        raw_headers = scope.get("headers") or []
        headers = Headers(
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in raw_headers
        )
        http_version = str(scope.get("http_version", "1.1"))
        length = (headers.get("content-length") or "").strip()
        if length:
            has_body = length != "0"
        else:
            has_body = "transfer-encoding" in headers or not http_version.startswith("1")
        client = scope.get("client")
        remote = f"{client[0]}:{client[1]}" if client else "unknown"
        request = Request(
            method=str(scope.get("method", "GET")),
            target=target,
            headers=headers,
            scheme="https" if scope.get("scheme") in ("https", "wss") else "http",
        )
        return ASGIExchange(
            request,
            has_body,
            receive,
            send,
            remote_addr=remote,
            network_timeout=self.runtime.config.network_timeout,
            http_version=http_version,
        )

    def _handler_for(self, prefix: str) -> TusHandler:
        handler = self._handlers.get(prefix)
        if handler is not None:
            return handler
        handler = self.runtime.handler.for_prefix(prefix)
        if len(self._handlers) < _MAX_MOUNTS:
            # Unbounded distinct prefixes would be a client-controlled cache.
            self._handlers[prefix] = handler
        return handler


def _split_target(scope: Scope) -> tuple[str, str]:
    """The mount prefix (``root_path`` without a trailing slash) and the full target.

    The target is the path as the client sent it (``raw_path`` when the server
    gives it), so percent-encoding reaches the protocol core untouched.  Both ASGI
    conventions for mounted apps are accepted: ``path`` with or without the
    ``root_path`` in front.
    """
    root = str(scope.get("root_path") or "").rstrip("/")
    path = str(scope.get("path") or "/")
    raw = scope.get("raw_path")
    if raw:
        full = bytes(raw).decode("latin-1")
        if root and not full.startswith(root + "/") and full != root:
            full = root + full
    else:
        if root and not (path == root or path.startswith(root + "/")):
            path = root + path
        full = quote(path, safe="/:@!$&'()*+,;=-._~")
    query = scope.get("query_string") or b""
    if query:
        full += "?" + bytes(query).decode("latin-1")
    return root, full


async def _send_refusal(send: Send, error: errors.TusError) -> None:
    """A plain-text answer with ``error``'s code, before any handler runs."""
    headers, body = refusal(error)
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(name.lower(), value) for name, value in headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def create_app(
    config: Config,
    *,
    store: Store | None = None,
    locker: Locker | None = None,
    hooks: HookDispatcher | None = None,
) -> TusASGIApp:
    """An ASGI app for ``config``; ``store``/``locker``/``hooks`` default as in the daemon.

    Building it does no I/O; the store's start-up check and the background tasks
    run at ASGI lifespan startup (or in :meth:`TusASGIApp.running`).
    """
    if config.metrics_listen:
        # The app opens no socket; the metrics would be served nowhere.
        raise ValueError(
            "-metrics-listen is a daemon flag: an ASGI app serves the metrics on its own "
            "routes (use -operator-endpoints-public or an admin credential)"
        )
    # ASGI carries no request trailers: checksum-trailer is neither offered nor accepted.
    config = replace(config, protocol=replace(config.protocol, request_trailers=False))
    return TusASGIApp(build_runtime(config, store=store, locker=locker, hooks=hooks))


def config_from_args(args: str | list[str]) -> Config:
    """A :class:`Config` from tusd-trio command-line flags (a string is split like a shell)."""
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    return build_config(parse_args(argv))


class _EnvApp:
    """``tusd_trio.asgi:app``: built from ``$TUSD_TRIO_ARGS`` on first use."""

    def __init__(self) -> None:
        self._app: TusASGIApp | None = None

    def get(self) -> TusASGIApp:
        if self._app is None:
            config = config_from_args(os.environ.get(ENV_ARGS, ""))
            if not (config.s3 or config.gcs or config.azure):
                os.makedirs(config.upload_dir, mode=config.dir_perms, exist_ok=True)
            self._app = create_app(config)
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            app = self.get()
        except Exception as exc:
            if scope.get("type") == "lifespan":
                await receive()
                message = f"tusd-trio: cannot build the app from ${ENV_ARGS}: {exc}"
                log.error("%s", message)
                await send({"type": "lifespan.startup.failed", "message": message})
                return
            raise
        await app(scope, receive, send)


#: The app for ``hypercorn --worker-class trio tusd_trio.asgi:app`` (flags in $TUSD_TRIO_ARGS).
app = _EnvApp()
