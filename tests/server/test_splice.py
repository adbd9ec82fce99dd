"""Bodies moved socket → pipe → file by the kernel (server/_splice.py): byte-exact, every
byte counted is on disk at the right offset, limits hold, and the bodies that need their
bytes in Python (checksums, TLS) keep the copying path and still work."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio

from tests._support.server import Running, ServerFactory
from tests._support.tls import client_ssl_context, write_self_signed_cert
from tests._support.tus import OCTET, TUS
from tusd_trio.protocol.info import UploadInfo
from tusd_trio.server import ServerState, _h11_fast as fast, _splice
from tusd_trio.server._lowat import LowWaterSocket
from tusd_trio.stores._file_writer import FileWriter

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(not hasattr(os, "splice"), reason="splice is Linux only")


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _raw_patch_head(srv: Running, location: str, length: int, **headers: str) -> bytes:
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return (
        f"PATCH {srv.path_of(location)} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def _offset(srv: Running, location: str) -> int:
    return int((await srv.head(location)).headers["upload-offset"])


async def test_big_upload_is_spliced_and_byte_exact(srv: Running) -> None:
    payload = _payload(24 * MiB + 12345, 1)
    location = await srv.create(len(payload))
    before = _splice.spliced_bytes()
    response = await srv.patch(location, 0, payload)
    assert response.status_code == 204, response.text
    # All but what came in with the request head went by splice.
    assert _splice.spliced_bytes() - before > len(payload) - MiB
    assert (await srv.client.get(location)).content == payload
    assert await _offset(srv, location) == len(payload)


async def test_interrupted_upload_keeps_every_byte_sent_at_the_right_offset(
    srv: Running,
) -> None:
    payload = _payload(16 * MiB, 2)
    first = await srv.create(len(payload))
    assert (await srv.patch(first, 0, payload[: 3 * MiB + 7])).status_code == 204
    # The second PATCH stops 5 MiB + 3 bytes short of its Content-Length.
    sent = 9 * MiB + 3
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        head = (await _raw_patch_head(srv, first, len(payload) - 3 * MiB - 7)).replace(
            b"Upload-Offset: 0", f"Upload-Offset: {3 * MiB + 7}".encode()
        )
        await stream.send_all(head + payload[3 * MiB + 7 : 3 * MiB + 7 + sent])
        await stream.send_eof()
        with trio.move_on_after(10):
            while await stream.receive_some(65536):
                pass
    end = 3 * MiB + 7 + sent
    assert await _offset(srv, first) == end
    assert (await srv.client.get(first)).content == payload[:end]
    # It resumes where it stopped and ends byte-exact.
    assert (await srv.patch(first, end, payload[end:])).status_code == 204
    assert (await srv.client.get(first)).content == payload


async def test_stalled_body_times_out_keeping_what_arrived(make_server: ServerFactory) -> None:
    srv = await make_server(network_timeout=0.5)
    payload = _payload(8 * MiB, 10)
    location = await srv.create(len(payload))
    sent = 2 * MiB + 5
    before = _splice.spliced_bytes()
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(await _raw_patch_head(srv, location, len(payload)) + payload[:sent])
        # The sender stalls without closing: the read timeout ends the request.
        answer = b""
        with trio.move_on_after(20):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 500"), answer[:200]
    assert b"ERR_READ_TIMEOUT" in answer
    assert _splice.spliced_bytes() - before > sent - MiB
    assert await _offset(srv, location) == sent
    assert (await srv.client.get(location)).content == payload[:sent]


async def test_body_over_the_upload_length_is_refused_and_nothing_is_written(
    srv: Running,
) -> None:
    payload = _payload(4 * MiB, 3)
    location = await srv.create(len(payload) - 1)
    response = await srv.patch(location, 0, payload)
    assert response.status_code == 413
    assert await _offset(srv, location) == 0


async def test_checksum_upload_takes_the_copying_path_and_is_verified(srv: Running) -> None:
    payload = _payload(6 * MiB + 1, 4)
    good = base64.b64encode(hashlib.sha1(payload).digest()).decode()
    bad = base64.b64encode(hashlib.sha1(payload[1:]).digest()).decode()
    location = await srv.create(len(payload))
    before = _splice.spliced_bytes()
    refused = await srv.patch(location, 0, payload, Upload_Checksum=f"sha1 {bad}")
    assert refused.status_code == 460
    assert await _offset(srv, location) == 0
    accepted = await srv.patch(location, 0, payload, Upload_Checksum=f"sha1 {good}")
    assert accepted.status_code == 204
    assert _splice.spliced_bytes() == before
    assert (await srv.client.get(location)).content == payload


async def test_tls_uploads_are_not_spliced_and_arrive_whole(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    cert, key = write_self_signed_cert(tmp_path)
    srv = await make_server(tls_certificate=cert, tls_key=key)
    url = f"https://127.0.0.1:{srv.port}/files/"
    payload = _payload(5 * MiB + 9, 5)
    before = _splice.spliced_bytes()
    async with httpx.AsyncClient(verify=client_ssl_context(cert), timeout=30) as client:
        created = await client.post(url, headers={**TUS, "Upload-Length": str(len(payload))})
        location = created.headers["location"]
        response = await client.patch(
            location, content=payload, headers={**OCTET, "Upload-Offset": "0"}
        )
        assert response.status_code == 204
        assert (await client.get(location)).content == payload
    assert _splice.spliced_bytes() == before


async def test_unix_socket_uploads_are_spliced_and_byte_exact(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    sock_path = str(tmp_path / "tus.sock")
    await make_server(unix_sock=sock_path)
    payload = _payload(3 * MiB + 21, 12)
    before = _splice.spliced_bytes()
    transport = httpx.AsyncHTTPTransport(uds=sock_path)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        url = "http://localhost/files/"
        created = await client.post(url, headers={**TUS, "Upload-Length": str(len(payload))})
        location = url + created.headers["location"].rsplit("/", 1)[1]
        response = await client.patch(
            location, content=payload, headers={**OCTET, "Upload-Offset": "0"}
        )
        assert response.status_code == 204
        assert (await client.get(location)).content == payload
    assert _splice.spliced_bytes() - before > len(payload) - MiB


async def test_splice_switched_off_copies(srv: Running) -> None:
    payload = _payload(3 * MiB, 6)
    location = await srv.create(len(payload))
    before = _splice.spliced_bytes()
    _splice.set_splice_enabled(False)
    try:
        assert (await srv.patch(location, 0, payload)).status_code == 204
    finally:
        _splice.set_splice_enabled(True)
    assert _splice.spliced_bytes() == before
    assert (await srv.client.get(location)).content == payload


# --- the pump itself, on a real TCP socket and a real file writer -----------------------


class _Counter:
    received = 0


def _request_head(length: int) -> h11.Connection:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(
        b"PATCH /files/x HTTP/1.1\r\nHost: x\r\n" + f"Content-Length: {length}\r\n\r\n".encode()
    )
    assert isinstance(conn.next_event(), h11.Request)
    return conn


def _writer(tmp_path: Path, existing: bytes) -> tuple[FileWriter, Path]:
    path = tmp_path / "upload"
    path.write_bytes(existing)
    info = UploadInfo(id="upload", size=0, size_is_deferred=True, offset=len(existing))
    return FileWriter(info, str(path), False, file_perms=0o600, fsync=False), path


async def _pump(
    tmp_path: Path, payload: bytes, limit: int | None, existing: bytes = b""
) -> tuple[Any, _Counter, FileWriter, Path]:
    conn = _request_head(len(payload))
    writer, path = _writer(tmp_path, existing)
    counter = _Counter()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    reader = LowWaterSocket(server.socket, patience=0.5)
    try:
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                try:
                    await client.send_all(payload)
                except trio.BrokenResourceError:
                    pass  # the pump stopped at the limit and the test closed

            nursery.start_soon(send)
            result = await fast.pump_direct(
                conn,
                reader,
                bytearray(64 * 1024),
                state=ServerState(request_completion_timeout=1),
                read_timeout=10,
                sink=writer.write_nowait,
                limit=limit,
                counter=counter,
            )
            nursery.cancel_scope.cancel()
    finally:
        await client.aclose()
        await server.aclose()
        for listener in listeners:
            await listener.aclose()
    return result, counter, writer, path


async def test_pump_splices_after_existing_bytes_and_keeps_appending(tmp_path: Path) -> None:
    existing = b"head-of-upload"
    payload = _payload(5 * MiB + 77, 7)
    before = _splice.spliced_bytes()
    result, counter, writer, path = await _pump(tmp_path, payload, None, existing)
    assert result is None
    assert counter.received == len(payload) == writer.written
    assert _splice.spliced_bytes() - before == len(payload)
    # O_APPEND is back: a later plain write lands at the end.
    writer.write_nowait(b"tail")
    await writer.commit()
    assert path.read_bytes() == existing + payload + b"tail"


async def test_pump_stops_at_the_limit_with_exactly_the_limit_on_disk(tmp_path: Path) -> None:
    payload = _payload(4 * MiB, 8)
    limit = 3 * MiB + 5
    result, counter, writer, path = await _pump(tmp_path, payload, limit)
    assert result is True
    assert counter.received == limit == writer.written
    await writer.commit()
    assert path.read_bytes() == payload[:limit]


async def test_a_file_that_cannot_take_splice_gets_the_bytes_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_splice = os.splice

    def no_splice_into_files(src: int, dst: int, count: int, **kwargs: Any) -> int:
        if "offset_dst" in kwargs:
            raise OSError(22, "Invalid argument")
        return real_splice(src, dst, count, **kwargs)

    monkeypatch.setattr(os, "splice", no_splice_into_files)
    payload = _payload(3 * MiB + 1, 9)
    try:
        result, counter, writer, path = await _pump(tmp_path, payload, None, b"ab")
        assert not _splice.splice_enabled()  # remembered for the next bodies
    finally:
        _splice.set_splice_enabled(True)
    assert result is None
    assert counter.received == len(payload) == writer.written
    await writer.commit()
    assert path.read_bytes() == b"ab" + payload


async def test_bodies_beyond_the_pipe_budget_are_copied(srv: Running) -> None:
    pool = _splice._pipes
    lent = []
    while (pipe := pool.take()) is not None:
        lent.append(pipe)
    assert len(lent) <= _splice.MAX_LENT_PIPES
    payload = _payload(2 * MiB + 3, 11)
    location = await srv.create(len(payload))
    before = _splice.spliced_bytes()
    try:
        assert (await srv.patch(location, 0, payload)).status_code == 204
    finally:
        for pipe in lent:
            pool.give_back(pipe, empty=True)
    assert _splice.spliced_bytes() == before
    assert (await srv.client.get(location)).content == payload
    # With the pipes back, the next body is spliced again.
    again = await srv.create(len(payload))
    assert (await srv.patch(again, 0, payload)).status_code == 204
    assert _splice.spliced_bytes() > before
