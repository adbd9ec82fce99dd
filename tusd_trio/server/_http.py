"""The h11 connection loop: the only module that reads or writes sockets.

One :class:`HTTPConnection` per client.  Requests on a keep-alive connection
are answered in order (pipelined requests wait in h11's buffer).  Request
bodies are read 64 KiB at a time, only as fast as the handler consumes them,
so the memory of an upload is bounded whatever its size.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
import trio

from .._logging import RequestLog
from ..auth import Principal
from ..hooks.model import HTTPResponse
from ..protocol import errors
from ..protocol.core import Headers, Request, Response

_h11_normalize: Any
_ContentLengthReader: Any
try:  # h11's reader for Content-Length bodies (the direct body path checks for it)
    from h11._readers import ContentLengthReader as _ContentLengthReader
except ImportError:  # pragma: no cover - a future h11 without it: h11 reads every byte
    _ContentLengthReader = None
try:  # Our header values are already checked; skip h11's per-header regexes.
    from h11._headers import normalize_and_validate as _h11_normalize
except ImportError:  # pragma: no cover - a future h11 without this helper
    _h11_normalize = None

if TYPE_CHECKING:
    from ._app import Server

log = logging.getLogger("tusd_trio.http")

RECEIVE_SIZE = 64 * 1024
#: The buffer a fast upload grows to, and how many may exist at once.
BIG_RECEIVE_SIZE = 256 * 1024
MAX_BIG_BUFFERS = 64
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: A request body left unread up to this size is drained to keep the connection.
DRAIN_LIMIT = 64 * 1024


class _DateCache:
    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


_date = _DateCache()


class ConnectionClosedError(Exception):
    """The peer went away (EOF or reset) while we waited for it."""

    def __init__(self, reset: bool) -> None:
        super().__init__("connection reset" if reset else "connection closed")
        self.reset = reset


class Exchange:
    """One request and its response, as the handler sees them."""

    #: The request's log context (set by the handler before anything is logged).
    log: RequestLog

    def __init__(self, connection: HTTPConnection, request: Request, has_body: bool) -> None:
        self._connection = connection
        self.request = request
        self.has_body = has_body
        self.body_done = not has_body
        self.trailers: list[tuple[str, str]] = []
        self.response_started = False
        self.close_after = False
        #: A hook's changes to the final response (set by the handler).
        self.hook_response: HTTPResponse | None = None
        #: The offset the last post-receive event of this request reported.
        self.reported_offset = -1
        #: Who made the request (access control), once authenticated.
        self.principal: Principal | None = None
        #: Whether this request created an upload (a failure then still leaves one).
        self.upload_created = False
        #: The request's ID (X-Request-ID, or one made up), echoed and logged.
        self.request_id = ""
        #: The status of a response the handler streamed itself (downloads).
        self.sent_status = 0
        #: An InternalServerError line with the details was written already.
        self.internal_error_logged = False
        self.received = 0

    @property
    def remote_addr(self) -> str:
        return self._connection.remote_addr

    async def receive_body_chunk(self) -> bytes | None:
        """The next piece of the body, ``None`` at its end.

        Raises :class:`ReadTimeoutError` when no data arrives within the network
        timeout, :class:`UnexpectedEOFError` or :class:`ConnectionResetError_` when
        the client goes away mid-body.
        """
        if self.body_done:
            return None
        conn = self._connection
        event = await conn.next_body_event()
        if type(event) is h11.Data:
            self.received += len(event.data)
            data = event.data
            return data if isinstance(data, bytes) else bytes(data)
        self.body_done = True
        if type(event) is h11.EndOfMessage:
            self.trailers = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
            ]
        return None

    async def pump_body(
        self,
        sink: Callable[[Any], object],
        limit: int | None,
        *,
        sink_is_async: bool = False,
    ) -> bool:
        """Feed the whole body, chunk by chunk, to ``sink``; the hot loop of uploads.

        Stops after ``limit`` bytes (the part of a chunk within the limit is still
        fed) and returns True if the body went beyond it.  Raises like
        :meth:`receive_body_chunk`.  A synchronous sink (the file store's inline
        write) is called without any await between reading and writing a chunk.
        """
        if self.body_done:
            return False
        connection = self._connection
        conn = connection.conn
        receive_some = connection.stream.receive_some
        timeout = connection.server.config.network_timeout
        data_type = h11.Data
        need_data = h11.NEED_DATA
        received = self.received
        try:
            with trio.CancelScope() as deadline_scope:
                while True:
                    try:
                        event = conn.next_event()
                    except h11.RemoteProtocolError as exc:
                        raise errors.ProtocolError(f"malformed request body: {exc}") from exc
                    if type(event) is data_type:
                        data = event.data
                        if type(data) is not bytes:
                            data = bytes(data)
                        size = len(data)
                        if limit is not None and received + size > limit:
                            keep = limit - received
                            if keep > 0:
                                part = data[:keep]
                                received += keep
                                if sink_is_async:
                                    await sink(part)  # type: ignore[misc]
                                else:
                                    sink(part)
                            return True
                        received += size
                        if sink_is_async:
                            await sink(data)  # type: ignore[misc]
                        else:
                            sink(data)
                        self.received = received
                        continue
                    if event is need_data:
                        if not sink_is_async and _direct_body_possible(connection):
                            self.received = received
                            over = await self._pump_direct(sink, limit)
                            received = self.received
                            if over is not None:
                                return over
                            continue
                        if conn.they_are_waiting_for_100_continue:
                            await connection.send_event(
                                h11.InformationalResponse(status_code=100, headers=[])
                            )
                        deadline_scope.deadline = trio.current_time() + timeout
                        try:
                            chunk = await receive_some(RECEIVE_SIZE)
                        except (trio.BrokenResourceError, OSError):
                            raise errors.ConnectionResetError_() from None
                        if not chunk:
                            raise errors.UnexpectedEOFError()
                        conn.receive_data(chunk)  # type: ignore[arg-type]
                        continue
                    self.body_done = True
                    if type(event) is h11.EndOfMessage:
                        self.trailers = [
                            (name.decode("latin-1"), value.decode("latin-1"))
                            for name, value in event.headers
                        ]
                    return False
        finally:
            self.received = received
        # Only the deadline scope ends the loop this way.
        raise errors.ReadTimeoutError()

    async def _pump_direct(self, sink: Callable[[Any], object], limit: int | None) -> bool | None:
        """Read a Content-Length body straight from the socket into one reused buffer.

        h11 would copy every chunk twice (into its buffer and out again); for the
        bulk of a large upload we read with ``recv_into`` and hand the store a view
        of our buffer, then tell h11 the body is complete.  Returns None when h11
        still has to deliver the end of the message (then the caller goes on).
        """
        connection = self._connection
        server = connection.server
        reader: Any = connection.conn._reader
        sock = connection.stream.socket  # type: ignore[attr-defined]
        timeout = server.config.network_timeout
        view = memoryview(connection.body_buffer())
        size = len(view)
        full_reads = 0
        big = False
        remaining: int = reader._remaining
        received = self.received
        try:
            with trio.CancelScope() as deadline_scope:
                while remaining > 0:
                    deadline_scope.deadline = trio.current_time() + timeout
                    try:
                        n = await sock.recv_into(view, min(size, remaining))
                    except (trio.BrokenResourceError, OSError):
                        raise errors.ConnectionResetError_() from None
                    if n == 0:
                        raise errors.UnexpectedEOFError()
                    remaining -= n
                    if limit is not None and received + n > limit:
                        keep = limit - received
                        if keep > 0:
                            received += keep
                            sink(view[:keep])
                        return True
                    received += n
                    sink(view[:n])
                    self.received = received
                    if n == size and not big:
                        # A sender that keeps the buffer full gets a larger one:
                        # fewer trips through the event loop per byte.
                        full_reads += 1
                        if full_reads >= 4 and server.big_buffers < MAX_BIG_BUFFERS:
                            server.big_buffers += 1
                            big = True
                            view.release()
                            view = memoryview(bytearray(BIG_RECEIVE_SIZE))
                            size = BIG_RECEIVE_SIZE
                # The whole body has been read: h11 now yields EndOfMessage.
                reader._remaining = 0
                return None
        finally:
            reader._remaining = remaining
            self.received = received
            view.release()
            if big:
                server.big_buffers -= 1
        raise errors.ReadTimeoutError()

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Send a 1xx interim response (none to an HTTP/1.0 client, which cannot take one).

        h11 takes any interim response as the answer to ``Expect: 100-continue``;
        the client still gets its ``100 (Continue)`` right after (the resumable
        upload draft forbids leaving it out because a 104 was sent).
        """
        conn = self._connection.conn
        if conn.their_http_version is None or conn.their_http_version < b"1.1":
            return
        waiting = conn.they_are_waiting_for_100_continue and status != 100
        await self._connection.send_event(
            h11.InformationalResponse(
                status_code=status, headers=_encode_headers(headers), reason=reason_phrase(status)
            )
        )
        if waiting:
            await self._connection.send_event(
                h11.InformationalResponse(status_code=100, headers=[])
            )

    async def send_response(self, response: Response, *, head: bool = False) -> None:
        headers = _encode_headers(response.headers)
        body = response.body
        has_length = any(name.lower() == b"content-length" for name, _ in headers)
        if not has_length and response.status not in (204, 304):
            # For HEAD too: the length a GET would have (h11 sends no body for HEAD).
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
        await self._start(response.status, headers)
        if body and not head:
            await self._connection.send_event(h11.Data(data=body))
        await self._connection.send_event(h11.EndOfMessage())

    async def send_stream(
        self, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes]
    ) -> None:
        await self._start(status, _encode_headers(headers))
        conn = self._connection
        async for chunk in chunks:
            await conn.send_data(chunk)
        await conn.send_event(h11.EndOfMessage())

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        # A body that was not (fully) read: the connection cannot be reused
        # unless what is left is small enough to drain afterwards.
        if not self.body_done and not self._connection.can_drain():
            self.close_after = True
        if self.close_after and not self.body_done:
            self._connection.linger = True
        if self.close_after or self._connection.server.shutting_down:
            headers.append((b"Connection", b"close"))
        headers.append((b"Date", _date.get()))
        self.response_started = True
        await self._connection.send_event(
            h11.Response(
                status_code=status, headers=_prepared(headers), reason=reason_phrase(status)
            )
        )


