"""HTTP/1.1 with h11: one :class:`HTTPConnection` per client, one :class:`H11Exchange`
per request.

Requests on a keep-alive connection are answered in order (pipelined requests wait
in h11's buffer).  Request bodies are read 64 KiB at a time, only as fast as the
handler consumes them, so the memory of an upload is bounded whatever its size.
A connection knows nothing of tus: it hands each request to a handler, or to a
``takeover`` (an h2c upgrade, the event stream's WebSocket) that the connection
dispatcher (``_connections``) gives it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import h11
import trio

from ..protocol import errors
from ..protocol.messages import Headers, Request
from ._exchange import Handler, Sink, TransportSettings, feed, pump_with_deadline
from ._framing import (
    RawHeaders,
    encode_headers,
    malformed_request,
    raw_refusal,
    reason_phrase,
)
from ._h11_fast import direct_body_possible, prepared_headers, pump_direct, unread_body_length
from ._http1_io import Http1IO, end_of_head
from ._state import ServerState
from ._streams import DRAIN_LIMIT, ConnectionClosedError, close_gracefully

log = logging.getLogger("tusd_trio.http")

#: Takes over a connection after a request head (True when it did, and is done).
Takeover = Callable[["HTTPConnection", h11.Request], Awaitable[bool]]


class H11Exchange:
    """One HTTP/1.1 request and its response (the :class:`~._exchange.Exchange`)."""

    __slots__ = (
        "_connection",
        "body_done",
        "close_after",
        "has_body",
        "received",
        "request",
        "response_started",
        "trailers",
    )

    def __init__(self, connection: HTTPConnection, request: Request, has_body: bool) -> None:
        self._connection = connection
        self.request = request
        self.has_body = has_body
        self.body_done = not has_body
        self.trailers: list[tuple[str, str]] = []
        self.response_started = False
        self.close_after = False
        self.received = 0

    @property
    def remote_addr(self) -> str:
        return self._connection.remote_addr

    # --- the request body -------------------------------------------------------------

    async def receive_body_chunk(self) -> bytes | None:
        if self.body_done:
            return None
        event = await self._connection.next_body_event()
        if type(event) is h11.Data:
            self.received += len(event.data)
            data = event.data
            return data if isinstance(data, bytes) else bytes(data)
        self._end(event)
        return None

    def _end(self, event: object) -> None:
        self.body_done = True
        if type(event) is h11.EndOfMessage:
            self.trailers = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
            ]

    async def pump_body(
        self, sink: Sink, limit: int | None, *, sink_is_async: bool = False
    ) -> bool:
        """The hot loop of uploads.  A synchronous sink (the file store's inline
        write) is called without any await between reading and writing a chunk;
        the bulk of a Content-Length body is read past h11 (``_h11_fast``).

        Timeouts as ``_exchange.pump_with_deadline`` says."""
        return await pump_with_deadline(self, self._pump, sink, limit, sink_is_async=sink_is_async)

    async def _pump(
        self, sink: Sink, limit: int | None, deadline_scope: trio.CancelScope | None
    ) -> bool:
        connection = self._connection
        conn = connection.conn
        timeout = connection.settings.network_timeout
        sink_is_async = deadline_scope is not None
        data_type = h11.Data
        need_data = h11.NEED_DATA
        received = self.received
        try:
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
                            received += keep
                            await feed(sink, data[:keep], sink_is_async=sink_is_async)
                        return True
                    received += size
                    await feed(sink, data, sink_is_async=sink_is_async)
                    self.received = received
                    continue
                if event is need_data:
                    sock = connection.socket
                    if not sink_is_async and sock is not None and direct_body_possible(conn):
                        self.received = received
                        over = await pump_direct(
                            conn,
                            sock,
                            connection.body_buffer(),
                            state=connection.state,
                            read_timeout=timeout,
                            sink=sink,
                            limit=limit,
                            counter=self,
                        )
                        received = self.received
                        if over is not None:
                            return over
                        continue
                    if conn.they_are_waiting_for_100_continue:
                        await connection.send_event(
                            h11.InformationalResponse(status_code=100, headers=[])
                        )
                    if deadline_scope is not None:
                        deadline_scope.deadline = trio.current_time() + timeout
                    try:
                        chunk = connection.try_receive()
                        if chunk is None:
                            if deadline_scope is not None:
                                chunk = await connection.receive_waiting()
                            else:
                                with trio.move_on_after(timeout):
                                    chunk = await connection.receive_waiting()
                                if chunk is None:
                                    raise errors.ReadTimeoutError()
                        else:
                            await trio.lowlevel.checkpoint()
                    except ConnectionClosedError:
                        raise errors.ConnectionResetError_() from None
                    if not chunk:
                        raise errors.UnexpectedEOFError()
                    conn.receive_data(chunk)
                    continue
                self._end(event)
                return False
        finally:
            self.received = received

    # --- the response -----------------------------------------------------------------

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        """A 1xx interim response (none to an HTTP/1.0 client, which cannot take one).

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
                status_code=status, headers=encode_headers(headers), reason=reason_phrase(status)
            )
        )
        if waiting:
            await self._connection.send_event(
                h11.InformationalResponse(status_code=100, headers=[])
            )

    async def start_response(
        self, status: int, headers: RawHeaders, body: bytes = b"", *, end: bool
    ) -> None:
        connection = self._connection
        end_of_head(self, connection, headers, can_drain=connection.can_drain())
        self.response_started = True
        conn = connection.conn
        data = conn.send(
            h11.Response(
                status_code=status,
                headers=prepared_headers(headers),
                reason=reason_phrase(status),
            )
        )
        if body:
            data += conn.send(h11.Data(data=body))
        if end:
            data += conn.send(h11.EndOfMessage())
        if data:
            await connection.send_all(data)

    async def send_body(self, data: bytes) -> None:
        connection = self._connection
        for part in connection.conn.send_with_data_passthrough(h11.Data(data=data)) or ():
            await connection.send_all(part)

    async def end_response(self) -> None:
        await self._connection.send_event(h11.EndOfMessage())


