"""TLS modes and HTTP/2 (ALPN h2 and h2c prior knowledge) on the native server.

Real sockets, real clients (httpx with http2=True, the ssl module).  The daemon's own
``Server`` serves them (TLS in ``_tls``, HTTP/2 in ``_h2``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests._support.server import ServerFactory
from tests._support.tls import client_ssl_context, write_self_signed_cert
from tests._support.tus import OCTET, TUS
from tusd_trio._listening import tls_enabled
from tusd_trio.server import Server
from tusd_trio.server._exchange import Exchange
from tusd_trio.server._h2_exchange import H2Exchange
from tusd_trio.server._tls import TLSConfigError, create_ssl_context, wrap_listeners


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str]:
    return write_self_signed_cert(tmp_path)


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture
def start(make_server: ServerFactory) -> Callable[..., Awaitable[Server]]:
    """``await start(**config)``: a started server (tests/_support/server.py)."""

    async def factory(**overrides: Any) -> Server:
        return (await make_server(**overrides)).server

    return factory


async def _upload(client: httpx.AsyncClient, base: str, data: bytes, pieces: int = 4) -> str:
    r = await client.post(base, headers={**TUS, "Upload-Length": str(len(data))})
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    step = -(-len(data) // pieces)
    offset = 0
    while offset < len(data):
        chunk = data[offset : offset + step]
        r = await client.patch(
            location, headers={**OCTET, "Upload-Offset": str(offset)}, content=chunk
        )
        assert r.status_code == 204, r.text
        offset += len(chunk)
        assert r.headers["upload-offset"] == str(offset)
    return location


# --- HTTP/2 over TLS -------------------------------------------------------------------------


async def test_h2_over_tls_upload_head_get_delete(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key)
    base = f"https://127.0.0.1:{server.bound_port}/files/"
    data = os.urandom(3 * 1024 * 1024 + 17)
    async with httpx.AsyncClient(http2=True, verify=client_ssl_context(crt), timeout=30) as client:
        location = await _upload(client, base, data)
        assert location.startswith("https://127.0.0.1:")
        r = await client.head(location, headers=TUS)
        assert r.http_version == "HTTP/2"
        assert r.headers["upload-offset"] == str(len(data))
        assert r.headers["upload-length"] == str(len(data))
        r = await client.get(location)
        assert r.http_version == "HTTP/2"
        assert r.status_code == 200
        assert r.content == data
        r = await client.delete(location, headers=TUS)
        assert r.status_code == 204
        r = await client.head(location, headers=TUS)
        assert r.status_code == 404


async def test_http11_over_tls_still_served(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key)
    base = f"https://127.0.0.1:{server.bound_port}/files/"
    async with httpx.AsyncClient(http2=False, verify=client_ssl_context(crt), timeout=30) as client:
        location = await _upload(client, base, b"hello over tls 1.1" * 1000)
        r = await client.head(location, headers=TUS)
        assert r.http_version == "HTTP/1.1"
        assert r.headers["upload-offset"] == str(18 * 1000)


async def test_h2_multiplexed_uploads_on_one_connection(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key)
    base = f"https://127.0.0.1:{server.bound_port}/files/"
    blobs = [os.urandom(600_000 + i) for i in range(6)]
    locations: dict[int, str] = {}
    async with httpx.AsyncClient(http2=True, verify=client_ssl_context(crt), timeout=30) as client:

        async def one(i: int) -> None:
            locations[i] = await _upload(client, base, blobs[i], pieces=3)

        async with trio.open_nursery() as nursery:
            for i in range(len(blobs)):
                nursery.start_soon(one, i)
        for i, blob in enumerate(blobs):
            r = await client.get(locations[i])
            assert r.content == blob
    # All on one connection: the server saw a single client connection at a time.
    assert len(server.connections) <= 1


async def test_h2_checksum_and_errors(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key)
    base = f"https://127.0.0.1:{server.bound_port}/files/"
    async with httpx.AsyncClient(http2=True, verify=client_ssl_context(crt), timeout=30) as client:
        r = await client.post(base, headers={**TUS, "Upload-Length": "10"})
        location = r.headers["location"]
        good = base64.b64encode(hashlib.sha1(b"01234").digest()).decode()
        bad = base64.b64encode(hashlib.sha1(b"nope").digest()).decode()
        r = await client.patch(
            location,
            headers={**OCTET, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {bad}"},
            content=b"01234",
        )
        assert r.status_code == 460
        r = await client.patch(
            location,
            headers={**OCTET, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {good}"},
            content=b"01234",
        )
        assert r.status_code == 204
        assert r.headers["upload-offset"] == "5"
        r = await client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"x")
        assert r.status_code == 409
        r = await client.patch(
            location, headers={**OCTET, "Upload-Offset": "5"}, content=b"too long body"
        )
        assert r.status_code == 413
        r = await client.head(location, headers=TUS)
        assert r.headers["upload-offset"] == "5"  # a body announced too long is refused
        r = await client.post(base, headers={"Upload-Length": "1"})
        assert r.status_code == 412
        r = await client.head(base + "0123456789abcdef0123456789abcdef", headers=TUS)
        assert r.status_code == 404
    assert server.bound_port


# --- h2c ------------------------------------------------------------------------------------------


async def test_h2c_prior_knowledge_upload(start: Any) -> None:
    server = await start(enable_h2c=True)
    base = f"http://127.0.0.1:{server.bound_port}/files/"
    data = os.urandom(2 * 1024 * 1024 + 3)
    async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
        location = await _upload(client, base, data, pieces=5)
        r = await client.get(location)
        assert r.http_version == "HTTP/2"
        assert r.content == data
    # HTTP/1.1 on the same port keeps working (the sniffed bytes are replayed).
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.head(location, headers=TUS)
        assert r.http_version == "HTTP/1.1"
        assert r.headers["upload-offset"] == str(len(data))
        location2 = await _upload(client, base, data[:300_000], pieces=2)
        r = await client.get(location2)
        assert r.content == data[:300_000]


async def test_h2c_upgrade_with_curl(
    start: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = await start(enable_h2c=True)
    base = f"http://127.0.0.1:{server.bound_port}/files/"
    async with httpx.AsyncClient(timeout=30) as client:
        location = await _upload(client, base, b"upgrade me" * 100, pieces=2)
    out = tmp_path / "body"

    def curl(*args: str) -> str:
        result = subprocess.run(
            ["curl", "-sS", "--http2", "-o", str(out), "-w", "%{http_version} %{http_code}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    assert await trio.to_thread.run_sync(curl, location) == "2 200"
    assert out.read_bytes() == b"upgrade me" * 100
    # A request with a body is not upgraded: it is answered over HTTP/1.1.
    written = await trio.to_thread.run_sync(
        curl,
        "-X",
        "POST",
        "-H",
        "Tus-Resumable: 1.0.0",
        "-H",
        "Upload-Length: 3",
        "-H",
        "Content-Type: application/offset+octet-stream",
        "--data-binary",
        "abc",
        base,
    )
    assert written == "1.1 201"


async def test_h2c_off_means_no_http2(start: Any) -> None:
    server = await start()
    base = f"http://127.0.0.1:{server.bound_port}/files/"
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
        with pytest.raises(httpx.HTTPError):
            await client.post(base, headers={**TUS, "Upload-Length": "1"})


async def test_h2_stream_interrupted_keeps_bytes(start: Any) -> None:
    """A client that resets its stream mid-body: the bytes received so far are kept."""
    import h2.config
    import h2.connection
    import h2.events

    server = await start(enable_h2c=True)
    port = server.bound_port
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
        r = await client.post(
            f"http://127.0.0.1:{port}/files/", headers={**TUS, "Upload-Length": "1000000"}
        )
        location = r.headers["location"]
    path = httpx.URL(location).path
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "PATCH"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            (":path", path),
            ("tus-resumable", "1.0.0"),
            ("content-type", "application/offset+octet-stream"),
            ("upload-offset", "0"),
            ("content-length", "1000000"),
        ],
    )
    conn.send_data(1, b"a" * 16000)
    conn.send_data(1, b"b" * 16000)
    await stream.send_all(conn.data_to_send())
    await trio.sleep(0.3)
    conn.reset_stream(1)
    await stream.send_all(conn.data_to_send())
    with trio.fail_after(10):
        while True:
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.head(location, headers=TUS)
            if r.status_code == 200 and r.headers["upload-offset"] == "32000":
                break
            await trio.sleep(0.05)
    await stream.aclose()


# --- TLS modes ---------------------------------------------------------------------------


async def _handshake(port: int, context: ssl.SSLContext) -> ssl.SSLObject | None:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    try:
        with trio.fail_after(10):
            await tls.do_handshake()
    except trio.BrokenResourceError:
        await tcp.aclose()
        return None
    version = tls.version()
    cipher = tls.cipher()
    await tls.aclose()
    return (version, cipher)  # type: ignore[return-value]


async def test_tls13_mode_refuses_tls12_client(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key, tls_mode="tls13")
    port = server.bound_port
    assert (
        await _handshake(port, client_ssl_context(crt, max_version=ssl.TLSVersion.TLSv1_2)) is None
    )
    result: Any = await _handshake(port, client_ssl_context(crt))
    assert result is not None and result[0] == "TLSv1.3"
    # And a full request over 1.3 with HTTP/2.
    async with httpx.AsyncClient(http2=True, verify=client_ssl_context(crt)) as client:
        r = await client.options(f"https://127.0.0.1:{port}/files/")
        assert r.status_code == 200
        assert r.http_version == "HTTP/2"


async def test_tls12_mode_accepts_tls12_and_tls13(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key, tls_mode="tls12")
    port = server.bound_port
    result: Any = await _handshake(
        port, client_ssl_context(crt, max_version=ssl.TLSVersion.TLSv1_2)
    )
    assert result is not None and result[0] == "TLSv1.2"
    assert "ECDHE" in result[1][0] and ("GCM" in result[1][0] or "CHACHA20" in result[1][0])
    result = await _handshake(port, client_ssl_context(crt))
    assert result is not None and result[0] == "TLSv1.3"
    async with httpx.AsyncClient(
        http2=True, verify=client_ssl_context(crt, max_version=ssl.TLSVersion.TLSv1_2)
    ) as client:
        location = await _upload(client, f"https://127.0.0.1:{port}/files/", b"z" * 70000)
        r = await client.get(location)
        assert r.http_version == "HTTP/2" and r.content == b"z" * 70000


async def test_tls12_strong_mode(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key, tls_mode="tls12-strong")
    port = server.bound_port
    result: Any = await _handshake(port, client_ssl_context(crt))
    assert result is not None
    assert result[0] == "TLSv1.2"
    assert result[1][0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    # A client that only offers AES-128 suites in TLS 1.2 is refused.
    weak = client_ssl_context(crt, max_version=ssl.TLSVersion.TLSv1_2)
    weak.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert await _handshake(port, weak) is None
    tls13_only = client_ssl_context(crt)
    tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
    assert await _handshake(port, tls13_only) is None


async def test_broken_handshake_does_not_hurt_server(start: Any, cert: tuple[str, str]) -> None:
    crt, key = cert
    server = await start(tls_certificate=crt, tls_key=key)
    port = server.bound_port
    plain = await trio.open_tcp_stream("127.0.0.1", port)
    await plain.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(10):
        try:
            while await plain.receive_some(1024):
                pass
        except trio.BrokenResourceError:
            pass
    await plain.aclose()
    async with httpx.AsyncClient(http2=True, verify=client_ssl_context(crt)) as client:
        r = await client.options(f"https://127.0.0.1:{port}/files/")
        assert r.status_code == 200


# --- configuration errors ------------------------------------------------------------------------


def test_bad_certificate_is_one_line_error(tmp_path: Path, cert: tuple[str, str]) -> None:
    crt, key = cert
    other_crt, other_key = write_self_signed_cert(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (str(tmp_path / "missing.crt"), key, "no such file"),
        (str(garbage), key, "cannot load TLS certificate"),
        (crt, other_key, "cannot load TLS certificate"),  # key does not match
        (crt, str(garbage), "cannot load TLS certificate"),
    ]
    for certificate, private_key, expected in cases:
        with pytest.raises(TLSConfigError) as info:
            create_ssl_context(certificate, private_key)
        message = str(info.value)
        assert expected in message
        assert "\n" not in message
    with pytest.raises(TLSConfigError, match="invalid -tls-mode 'ssl3'"):
        create_ssl_context(crt, key, "ssl3")
    with pytest.raises(TLSConfigError, match="both"):
        create_ssl_context(crt, "")
    assert other_crt


def test_context_settings(cert: tuple[str, str]) -> None:
    crt, key = cert
    tls12 = create_ssl_context(crt, key, "tls12")
    assert tls12.minimum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in tls12.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("ECDHE" in n for n in names)
    strong = create_ssl_context(crt, key, "tls12-strong")
    assert strong.maximum_version == ssl.TLSVersion.TLSv1_2
    names = {c["name"] for c in strong.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"}
    tls13 = create_ssl_context(crt, key, "tls13")
    assert tls13.minimum_version == ssl.TLSVersion.TLSv1_3
    assert tls_enabled(crt, key) and not tls_enabled(crt, "") and not tls_enabled("", key)


async def test_wrap_listeners_serves_tls(cert: tuple[str, str]) -> None:
    crt, key = cert
    context = create_ssl_context(crt, key, alpn=["http/1.1"])
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    wrapped = wrap_listeners(listeners, context)
    async with trio.open_nursery() as nursery:

        async def serve_one() -> None:
            stream = await wrapped[0].accept()
            assert isinstance(stream, trio.SSLStream)
            data = await stream.receive_some(100)
            await stream.send_all(data.upper())
            await stream.aclose()

        nursery.start_soon(serve_one)
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        tls = trio.SSLStream(tcp, client_ssl_context(crt), server_hostname="127.0.0.1")
        await tls.send_all(b"ping")
        assert await tls.receive_some(100) == b"PING"
        await tls.aclose()
    for listener in wrapped:
        await listener.aclose()


def test_h2_exchange_overrides_every_io_method() -> None:
    """H2Exchange must not inherit a method that would touch an HTTP/1.1 connection."""
    for name, member in vars(Exchange).items():
        if name.startswith("_"):
            continue  # private helpers are only reached from the public methods
        if callable(member) or isinstance(member, property):
            assert name in vars(H2Exchange), name