def _prepared(headers: list[tuple[bytes, bytes]]) -> Any:
    if _h11_normalize is None:  # pragma: no cover
        return headers
    return _h11_normalize(headers, _parsed=True)


async def pump_chunks(
    exchange: Exchange,
    sink: Callable[[Any], object],
    limit: int | None,
    *,
    sink_is_async: bool = False,
) -> bool:
    """:meth:`Exchange.pump_body` for transports that only offer
    ``receive_body_chunk`` (HTTP/2 streams, ASGI): feed each chunk to ``sink``,
    stop after ``limit`` bytes (the part of a chunk within it is still fed) and
    return True if the body went beyond it."""
    while True:
        before = exchange.received
        data = await exchange.receive_body_chunk()
        if data is None:
            return False
        if limit is not None and exchange.received > limit:
            keep = limit - before
            exchange.received = before
            if keep > 0:
                exchange.received += keep
                data = data[:keep]
                if sink_is_async:
                    await sink(data)  # type: ignore[misc]
                else:
                    sink(data)
            return True
        if sink_is_async:
            await sink(data)  # type: ignore[misc]
        else:
            sink(data)


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        encoded = value.encode("latin-1", errors="replace")
        # Never let a value break the header block (CR, LF, NUL, other controls).
        if any(b < 32 and b != 9 for b in encoded) or 127 in encoded:
            encoded = bytes(b if (b >= 32 or b == 9) and b != 127 else 0x3F for b in encoded)
        raw_name = name.encode("ascii", errors="replace")
        if not _TOKEN.fullmatch(raw_name):
            continue  # never emit a malformed header name
        out.append((raw_name, encoded))
    return out


