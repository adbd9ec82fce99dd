"""The daemon with the Redis locker (real Redis on 127.0.0.1:6379): a lease lost
mid-PATCH stops the write with 503 ERR_LOCK_LOST, an unreachable Redis answers
503 ERR_LOCKER_UNAVAILABLE with Retry-After, and readiness reports the locker."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import trio

from tests._support.redis import SHARED_REDIS as REDIS, redis_cli
from tests._support.server import ServerFactory
from tests._support.tus import TUS
from tusd_trio.lockers.redis import RedisLocker
from tusd_trio.stores.file import FileStore


async def test_lease_lost_mid_patch_stops_the_write(
    make_server: ServerFactory, tmp_path: Any
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:10]}:"
    locker = RedisLocker(REDIS, ttl=1.5, key_prefix=prefix)
    srv = await make_server(store=FileStore(str(tmp_path / "up")), locker=locker)
    location = await srv.create(1_000_000)
    upload_id = location.rsplit("/", 1)[1]
    path = httpx.URL(location).raw_path.decode()
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    await stream.send_all(head + b"a" * 1000)
    # The lease exists while the PATCH runs; take it away behind the holder's back.
    with trio.fail_after(10):
        while redis_cli("EXISTS", locker.key(upload_id)) != "1":
            await trio.sleep(0.02)
    redis_cli("SET", locker.key(upload_id), "someone-else", "PX", "60000")
    answer = b""
    with trio.fail_after(15):
        while b"\r\n\r\n" not in answer:
            await stream.send_all(b"b" * 100)  # keeps trickling until the server answers
            with trio.move_on_after(0.1):
                answer += await stream.receive_some(65536)
    with trio.move_on_after(10):  # the answer closes the connection: read it all
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await stream.aclose()
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 503 " in status_line
    assert b"Retry-After:" in rest or b"retry-after:" in rest.lower()
    assert b"ERR_LOCK_LOST" in answer
    # The other owner's lease is untouched (compare-and-delete).
    assert redis_cli("GET", locker.key(upload_id)) == "someone-else"
    redis_cli("DEL", locker.key(upload_id))
    r = await srv.head(location)
    assert r.status_code == 200
    offset = int(r.headers["upload-offset"])
    assert 1000 <= offset < 1_000_000
    data = (tmp_path / "up" / upload_id).read_bytes()
    assert len(data) == offset
    assert data[:1000] == b"a" * 1000
    assert set(data[1000:]) <= {ord("b")}


async def test_redis_unreachable_gives_503_with_retry_after(
    make_server: ServerFactory, tmp_path: Any
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    locker = RedisLocker(f"redis://127.0.0.1:{port}/0", ttl=5, timeout=0.5)
    srv = await make_server(store=FileStore(str(tmp_path / "up")), locker=locker)
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "5"})
    # Creation needs no lock without a body; the PATCH does.
    assert r.status_code == 201
    location = r.headers["location"]
    r = await srv.patch(location, 0, b"hello")
    assert r.status_code == 503
    assert "ERR_LOCKER_UNAVAILABLE" in r.text
    assert r.headers["retry-after"].isdigit()
    ready = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready")
    assert ready.status_code == 503
    assert "failing" in ready.json()["checks"]["locker"]


async def test_readiness_reports_a_healthy_redis(make_server: ServerFactory, tmp_path: Any) -> None:
    locker = RedisLocker(REDIS, key_prefix=f"t-{uuid.uuid4().hex[:10]}:")
    srv = await make_server(store=FileStore(str(tmp_path / "up")), locker=locker)
    ready = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["locker"] == "ok"
    location = await srv.create(3)
    assert (await srv.patch(location, 0, b"abc")).status_code == 204
