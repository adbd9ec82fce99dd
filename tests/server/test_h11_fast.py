"""The HTTP/1.1 fast path reads h11 internals (server/_h11_fast.py).  These tests fail
loudly when an h11 release moves or renames what it relies on: then re-check the fast
path against the new h11 before widening the pin in pyproject.toml."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import h11
import trio

from tusd_trio.server import ServerState, _h11_fast as fast

SIZE = 200_000


def _server_with_request_head(length: int = SIZE) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(
        b"PATCH /files/x HTTP/1.1\r\nHost: x\r\n" + f"Content-Length: {length}\r\n\r\n".encode()
    )
    assert isinstance(conn.next_event(), h11.Request)
    return conn


def test_h11_is_the_version_the_fast_path_was_checked_against() -> None:
    assert version("h11").startswith("0.16."), version("h11")


def test_the_private_names_exist() -> None:
    assert fast._ContentLengthReader is not None, "h11._readers.ContentLengthReader is gone"
    assert fast._normalize is not None, "h11._headers.normalize_and_validate is gone"


def test_the_content_length_reader_is_where_the_fast_path_looks() -> None:
    conn = _server_with_request_head()
    internal: Any = conn
    assert type(internal._reader) is fast._ContentLengthReader
    assert internal._reader._remaining == SIZE
    assert len(internal._receive_buffer) == 0
    assert fast.unread_body_length(conn) == SIZE
    assert fast.direct_body_possible(conn)


def test_buffered_body_bytes_or_a_small_body_keep_h11_reading() -> None:
    conn = _server_with_request_head()
    conn.receive_data(b"x")  # h11 holds a body byte: it must deliver it itself
    assert not fast.direct_body_possible(conn)
    assert not fast.direct_body_possible(_server_with_request_head(1000))


def test_h11_ends_the_message_once_told_the_body_was_read() -> None:
    conn = _server_with_request_head()
    internal: Any = conn
    internal._reader._remaining = 0
    assert type(conn.next_event()) is h11.EndOfMessage


def test_prepared_headers_serialise_as_h11_would() -> None:
    headers = [(b"Upload-Offset", b"3"), (b"Tus-Resumable", b"1.0.0"), (b"Content-Length", b"0")]
    plain = h11.Connection(h11.SERVER)
    prepared = h11.Connection(h11.SERVER)
    for conn in (plain, prepared):
        conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.next_event()
    a = plain.send(h11.Response(status_code=200, headers=headers))
    b = prepared.send(h11.Response(status_code=200, headers=fast.prepared_headers(headers)))
    assert a == b


class _Counter:
    received = 0


async def test_a_body_read_past_h11_arrives_whole_and_h11_ends_the_message() -> None:
    conn = _server_with_request_head()
    ours, theirs = trio.socket.socketpair()
    payload = bytes(range(256)) * (SIZE // 256) + b"z" * (SIZE % 256)
    got = bytearray()
    counter = _Counter()
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            view = memoryview(payload)
            while view:
                sent = await theirs.send(view[:65536])
                view = view[sent:]

        nursery.start_soon(send)
        result = await fast.pump_direct(
            conn,
            ours,
            bytearray(64 * 1024),
            state=ServerState(request_completion_timeout=1),
            read_timeout=10,
            sink=lambda chunk: got.extend(chunk),
            limit=None,
            counter=counter,
        )
    ours.close()
    theirs.close()
    assert result is None
    assert bytes(got) == payload
    assert counter.received == SIZE
    assert type(conn.next_event()) is h11.EndOfMessage