Handler = Callable[[Exchange], Awaitable[None]]


class HTTPConnection:
    def __init__(
        self, stream: trio.abc.Stream, server: Server, remote_addr: str, *, operator: bool = False
    ) -> None:
        self.stream = stream
        self.server = server
        self.remote_addr = remote_addr
        #: A connection to the operator listener: no h2c upgrade, no event stream.
        self.operator = operator
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=server.config.max_header_size
        )
        self._send_lock = trio.Lock()
        self._body_buffer: bytearray | None = None
        #: Close gracefully (half-close, then drain) because the peer may still be
        #: sending: closing with unread input would reset the connection and could
        #: destroy the answer we just sent.
        self.linger = False
        self.idle = True
        self.cancel_scope: trio.CancelScope | None = None

    # --- low level -------------------------------------------------------------

    def body_buffer(self) -> bytearray:
        """The connection's one receive buffer for direct body reads (64 KiB)."""
        if self._body_buffer is None:
            self._body_buffer = bytearray(RECEIVE_SIZE)
        return self._body_buffer

    async def _receive(self, limit: float) -> bytes:
        with trio.move_on_after(limit) as scope:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                return data if type(data) is bytes else bytes(data)
            except (trio.BrokenResourceError, OSError) as exc:
                raise ConnectionClosedError(reset=True) from exc
        assert scope.cancelled_caught
        raise TimeoutError

    async def send_event(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self._send_all(data)

    async def send_data(self, chunk: bytes) -> None:
        parts = self.conn.send_with_data_passthrough(h11.Data(data=chunk))
        for part in parts or ():
            await self._send_all(part)

    async def _send_all(self, data: bytes) -> None:
        timeout = self.server.config.write_timeout
        with trio.move_on_after(timeout) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ConnectionClosedError(reset=True) from exc
        if scope.cancelled_caught:
            raise ConnectionClosedError(reset=True)

    async def next_body_event(self) -> h11.Event:
        timeout = self.server.config.network_timeout
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise errors.ProtocolError(f"malformed request body: {exc}") from exc
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self.send_event(h11.InformationalResponse(status_code=100, headers=[]))
                try:
                    data = await self._receive(timeout)
                except TimeoutError:
                    raise errors.ReadTimeoutError() from None
                except ConnectionClosedError:
                    raise errors.ConnectionResetError_() from None
                if not data:
                    try:
                        self.conn.receive_data(b"")
                        event = self.conn.next_event()
                    except h11.RemoteProtocolError:
                        raise errors.UnexpectedEOFError() from None
                    if type(event) is h11.EndOfMessage:  # pragma: no cover - h11 needs length
                        return event
                    raise errors.UnexpectedEOFError()
                self.conn.receive_data(data)
                continue
            assert not isinstance(event, type) or event is not h11.PAUSED
            return event  # type: ignore[return-value]

    def can_drain(self) -> bool:
        """Whether the unread rest of the current request body is small."""
        if self.conn.their_state is not h11.SEND_BODY:
            return True
        reader = getattr(self.conn, "_reader", None)
        remaining = getattr(reader, "_remaining", None)
        return isinstance(remaining, int) and remaining <= DRAIN_LIMIT

    async def _drain(self) -> bool:
        """Read and drop the rest of a request body.  False if that failed."""
        drained = 0
        with trio.move_on_after(self.server.config.network_timeout):
            try:
                while self.conn.their_state is h11.SEND_BODY:
                    event = await self.next_body_event()
                    if type(event) is h11.Data:
                        drained += len(event.data)
                        if drained > DRAIN_LIMIT:
                            return False
                    elif type(event) is h11.EndOfMessage:
                        return True
            except errors.TusError:
                return False
        return self.conn.their_state is h11.DONE

    # --- the loop ----------------------------------------------------------------

    async def serve(self, handler: Handler) -> None:
        server = self.server
        try:
            while True:
                self.idle = True
                if server.shutting_down:
                    return
                try:
                    event = await self._next_request_event()
                except _Abort:
                    return
                if event is None:
                    return
                self.idle = False
                if server.config.enable_h2c and not self.operator:
                    from ._h2 import upgrade_h2c

                    if await upgrade_h2c(self, event):
                        return
                if (
                    server.config.expose_events
                    and not self.operator
                    and _is_events_request(event, server)
                ):
                    await server.events.serve(self, event)
                    return
                exchange = self._make_exchange(event)
                try:
                    await handler(exchange)
                except ConnectionClosedError:
                    return
                if not exchange.response_started:  # pragma: no cover - handler always answers
                    return
                if exchange.close_after or server.shutting_down:
                    return
                if self.conn.our_state is h11.MUST_CLOSE:
                    return
                if self.conn.their_state is h11.SEND_BODY and not await self._drain():
                    return
                try:
                    self.conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        finally:
            with trio.CancelScope(shield=True):
                await close_gracefully(self.stream, linger=self.linger)

    async def _next_request_event(self) -> h11.Request | None:
        """Wait for the next request head; None when the client is done."""
        config = self.server.config
        deadline = trio.current_time() + config.idle_timeout
        head_started = False
        fed = len(self.conn.trailing_data[0])
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_protocol_error(exc)
                raise _Abort from None
            if event is h11.NEED_DATA:
                if self.conn.their_state is h11.DONE:  # pragma: no cover - guarded by caller
                    return None
                if not head_started and self._has_partial_head():
                    # The whole head must arrive within the network timeout, however
                    # slowly it trickles in (slowloris).
                    head_started = True
                    deadline = trio.current_time() + config.network_timeout
                try:
                    data = await self._receive(max(0.0, deadline - trio.current_time()))
                except TimeoutError:
                    if self.conn.their_state is h11.IDLE and not self._has_partial_head():
                        return None
                    await self._send_simple(408, "ERR_REQUEST_TIMEOUT", "request header timeout")
                    return None
                except ConnectionClosedError:
                    return None
                fed += len(data)
                self.conn.receive_data(data)
                continue
            if type(event) is h11.Request:
                # h11 only limits heads that are still incomplete; one that arrived
                # whole in a few reads is measured here.
                head_size = fed - len(self.conn.trailing_data[0])
                if head_size > config.max_header_size:
                    await self._send_simple(
                        431,
                        "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE",
                        "the request line and headers are larger than the limit",
                    )
                    raise _Abort
                if _has_both_lengths(event.headers):
                    # RFC 9112 6.1: a request with both framings may be an attempt at
                    # request smuggling; answer and close.
                    await self._send_simple(
                        400,
                        "ERR_BAD_REQUEST",
                        "malformed HTTP request: both Content-Length and Transfer-Encoding",
                    )
                    raise _Abort
                return event
            if type(event) is h11.ConnectionClosed or event is h11.PAUSED:
                return None
            return None  # pragma: no cover - nothing else comes before a request

    def _has_partial_head(self) -> bool:
        return bool(self.conn.trailing_data[0])

    async def _send_protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        status = exc.error_status_hint
        message = str(exc) or "malformed request"
        code = {431: "ERR_REQUEST_HEADER_FIELDS_TOO_LARGE", 501: "ERR_NOT_IMPLEMENTED"}.get(
            status, "ERR_BAD_REQUEST"
        )
        await self._send_simple(status, code, f"malformed HTTP request: {message}")

    async def _send_simple(self, status: int, code: str, message: str) -> None:
        self.linger = True
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{code}: {message}\n".encode()
        headers = [
            (b"Content-Type", b"text/plain; charset=utf-8"),
            (b"Content-Length", str(len(body)).encode("ascii")),
            (b"Connection", b"close"),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Date", _date.get()),
        ]
        try:
            # h11 refuses to send a response before it saw a request; build it by hand.
            raw = f"HTTP/1.1 {status} {_reason(status)}\r\n".encode("ascii")
            raw += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            raw += b"\r\n" + body
            await self._send_all(raw)
        except ConnectionClosedError:
            pass

    def _make_exchange(self, event: h11.Request) -> Exchange:
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
        )
        request = Request(
            method=event.method.decode("ascii", errors="replace"),
            target=event.target.decode("latin-1"),
            headers=headers,
            scheme=self.server.scheme,
        )
        has_body = self.conn.their_state is h11.SEND_BODY
        if has_body and not _announces_body(event.headers):
            # No Content-Length and no chunked coding: h11 has the (empty) end of
            # the message ready; take it so the connection can be reused at once.
            end = self.conn.next_event()
            has_body = type(end) is not h11.EndOfMessage
        return Exchange(self, request, has_body)


