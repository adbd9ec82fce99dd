"""HTTP/2 connections on the native server's port, with the ``h2`` library.

A connection becomes HTTP/2 when TLS ALPN selected ``h2``, or (with
``-enable-h2c``) when a cleartext connection starts with the HTTP/2 preface (prior
knowledge) or asks ``Upgrade: h2c``: the connection dispatcher (``_connections``)
decides.  Every stream is one :class:`~._h2_exchange.H2Exchange` served by the same
handler as HTTP/1.1.

Memory is bounded by HTTP/2 flow control: we advertise a receive window of
:data:`STREAM_WINDOW` per stream and :data:`CONNECTION_WINDOW` per connection, and
give window back only once the handler took the bytes, so a connection buffers at
most ``CONNECTION_WINDOW`` bytes of request bodies however many streams it opens
(plus at most :data:`MAX_STREAMS` response chunks being sent).
"""

from __future__ import annotations

import logging

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from ..protocol.messages import Headers, Request
from ._exchange import Handler, TransportSettings
from ._h2_exchange import H2Exchange
from ._h2_frames import install as install_cheap_frame_repr
from ._state import ServerState
from ._streams import ConnectionClosedError, close_gracefully

log = logging.getLogger("tusd_trio.http")

install_cheap_frame_repr()

#: The client connection preface of HTTP/2 (RFC 9113 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Receive window per stream and per connection (bytes of request bodies in flight).
#: 4/8 MiB rather than 1/4 MiB: curl's HTTP/2 upload ran at 1.3x (median of 3
#: alternating runs, 512 MiB over TLS) with the larger windows, at the same server CPU.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 8 * 1024 * 1024
#: Largest DATA frame we accept (the client's frames; 16 KiB is the protocol minimum).
MAX_FRAME = 256 * 1024
MAX_STREAMS = 100
RECEIVE_SIZE = 256 * 1024
#: Largest DATA frame we send.
SEND_CHUNK = 64 * 1024


class H2Connection:
    """One HTTP/2 connection: a reader task, the streams' handler tasks, a send lock."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        settings: TransportSettings,
        state: ServerState,
        remote_addr: str,
        scheme: str = "http",
        initial: bytes = b"",
        upgrade: tuple[bytes, Request] | None = None,
    ) -> None:
        self.stream = stream
        self._initial = initial
        self._upgrade = upgrade
        self.settings = settings
        self.state = state
        self.remote_addr = remote_addr
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
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_size,
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
            with trio.move_on_after(self.settings.write_timeout) as scope:
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
                with trio.move_on_after(self.settings.write_timeout) as scope:
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

    @property
    def network_timeout(self) -> float:
        return self.settings.network_timeout

    async def serve(self, handler: Handler) -> None:
        """Serve the connection until the client or the server ends it.

        ``initial`` (constructor): bytes already read from the stream (the preface).
        ``upgrade``: the HTTP2-Settings value and the request of an h2c upgrade
        (answered on stream 1; its body, if any, was already consumed).
        """
        self._handler = handler
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
                    trio.current_time() + self.settings.request_completion_timeout
                )
        finally:
            self.closed = True
            with trio.CancelScope(shield=True):
                await close_gracefully(self.stream, linger=False)

    async def _read_loop(self, nursery: trio.Nursery, initial: bytes) -> None:
        config = self.settings
        data = initial
        while True:
            if data:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.debug("HTTP/2 protocol error from %s: %s", self.remote_addr, exc)
                    await self.flush_quietly()
                    return
                for event in events:
                    self._handle_event(nursery, event)
                await self.flush()
                if self.conn.state_machine.state == h2.connection.ConnectionState.CLOSED:
                    return
            if self.state.shutting_down and not self.streams:
                log.debug("HTTP/2 connection from %s: closing for shutdown", self.remote_addr)
                self.conn.close_connection()
                await self.flush_quietly()
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
                await self.flush_quietly()
                return
            if not data:
                return

    async def flush_quietly(self) -> None:
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
            if self.state.shutting_down:
                self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            ended = event.stream_ended is not None
            self._start_stream(nursery, event.stream_id, request, ended=ended)
        elif isinstance(event, h2.events.DataReceived):
            exchange = self.streams.get(event.stream_id)
            if exchange is None:
                # A stream we stopped reading: give the window back at once.
                self.ack(event.stream_id, event.flow_controlled_length)
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

    def ack(self, stream_id: int, length: int) -> None:
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
            await self._handler(exchange)
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
            await self.flush_quietly()


async def sniff_preface(stream: trio.abc.Stream, limit: float) -> bytes:
    """Read until the bytes so far are (or cannot be) the start of the HTTP/2 preface.

    Reads at most ``len(PREFACE)`` bytes, so whatever the HTTP/1.1 loop gets back
    through a ``ReplayStream`` fits in its first read.  Empty at EOF or when
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