class HTTPConnection(Http1IO):
    """An HTTP/1.1 connection parsed by h11 (the reference parser)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        settings: TransportSettings,
        state: ServerState,
        remote_addr: str,
        takeover: Takeover | None = None,
        initial: bytes = b"",
    ) -> None:
        super().__init__(stream, settings=settings, state=state, remote_addr=remote_addr)
        self.takeover = takeover
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_header_size)
        if initial:
            # Bytes another parser read from this connection (its current request on).
            self.conn.receive_data(initial)
        self.idle = True

    async def send_event(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.send_all(data)

    async def next_body_event(self) -> h11.Event:
        timeout = self.settings.network_timeout
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise errors.ProtocolError(f"malformed request body: {exc}") from exc
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    await self.send_event(h11.InformationalResponse(status_code=100, headers=[]))
                try:
                    data = await self.receive(timeout)
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
        remaining = unread_body_length(self.conn)
        return remaining is not None and remaining <= DRAIN_LIMIT

    async def _drain(self) -> bool:
        """Read and drop the rest of a request body.  False if that failed."""
        drained = 0
        with trio.move_on_after(self.settings.network_timeout):
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
        state = self.state
        try:
            while True:
                self.idle = True
                if state.shutting_down:
                    return
                try:
                    event = await self._next_request_event()
                except _Abort:
                    return
                if event is None:
                    return
                self.idle = False
                if self.takeover is not None and await self.takeover(self, event):
                    return
                exchange = self._make_exchange(event)
                try:
                    await handler(exchange)
                except ConnectionClosedError:
                    return
                if not exchange.response_started:  # pragma: no cover - handler always answers
                    return
                if exchange.close_after or state.shutting_down:
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
        settings = self.settings
        deadline = trio.current_time() + settings.idle_timeout
        head_started = False
        fed = len(self.conn.trailing_data[0])
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._refuse(malformed_request(exc.error_status_hint, str(exc)))
                raise _Abort from None
            if event is h11.NEED_DATA:
                if self.conn.their_state is h11.DONE:  # pragma: no cover - guarded by caller
                    return None
                if not head_started and self._has_partial_head():
                    # The whole head must arrive within the network timeout, however
                    # slowly it trickles in (slowloris).
                    head_started = True
                    deadline = trio.current_time() + settings.network_timeout
                try:
                    data = await self.receive(max(0.0, deadline - trio.current_time()))
                except TimeoutError:
                    if self.conn.their_state is h11.IDLE and not self._has_partial_head():
                        return None
                    await self._refuse(errors.RequestTimeoutError())
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
                if head_size > settings.max_header_size:
                    await self._refuse(errors.HeaderFieldsTooLargeError())
                    raise _Abort
                if _has_both_lengths(event.headers):
                    # RFC 9112 6.1: a request with both framings may be an attempt at
                    # request smuggling; answer and close.
                    await self._refuse(
                        errors.MalformedRequestError(
                            "malformed HTTP request: both Content-Length and Transfer-Encoding"
                        )
                    )
                    raise _Abort
                return event
            if type(event) is h11.ConnectionClosed or event is h11.PAUSED:
                return None
            return None  # pragma: no cover - nothing else comes before a request

    def _has_partial_head(self) -> bool:
        return bool(self.conn.trailing_data[0])

    async def _refuse(self, error: errors.TusError) -> None:
        """Answer a head we cannot serve, then close."""
        self.linger = True
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            await self.send_all(raw_refusal(error))
        except ConnectionClosedError:
            pass

    def _make_exchange(self, event: h11.Request) -> H11Exchange:
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
        )
        request = Request(
            method=event.method.decode("ascii", errors="replace"),
            target=event.target.decode("latin-1"),
            headers=headers,
            scheme=self.settings.scheme,
        )
        has_body = self.conn.their_state is h11.SEND_BODY
        if has_body and not _announces_body(event.headers):
            # No Content-Length and no chunked coding: h11 has the (empty) end of
            # the message ready; take it so the connection can be reused at once.
            end = self.conn.next_event()
            has_body = type(end) is not h11.EndOfMessage
        return H11Exchange(self, request, has_body)


def _has_both_lengths(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    names = {name for name, _ in headers}
    return b"content-length" in names and b"transfer-encoding" in names


def _announces_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return bool(value.strip() != b"0")
    return False


class _Abort(Exception):
    pass
