"""An :class:`~._exchange.Exchange` over ASGI ``receive``/``send``.

The same :class:`~tusd_trio.server._handler.TusHandler` (and so the same protocol
core) serves native connections and ASGI requests: this adapter only changes
where body bytes come from and where the answer goes.

Memory: the body is never accumulated.  Each ``http.request`` message is handed
to the store's sink before the next one is received, so an upload holds one
message (the ASGI server's chunk, 16-64 KiB with hypercorn) plus whatever the
server itself queues (hypercorn: ``max_app_queue_size`` messages, 10 by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from ..protocol import errors
from ..protocol.messages import Request
from ._exchange import Sink, pump_chunks
from ._framing import RawHeaders, without_hop_by_hop
from ._streams import ConnectionClosedError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ASGIExchange:
    """One ASGI ``http`` request and its response, as the handler sees them.

    Request trailers do not exist in ASGI, so ``trailers`` stays empty (the
    checksum-trailer extension then answers that the announced trailer is missing).
    1xx informational responses are not part of ASGI either: they are skipped.
    The ASGI server frames the message: hop-by-hop headers are left out.
    """

    def __init__(
        self,
        request: Request,
        has_body: bool,
        receive: Receive,
        send: Send,
        *,
        remote_addr: str,
        network_timeout: float,
        http_version: str = "1.1",
    ) -> None:
        self.request = request
        self.has_body = has_body
        self.body_done = not has_body
        self.received = 0
        self.trailers: list[tuple[str, str]] = []
        self.response_started = False
        self.close_after = False
        self._receive = receive
        self._send = send
        self._remote = remote_addr
        self._timeout = network_timeout
        self._http_version = http_version
        self.disconnected = False

    @property
    def remote_addr(self) -> str:
        return self._remote

    # --- request body ----------------------------------------------------------------

    async def _next_message(self) -> Message:
        with trio.move_on_after(self._timeout):
            try:
                return await self._receive()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                self.disconnected = True
                raise errors.ConnectionResetError_() from None
        raise errors.ReadTimeoutError()

    async def receive_body_chunk(self) -> bytes | None:
        """The next piece of the body, ``None`` at its end.

        Raises :class:`~tusd_trio.protocol.errors.ReadTimeoutError` when nothing
        arrives within the network timeout and
        :class:`~tusd_trio.protocol.errors.UnexpectedEOFError` when the client
        disconnects mid-body.
        """
        while not self.body_done:
            message = await self._next_message()
            kind = message.get("type")
            if kind == "http.request":
                body = message.get("body", b"")
                if not message.get("more_body", False):
                    self.body_done = True
                if body:
                    data = body if type(body) is bytes else bytes(body)
                    self.received += len(data)
                    return data
                continue
            if kind == "http.disconnect":
                self.body_done = True
                self.disconnected = True
                raise errors.UnexpectedEOFError()
        return None

    async def pump_body(
        self, sink: Sink, limit: int | None, *, sink_is_async: bool = False
    ) -> bool:
        return await pump_chunks(self, sink, limit, sink_is_async=sink_is_async)

    # --- response ------------------------------------------------------------------------

    async def send_informational(self, status: int, headers: list[tuple[str, str]]) -> None:
        await trio.lowlevel.checkpoint()

    async def start_response(
        self, status: int, headers: RawHeaders, body: bytes = b"", *, end: bool
    ) -> None:
        out = without_hop_by_hop(headers)
        if self.close_after and not self.body_done and self._http_version.startswith("1"):
            # The rest of the body will not be read: ask the server to close.
            out.append((b"connection", b"close"))
        self.response_started = True
        await self._emit({"type": "http.response.start", "status": status, "headers": out})
        if body or end:
            await self._emit({"type": "http.response.body", "body": body, "more_body": not end})

    async def send_body(self, data: bytes) -> None:
        await self._emit({"type": "http.response.body", "body": bytes(data), "more_body": True})

    async def end_response(self) -> None:
        await self._emit({"type": "http.response.body", "body": b"", "more_body": False})

    async def _emit(self, message: Message) -> None:
        try:
            await self._send(message)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.disconnected = True
            raise ConnectionClosedError(reset=True) from exc
