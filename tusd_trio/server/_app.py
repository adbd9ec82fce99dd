"""The daemon's server: listeners, accepting connections, graceful shutdown.

What it serves with (store, locker, hooks, handler, ...) is a
:class:`~._runtime.Runtime`, built by :func:`~._runtime.build_runtime`.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from dataclasses import replace
from typing import Any

import trio

from .._listening import LISTENING_MESSAGE, remove_stale_socket, tls_enabled
from .._startup import startup_lines
from .._values import parse_listen_address
from ..config import Config
from ..hooks.dispatcher import HookDispatcher
from ..lockers.base import Locker
from ..protocol.errors import ServerShutdownError, TooManyConnectionsError
from ..stores.base import Store
from ._connections import Connection, ConnectionDispatcher
from ._exchange import TransportSettings
from ._framing import raw_refusal
from ._metrics import share_metrics
from ._runtime import Runtime, build_runtime
from ._streams import close_gracefully
from ._tls import TLSConfigError, context_from_config, wrap_stream

log = logging.getLogger("tusd_trio")


class Server:
    """Listens, accepts connections and shuts down gracefully; ``runtime`` serves them."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        locker: Locker | None = None,
        hooks: HookDispatcher | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.config = config
        #: TLS for every connection when -tls-certificate and -tls-key are set.
        self.ssl_context: ssl.SSLContext | None = None
        scheme = "http"
        if tls_enabled(config.tls_certificate, config.tls_key):
            if config.enable_h2c:
                raise TLSConfigError(
                    "-enable-h2c cannot be combined with TLS "
                    "(HTTP/2 over TLS is negotiated with ALPN)"
                )
            self.ssl_context = context_from_config(config)
            scheme = "https"
        self.scheme = scheme
        if runtime is None:
            runtime = build_runtime(config, store=store, locker=locker, hooks=hooks)
        self.runtime = runtime
        self.state = runtime.state
        self.dispatcher = ConnectionDispatcher(
            settings=TransportSettings(
                network_timeout=config.network_timeout,
                write_timeout=config.write_timeout,
                idle_timeout=config.idle_timeout,
                max_header_size=config.max_header_size,
                request_completion_timeout=config.request_completion_timeout,
                scheme=scheme,
            ),
            state=runtime.state,
            handler=runtime.handler,
            events=runtime.events,
            enable_h2c=config.enable_h2c,
            events_path=config.events_path if config.expose_events else None,
            http1_parser=config.http1_parser,
        )
        self.connections: set[Connection] = set()
        self.listeners: list[trio.SocketListener] = []
        #: The -metrics-listen listener (operator endpoints only), if any.
        self.operator_listeners: list[trio.SocketListener] = []
        self.urls: list[str] = []
        self._shutdown = trio.Event()
        self._stopped = trio.Event()

    @property
    def shutting_down(self) -> bool:
        return self.state.shutting_down

    # --- lifecycle ---------------------------------------------------------------

    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def serve(
        self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        runtime = self.runtime
        try:
            async with trio.open_nursery() as root:
                await runtime.start_background(root)
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
                        root.start_soon(share_metrics, runtime.metrics_source)
                    task_status.started(self)
                    await self._shutdown.wait()
                    log.info("Received interrupt signal. Shutting down tusd-trio...")
                    self.state.begin_shutdown()
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
            await runtime.aclose()
            log.info("Shutdown completed. Goodbye!")
        finally:
            self._stopped.set()
            if self.config.unix_sock:
                try:
                    os.unlink(self.config.unix_sock)
                except OSError:
                    pass

    def _stop_idle_and_interrupt(self) -> None:
        self.state.interrupt_all(ServerShutdownError)
        self.state.bound_settling()
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
            # The settings in force (the store's extensions, the metrics path).
            protocol = self.runtime.protocol
            shown = replace(self.config, protocol=protocol)
            for line in startup_lines(shown, extensions=",".join(protocol.extensions())):
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
        connection: Connection | None
        if operator:
            connection = self.dispatcher.operator_connection(stream, remote)
            handler = self.runtime.operator.serve_listener
        else:
            wrapped: trio.abc.Stream = stream
            if self.ssl_context is not None:
                wrapped = wrap_stream(stream, self.ssl_context)
            # The TLS handshake (ALPN) or the h2c preface sniff, in this task.
            connection = await self.dispatcher.open(wrapped, remote)
            if connection is None:
                return
            handler = self.runtime.handler
        metrics = self.runtime.metrics
        self.connections.add(connection)
        metrics.connections_open += 1
        try:
            with trio.CancelScope() as scope:
                connection.cancel_scope = scope
                await connection.serve(handler)
        except Exception:
            log.exception("connection from %s failed", remote)
        finally:
            self.connections.discard(connection)
            metrics.connections_open -= 1


async def _refuse(stream: trio.SocketStream) -> None:
    """-max-connections: a 503 before anything is read, then close."""
    with trio.move_on_after(2):
        try:
            await stream.send_all(raw_refusal(TooManyConnectionsError()))
        except (trio.BrokenResourceError, OSError):
            pass
    with trio.CancelScope(shield=True):
        await close_gracefully(stream, linger=True)


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
