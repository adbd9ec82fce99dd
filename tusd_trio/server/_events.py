"""Live events: ``GET /events`` upgrades to a WebSocket that streams hook events.

Every event the hooks would see (the same JSON as an HTTP hook's body) is sent to
each subscriber as one text message, optionally filtered by upload ID
(``?upload=<id>``, repeatable) and event type (``?type=post-finish,post-create``).

A subscriber gets a bounded queue.  One that does not keep up is dropped (closed
with code 1013, "try again later"): the stream never buffers without bound and
never slows an upload, because publishing only ever does ``send_nowait``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio
import trio_websocket

from ..auth import Authenticator, AuthError
from ..hooks.model import HOOK_TYPES, HookEvent, build_request
from ..protocol.config import CorsConfig
from ..protocol.cors import origin_allowed
from ..protocol.errors import OriginNotAllowedError
from ._state import ServerState
from ._streams import ReplayStream

log = logging.getLogger("tusd_trio")

#: Messages a subscriber may have queued before it is dropped.
QUEUE_SIZE = 256
#: Most subscribers at once; more are refused with 503.
MAX_SUBSCRIBERS = 1000
#: Close code for a subscriber that does not keep up (RFC 6455: try again later).
CLOSE_TOO_SLOW = 1013


class _Subscriber:
    def __init__(self, uploads: frozenset[str], types: frozenset[str]) -> None:
        self.uploads = uploads
        self.types = types
        self.send, self.receive = trio.open_memory_channel[str](QUEUE_SIZE)
        self.dropped = False

    def wants(self, event: HookEvent) -> bool:
        if self.types and event.type not in self.types:
            return False
        return not self.uploads or event.upload.id in self.uploads


#: Request headers that carry credentials: hooks get them (as in tusd), subscribers never.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


class EventStream:
    def __init__(
        self,
        *,
        auth: Authenticator,
        cors: CorsConfig | None,
        state: ServerState,
        network_timeout: float,
        api_key_header: str,
    ) -> None:
        self._auth = auth
        self._cors = cors
        self._state = state
        self._network_timeout = network_timeout
        self.subscribers: set[_Subscriber] = set()
        self.dropped = 0
        api_key_header = api_key_header.strip().lower()
        self._hidden_headers = CREDENTIAL_HEADERS | ({api_key_header} if api_key_header else set())

    @property
    def active(self) -> bool:
        return bool(self.subscribers)

    def publish(self, event: HookEvent) -> None:
        """Queue an event for every interested subscriber; never blocks."""
        if not self.subscribers:
            return
        payload: str | None = None
        for subscriber in list(self.subscribers):
            if subscriber.dropped or not subscriber.wants(event):
                continue
            if payload is None:
                payload = json.dumps(self._document(event))
            try:
                subscriber.send.send_nowait(payload)
            except trio.WouldBlock:
                self._drop(subscriber)

    def _document(self, event: HookEvent) -> dict[str, Any]:
        """The hook request document without other users' credential headers (the
        URI's credentials are already redacted by :func:`build_request`)."""
        document = build_request(event, idempotency_key=str(uuid.uuid4()))
        http = document["Event"]["HTTPRequest"]
        http["Header"] = {
            name: values
            for name, values in http["Header"].items()
            if name.lower() not in self._hidden_headers
        }
        return document

    def _drop(self, subscriber: _Subscriber) -> None:
        subscriber.dropped = True
        self.dropped += 1
        subscriber.send.close()

    async def serve(self, stream: trio.abc.Stream, request: h11.Request, buffered: bytes) -> None:
        """Take over a connection whose request asks for the WebSocket upgrade
        (``buffered``: what h11 read past the request head)."""
        query = parse_qs(urlsplit(request.target.decode("latin-1")).query)
        uploads = frozenset(_split(query.get("upload", [])))
        types = frozenset(_split(query.get("type", [])))
        replay = ReplayStream(stream, _raw_head(request) + buffered)
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(self._network_timeout):
                    ws_request = await trio_websocket.wrap_server_stream(nursery, replay)
            except (trio.TooSlowError, trio_websocket.HandshakeError, trio.BrokenResourceError):
                nursery.cancel_scope.cancel()
                return
            refusal = self._refusal(request)
            if refusal is not None:
                status, body, headers = refusal
                await ws_request.reject(status, body=body, extra_headers=headers)
                return
            unknown = types - set(HOOK_TYPES)
            if unknown:
                await ws_request.reject(
                    400, body=f"unknown event type: {', '.join(sorted(unknown))}\n".encode()
                )
                return
            if len(self.subscribers) >= MAX_SUBSCRIBERS or self._state.shutting_down:
                await ws_request.reject(503, body=b"too many event subscribers\n")
                return
            websocket = await ws_request.accept()
            subscriber = _Subscriber(uploads, types)
            self.subscribers.add(subscriber)
            try:
                await self._pump(websocket, subscriber)
            finally:
                self.subscribers.discard(subscriber)
                nursery.cancel_scope.cancel()

    def _refusal(self, request: h11.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """The origin policy (browsers let any page open a WebSocket, so the handshake
        checks ``Origin`` as uploads do); with access control on, only admins may watch
        every upload's events."""
        text = [("Content-Type", "text/plain; charset=utf-8")]
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers
        }
        cors = self._cors
        origin = headers.get("origin")
        if cors is not None and origin is not None and not origin_allowed(cors, origin):
            error = OriginNotAllowedError()
            return error.status, f"{error.code}: {error.message}\n".encode(), _encoded(text)
        auth = self._auth
        if not auth.enabled:
            return None
        try:
            principal = auth.authenticate(
                "GET", request.target.decode("latin-1"), headers, time.time()
            )
        except AuthError as exc:
            extra = _encoded([*text, *exc.headers.items()])
            return exc.status, f"{exc.code}: {exc.message}\n".encode(), extra
        if principal is None or not principal.admin:
            return 403, b"ERR_FORBIDDEN: the event stream is for administrators\n", _encoded(text)
        return None

    async def _pump(
        self, websocket: trio_websocket.WebSocketConnection, subscriber: _Subscriber
    ) -> None:
        async with trio.open_nursery() as nursery:

            async def watch_peer() -> None:
                # Messages from the client are ignored; this notices when it goes.
                try:
                    while True:
                        await websocket.get_message()
                except trio_websocket.ConnectionClosed:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch_peer)
            try:
                async with subscriber.receive:
                    async for payload in subscriber.receive:
                        with trio.move_on_after(self._network_timeout) as scope:
                            await websocket.send_message(payload)
                        if scope.cancelled_caught:
                            # The peer took nothing for a whole network timeout and a
                            # frame may be half written: no close frame can follow it
                            # cleanly, so the connection is cut (the peer sees 1006).
                            if not subscriber.dropped:
                                self._drop(subscriber)
                            nursery.cancel_scope.cancel()
                            return
            except trio_websocket.ConnectionClosed:
                nursery.cancel_scope.cancel()
                return
            if subscriber.dropped:
                # Its queue overflowed while the socket still took data: say why.
                with trio.move_on_after(2):
                    await websocket.aclose(code=CLOSE_TOO_SLOW, reason="subscriber too slow")
            nursery.cancel_scope.cancel()


def _encoded(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _raw_head(request: h11.Request) -> bytes:
    lines = [request.method + b" " + request.target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def is_websocket_upgrade(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False
