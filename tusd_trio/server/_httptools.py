"""HTTP/1.1 with httptools: request heads parsed by llhttp (C), h11 as the reference.

h11 checks and copies every request in Python; this connection finds the end of a
request head itself, has llhttp validate and split it, and frames the body from
its Content-Length without a parser in the way (the bulk of a large one goes
straight from the socket to the store, ``_direct_body``).  It serves the common
case only: an HTTP/1.1 request with one ``Host``, no ``Transfer-Encoding`` and no
``Upgrade``.  Anything else — a head llhttp refuses or that h11 would refuse, an
oversized head, HTTP/1.0, a chunked body (whose trailers may carry an
``Upload-Checksum``), an upgrade to h2c or a WebSocket — hands the connection, from
that request on, to an h11 :class:`~._h11.HTTPConnection`, which answers exactly as
it does when httptools is not used at all.
"""

from __future__ import annotations

import trio

from ..protocol import errors
from ..protocol.messages import Headers, Request
from ._direct_body import pump_direct_body
from ._exchange import Handler, Sink, TransportSettings, feed, pump_with_deadline
from ._framing import (
    RawHeaders,
    encode_headers,
    raw_refusal,
    reason_phrase,
    status_has_body,
)
from ._h11 import HTTPConnection, Takeover
from ._http1_io import Http1IO, end_of_head
from ._state import ServerState
from ._streams import DRAIN_LIMIT, RECEIVE_SIZE, ConnectionClosedError, close_gracefully

try:
    from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser
except ImportError:  # pragma: no cover - a default dependency; its absence is a flag test
    HTTPTOOLS_AVAILABLE = False
else:
    HTTPTOOLS_AVAILABLE = True

#: What h11 answers an ``Expect: 100-continue`` with (no reason phrase).
_CONTINUE = b"HTTP/1.1 100 \r\n\r\n"


class _HandOver(Exception):
    """The rest of the connection is h11's, from the current request on."""


class RequestHead:
    """One request head: llhttp's callbacks fill ``url`` and ``raw``, then
    :func:`parse_head` the rest."""

    __slots__ = (
        "expect_continue",
        "headers",
        "keep_alive",
        "length",
        "method",
        "raw",
        "target",
        "url",
    )

    def __init__(self) -> None:
        self.url = b""
        self.raw: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.target = ""
        self.headers: list[tuple[str, str]] = []
        #: The Content-Length (0 without one).
        self.length = 0
        #: The client did not ask to close the connection after this request.
        self.keep_alive = True
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the whitespace before a value, h11 that after it too.
        self.raw.append((name, value.rstrip(b" \t")))


