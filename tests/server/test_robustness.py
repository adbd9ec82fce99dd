"""Timeouts, disconnects, lock hand-over, shutdown: bytes that arrived are kept."""

from __future__ import annotations

import os
import socket

import httpx
import trio

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import TUS
from tusd_trio.protocol import errors


def _patch_head(path: str, offset: int, length: int) -> bytes:
    return (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _wait_offset(srv: Running, loc: str, expected: int) -> None:
    with trio.fail_after(10):
        while True:
            h = await srv.head(loc)
            if h.headers.get("upload-offset") == str(expected):
                return
            await trio.sleep(0.02)


async def test_read_timeout_keeps_bytes(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(network_timeout=0.5)
    loc = await srv.create(100)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(_patch_head(path, 0, 100) + b"x" * 40)
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 500"), reply
    assert b"ERR_READ_TIMEOUT" in reply
    assert (await srv.head(loc)).headers["upload-offset"] == "40"


async def test_disconnect_mid_body_keeps_bytes(srv: Running) -> None:
    loc = await srv.create(1000)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await stream.send_all(_patch_head(path, 0, 1000) + b"y" * 300)
    await trio.sleep(0.1)
    await stream.aclose()
    await _wait_offset(srv, loc, 300)
    r = await srv.patch(loc, 300, b"z" * 700)
    assert r.status_code == 204
    assert (await srv.client.get(loc)).content == b"y" * 300 + b"z" * 700


async def test_connection_reset_mid_body_keeps_bytes(srv: Running) -> None:
    loc = await srv.create(10_000)
    path = loc.split(str(srv.port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(_patch_head(path, 0, 10_000) + b"r" * 5000)
    await trio.sleep(0.1)
    # Linger 0: close with a RST.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    await _wait_offset(srv, loc, 5000)


async def test_second_request_interrupts_the_lock_holder(srv: Running) -> None:
    loc = await srv.create(1000)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(_patch_head(path, 0, 1000) + b"a" * 200)
        await trio.sleep(0.2)
        # A HEAD (e.g. a client resuming after a dead connection) takes over.
        h = await srv.head(loc)
        assert h.status_code == 200
        assert h.headers["upload-offset"] == "200"
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"ERR_UPLOAD_INTERRUPTED" in reply
    assert b"Connection: close" in reply


async def test_lock_timeout(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(acquire_lock_timeout=0.3)
    loc = await srv.create(10)
    upload_id = loc.rsplit("/", 1)[1]
    # Hold the lock from outside any request (no release callback to honour).
    await srv.server.runtime.locker.acquire(upload_id, max_wait=1)
    try:
        r = await srv.head(loc)
        assert r.status_code == 500
        r = await srv.patch(loc, 0, b"a")
        assert r.status_code == 500
        assert r.text.startswith("ERR_LOCK_TIMEOUT")
    finally:
        srv.server.runtime.locker.release(upload_id)
    assert (await srv.head(loc)).status_code == 200


async def test_parallel_downloads_of_a_finished_upload(srv: Running) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    loc = await srv.create(len(payload))
    await srv.patch(loc, 0, payload)
    results: list[bytes] = []

    async def fetch() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            results.append((await client.get(loc)).content)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(fetch)
    assert results == [payload] * 8


async def test_graceful_shutdown_answers_503_and_keeps_bytes(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(shutdown_timeout=5)
    loc = await srv.create(1000)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(_patch_head(path, 0, 1000) + b"s" * 123)
        await trio.sleep(0.2)
        srv.server.request_shutdown()
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 503"), reply
        assert b"ERR_SERVER_SHUTDOWN" in reply
    with trio.fail_after(10):
        await srv.server.wait_stopped()
    upload_id = loc.rsplit("/", 1)[1]
    assert os.path.getsize(os.path.join(srv.server.config.upload_dir, upload_id)) == 123
    # A new server on the same directory resumes from the saved offset.
    again = await make_server()
    new_loc = again.url + upload_id
    assert (await again.head(new_loc)).headers["upload-offset"] == "123"
    r = await again.patch(new_loc, 123, b"t" * 877)
    assert r.status_code == 204


async def test_idle_connections_time_out(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(network_timeout=5, idle_timeout=0.3)
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        with trio.fail_after(5):
            data = await stream.receive_some(100)
    assert data == b""


async def test_header_that_never_ends_is_cut(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(network_timeout=0.5)
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(b"POST /files/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        with trio.fail_after(5):
            data = b""
            while True:
                chunk = await stream.receive_some(1000)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 408")


async def test_oversized_headers_get_431(srv: Running) -> None:
    req = b"POST /files/ HTTP/1.1\r\nHost: x\r\nUpload-Metadata: " + b"a" * 200_000 + b"\r\n\r\n"
    out = await raw_request(srv.port, req)
    assert out.startswith(b"HTTP/1.1 431")


async def test_garbage_after_request(srv: Running) -> None:
    req = b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage\r\n\r\n"
    out = await raw_request(srv.port, req)
    statuses = [line for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.1")]
    assert statuses[0] == b"HTTP/1.1 200 OK"
    assert statuses[1].startswith(b"HTTP/1.1 400")


async def test_conflicting_content_length(srv: Running) -> None:
    req = (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n"
        b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc"
    )
    out = await raw_request(srv.port, req)
    assert out.startswith(b"HTTP/1.1 400")
    assert os.listdir(srv.server.config.upload_dir) == []


async def test_max_connections_refuses_cleanly(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(max_connections=2)
    a = await trio.open_tcp_stream("127.0.0.1", srv.port)
    b = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await trio.sleep(0.1)
    out = await raw_request(srv.port, b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503")
    assert b"ERR_TOO_MANY_CONNECTIONS" in out
    await a.aclose()
    await b.aclose()
    await trio.sleep(0.1)
    out = await raw_request(
        srv.port, b"OPTIONS /files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200")


async def test_unix_socket(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sock_path = str(tmp_path / "tus.sock")
    srv = await make_server(unix_sock=sock_path)
    transport = httpx.AsyncHTTPTransport(uds=sock_path)
    async with httpx.AsyncClient(transport=transport) as client:
        r = await client.post("http://localhost/files/", headers={**TUS, "Upload-Length": "1"})
        assert r.status_code == 201
    assert srv.server.urls == []


async def test_store_full_answers_507_and_keeps_bytes(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A store whose writer fails with ENOSPC after some bytes: the fault cannot be
    # caused for real without a tiny filesystem (see tests/stores for that).
    from tusd_trio.stores.memory import MemoryStore, _MemoryWriter

    class FullWriter(_MemoryWriter):
        async def write(self, data: bytes | bytearray | memoryview) -> None:
            if self.written + len(data) > 5:
                raise errors.InsufficientStorageError()
            await super().write(data)

    class FullStore(MemoryStore):
        async def open_writer(self, info, *, staged):  # type: ignore[no-untyped-def]
            await trio.lowlevel.checkpoint()
            return FullWriter(self._entry(info.id), staged)

    srv = await make_server(store=FullStore())
    loc = await srv.create(20)
    r = await srv.patch(loc, 0, b"abc")
    assert r.status_code == 204
    r = await srv.patch(loc, 3, b"defghijk")
    assert r.status_code == 507
    assert r.text.startswith("ERR_INSUFFICIENT_STORAGE")
    assert (await srv.head(loc)).headers["upload-offset"] == "3"
