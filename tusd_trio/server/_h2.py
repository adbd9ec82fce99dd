"""HTTP/2 on the native server's port, with the ``h2`` library.

A connection becomes HTTP/2 (:func:`prepare_connection`) when TLS ALPN selected
``h2``, or (with ``-enable-h2c``) when a cleartext connection starts with the
HTTP/2 preface (prior knowledge), or after an HTTP/1.1 ``Upgrade: h2c``
(:func:`upgrade_h2c`, called by the HTTP/1.1 loop).
Every stream is one :class:`H2Exchange` served by the same
:class:`~tusd_trio.server._handler.TusHandler` as HTTP/1.1.

Memory is bounded by HTTP/2 flow control: we advertise a receive window of
:data:`STREAM_WINDOW` per stream and :data:`CONNECTION_WINDOW` per connection, and
give window back only once the handler took the bytes, so a connection buffers at
most ``CONNECTION_WINDOW`` bytes of request bodies however many streams it opens
(plus at most :data:`MAX_STREAMS` response chunks being sent).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11
import trio

from ..protocol import errors
from ..protocol.messages import Headers, Request, Response
from ._http import (
    ConnectionClosedError,
    Exchange,
    HTTPConnection,
    _encode_headers,
    close_gracefully,
    pump_chunks,
)

if TYPE_CHECKING:
    from ._app import Server
    from ._handler import TusHandler

log = logging.getLogger("tusd_trio.http")

#: The client connection preface of HTTP/2 (RFC 9113 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Receive window per stream and per connection (bytes of request bodies in flight).
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 4 * 1024 * 1024
#: Largest DATA frame we accept (the client's frames; 16 KiB is the protocol minimum).
MAX_FRAME = 256 * 1024
MAX_STREAMS = 100
RECEIVE_SIZE = 256 * 1024
#: Largest DATA frame we send.
SEND_CHUNK = 64 * 1024
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te"}
)


class H2Connection:
    """One HTTP/2 connection: a reader task, the streams' handler tasks, a send lock."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        server: Server,
        remote_addr: str,
        handler: TusHandler | None = None,
        *,
        scheme: str = "http",
        initial: bytes = b"",
        upgrade: tuple[bytes, Request] | None = None,
    ) -> None:
        self.stream = stream
        self._initial = initial
        self._upgrade = upgrade
        self.server = server
        self.remote_addr = remote_addr
        self.handler: Callable[[Any], Awaitable[None]] = (
            handler if handler is not None else server.handler
        )
        self.scheme = scheme
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=False, header_encoding=None, validate_inbound_headers=True
            )
        )
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: server.config.max_header_size,
            },
        )
        # Frames up to our advertised size may arrive in the same read as the
        # client's acknowledgement of our settings: accept them from the start.
        self.conn.max_inbound_frame_size = MAX_FRAME
        self.streams: dict[int, H2Exchange] = {}
        self._send_lock = trio.Lock()
        self._window_changed = trio.Event()
        self.closed = False
        #: For the server's graceful shutdown: no stream is being served.
        self.idle = True
        self.cancel_scope: trio.CancelScope | None = None
        self.linger = False

    # --- sending -------------------------------------------------------------------

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if not data:
            return
        async with self._send_lock:
            with trio.move_on_after(self.server.config.write_timeout) as scope:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self.closed = True
                    raise ConnectionClosedError(reset=True) from exc
            if scope.cancelled_caught:
                self.closed = True
                raise ConnectionClosedError(reset=True)

    async def send_data(self, stream_id: int, data: bytes | memoryview, end: bool) -> None:
        view = memoryview(data)
        while True:
            if self.closed:
                raise ConnectionClosedError(reset=True)
            exchange = self.streams.get(stream_id)
            if exchange is None or exchange.reset:
                raise ConnectionClosedError(reset=True)
            try:
                window = self.conn.local_flow_control_window(stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                raise ConnectionClosedError(reset=True) from None
            size = min(window, self.conn.max_outbound_frame_size, SEND_CHUNK, len(view))
            if size <= 0 and len(view):
                event = self._window_changed
                with trio.move_on_after(self.server.config.write_timeout) as scope:
                    await event.wait()
                if scope.cancelled_caught:
                    raise ConnectionClosedError(reset=True)
                continue
            last = size == len(view)
            try:
                self.conn.send_data(stream_id, bytes(view[:size]), end_stream=end and last)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                raise ConnectionClosedError(reset=True) from None
            view = view[size:]
            await self.flush()
            if last:
                return

    def _wake_senders(self) -> None:
        self._window_changed.set()
        self._window_changed = trio.Event()

    # --- the loop --------------------------------------------------------------------

    async def serve(self, handler: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """Serve the connection until the client or the server ends it.

        ``initial`` (constructor): bytes already read from the stream (the preface).
        ``upgrade``: the HTTP2-Settings value and the request of an h2c upgrade
        (answered on stream 1; its body, if any, was already consumed).
        """
        if handler is not None:
            self.handler = handler
        initial, upgrade = self._initial, self._upgrade
        self._initial = b""
        try:
            async with trio.open_nursery() as nursery:
                if upgrade is not None:
                    settings, request = upgrade
                    self.conn.initiate_upgrade_connection(settings)
                    self._start_stream(nursery, 1, request, ended=True)
                else:
                    self.conn.initiate_connection()
                self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
                await self.flush()
                try:
                    await self._read_loop(nursery, initial)
                except ConnectionClosedError:
                    pass
                self.closed = True
                for exchange in self.streams.values():
                    exchange.abort()
                self._wake_senders()
                nursery.cancel_scope.deadline = (
                    trio.current_time() + self.server.config.request_completion_timeout
                )
        finally:
            self.closed = True
            with trio.CancelScope(shield=True):
                await close_gracefully(self.stream, linger=False)

    async def _read_loop(self, nursery: trio.Nursery, initial: bytes) -> None:
        config = self.server.config
        data = initial
        while True:
            if data:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.debug("HTTP/2 protocol error from %s: %s", self.remote_addr, exc)
                    await self._flush_quietly()
                    return
                for event in events:
                    self._handle_event(nursery, event)
                await self.flush()
                if self.conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                    return
            if self.server.shutting_down and not self.streams:
                log.debug("HTTP/2 connection from %s: closing for shutdown", self.remote_addr)
                self.conn.close_connection()
                await self._flush_quietly()
                return
            timeout = config.network_timeout if self.streams else config.idle_timeout
            data = b""
            with trio.move_on_after(timeout) as scope:
                try:
                    data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
            if scope.cancelled_caught:
                if self.streams:
                    continue  # body reads time out in their own exchanges
                log.debug("HTTP/2 connection from %s: idle timeout", self.remote_addr)
                self.conn.close_connection()
                await self._flush_quietly()
                return
            if not data:
                return

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except ConnectionClosedError:
            pass

    def _handle_event(self, nursery: trio.Nursery, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            request = self._request(event.headers or [])
            if request is None:
                self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
                return
            if self.server.shutting_down:
                self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            ended = event.stream_ended is not None
            self._start_stream(nursery, event.stream_id, request, ended=ended)
        elif isinstance(event, h2.events.DataReceived):
            exchange = self.streams.get(event.stream_id)
            if exchange is None:
                # A stream we stopped reading: give the window back at once.
                self._ack(event.stream_id, event.flow_controlled_length)
                return
            exchange.feed(event.data, event.flow_controlled_length)
            if event.stream_ended is not None:
                exchange.end()
        elif isinstance(event, h2.events.TrailersReceived):
            exchange = self.streams.get(event.stream_id)
            if exchange is not None:
                exchange.pending_trailers = [
                    (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                    for name, value in event.headers or []
                ]
                exchange.end()
        elif isinstance(event, h2.events.StreamEnded):
            exchange = self.streams.get(event.stream_id)
            if exchange is not None:
                exchange.end()
        elif isinstance(event, h2.events.StreamReset):
            exchange = self.streams.get(event.stream_id)
            if exchange is not None:
                exchange.abort()
            self._wake_senders()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._wake_senders()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True
            for exchange in self.streams.values():
                exchange.abort()
            self._wake_senders()

    def _ack(self, stream_id: int, length: int) -> None:
        if length <= 0 or self.closed:
            return
        try:
            self.conn.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            try:  # the stream is gone; the connection window still needs it back
                self.conn.increment_flow_control_window(length)
            except (h2.exceptions.ProtocolError, ValueError):
                pass

    def _request(self, raw: list[tuple[bytes, bytes]]) -> Request | None:
        pseudo: dict[str, str] = {}
        fields: list[tuple[str, str]] = []
        for name_b, value_b in raw:
            name = bytes(name_b).decode("latin-1")
            value = bytes(value_b).decode("latin-1")
            if name.startswith(":"):
                pseudo[name] = value
            else:
                fields.append((name, value))
        method = pseudo.get(":method")
        path = pseudo.get(":path")
        if not method or not path or method == "CONNECT":
            return None
        authority = pseudo.get(":authority")
        if authority and not any(name == "host" for name, _ in fields):
            fields.insert(0, ("host", authority))
        # Cookies may be split into several fields in HTTP/2; other repeats stay as sent.
        return Request(method=method, target=path, headers=Headers(fields), scheme=self.scheme)

    def _start_stream(
        self, nursery: trio.Nursery, stream_id: int, request: Request, *, ended: bool
    ) -> None:
        has_body = not ended
        length = request.headers.get("content-length")
        if length is not None and length.strip() == "0":
            has_body = has_body and False
        exchange = H2Exchange(self, stream_id, request, has_body)
        if ended:
            exchange.end()
        self.streams[stream_id] = exchange
        self.idle = False
        nursery.start_soon(self._run_stream, exchange)

    async def _run_stream(self, exchange: H2Exchange) -> None:
        try:
            await self.handler(exchange)
            if not exchange.response_started:  # pragma: no cover - the handler answers
                raise ConnectionClosedError(reset=False)
        except ConnectionClosedError:
            pass
        except Exception:
            log.exception("HTTP/2 stream from %s failed", self.remote_addr)
        finally:
            await self._finish_stream(exchange)

    async def _finish_stream(self, exchange: H2Exchange) -> None:
        stream_id = exchange.stream_id
        self.streams.pop(stream_id, None)
        if not self.streams:
            self.idle = True
        if self.closed:
            return
        try:
            if not exchange.response_complete:
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            elif not exchange.body_done:
                # Answered before the body was read: tell the client to stop sending.
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            # Give back the window of bytes that were queued but never read.
            unread = exchange.discard()
            if unread:
                self.conn.increment_flow_control_window(unread)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ValueError):
            pass
        with trio.CancelScope(shield=True):
            await self._flush_quietly()


class H2Exchange(Exchange):
    """One HTTP/2 stream, with the interface the handler uses (see ``Exchange``)."""

    def __init__(
        self, connection: H2Connection, stream_id: int, request: Request, has_body: bool
    ) -> None:
        super().__init__(cast(Any, None), request, has_body)
        self._h2 = connection
        self.stream_id = stream_id
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._ended = False
        self.reset = False
        self._arrived = trio.Event()
        self.pending_trailers: list[tuple[str, str]] = []
        self.response_complete = False

    @property
    def remote_addr(self) -> str:
        return self._h2.remote_addr

    # --- fed by the connection's reader --------------------------------------------

    def feed(self, data: bytes, flow_length: int) -> None:
        if self._ended or self.reset:
            self._h2._ack(self.stream_id, flow_length)
            return
        self._chunks.append((data, flow_length))
        self._arrived.set()

    def end(self) -> None:
        self._ended = True
        self._arrived.set()

    def abort(self) -> None:
        self.reset = True
        self._arrived.set()

    def discard(self) -> int:
        """Drop queued, unread body bytes; the flow-control length they held."""
        total = sum(length for _, length in self._chunks)
        self._chunks.clear()
        return total

    # --- read by the handler ---------------------------------------------------------

    async def receive_body_chunk(self) -> bytes | None:
        """The next DATA frame's bytes, ``None`` at the end of the stream.

        Raises like the HTTP/1.1 exchange: ReadTimeoutError, UnexpectedEOFError
        (the stream or connection was reset mid-body).
        """
        while True:
            if self.body_done:
                return None
            if self._chunks:
                data, length = self._chunks.popleft()
                self._h2._ack(self.stream_id, length)
                if data:
                    self.received += len(data)
                    # The window update goes out with the next read or write.
                    return data
                continue
            if self._ended:
                self.body_done = True
                self.trailers = self.pending_trailers
                return None
            if self.reset or self._h2.closed:
                self.body_done = True
                raise errors.UnexpectedEOFError()
            # A fresh event before the flush (a checkpoint): data fed meanwhile sets it.
            self._arrived = trio.Event()
            await self._h2._flush_quietly()
            with trio.move_on_after(self._h2.server.config.network_timeout) as scope:
                await self._arrived.wait()
            if scope.cancelled_caught:
                raise errors.ReadTimeoutError()

    async def pump_body(
        self,
        sink: Callable[[Any], object],
        limit: int | None,
        *,
        sink_is_async: bool = False,
    ) -> bool:
        return await pump_chunks(self, sink, limit, sink_is_async=sink_is_async)

    # --- the answer ---------------------------------------------------------------------

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._send_headers(status, _encode_headers(headers), end=False)
        await self._h2.flush()

    async def send_response(self, response: Response, *, head: bool = False) -> None:
        headers = _encode_headers(response.headers)
        body = b"" if head else response.body
        if response.status not in (204, 304) and not any(
            name.lower() == b"content-length" for name, _ in headers
        ):
            headers.append((b"content-length", str(len(response.body)).encode("ascii")))
        self.response_started = True
        self._send_headers(response.status, headers, end=not body)
        if body:
            await self._h2.send_data(self.stream_id, body, True)
        else:
            await self._h2.flush()
        self.response_complete = True

    async def send_stream(
        self, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes]
    ) -> None:
        self.response_started = True
        self._send_headers(status, _encode_headers(headers), end=False)
        await self._h2.flush()
        async for chunk in chunks:
            if chunk:
                await self._h2.send_data(self.stream_id, chunk, False)
        await self._h2.send_data(self.stream_id, b"", True)
        self.response_complete = True

    def _send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *, end: bool) -> None:
        if self.reset or self._h2.closed:
            raise ConnectionClosedError(reset=True)
        from ._http import _date

        out = [(b":status", str(status).encode("ascii"))]
        out += [
            (name.lower(), value)
            for name, value in headers
            if name.decode("ascii").lower() not in _HOP_BY_HOP
        ]
        out.append((b"date", _date.get()))
        try:
            self._h2.conn.send_headers(self.stream_id, out, end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            raise ConnectionClosedError(reset=True) from None


# --- entry points -----------------------------------------------------------------------


async def prepare_connection(
    stream: trio.abc.Stream, server: Server, remote_addr: str
) -> HTTPConnection | H2Connection | None:
    """The connection object for an accepted stream: HTTP/1.1 or HTTP/2.

    TLS streams are handshaken here (in the connection's own task) and go to
    HTTP/2 when ALPN chose ``h2``.  With ``-enable-h2c`` a cleartext connection
    that opens with the HTTP/2 preface is HTTP/2 (prior knowledge).  None when
    the TLS handshake failed (the stream is closed).
    """
    config = server.config
    if isinstance(stream, trio.SSLStream):
        from ._tls import handshake

        try:
            alpn = await handshake(stream, config.network_timeout)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", remote_addr, exc)
            with trio.CancelScope(shield=True):
                await close_gracefully(stream, linger=False)
            return None
        if alpn == "h2":
            return H2Connection(stream, server, remote_addr, scheme="https")
        return HTTPConnection(stream, server, remote_addr)
    if getattr(config, "enable_h2c", False):
        initial = await sniff_preface(stream, config.idle_timeout)
        if initial.startswith(PREFACE):
            return H2Connection(stream, server, remote_addr, initial=initial)
        if initial:
            return HTTPConnection(ReplayStream(stream, initial), server, remote_addr)
    return HTTPConnection(stream, server, remote_addr)


async def upgrade_h2c(connection: HTTPConnection, event: h11.Request) -> bool:
    """Serve the rest of an HTTP/1.1 connection as HTTP/2 if ``event`` asks ``Upgrade: h2c``.

    Only for cleartext connections with ``-enable-h2c`` and requests without a
    body (RFC 9113 removed the upgrade; clients that still use it, like curl
    ``--http2``, send it on bodyless requests).  Returns False, changing nothing,
    when the request is not such an upgrade; True once the HTTP/2 connection ended.
    """
    server = connection.server
    if not getattr(server.config, "enable_h2c", False):
        return False
    if isinstance(connection.stream, trio.SSLStream):
        return False
    headers = Headers(
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        for name, value in event.headers
    )
    settings = is_h2c_upgrade(headers)
    if settings is None or "content-length" in headers or "transfer-encoding" in headers:
        return False
    conn = connection.conn
    try:
        end = conn.next_event()
    except h11.RemoteProtocolError:
        return False
    if type(end) is not h11.EndOfMessage:  # pragma: no cover - bodyless by the checks above
        return False
    await connection.send_event(
        h11.InformationalResponse(
            status_code=101, headers=[(b"Connection", b"Upgrade"), (b"Upgrade", b"h2c")]
        )
    )
    initial = bytes(conn.trailing_data[0])
    request = Request(
        method=event.method.decode("ascii", errors="replace"),
        target=event.target.decode("latin-1"),
        headers=Headers(
            (name, value)
            for name, value in headers.raw
            if name not in ("connection", "upgrade", "http2-settings")
        ),
        scheme="http",
    )
    h2_connection = H2Connection(
        connection.stream,
        server,
        connection.remote_addr,
        initial=initial,
        upgrade=(settings, request),
    )
    connection.idle = False
    await h2_connection.serve()
    return True


def is_h2c_upgrade(headers: Headers) -> bytes | None:
    """The HTTP2-Settings value if the request asks for ``Upgrade: h2c``, else None."""
    upgrade = (headers.get("upgrade") or "").lower()
    if "h2c" not in [part.strip() for part in upgrade.split(",")]:
        return None
    connection = (headers.get("connection") or "").lower()
    tokens = [part.strip() for part in connection.split(",")]
    if "upgrade" not in tokens or "http2-settings" not in tokens:
        return None
    settings = headers.get("http2-settings")
    if settings is None or headers.count("http2-settings") != 1:
        return None
    return settings.strip().encode("latin-1")


async def sniff_preface(stream: trio.abc.Stream, limit: float) -> bytes:
    """Read until the bytes so far are (or cannot be) the start of the HTTP/2 preface.

    Reads at most ``len(PREFACE)`` bytes, so whatever the HTTP/1.1 loop gets back
    through :class:`ReplayStream` fits in its first read.  Empty at EOF or when
    nothing arrives within ``limit`` seconds.
    """
    data = b""
    with trio.move_on_after(limit):
        while len(data) < len(PREFACE) and PREFACE.startswith(data):
            try:
                chunk = await stream.receive_some(len(PREFACE) - len(data))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return data
            if not chunk:
                return data
            data += chunk
    return data


class ReplayStream(trio.abc.HalfCloseableStream):
    """A stream that first returns bytes already read from it, then reads on.

    Lets the HTTP/1.1 loop serve a connection whose first bytes were read while
    looking for the HTTP/2 preface.  ``socket`` is the wrapped stream's (for the
    HTTP/1.1 loop's direct body reads, which start only after the request head,
    i.e. after the replayed bytes).
    """

    def __init__(self, stream: trio.abc.Stream, initial: bytes) -> None:
        self.transport_stream = stream
        self._initial = initial
        sock = getattr(stream, "socket", None)
        if sock is not None:
            self.socket = sock

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._initial:
            if max_bytes is None or max_bytes >= len(self._initial):
                data, self._initial = self._initial, b""
            else:
                data, self._initial = self._initial[:max_bytes], self._initial[max_bytes:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self.transport_stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        transport = self.transport_stream
        if isinstance(transport, trio.abc.HalfCloseableStream):
            await transport.send_eof()
        else:  # pragma: no cover - the native server wraps socket streams only
            raise trio.ClosedResourceError("the wrapped stream cannot half-close")

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