class HttpToolsExchange:
    """One HTTP/1.1 request and its response (the :class:`~._exchange.Exchange`),
    its body framed by a Content-Length."""

    __slots__ = (
        "_chunked",
        "_connection",
        "_expect_continue",
        "body_done",
        "close_after",
        "has_body",
        "keep_alive",
        "received",
        "remaining",
        "request",
        "response_started",
        "trailers",
    )

    def __init__(
        self,
        connection: HttpToolsConnection,
        request: Request,
        length: int,
        *,
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self._connection = connection
        self.request = request
        self.has_body = length > 0
        self.body_done = length == 0
        #: Body bytes not yet taken from the connection.
        self.remaining = length
        self.received = 0
        self.trailers: list[tuple[str, str]] = []
        self.response_started = False
        self.close_after = False
        #: The client did not ask to close after this response.
        self.keep_alive = keep_alive
        self._expect_continue = expect_continue and length > 0
        self._chunked = False

    @property
    def remote_addr(self) -> str:
        return self._connection.remote_addr

    # --- the request body -------------------------------------------------------------

    def _buffered(self) -> bytes:
        """Body bytes that came with earlier reads (the next request's stay)."""
        connection = self._connection
        buffer = connection.buffer
        if not buffer:
            return b""
        if len(buffer) <= self.remaining:
            connection.buffer = b""
            data = buffer
        else:
            data = buffer[: self.remaining]
            connection.buffer = buffer[self.remaining :]
        self._expect_continue = False
        self.remaining -= len(data)
        return data

    async def _read(self, within: float | None) -> bytes:
        """The next bytes from the connection, within ``within`` seconds (None: the caller's
        deadline scope bounds the wait); the 100 (Continue) goes out first."""
        connection = self._connection
        if self._expect_continue:
            self._expect_continue = False
            await connection.send_all(_CONTINUE)
        try:
            data = connection.try_receive()
            if data is None:
                if within is None:
                    data = await connection.receive_waiting()
                else:
                    try:
                        data = await connection.receive(within)
                    except TimeoutError:
                        raise errors.ReadTimeoutError() from None
            else:
                await trio.lowlevel.checkpoint()
        except ConnectionClosedError:
            raise errors.ConnectionResetError_() from None
        if not data:
            raise errors.UnexpectedEOFError()
        connection.buffer = data
        return data

    async def receive_body_chunk(self) -> bytes | None:
        if self.body_done:
            return None
        if self.remaining == 0:
            self.body_done = True
            return None
        data = self._buffered()
        if not data:
            await self._read(self._connection.settings.network_timeout)
            data = self._buffered()
        self.received += len(data)
        return data

    async def pump_body(
        self, sink: Sink, limit: int | None, *, sink_is_async: bool = False
    ) -> bool:
        """Like ``H11Exchange.pump_body``: a synchronous sink gets the bulk of a large
        body read straight from the socket (timeouts: ``_exchange.pump_with_deadline``)."""
        return await pump_with_deadline(self, self._pump, sink, limit, sink_is_async=sink_is_async)

    async def _pump(
        self, sink: Sink, limit: int | None, deadline_scope: trio.CancelScope | None
    ) -> bool:
        connection = self._connection
        timeout = connection.settings.network_timeout
        sink_is_async = deadline_scope is not None
        while self.remaining > 0:
            data = self._buffered()
            if not data:
                sock = connection.socket
                if not sink_is_async and sock is not None and self.remaining > RECEIVE_SIZE:
                    if self._expect_continue:
                        self._expect_continue = False
                        await connection.send_all(_CONTINUE)
                    over = await pump_direct_body(
                        sock,
                        connection.body_buffer(),
                        self,
                        state=connection.state,
                        read_timeout=timeout,
                        sink=sink,
                        limit=limit,
                    )
                    if over is not None:
                        return over
                    continue
                if deadline_scope is not None:
                    deadline_scope.deadline = trio.current_time() + timeout
                await self._read(None if deadline_scope is not None else timeout)
                continue
            size = len(data)
            if limit is not None and self.received + size > limit:
                keep = limit - self.received
                if keep > 0:
                    self.received += keep
                    await feed(sink, data[:keep], sink_is_async=sink_is_async)
                return True
            self.received += size
            await feed(sink, data, sink_is_async=sink_is_async)
        self.body_done = True
        return False

    # --- the response -----------------------------------------------------------------

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        """A 1xx interim response; a pending ``100 (Continue)`` follows it (as h11
        takes any interim response as the answer to ``Expect: 100-continue``)."""
        data = _head(status, encode_headers(headers))
        if self._expect_continue and status != 100:
            data += _CONTINUE
        self._expect_continue = False
        await self._connection.send_all(data)

    async def start_response(
        self, status: int, headers: RawHeaders, body: bytes = b"", *, end: bool
    ) -> None:
        """The response head, framed as h11 frames it: ``Connection: close`` when the
        connection ends after it, chunked coding for a body of unknown length."""
        connection = self._connection
        self._expect_continue = False
        end_of_head(self, connection, headers, can_drain=self.remaining <= DRAIN_LIMIT)
        # What h11 adds, in its order: chunked coding for a body of unknown length,
        # then ``Connection: close`` (moved last) when the client asked to close.
        has_length = False
        closing: set[bytes] = set()
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"connection":
                closing.update(_tokens(value))
        if not has_length and status_has_body(status):
            headers.append((b"Transfer-Encoding", b"chunked"))
            self._chunked = self.request.method != "HEAD"
        if not self.keep_alive:
            closing.discard(b"keep-alive")
            closing.add(b"close")
            headers = [(name, value) for name, value in headers if name.lower() != b"connection"]
            headers += [(b"Connection", token) for token in sorted(closing)]
        elif b"close" in closing:
            self.keep_alive = False
        self.response_started = True
        data = _head(status, headers)
        if body:
            data += self._framed(body)
        if end:
            data += b"0\r\n\r\n" if self._chunked else b""
        await connection.send_all(data)

    def _framed(self, data: bytes) -> bytes:
        if self._chunked:
            return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        return data

    async def send_body(self, data: bytes) -> None:
        framed = self._framed(data)
        if framed:
            await self._connection.send_all(framed)

    async def end_response(self) -> None:
        if self._chunked:
            await self._connection.send_all(b"0\r\n\r\n")


def _head(status: int, headers: RawHeaders) -> bytes:
    lines = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
    return b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason_phrase(status), lines)


