"""The contract between a transport and the handler: one request and its response.

:class:`Exchange` is what the handler needs of HTTP/1.1 (``_h11.H11Exchange``), HTTP/2
(``_h2_exchange.H2Exchange``) and ASGI (``_asgi_exchange.ASGIExchange``) alike: the
request, its body (read chunk by chunk or pumped into a sink), its trailers, and a
response in three steps (start, body, end).  The transports share no base class; what
they share is here (:func:`send_response`, :func:`send_stream`, :func:`pump_chunks`)
and in ``_framing``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..protocol import errors
from ..protocol.messages import Request, Response
from ._framing import RawHeaders, encode_headers, frame_response

#: Where body chunks go: the store writer (and hashers); async when ``sink_is_async``.
Sink = Callable[[Any], object]
#: A transport's body loop: (sink, limit, deadline scope for an async sink) -> over limit.
BodyLoop = Callable[[Sink, "int | None", "trio.CancelScope | None"], Awaitable[bool]]


class Exchange(Protocol):
    """One request and its response, as the handler sees them."""

    request: Request
    #: Whether the request has a body (it may still be empty with chunked coding).
    has_body: bool
    #: The whole body was read (or there is none).
    body_done: bool
    #: Body bytes received so far.
    received: int
    #: Request trailers, known once the body is done.
    trailers: list[tuple[str, str]]
    response_started: bool
    #: Close the connection after the response (the body was not read to its end).
    close_after: bool

    @property
    def remote_addr(self) -> str: ...

    async def receive_body_chunk(self) -> bytes | None:
        """The next piece of the body, ``None`` at its end.

        Raises :class:`~tusd_trio.protocol.errors.ReadTimeoutError` when nothing
        arrives within the network timeout, ``UnexpectedEOFError`` or
        ``ConnectionResetError_`` when the client goes away mid-body.
        """
        ...

    async def pump_body(
        self, sink: Sink, limit: int | None, *, sink_is_async: bool = False
    ) -> bool:
        """Feed the whole body to ``sink``; True if it went beyond ``limit`` bytes
        (the part within the limit is still fed).  Raises like receive_body_chunk."""
        ...

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        """A 1xx interim response (skipped where the transport cannot send one)."""
        ...

    async def start_response(
        self, status: int, headers: RawHeaders, body: bytes = b"", *, end: bool
    ) -> None:
        """The response head (framed by ``_framing``), with the first body bytes;
        ``end``: the response is complete."""
        ...

    async def send_body(self, data: bytes) -> None:
        """More of a response started with ``end=False``."""
        ...

    async def end_response(self) -> None:
        """Complete a response started with ``end=False``."""
        ...


#: What serves an exchange: the tus handler, or the operator listener's.
Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """The limits a connection works within (from -network-timeout and friends)."""

    network_timeout: float
    write_timeout: float
    idle_timeout: float
    max_header_size: int
    #: How long running streams may finish once their connection ended (HTTP/2).
    request_completion_timeout: float
    scheme: str = "http"


async def send_response(exchange: Exchange, response: Response, *, head: bool = False) -> None:
    """Send a whole response (``head``: its headers only, as the answer to HEAD)."""
    headers, body = frame_response(response, head=head)
    await exchange.start_response(response.status, headers, body, end=True)


async def send_stream(
    exchange: Exchange, status: int, headers: list[tuple[str, str]], chunks: AsyncIterator[bytes]
) -> None:
    """Send a response whose body comes from ``chunks`` (downloads); its headers
    carry their own Content-Length."""
    await exchange.start_response(status, encode_headers(headers), end=False)
    async for chunk in chunks:
        if chunk:
            await exchange.send_body(chunk)
    await exchange.end_response()


async def feed(sink: Sink, data: Any, *, sink_is_async: bool) -> None:
    """Give ``data`` to ``sink`` (awaited when the sink is async)."""
    if sink_is_async:
        await sink(data)  # type: ignore[misc]
    else:
        sink(data)


async def pump_with_deadline(
    exchange: Exchange, body_loop: BodyLoop, sink: Sink, limit: int | None, *, sink_is_async: bool
) -> bool:
    """Run an HTTP/1.1 body loop (unless the body was read already: then False).
    The read timeout runs from the start of each read.
    With an async sink it also bounds the sink's call until the next read (one
    scope around the loop, whose deadline the loop moves before every read); a
    synchronous sink cannot be interrupted anyway, so then the loop opens a scope
    only when a read has to wait (a body that came with its head opens none)."""
    if exchange.body_done:
        return False
    if not sink_is_async:
        return await body_loop(sink, limit, None)
    with trio.CancelScope() as deadline_scope:
        return await body_loop(sink, limit, deadline_scope)
    # Only the deadline scope ends the loop this way.
    raise errors.ReadTimeoutError()


async def pump_chunks(
    exchange: Exchange, sink: Sink, limit: int | None, *, sink_is_async: bool = False
) -> bool:
    """:meth:`Exchange.pump_body` over :meth:`Exchange.receive_body_chunk`, for
    transports without a faster way (HTTP/2 streams, ASGI)."""
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
                await feed(sink, data[:keep], sink_is_async=sink_is_async)
            return True
        await feed(sink, data, sink_is_async=sink_is_async)
