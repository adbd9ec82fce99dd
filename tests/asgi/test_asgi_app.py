"""tus conformance of the ASGI app under a real hypercorn (trio worker)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import trio

from tests._support.server import build_asgi_app
from tests._support.tus import OCTET, TUS
from tusd_trio.asgi import NOT_TRIO_MESSAGE, TusASGIApp
from tusd_trio.config import Config
from tusd_trio.server._asgi_exchange import ASGIExchange
from tusd_trio.server._exchange import Exchange


async def test_options_and_greeting(host: Any, client: httpx.AsyncClient) -> None:
    hosted = await host()
    r = await client.options(hosted.url())
    assert r.status_code == 200
    assert r.headers["tus-version"] == "1.0.0"
    assert "creation" in r.headers["tus-extension"].split(",")
    assert "checksum" in r.headers["tus-extension"].split(",")
    # ASGI carries no request trailers, so checksum-trailer is not offered.
    assert "checksum-trailer" not in r.headers["tus-extension"].split(",")
    r = await client.get(hosted.url("/"))
    assert r.status_code == 200
    assert "tusd" in r.text.lower() or "welcome" in r.text.lower()


async def test_create_patch_chunks_head_get_delete(host: Any, client: httpx.AsyncClient) -> None:
    hosted = await host()
    data = os.urandom(1_500_001)
    r = await client.post(
        hosted.url(),
        headers={
            **TUS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename dGVzdC5iaW4=",
        },
    )
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith(hosted.url())
    offset = 0
    for size in (100_000, 700_000, 1, 699_999, 1):
        chunk = data[offset : offset + size]
        r = await client.patch(
            location, headers={**OCTET, "Upload-Offset": str(offset)}, content=chunk
        )
        assert r.status_code == 204, r.text
        offset += len(chunk)
        assert r.headers["upload-offset"] == str(offset)
        r = await client.head(location, headers=TUS)
        assert r.status_code == 200
        assert r.headers["upload-offset"] == str(offset)
        assert r.headers["cache-control"] == "no-store"
    assert offset == len(data)
    r = await client.head(location, headers=TUS)
    assert r.headers["upload-length"] == str(len(data))
    assert "filename dGVzdC5iaW4=" in r.headers["upload-metadata"]
    r = await client.get(location)
    assert r.status_code == 200
    assert r.content == data
    r = await client.get(location, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    r = await client.delete(location, headers=TUS)
    assert r.status_code == 204
    r = await client.head(location, headers=TUS)
    assert r.status_code == 404


async def test_streamed_body_without_length(host: Any, client: httpx.AsyncClient) -> None:
    """A chunked body of several MiB goes through chunk by chunk."""
    hosted = await host()
    block = os.urandom(256 * 1024)
    total = 24 * len(block)
    r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": str(total)})
    location = r.headers["location"]

    async def body() -> Any:
        for _ in range(24):
            yield block

    r = await client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=body())
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == str(total)
    r = await client.get(location)
    assert r.content == block * 24


async def test_creation_with_upload_and_defer_length(host: Any, client: httpx.AsyncClient) -> None:
    hosted = await host()
    r = await client.post(
        hosted.url(),
        headers={**OCTET, "Upload-Length": "11"},
        content=b"hello world",
    )
    assert r.status_code == 201
    assert r.headers["upload-offset"] == "11"
    r = await client.post(hosted.url(), headers={**TUS, "Upload-Defer-Length": "1"})
    assert r.status_code == 201
    location = r.headers["location"]
    r = await client.patch(
        location, headers={**OCTET, "Upload-Offset": "0", "Upload-Length": "3"}, content=b"abc"
    )
    assert r.status_code == 204
    r = await client.head(location, headers=TUS)
    assert r.headers["upload-length"] == "3"


async def test_checksum(host: Any, client: httpx.AsyncClient) -> None:
    hosted = await host()
    r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": "8"})
    location = r.headers["location"]
    bad = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    good = base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
    r = await client.patch(
        location,
        headers={**OCTET, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {bad}"},
        content=b"abcd",
    )
    assert r.status_code == 460
    r = await client.head(location, headers=TUS)
    assert r.headers["upload-offset"] == "0"
    r = await client.patch(
        location,
        headers={**OCTET, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {good}"},
        content=b"abcd",
    )
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "4"
    r = await client.patch(
        location,
        headers={**OCTET, "Upload-Offset": "4", "Upload-Checksum": "md5 AAAA"},
        content=b"efgh",
    )
    assert r.status_code == 400
    # A checksum announced as a trailer is refused before the body is read, with advice.
    r = await client.patch(
        location,
        headers={**OCTET, "Upload-Offset": "4", "Trailer": "Upload-Checksum"},
        content=b"efgh",
    )
    assert r.status_code == 400
    assert "ERR_INVALID_CHECKSUM" in r.text
    assert "send Upload-Checksum as a header" in r.text
    r = await client.head(location, headers=TUS)
    assert r.headers["upload-offset"] == "4"


async def test_errors(host: Any, client: httpx.AsyncClient) -> None:
    hosted = await host(protocol={"max_size": 100})
    r = await client.post(hosted.url(), headers={"Upload-Length": "1"})
    assert r.status_code == 412
    r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": "101"})
    assert r.status_code == 413
    r = await client.post(hosted.url(), headers={**TUS})
    assert r.status_code == 400
    r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": "10"})
    location = r.headers["location"]
    r = await client.patch(location, headers={**OCTET, "Upload-Offset": "3"}, content=b"x")
    assert r.status_code == 409
    r = await client.patch(
        location,
        headers={"Tus-Resumable": "1.0.0", "Content-Type": "text/plain", "Upload-Offset": "0"},
        content=b"x",
    )
    assert r.status_code == 415  # as the native server answers
    r = await client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"y" * 11)
    assert r.status_code == 413
    r = await client.head(hosted.url() + "0123456789abcdef0123456789abcdef", headers=TUS)
    assert r.status_code == 404
    r = await client.request("PUT", location, headers=TUS)
    assert r.status_code == 405
    assert "x-content-type-options" in r.headers


async def test_client_disconnect_keeps_received_bytes(host: Any) -> None:
    hosted = await host()
    async with httpx.AsyncClient() as client:
        r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": "1000000"})
        location = r.headers["location"]
    path = httpx.URL(location).path
    stream = await trio.open_tcp_stream("127.0.0.1", hosted.port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    await stream.send_all(head + b"q" * 200_000)
    await trio.sleep(0.5)
    await stream.aclose()
    async with httpx.AsyncClient() as client:
        with trio.fail_after(10):
            while True:
                r = await client.head(location, headers=TUS)
                if r.headers.get("upload-offset") == "200000":
                    break
                await trio.sleep(0.05)


async def test_mounted_under_root_path(host: Any, client: httpx.AsyncClient) -> None:
    """hypercorn --root-path: URLs carry the prefix."""
    hosted = await host(root_path="/uploads")
    r = await client.post(hosted.url("/uploads/files/"), headers={**TUS, "Upload-Length": "3"})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert httpx.URL(location).path.startswith("/uploads/files/")
    r = await client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"abc")
    assert r.status_code == 204
    r = await client.get(location)
    assert r.content == b"abc"
    r = await client.get(hosted.url("/uploads/health"))
    assert r.status_code == 200


def _mount(prefix: str, inner: TusASGIApp, *, strip_path: bool) -> Any:
    """A minimal Trio-compatible router mounting ``inner`` at ``prefix``.

    ``strip_path`` True: the older ASGI convention (``path`` relative to the mount);
    False: the current one (``path`` full, ``root_path`` the prefix), as Starlette.
    """

    async def router(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await inner(scope, receive, send)
            return
        path = scope["path"]
        if scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/")):
            child = dict(scope)
            child["root_path"] = scope.get("root_path", "") + prefix
            if strip_path:
                child["path"] = path[len(prefix) :] or "/"
                child.pop("raw_path", None)
            await inner(child, receive, send)
            return
        body = b"host app"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return router


async def test_mounted_in_framework_both_path_conventions(
    host: Any, client: httpx.AsyncClient
) -> None:
    for strip in (False, True):
        hosted = await host(wrap=lambda app, strip=strip: _mount("/api/tus", app, strip_path=strip))
        r = await client.get(hosted.url("/other"))
        assert r.text == "host app"
        r = await client.post(hosted.url("/api/tus/files/"), headers={**TUS, "Upload-Length": "5"})
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        assert httpx.URL(location).path.startswith("/api/tus/files/"), location
        r = await client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"12345")
        assert r.status_code == 204, r.text
        r = await client.head(location, headers=TUS)
        assert r.headers["upload-offset"] == "5"
        r = await client.get(location)
        assert r.content == b"12345"
        # The un-prefixed path is not the upload endpoint of the mounted app.
        r = await client.post(hosted.url("/files/"), headers={**TUS, "Upload-Length": "5"})
        assert r.text == "host app"


async def test_http2_h2c_through_hypercorn(host: Any) -> None:
    hosted = await host()
    async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
        data = os.urandom(400_000)
        r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": str(len(data))})
        assert r.http_version == "HTTP/2"
        location = r.headers["location"]
        r = await client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=data)
        assert r.status_code == 204
        r = await client.get(location)
        assert r.content == data


async def test_server_shutdown_keeps_bytes_of_running_upload(host: Any, tmp_path: Path) -> None:
    """hypercorn cancels requests still running after its graceful timeout (before
    lifespan shutdown): the bytes received until then are still committed."""
    hosted = await host(shutdown_timeout=5)
    async with httpx.AsyncClient() as client:
        r = await client.post(hosted.url(), headers={**TUS, "Upload-Length": "10000000"})
        location = r.headers["location"]
    path = httpx.URL(location).path
    stream = await trio.open_tcp_stream("127.0.0.1", hosted.port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 10000000\r\n\r\n"
    ).encode()
    await stream.send_all(head + b"s" * 50_000)
    with trio.fail_after(10):
        while not hosted.app.runtime.state.active_uploads:
            await trio.sleep(0.02)
    # The PATCH holds its lock file, a link to the file locker's owner file.
    assert owner_files(tmp_path / "data") == [f".owner.lock.{os.getpid()}.1.tmp"]
    hosted.shutdown.set()
    with trio.fail_after(20):
        await hosted.done.wait()
    await stream.aclose()
    upload_id = location.rsplit("/", 1)[1]
    # The file store's offset is the data file's size (tusd's layout).
    assert (tmp_path / "data" / upload_id).stat().st_size == 50_000
    # Lifespan shutdown closed the locker, which removed its owner file.
    assert owner_files(tmp_path / "data") == []


def owner_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(".owner.lock."))


# --- outside Trio / not started ------------------------------------------------------------------


def _run_under_asyncio(app: TusASGIApp, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await queue.put(
            {"type": "lifespan.startup"}
            if scope["type"] == "lifespan"
            else {"type": "http.request", "body": b"", "more_body": False}
        )

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await app(scope, queue.get, send)

    asyncio.run(main())
    return sent


async def test_refuses_to_run_under_asyncio(tmp_path: Path) -> None:
    app = build_asgi_app(Config(upload_dir=str(tmp_path), verbose=False, show_startup_logs=False))
    sent = await trio.to_thread.run_sync(_run_under_asyncio, app, {"type": "lifespan"})
    assert sent == [{"type": "lifespan.startup.failed", "message": NOT_TRIO_MESSAGE}]
    scope = {
        "type": "http",
        "method": "OPTIONS",
        "path": "/files/",
        "headers": [],
        "http_version": "1.1",
    }
    sent = await trio.to_thread.run_sync(_run_under_asyncio, app, scope)
    assert sent[0]["status"] == 500
    assert b"needs a Trio event loop" in sent[1]["body"]


async def test_request_before_startup_is_503(tmp_path: Path) -> None:
    app = build_asgi_app(Config(upload_dir=str(tmp_path), verbose=False, show_startup_logs=False))
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "OPTIONS", "path": "/files/", "headers": []}
    await app(scope, receive, send)
    assert sent[0]["status"] == 503
    assert b"ERR_SERVER_NOT_STARTED" in sent[1]["body"]
    async with app.running():
        sent.clear()
        await app(scope, receive, send)
        assert sent[0]["status"] == 200


def test_metrics_listen_is_refused(tmp_path: Path) -> None:
    """The app opens no socket: -metrics-listen would hide the metrics everywhere."""
    config = Config(upload_dir=str(tmp_path), metrics_listen="127.0.0.1:0")
    try:
        build_asgi_app(config)
    except ValueError as exc:
        assert "-metrics-listen" in str(exc)
    else:
        raise AssertionError("create_app accepted -metrics-listen")


def test_asgi_exchange_overrides_every_io_method() -> None:
    """ASGIExchange must not inherit a method that would touch an HTTP/1.1 connection."""
    for name, member in vars(Exchange).items():
        if name.startswith("_"):
            continue
        if callable(member) or isinstance(member, property):
            assert name in vars(ASGIExchange), name


# --- a real hypercorn process -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_hypercorn_process_with_env_flags(tmp_path: Path) -> None:
    port = _free_port()
    data_dir = tmp_path / "uploads"
    env = dict(os.environ)
    env["TUSD_TRIO_ARGS"] = f"-upload-dir {data_dir} -base-path /tus/ -max-size 1000"
    hypercorn = Path(sys.executable).with_name("hypercorn")
    proc = subprocess.Popen(
        [
            str(hypercorn),
            "--worker-class",
            "trio",
            "--workers",
            "0",
            "--bind",
            f"127.0.0.1:{port}",
            "tusd_trio.asgi:app",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = await client.options(f"http://127.0.0.1:{port}/tus/")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    assert time.monotonic() < deadline
                    await trio.sleep(0.1)
            assert r.headers["tus-max-size"] == "1000"
            r = await client.post(
                f"http://127.0.0.1:{port}/tus/", headers={**TUS, "Upload-Length": "4"}
            )
            assert r.status_code == 201
            location = r.headers["location"]
            r = await client.patch(
                location, headers={**OCTET, "Upload-Offset": "0"}, content=b"data"
            )
            assert r.status_code == 204
            upload_id = location.rsplit("/", 1)[1]
            assert (data_dir / upload_id).read_bytes() == b"data"
            assert (data_dir / f"{upload_id}.info").exists()
    finally:
        proc.terminate()
        try:
            await trio.to_thread.run_sync(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
