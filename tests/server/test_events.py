"""GET /events: hook events streamed to WebSocket subscribers."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio_websocket

from tests._support.server import Running
from tests._support.tus import TUS
from tusd_trio.hooks.model import HookEvent
from tusd_trio.protocol.info import UploadInfo
from tusd_trio.server._events import QUEUE_SIZE, _Subscriber


async def _next(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(5):
        return json.loads(await ws.get_message())  # type: ignore[no-any-return]


async def test_events_stream_every_event(make_server: Any) -> None:
    srv: Running = await make_server(expose_events=True)
    url = f"ws://127.0.0.1:{srv.port}/events"
    async with trio_websocket.open_websocket_url(url) as ws:
        await trio.sleep(0.1)
        loc = await srv.create(3, Upload_Metadata="filename YS50eHQ=")
        await srv.patch(loc, 0, b"abc")
        seen: list[dict[str, Any]] = []
        while not any(e["Type"] == "post-finish" for e in seen):
            seen.append(await _next(ws))
    types = [e["Type"] for e in seen]
    assert types[0] == "pre-create"
    assert "post-create" in types and "pre-finish" in types
    finished = next(e for e in seen if e["Type"] == "post-finish")
    assert finished["Event"]["Upload"]["Offset"] == 3
    assert finished["Event"]["Upload"]["MetaData"] == {"filename": "a.txt"}
    assert finished["Event"]["HTTPRequest"]["Method"] == "PATCH"


async def test_events_filters(make_server: Any) -> None:
    srv: Running = await make_server(expose_events=True)
    first = await srv.create(1)
    second = await srv.create(1)
    wanted = second.rsplit("/", 1)[1]
    url = f"ws://127.0.0.1:{srv.port}/events?upload={wanted}&type=post-finish"
    async with trio_websocket.open_websocket_url(url) as ws:
        await trio.sleep(0.1)
        await srv.patch(first, 0, b"a")
        await srv.patch(second, 0, b"b")
        event = await _next(ws)
        assert event["Type"] == "post-finish"
        assert event["Event"]["Upload"]["ID"] == wanted
        with trio.move_on_after(0.3):
            extra = await ws.get_message()
            raise AssertionError(f"unexpected event {extra!r}")


async def test_unknown_event_type_is_refused(make_server: Any) -> None:
    srv: Running = await make_server(expose_events=True)
    url = f"ws://127.0.0.1:{srv.port}/events?type=post-nothing"
    try:
        async with trio_websocket.open_websocket_url(url):
            raise AssertionError("the handshake should have been refused")
    except trio_websocket.ConnectionRejected as exc:
        assert exc.status_code == 400


async def test_events_are_off_by_default(srv: Running) -> None:
    url = f"ws://127.0.0.1:{srv.port}/events"
    try:
        async with trio_websocket.open_websocket_url(url):
            raise AssertionError("no event stream unless -expose-events")
    except trio_websocket.ConnectionRejected as exc:
        assert exc.status_code == 200  # the greeting page, not an upgrade
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 201


async def test_a_subscriber_that_falls_behind_is_dropped(make_server: Any) -> None:
    srv: Running = await make_server(expose_events=True)
    stream = srv.server.runtime.events
    slow = _Subscriber(frozenset(), frozenset())
    stream.subscribers.add(slow)
    info = UploadInfo(id="x" * 32, size=1)
    for _ in range(QUEUE_SIZE + 10):
        stream.publish(HookEvent("post-create", info, None))
    assert slow.dropped
    assert stream.dropped == 1
    # Uploads go on regardless.
    loc = await srv.create(1)
    assert (await srv.patch(loc, 0, b"z")).status_code == 204
    stream.subscribers.discard(slow)


async def test_slow_websocket_client_is_closed_with_1013(make_server: Any) -> None:
    srv: Running = await make_server(expose_events=True, network_timeout=0.5)
    url = f"ws://127.0.0.1:{srv.port}/events?type=post-create"
    async with trio_websocket.open_websocket_url(url, message_queue_size=0) as ws:
        await trio.sleep(0.1)
        # Flood: the client reads nothing, so the server's send times out or its queue fills.
        big = "m " + "QUFB" * 4000
        with trio.fail_after(30):
            while not srv.server.runtime.events.dropped:
                await srv.client.post(
                    srv.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": big}
                )
        with trio.fail_after(10):
            try:
                while True:
                    await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                # 1013 when the close frame could be sent, 1006 when the server had
                # to cut a connection that took nothing; never a corrupt frame (1007).
                assert exc.reason is not None
                assert exc.reason.code in (1013, 1006)
