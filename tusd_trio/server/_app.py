"""The server: listeners, connections, the supervisor and graceful shutdown."""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import ssl
import stat
from dataclasses import replace
from typing import Any

import trio

from .._startup import startup_lines
from ..auth import Authenticator
from ..config import Config
from ..hooks import FileHookBackend, HookBackend, HookDispatcher, PluginHookBackend
from ..lockers.base import Locker
from ..lockers.factory import build_locker
from ..protocol.core import cors_origin_warning
from ..protocol.errors import ServerShutdownError
from ..stores.base import ConsistencyCheckingStore, Store
from ..stores.factory import build_store
from ..stores.file import FileStore
from ._events import EventStream
from ._h2 import H2Connection, prepare_connection
from ._handler import Interrupter, TusHandler
from ._http import Handler, HTTPConnection, _date, close_gracefully
from ._janitor import Janitor
from ._metrics import share_metrics
from ._operator import LISTENING_MESSAGE, OperatorEndpoints, parse_listen_address
from ._supervisor import Supervisor
from ._timed_locker import TimedLocker
from ._tls import TLSConfigError, context_from_config, tls_enabled, wrap_stream

log = logging.getLogger("tusd_trio")


class Server:
    """Everything one daemon process shares between its connections."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        locker: Locker | None = None,
        hooks: HookDispatcher | None = None,
    ) -> None:
        self.config = config
        if store is None:
            store = build_store(config.store_settings())
        self.store: Store = store
        # What the store can do decides what is advertised (Tus-Extension) and allowed.
        config.protocol = replace(config.protocol, capabilities=store.capabilities)
        if locker is None:
            upload_dir = store.directory if isinstance(store, FileStore) else None
            locker = build_locker(config.locker_settings(), upload_dir=upload_dir)
        self.locker = TimedLocker(locker)
        self.scheme = "http"
        #: TLS for every connection when -tls-certificate and -tls-key are set.
        self.ssl_context: ssl.SSLContext | None = None
        if tls_enabled(config.tls_certificate, config.tls_key):
            if config.enable_h2c:
                raise TLSConfigError(
                    "-enable-h2c cannot be combined with TLS "
                    "(HTTP/2 over TLS is negotiated with ALPN)"
                )
            self.ssl_context = context_from_config(config)
            self.scheme = "https"
        self.shutting_down = False
        #: Connections reading a body with a large receive buffer (see _http.py).
        self.big_buffers = 0
        self.active_interrupters: set[Interrupter] = set()
        #: Shielded scopes of requests saving their bytes (bounded at shutdown).
        self.settling: set[trio.CancelScope] = set()
        #: Requests streaming a body into the store right now (bytes-in-flight gauge).
        self.receiving: set[Any] = set()
        self.connections: set[HTTPConnection | H2Connection] = set()
        self.auth = Authenticator(replace(config.auth, base_path=config.protocol.base_path))
        cors = config.protocol.cors
        if config.auth.api_keys_file and cors is not None:
            # Browsers may only send the API key header if the preflight allows it.
            header = config.auth.api_key_header
            if header.lower() not in cors.allow_headers.lower():
                cors = replace(cors, allow_headers=f"{cors.allow_headers}, {header}")
                config.protocol = replace(config.protocol, cors=cors)
        #: Where the metrics are served: on the upload port, or (with -metrics-listen)
        #: only on the operator listener.
        self.metrics_path = config.protocol.metrics_path
        if config.metrics_listen:
            config.protocol = replace(config.protocol, metrics_path="")
        if config.listen_fd < 0:  # not once per worker process
            warning = cors_origin_warning(config.protocol.cors)
            if warning is not None:
                log.warning("%s", warning)
        self.events = EventStream(self)
        self.supervisor = Supervisor(self)
        self.supervisor.hooks = hooks if hooks is not None else build_hooks(config)
        #: /metrics, /health and /health/ready, and who sees their details (_operator.py).
        self.operator = OperatorEndpoints(self)
        self.janitor = Janitor(self)
        self.handler = TusHandler(self)
        self.listeners: list[trio.SocketListener] = []
        #: The -metrics-listen listener (operator endpoints only), if any.
        self.operator_listeners: list[trio.SocketListener] = []
        self.urls: list[str] = []
        self._shutdown = trio.Event()
        self._stopped = trio.Event()

    # --- lifecycle ---------------------------------------------------------------

    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def start_background(self, nursery: trio.Nursery) -> None:
        """Start the supervisor (hooks, janitor, lock tasks) in ``nursery`` and run the
        store's start-up consistency check; the daemon and the ASGI app share this."""
        await nursery.start(self.supervisor.run)
        if isinstance(self.store, ConsistencyCheckingStore):
            for message in await self.store.check_consistency(self.config.orphan_age):
                log.info("%s", message)

    async def serve(
        self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as root:
                await self.start_background(root)
                self.listeners = await self._open_listeners()
                if self.config.metrics_listen:
                    self.operator_listeners = [await _operator_listener(self.config)]
                async with trio.open_nursery() as connections:
                    accept_scope = trio.CancelScope()

                    async def accept_all() -> None:
                        with accept_scope:
                            async with trio.open_nursery() as acceptors:
                                for listener in self.listeners:
                                    acceptors.start_soon(self._accept_loop, listener, connections)
                                for listener in self.operator_listeners:
                                    acceptors.start_soon(
                                        self._accept_loop, listener, connections, True
                                    )

                    root.start_soon(accept_all)
                    self._announce()
                    if self.config.metrics_dir:
                        # A worker process (-workers N): publish its metrics for the others.
                        root.start_soon(share_metrics, self)
                    task_status.started(self)
                    await self._shutdown.wait()
                    log.info("Received interrupt signal. Shutting down tusd-trio...")
                    self.shutting_down = True
                    accept_scope.cancel()
                    for listener in [*self.listeners, *self.operator_listeners]:
                        with trio.CancelScope(shield=True):
                            await listener.aclose()
                    self._stop_idle_and_interrupt()
                    with trio.move_on_after(self.config.shutdown_timeout) as grace:
                        while self.connections:
                            await trio.sleep(0.02)
                            self._stop_idle_and_interrupt()
                    if grace.cancelled_caught:
                        log.warning("Shutdown timeout exceeded. Exiting immediately!")
                    connections.cancel_scope.cancel()
                root.cancel_scope.cancel()
            await self.supervisor.aclose()
            with trio.CancelScope(shield=True):
                await self.store.aclose()
            log.info("Shutdown completed. Goodbye!")
        finally:
            self._stopped.set()
            if self.config.unix_sock:
                try:
                    os.unlink(self.config.unix_sock)
                except OSError:
                    pass

    def _stop_idle_and_interrupt(self) -> None:
        for interrupter in list(self.active_interrupters):
            interrupter.interrupt(ServerShutdownError())
        latest = trio.current_time() + self.config.request_completion_timeout
        for scope in list(self.settling):
            scope.deadline = min(scope.deadline, latest)
        for connection in list(self.connections):
            if connection.idle and connection.cancel_scope is not None:
                connection.cancel_scope.cancel()

    async def _open_listeners(self) -> list[trio.SocketListener]:
        config = self.config
        if config.listen_fd >= 0:
            # A worker process: the supervisor bound the socket and passed it down.
            sock = trio.socket.fromfd(config.listen_fd, socket.AF_INET, socket.SOCK_STREAM)
            family = sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
            if family != socket.AF_INET:
                sock.close()
                sock = trio.socket.fromfd(config.listen_fd, family, socket.SOCK_STREAM)
            os.close(config.listen_fd)
            await trio.lowlevel.checkpoint()
            return [trio.SocketListener(sock)]
        if config.unix_sock:
            return [await _unix_listener(config.unix_sock)]
        return await trio.open_tcp_listeners(config.port, host=config.host or None, backlog=1024)

    def _announce(self) -> None:
        if self.config.listen_fd >= 0:
            # A worker process (-workers N): the parent printed the start-up lines once.
            log.info("Worker process %d is serving.", os.getpid())
            return
        base = self.config.protocol.base_path
        self.urls = []
        if not self.config.unix_sock:
            for listener in self.listeners[:1]:
                sockname: Any = listener.socket.getsockname()
                host, port = sockname[0], sockname[1]
                if ":" in host:
                    host = f"[{host}]"
                self.urls.append(f"{self.scheme}://{host}:{port}{base}")
        if self.config.show_startup_logs:
            extensions = ",".join(self.config.protocol.extensions())
            for line in startup_lines(self.config, extensions=extensions):
                log.info("%s", line)
        # Printed even with -show-startup-logs=false: a harness using -port 0 needs it.
        for url in self.urls:
            log.info("You can now upload files to: %s", url)
        for listener in self.operator_listeners:
            name: Any = listener.socket.getsockname()
            host = f"[{name[0]}]" if ":" in name[0] else name[0]
            log.info(LISTENING_MESSAGE, f"{host}:{name[1]}")

    @property
    def operator_port(self) -> int:
        """The port of the -metrics-listen listener (0 without one)."""
        for listener in self.operator_listeners:
            return int(listener.socket.getsockname()[1])
        return 0

    @property
    def bound_port(self) -> int:
        for listener in self.listeners:
            name: Any = listener.socket.getsockname()
            if isinstance(name, tuple):
                return int(name[1])
        return 0

    # --- connections ------------------------------------------------------------------

    async def _accept_loop(
        self, listener: trio.SocketListener, nursery: trio.Nursery, operator: bool = False
    ) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed (%s); retrying shortly", exc)
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(self._serve_connection, stream, operator)

    async def _serve_connection(self, stream: trio.SocketStream, operator: bool = False) -> None:
        try:
            peer: Any = stream.socket.getpeername()
            remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        except OSError:
            remote = "unknown"
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        except OSError:
            pass
        limit = self.config.max_connections
        if limit and len(self.connections) >= limit:
            if self.ssl_context is None:
                await _refuse(stream)
            else:  # no plaintext answer on a TLS port
                with trio.CancelScope(shield=True):
                    await close_gracefully(stream, linger=False)
            return
        connection: HTTPConnection | H2Connection | None
        handler: Handler = self.handler
        if operator:
            # Plain HTTP/1.1 (what Prometheus and probes speak), operator endpoints only.
            connection = HTTPConnection(stream, self, remote, operator=True)
            handler = self.operator.serve_listener
        elif self.ssl_context is not None or self.config.enable_h2c:
            # The TLS handshake (ALPN) or the h2c preface sniff, in this task.
            wrapped: trio.abc.Stream = stream
            if self.ssl_context is not None:
                wrapped = wrap_stream(stream, self.ssl_context)
            connection = await prepare_connection(wrapped, self, remote)
            if connection is None:
                return
        else:
            connection = HTTPConnection(stream, self, remote)
        self.connections.add(connection)
        self.supervisor.metrics.connections_open += 1
        try:
            with trio.CancelScope() as scope:
                connection.cancel_scope = scope
                await connection.serve(handler)
        except Exception:
            log.exception("connection from %s failed", remote)
        finally:
            self.connections.discard(connection)
            self.supervisor.metrics.connections_open -= 1


def build_hooks(config: Config) -> HookDispatcher | None:
    """The hook dispatcher for the configured backends (several may be set at once)."""
    backends: list[HookBackend] = []
    if config.hooks_dir:
        # No limit of its own: blocking hooks are limited by the dispatcher
        # (-hooks-blocking-timeout); notification hooks may run as long as they need.
        backends.append(FileHookBackend(config.hooks_dir, timeout=math.inf))
    if config.hooks_http:
        from ..hooks.http import HTTPHookBackend

        backends.append(
            HTTPHookBackend(
                config.hooks_http,
                retry=config.hooks_http_retry,
                backoff=config.hooks_http_backoff,
                timeout=config.hooks_http_timeout,
                size_limit=config.hooks_http_size_limit,
                forward_headers=config.hooks_http_forward_headers,
                skip_verify=config.hooks_http_skip_verify,
            )
        )
    if config.hooks_grpc:
        try:
            from ..hooks.grpc import GRPCHookBackend
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("-hooks-grpc needs grpcio: pip install 'tusd-trio[grpc]'") from exc
        backends.append(
            GRPCHookBackend(
                config.hooks_grpc,
                retry=config.hooks_grpc_retry,
                backoff=config.hooks_grpc_backoff,
                timeout=config.hooks_grpc_timeout,
                secure=config.hooks_grpc_secure,
                server_ca=config.hooks_grpc_server_tls_certificate or None,
                client_cert=config.hooks_grpc_client_tls_certificate or None,
                client_key=config.hooks_grpc_client_tls_key or None,
                forward_headers=config.hooks_grpc_forward_headers,
            )
        )
    if config.hooks_plugin:
        backends.append(PluginHookBackend(config.hooks_plugin))
    if not backends:
        return None
    return HookDispatcher(
        backends, config.hooks_enabled_events, blocking_timeout=config.hooks_blocking_timeout
    )


async def _refuse(stream: trio.SocketStream) -> None:
    body = b"ERR_TOO_MANY_CONNECTIONS: the server has too many open connections\n"
    raw = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nDate: " + _date.get() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with trio.move_on_after(2):
        try:
            await stream.send_all(raw)
        except (trio.BrokenResourceError, OSError):
            pass
    with trio.CancelScope(shield=True):
        await close_gracefully(stream, linger=True)


def remove_stale_socket(path: str) -> None:
    """Remove a UNIX socket file left by an earlier run; refuse any other file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    os.unlink(path)


async def _operator_listener(config: Config) -> trio.SocketListener:
    """The -metrics-listen socket.  Worker processes (-workers) each bind it with
    SO_REUSEPORT: whichever answers a scrape reports the totals of all of them."""
    host, port = parse_listen_address(config.metrics_listen)
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if config.listen_fd >= 0 and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _unix_listener(path: str) -> trio.SocketListener:
    remove_stale_socket(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1024)
    return trio.SocketListener(sock)


async def serve(
    config: Config,
    *,
    store: Store | None = None,
    locker: Locker | None = None,
    hooks: HookDispatcher | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a tusd-trio server until :meth:`Server.request_shutdown` is called.

    With ``nursery.start(serve, config)`` the caller gets the running
    :class:`Server` back once it listens.
    """
    server = Server(config, store=store, locker=locker, hooks=hooks)
    await server.serve(task_status=task_status)
