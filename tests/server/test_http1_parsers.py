"""Both HTTP/1.1 parsers (-http1-parser h11 and httptools) answer the same bytes.

Every test runs once per parser; the differential test sends the same raw bytes to
a server of each kind and compares the answers byte for byte (``Date`` aside).
The httptools connection serves ordinary requests itself and hands everything
else to h11 (tusd_trio/server/_httptools.py), so these cover both its own path and
each hand-over.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
import trio

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tusd_trio.config import ConfigError
from tusd_trio.server import _connections
from tusd_trio.server._h11 import HTTPConnection
from tusd_trio.server._httptools import HttpToolsConnection

PARSERS = ("h11", "httptools")

#: Fields that differ between any two answers.
_VARYING = re.compile(rb"\r\n(Date|X-Request-ID): [^\r]*")


def _without_varying(data: bytes) -> bytes:
    return _VARYING.sub(rb"\r\n\1: -", data)


def _path(srv: Running, location: str) -> str:
    return location.split(str(srv.port), 1)[1]


def _statuses(reply: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", reply)]


async def _server(make_server: Any, parser: str, **config: Any) -> Running:
    srv: Running = await make_server(http1_parser=parser, **config)
    return srv


def _create(length: int) -> bytes:
    return (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        b"Upload-Length: %d\r\nContent-Length: 0\r\n\r\n" % length
    )


#: Requests each parser must answer the same way (status as h11 decides it): ordinary
#: ones (httptools' own path) and heads that httptools hands to h11.
HEADS = {
    "OPTIONS": (b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n", 200),
    "HEAD of no upload": (
        b"HEAD /files/nothing HTTP/1.1\r\nhost: x\r\nTus-Resumable:  1.0.0 \r\n\r\n",
        404,
    ),
    "GET of no upload, closing": (
        b"GET /files/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        404,
    ),
    "space in a header name": (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
    "no Host": (b"OPTIONS /files/ HTTP/1.1\r\nTus-Resumable: 1.0.0\r\n\r\n", 400),
    "two Hosts": (b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "two spaces in the request line": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "a blank line first": (b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "TLS on the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    "control byte in a value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    "both lengths": (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "bad Content-Length": (b"POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400),
    "an unknown method": (b"BREW /files/ HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    "bare line feeds": (b"OPTIONS /files/ HTTP/1.1\nHost: x\n\n", 200),
    "a head cut short": (b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n", 400),
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", sorted(HEADS))
async def test_each_head_gets_h11s_answer(make_server: Any, parser: str, case: str) -> None:
    srv = await _server(make_server, parser)
    data, status = HEADS[case]
    reply = await raw_request(srv.port, data, half_close=True)
    assert _statuses(reply)[:1] == [status], reply


@pytest.mark.parametrize("case", sorted(HEADS))
async def test_both_parsers_answer_the_same_bytes(make_server: Any, case: str) -> None:
    data, _ = HEADS[case]
    replies = []
    for parser in PARSERS:
        srv = await _server(make_server, parser)
        reply = await raw_request(srv.port, data, half_close=True)
        replies.append(_without_varying(reply))
    assert replies[0] == replies[1]


@pytest.mark.parametrize("parser", PARSERS)
async def test_a_head_beyond_max_header_size_gets_431(make_server: Any, parser: str) -> None:
    srv = await _server(make_server, parser, max_header_size=4096)
    small = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n"
    assert _statuses(await raw_request(srv.port, small + _close_request()))[0] == 200
    big = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n"
    reply = await raw_request(srv.port, big)
    assert _statuses(reply) == [431], reply
    endless = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9000
    reply = await raw_request(srv.port, endless)
    assert _statuses(reply) == [431], reply


def _close_request() -> bytes:
    return b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("parser", PARSERS)
async def test_pipelined_requests_are_answered_in_order(make_server: Any, parser: str) -> None:
    srv = await _server(make_server, parser)
    loc = await srv.create(6)
    path = _path(srv, loc).encode()
    patch = (
        b"PATCH " + path + b" HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        b"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        b"Content-Length: 6\r\n\r\nabcdef"
    )
    head = b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n\r\n"
    reply = await raw_request(srv.port, _create(3) + patch + head + _close_request())
    assert _statuses(reply) == [201, 204, 200, 200], reply
    assert reply.count(b"Upload-Offset: 6\r\n") == 2
    assert reply.endswith(b"\r\n\r\n")
    assert b"Connection: close" in reply.rsplit(b"HTTP/1.1 ", 1)[1]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("good", [True, False])
async def test_a_chunked_body_with_a_checksum_trailer(
    make_server: Any, parser: str, good: bool
) -> None:
    srv = await _server(make_server, parser)
    loc = await srv.create(11)
    body = b"hello world"
    digest = hashlib.sha1(body if good else b"something else").digest()
    checksum = b"sha1 " + base64.b64encode(digest)
    request = (
        b"PATCH " + _path(srv, loc).encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nTrailer: Upload-Checksum\r\n"
        b"Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nUpload-Checksum: " + checksum + b"\r\n\r\n"
    )
    reply = await raw_request(srv.port, request + _close_request())
    assert _statuses(reply) == ([204, 200] if good else [460, 200]), reply
    offset = (await srv.head(loc)).headers["upload-offset"]
    assert offset == ("11" if good else "0")


@pytest.mark.parametrize("parser", PARSERS)
async def test_expect_100_continue_is_answered_before_the_body(
    make_server: Any, parser: str
) -> None:
    srv = await _server(make_server, parser)
    loc = await srv.create(5)
    head = (
        b"PATCH " + _path(srv, loc).encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: 5\r\n\r\n"
    )
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(head)
        with trio.fail_after(10):
            interim = await stream.receive_some(65536)
        assert interim == b"HTTP/1.1 100 \r\n\r\n"
        await stream.send_all(b"12345" + _close_request())
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                reply += chunk
    assert _statuses(reply) == [204, 200], reply
    assert (await srv.head(loc)).headers["upload-offset"] == "5"


@pytest.mark.parametrize("parser", PARSERS)
async def test_http_1_0_gets_one_answer_then_the_connection_closes(
    make_server: Any, parser: str
) -> None:
    srv = await _server(make_server, parser)
    options = b"OPTIONS /files/ HTTP/1.0\r\n\r\n"
    reply = await raw_request(srv.port, options + options)
    assert _statuses(reply) == [200], reply
    assert b"Connection: close" in reply


@pytest.mark.parametrize("parser", PARSERS)
async def test_connection_close_is_honoured(make_server: Any, parser: str) -> None:
    srv = await _server(make_server, parser)
    reply = await raw_request(srv.port, _close_request() + _close_request())
    assert _statuses(reply) == [200], reply
    assert reply.count(b"Connection: close") == 1


@pytest.mark.parametrize("parser", PARSERS)
async def test_a_large_body_is_pumped_whole(make_server: Any, parser: str) -> None:
    srv = await _server(make_server, parser)
    size = 3 * 1024 * 1024 + 17
    loc = await srv.create(size)
    body = bytes(range(256)) * (size // 256) + b"q" * (size % 256)
    r = await srv.patch(loc, 0, body)
    assert r.status_code == 204
    assert (await srv.client.get(loc)).content == body


@pytest.mark.parametrize("parser", PARSERS)
async def test_an_unread_small_body_is_drained_and_the_connection_kept(
    make_server: Any, parser: str
) -> None:
    srv = await _server(make_server, parser)
    # No Tus-Resumable: refused before the body is read; the next request still works.
    refused = b"POST /files/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345"
    reply = await raw_request(srv.port, refused + _close_request())
    assert _statuses(reply) == [412, 200], reply


@pytest.mark.parametrize("parser", PARSERS)
async def test_upgrades_are_served_after_the_hand_over(make_server: Any, parser: str) -> None:
    srv = await _server(make_server, parser, enable_h2c=True, expose_events=True)
    h2c = (
        b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
    )
    reply = await raw_request(srv.port, h2c, read_timeout=1)
    assert reply.startswith(b"HTTP/1.1 101 \r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"), reply
    websocket = (
        b"GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    reply = await raw_request(srv.port, websocket, read_timeout=1)
    assert reply.startswith(b"HTTP/1.1 101 "), reply


@pytest.mark.parametrize("parser", PARSERS)
async def test_the_slow_head_gets_408(make_server: Any, parser: str) -> None:
    srv = await _server(make_server, parser, network_timeout=0.5)
    reply = await raw_request(srv.port, b"OPTIONS /files/ HTTP/1.1\r\nHost:", read_timeout=10)
    assert _statuses(reply) == [408], reply


def test_the_parser_is_chosen_by_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _connections.use_httptools("auto")
    assert _connections.use_httptools("httptools")
    assert not _connections.use_httptools("h11")
    monkeypatch.setattr(_connections, "HTTPTOOLS_AVAILABLE", False)
    assert not _connections.use_httptools("auto")
    with pytest.raises(ConfigError, match="httptools"):
        _connections.use_httptools("httptools")


@pytest.mark.parametrize(
    ("parser", "kind"), [("h11", HTTPConnection), ("httptools", HttpToolsConnection)]
)
async def test_the_server_serves_with_the_chosen_parser(
    make_server: Any, parser: str, kind: type
) -> None:
    srv = await _server(make_server, parser)
    seen: list[object] = []
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(10):
            await stream.receive_some(65536)
        seen = list(srv.server.connections)
    assert [type(connection) for connection in seen] == [kind]