def _direct_body_possible(connection: HTTPConnection) -> bool:
    conn: Any = connection.conn
    return (
        _ContentLengthReader is not None
        and type(getattr(conn, "_reader", None)) is _ContentLengthReader
        and hasattr(connection.stream, "socket")
        and len(conn._receive_buffer) == 0
        and not conn.they_are_waiting_for_100_continue
        and conn._reader._remaining > RECEIVE_SIZE
    )


async def close_gracefully(stream: trio.abc.Stream, *, linger: bool) -> None:
    """Close a connection; with ``linger``, half-close and read what is left first.

    Reads at most 64 KiB for at most one second, so a peer cannot hold it open.
    """
    with trio.move_on_after(1):
        if linger and isinstance(stream, trio.abc.HalfCloseableStream):
            try:
                await stream.send_eof()
                drained = 0
                while drained <= DRAIN_LIMIT:
                    chunk = await stream.receive_some(RECEIVE_SIZE)
                    if not chunk:
                        break
                    drained += len(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
    with trio.move_on_after(1):
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, OSError):
            pass


def _is_events_request(event: h11.Request, server: Server) -> bool:
    from ._events import is_websocket_upgrade

    if event.method != b"GET":
        return False
    path = event.target.split(b"?", 1)[0].decode("latin-1")
    return path == server.config.events_path and is_websocket_upgrade(event)


def _has_both_lengths(headers: Any) -> bool:
    names = {name for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


def _announces_body(headers: Any) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return bool(value.strip() != b"0")
    return False


class _Abort(Exception):
    pass


_EXTRA_REASONS = {104: "Upload Resumption Supported", 460: "Checksum Mismatch"}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _EXTRA_REASONS.get(status, "Unknown")


def reason_phrase(status: int) -> bytes:
    return _reason(status).encode("ascii")