class HttpToolsConnection(Http1IO):
    """An HTTP/1.1 connection whose request heads llhttp parses."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        settings: TransportSettings,
        state: ServerState,
        remote_addr: str,
        takeover: Takeover | None = None,
    ) -> None:
        super().__init__(stream, settings=settings, state=state, remote_addr=remote_addr)
        self.takeover = takeover
        #: Bytes read and not yet taken (a partial head, body bytes, the next request).
        self.buffer = b""
        self._idle = True
        #: The h11 connection serving the rest, once handed over.
        self._successor: HTTPConnection | None = None

    @property
    def idle(self) -> bool:
        """Waiting for a request (a shutdown may close the connection now)."""
        return self._successor.idle if self._successor is not None else self._idle

    async def serve(self, handler: Handler) -> None:
        handed_over = False
        try:
            await self._serve(handler)
        except _HandOver:
            handed_over = True
        finally:
            if not handed_over:
                with trio.CancelScope(shield=True):
                    await close_gracefully(self.stream, linger=self.linger)
        if handed_over:
            # h11 reads on from the current request's first byte, and closes.
            self._successor = HTTPConnection(
                self.stream,
                settings=self.settings,
                state=self.state,
                remote_addr=self.remote_addr,
                takeover=self.takeover,
                initial=self.buffer,
            )
            self.buffer = b""
            await self._successor.serve(handler)

    async def _serve(self, handler: Handler) -> None:
        state = self.state
        while True:
            self._idle = True
            if state.shutting_down:
                return
            exchange = await self._next_exchange()
            if exchange is None:
                return
            self._idle = False
            try:
                await handler(exchange)
            except ConnectionClosedError:
                return
            if not exchange.response_started:  # pragma: no cover - handler always answers
                return
            if not exchange.keep_alive or exchange.close_after or state.shutting_down:
                return
            if not exchange.body_done and not await self._drain(exchange):
                return

    async def _drain(self, exchange: HttpToolsExchange) -> bool:
        """Read and drop the (small) rest of a request body.  False if that failed."""
        with trio.move_on_after(self.settings.network_timeout):
            try:
                while await exchange.receive_body_chunk() is not None:
                    pass
            except errors.TusError:
                return False
            return True
        return False

    async def _next_exchange(self) -> HttpToolsExchange | None:
        """Wait for the next request head; None when the client is done.  Raises
        :class:`_HandOver` for whatever h11 is to answer."""
        settings = self.settings
        deadline = trio.current_time() + settings.idle_timeout
        head_started = False
        while True:
            buffer = self.buffer
            if buffer:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    self.buffer = buffer[end + 4 :]
                    return self._exchange(buffer, end + 4)
                if (
                    buffer[0] < 0x21  # h11 refuses at once what cannot start a request
                    or len(buffer) > settings.max_header_size
                    or b"\n\n" in buffer  # ended by bare line feeds: h11 reads those
                    or b"\n\r\n" in buffer
                ):
                    raise _HandOver
                if not head_started:
                    # The whole head must arrive within the network timeout, however
                    # slowly it trickles in (slowloris).
                    head_started = True
                    deadline = trio.current_time() + settings.network_timeout
            try:
                data = await self.receive(max(0.0, deadline - trio.current_time()))
            except TimeoutError:
                if buffer:
                    self.linger = True
                    try:
                        await self.send_all(raw_refusal(errors.RequestTimeoutError()))
                    except ConnectionClosedError:
                        pass
                return None
            except ConnectionClosedError:
                return None
            if not data:
                if buffer:  # a head cut short: h11's answer
                    raise _HandOver
                return None
            self.buffer = buffer + data

    def _exchange(self, buffer: bytes, head_end: int) -> HttpToolsExchange:
        """The exchange for the head ``buffer[:head_end]`` if it is one of ours."""
        head = None
        if head_end <= self.settings.max_header_size:
            head = parse_head(buffer[:head_end])
        if head is None:
            self.buffer = buffer
            raise _HandOver
        request = Request(
            method=head.method,
            target=head.target,
            headers=Headers(head.headers),
            scheme=self.settings.scheme,
        )
        return HttpToolsExchange(
            self,
            request,
            head.length,
            keep_alive=head.keep_alive,
            expect_continue=head.expect_continue,
        )


def parse_head(data: bytes) -> RequestHead | None:
    """The request head ``data`` (up to its blank line) as llhttp reads it, or None
    when it is not one of ours: llhttp refuses it, or h11 might read it otherwise
    (not HTTP/1.1, not one ``Host``, extra spaces in the request line), or its body
    or connection is for h11 (``Transfer-Encoding``, ``Upgrade``)."""
    head = RequestHead()
    parser = HttpRequestParser(head)
    try:
        parser.feed_data(data)
    except (HttpParserError, HttpParserUpgrade):
        return None
    if parser.get_http_version() != "1.1" or data.count(b" ", 0, data.find(b"\r\n")) != 2:
        return None
    hosts = 0
    for name, value in head.raw:
        lowered = name.lower()
        if lowered == b"host":
            hosts += 1
        elif lowered == b"content-length":
            head.length = int(value)
        elif lowered in (b"transfer-encoding", b"upgrade"):
            return None
        elif lowered == b"connection":
            head.keep_alive = head.keep_alive and b"close" not in _tokens(value)
        elif lowered == b"expect":
            head.expect_continue = head.expect_continue or b"100-continue" in _tokens(value)
        head.headers.append((name.decode("latin-1"), value.decode("latin-1")))
    if hosts != 1:
        return None
    head.method = parser.get_method().decode("ascii", errors="replace")
    head.target = head.url.decode("latin-1")
    return head


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated header value's tokens, lower-cased (as h11 reads them)."""
    return [token.strip() for token in value.lower().split(b",")]
