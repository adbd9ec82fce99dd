"""The httptools connection serves a request head itself only when h11 reads it the same.

:func:`~tusd_trio.server._httptools.parse_head` either returns the head (the
httptools path serves it) or None (the connection is handed to h11).  Whatever it
returns a head for, h11 must accept, with the same method, target, header fields
and body length: otherwise a client would see the two parsers differ.
"""

from __future__ import annotations

import h11
from hypothesis import given, settings, strategies as st

from tusd_trio.server._httptools import parse_head

#: Mostly what clients send, with now and then what some parser reads its own way.
METHODS = [b"GET", b"HEAD", b"POST", b"PATCH", b"OPTIONS", b"DELETE"] * 3 + [
    b"get",
    b"CONNECT",
    b"B@D",
    b"PRI",
]
VERSIONS = [b"HTTP/1.1"] * 12 + [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1"]
NAMES = [
    b"Content-Length",
    b"Connection",
    b"Expect",
    b"Upload-Offset",
    b"X-A",
    b"Tus-Resumable",
] * 3 + [
    b"Host",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Bad Name",
    b"",
    b"X:Y",
    b"X\x80",
]
ODD = [0, 1, 0x0B, 0x0C, 0x7F, 0x80, 0xFF, 0x20, 0x09, 0x0D]
TEXT = st.lists(st.sampled_from([*b'aZ09/?#%:;,.-_"{}|\\^`<>'] * 12 + ODD), max_size=8).map(bytes)
VALUES = st.one_of(
    TEXT,
    st.sampled_from([b"0", b"5", b"+5", b"05", b"close", b"Keep-Alive, close", b"100-continue"]),
)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(METHODS))
    target = b"/files/" + draw(TEXT)
    version = draw(st.sampled_from(VERSIONS))
    gap = draw(st.sampled_from([b" "] * 8 + [b"  ", b"\t"]))
    line = method + b" " + target + gap + version
    fields = draw(st.lists(st.tuples(st.sampled_from(NAMES), VALUES), max_size=4))
    if draw(st.integers(0, 7)):
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b"x"))
    return line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"


def _h11_request(data: bytes) -> tuple[h11.Request, int] | None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    if type(event) is not h11.Request:
        return None
    length = 0
    for name, value in event.headers:
        if name == b"content-length":
            length = int(value)
    return event, length


@settings(max_examples=600, deadline=None)
@given(request_heads())
def test_a_head_httptools_serves_is_read_the_same_by_h11(data: bytes) -> None:
    ours = parse_head(data)
    if ours is None:
        return
    theirs = _h11_request(data)
    assert theirs is not None, data
    event, length = theirs
    assert ours.method == event.method.decode("ascii")
    assert ours.target == event.target.decode("latin-1")
    assert [(name.lower(), value) for name, value in ours.headers] == [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
    ]
    assert ours.length == length


def test_an_ordinary_tus_head_is_served_by_httptools() -> None:
    head = parse_head(
        b"PATCH /files/abc HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        b"Content-Type: application/offset+octet-stream\r\nContent-Length: 4096\r\n"
        b"Connection: keep-alive\r\nExpect: 100-continue\r\n\r\n"
    )
    assert head is not None
    assert (head.method, head.target, head.length) == ("PATCH", "/files/abc", 4096)
    assert head.keep_alive and head.expect_continue
    closing = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\n\r\n")
    assert closing is not None and not closing.keep_alive


def test_what_h11_must_read_is_handed_over() -> None:
    for data in (
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        assert parse_head(data) is None, data
