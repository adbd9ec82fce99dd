"""BatchingTLSStream: one read returns every TLS record already received, bytes intact;
and the HTTP/1.1 body pump reads a large body over TLS past h11 without losing a byte."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests._support.server import ServerFactory
from tests._support.tls import client_ssl_context, write_self_signed_cert
from tests._support.tus import OCTET, TUS
from tusd_trio.server import Server
from tusd_trio.server._streams import direct_reader
from tusd_trio.server._tls import create_ssl_context
from tusd_trio.server._tls_stream import BatchingTLSStream

RECORD = 16 * 1024


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str]:
    return write_self_signed_cert(tmp_path)


@asynccontextmanager
async def pair(
    cert: tuple[str, str],
) -> AsyncIterator[tuple[BatchingTLSStream, trio.SSLStream[trio.SocketStream]]]:
    crt, key = cert
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    tcp_client = await trio.open_tcp_stream("127.0.0.1", port)
    tcp_server = await listeners[0].accept()
    server = trio.SSLStream(
        tcp_server, create_ssl_context(crt, key, alpn=["http/1.1"]), server_side=True
    )
    client = trio.SSLStream(tcp_client, client_ssl_context(crt), server_hostname="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    try:
        yield BatchingTLSStream(server), client
    finally:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await client.aclose()  # a test may have reset it
        await server.aclose()
        for listener in listeners:
            await listener.aclose()


def test_relies_on_trio_internals_that_exist() -> None:
    """The batching needs SSLStream's TLS object and incoming BIO; if a trio release
    renames them, reads fall back to one record each: this test says so first."""
    transport, _ = trio.testing.memory_stream_pair()
    tls: Any = trio.SSLStream(
        transport, ssl.create_default_context(), server_hostname="example.org"
    )
    assert isinstance(tls._ssl_object, ssl.SSLObject)
    assert isinstance(tls._incoming, ssl.MemoryBIO)
    assert BatchingTLSStream(tls)._object is tls._ssl_object


async def _send_records(client: trio.SSLStream[trio.SocketStream], data: bytes) -> None:
    for start in range(0, len(data), RECORD):
        await client.send_all(data[start : start + RECORD])  # one record each


async def test_one_read_returns_every_record_already_received(cert: tuple[str, str]) -> None:
    data = os.urandom(16 * RECORD + 123)
    async with pair(cert) as (server, client):
        chunks: list[bytes] = []
        sizes: list[int] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_records, client, data)
                await trio.sleep(0.2)  # let records pile up in the kernel
                while sum(sizes) < len(data):
                    chunk = await server.receive_some(len(data))
                    assert chunk
                    sizes.append(len(chunk))
                    chunks.append(chunk)
        # Joined only now: a read's bytes stay as they were after the next reads.
        assert b"".join(chunks) == data
        # Records were waiting: reads return several at once.
        assert max(sizes) > RECORD
        assert len(sizes) < 17


async def test_recv_into_fills_the_buffer_and_reports_eof(cert: tuple[str, str]) -> None:
    data = os.urandom(8 * RECORD + 7)
    async with pair(cert) as (server, client):
        buffer = bytearray(4 * RECORD + 5)
        view = memoryview(buffer)
        got = bytearray()
        reads = []

        async def send_then_close() -> None:
            await _send_records(client, data)
            await client.aclose()  # close_notify: the end of the stream

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_then_close)
                await trio.sleep(0.2)
                while True:
                    n = await server.recv_into(view, len(buffer))
                    if n == 0:
                        break
                    reads.append(n)
                    got += view[:n]
        assert bytes(got) == data
        assert max(reads) > RECORD
        assert direct_reader(server, 10) is server


async def test_small_max_bytes_is_respected(cert: tuple[str, str]) -> None:
    data = os.urandom(4 * RECORD)
    async with pair(cert) as (server, client):
        got = b""
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_records, client, data)
                await trio.sleep(0.2)
                while len(got) < len(data):
                    chunk = await server.receive_some(1000)
                    assert 0 < len(chunk) <= 1000
                    got += chunk
        assert got == data


# --- through the server --------------------------------------------------------------------


@pytest.fixture
def start(make_server: ServerFactory) -> Callable[..., Awaitable[Server]]:
    async def factory(**overrides: Any) -> Server:
        return (await make_server(**overrides)).server

    return factory


async def test_large_tls_patch_in_small_records_is_stored_intact(
    start: Any, cert: tuple[str, str], tmp_path: Path
) -> None:
    """A 3 MiB PATCH over TLS sent 4 KiB at a time (many small records) goes past
    h11 in batches; the stored bytes are exactly the sent ones."""
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key, upload_dir=str(tmp_path / "up"))
    port = server.bound_port
    data = os.urandom(3 * 1024 * 1024 + 11)
    async with httpx.AsyncClient(http2=False, verify=client_ssl_context(crt), timeout=30) as client:
        r = await client.post(
            f"https://127.0.0.1:{port}/files/", headers={**TUS, "Upload-Length": str(len(data))}
        )
        location = r.headers["location"]
    path = httpx.URL(location).path
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(tcp, client_ssl_context(crt), server_hostname="127.0.0.1")
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: {OCTET['Content-Type']}\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with trio.fail_after(30):
        await tls.send_all(head)
        for start_at in range(0, len(data), 4096):
            await tls.send_all(data[start_at : start_at + 4096])
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await tls.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert f"upload-offset: {len(data)}".encode() in answer.lower()
    await tls.aclose()
    upload_id = path.rsplit("/", 1)[1]
    assert (tmp_path / "up" / upload_id).read_bytes() == data


async def test_tls_patch_cut_mid_body_keeps_what_arrived(
    start: Any, cert: tuple[str, str], tmp_path: Path
) -> None:
    """The client goes away (no close_notify) after part of a large body: every byte
    that arrived is kept, as over plain HTTP/1.1."""
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key, upload_dir=str(tmp_path / "up"))
    port = server.bound_port
    sent = os.urandom(700 * 1024)
    async with httpx.AsyncClient(http2=False, verify=client_ssl_context(crt), timeout=30) as client:
        r = await client.post(
            f"https://127.0.0.1:{port}/files/", headers={**TUS, "Upload-Length": "5000000"}
        )
        location = r.headers["location"]
        path = httpx.URL(location).path
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        tls = trio.SSLStream(tcp, client_ssl_context(crt), server_hostname="127.0.0.1")
        head = (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: {OCTET['Content-Type']}\r\nUpload-Offset: 0\r\n"
            "Content-Length: 5000000\r\n\r\n"
        ).encode()
        with trio.fail_after(30):
            await tls.send_all(head + sent)
            await trio.sleep(0.3)
            await tcp.aclose()  # gone without a TLS close_notify
            while True:
                r = await client.head(location, headers=TUS)
                if r.status_code == 200 and r.headers["upload-offset"] == str(len(sent)):
                    break
                await trio.sleep(0.05)
    upload_id = path.rsplit("/", 1)[1]
    assert (tmp_path / "up" / upload_id).read_bytes() == sent


async def test_reset_connection_is_a_broken_stream(cert: tuple[str, str]) -> None:
    """A peer that resets the connection mid-stream: reads end in BrokenResourceError
    (as trio reports it), never in a clean end of stream."""
    async with pair(cert) as (server, client):
        await _send_records(client, os.urandom(8 * RECORD))
        sock = client.transport_stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.transport_stream.aclose()  # with SO_LINGER 0: a reset
        await trio.sleep(0.2)
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
            while True:
                chunk = await server.receive_some(64 * RECORD)
                assert chunk, "a reset read as a clean end of stream"
