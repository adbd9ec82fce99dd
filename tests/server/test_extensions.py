"""checksum, checksum-trailer, concatenation, expiration, download, CORS, proxies."""

from __future__ import annotations

import base64
import hashlib
import os
import time

import pytest
import trio

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import OCTET, TUS
from tusd_trio.protocol.config import CorsConfig


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "sha512"])
async def test_checksum_accepted(srv: Running, algorithm: str) -> None:
    loc = await srv.create(6)
    digest = hashlib.new(algorithm, b"abc").digest()
    r = await srv.patch(loc, 0, b"abc", Upload_Checksum=f"{algorithm} {b64(digest)}")
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "3"


async def test_checksum_mismatch_discards_the_chunk(srv: Running) -> None:
    loc = await srv.create(6)
    await srv.patch(loc, 0, b"abc")
    wrong = b64(hashlib.sha1(b"xyz").digest())
    r = await srv.patch(loc, 3, b"def", Upload_Checksum=f"sha1 {wrong}")
    assert r.status_code == 460
    assert r.text.startswith("ERR_CHECKSUM_MISMATCH")
    assert (await srv.head(loc)).headers["upload-offset"] == "3"
    upload_id = loc.rsplit("/", 1)[1]
    data_path = os.path.join(srv.server.config.upload_dir, upload_id)
    assert os.path.getsize(data_path) == 3
    assert not os.path.exists(data_path + ".part")
    good = b64(hashlib.sha1(b"def").digest())
    r = await srv.patch(loc, 3, b"def", Upload_Checksum=f"sha1 {good}")
    assert r.status_code == 204
    assert (await srv.client.get(loc)).content == b"abcdef"


async def test_unsupported_checksum_algorithm(srv: Running) -> None:
    loc = await srv.create(3)
    r = await srv.patch(loc, 0, b"abc", Upload_Checksum="crc32 AAAAAA==")
    assert r.status_code == 400
    assert r.text.startswith("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


async def test_checksum_on_creation_with_upload(srv: Running) -> None:
    bad = b64(hashlib.sha256(b"nope").digest())
    r = await srv.client.post(
        srv.url,
        headers={**OCTET, "Upload-Length": "3", "Upload-Checksum": f"sha256 {bad}"},
        content=b"abc",
    )
    assert r.status_code == 460
    # The upload was created; the client learns where to resume.
    loc = r.headers["location"]
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


def _chunked_patch(
    path: str, offset: int, chunks: list[bytes], trailer: str | None, announce: bool = True
) -> bytes:
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n"
    )
    if announce:
        head += "Trailer: Upload-Checksum\r\n"
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n"
    if trailer is not None:
        body += f"Upload-Checksum: {trailer}\r\n".encode()
    return head.encode() + b"\r\n" + body + b"\r\n"


async def test_checksum_trailer(srv: Running) -> None:
    loc = await srv.create(6)
    path = loc.split(str(srv.port), 1)[1]
    good = "sha1 " + b64(hashlib.sha1(b"abcdef").digest())
    out = await raw_request(srv.port, _chunked_patch(path, 0, [b"abc", b"def"], good))
    assert out.startswith(b"HTTP/1.1 204"), out
    assert (await srv.head(loc)).headers["upload-offset"] == "6"


async def test_checksum_trailer_mismatch(srv: Running) -> None:
    loc = await srv.create(6)
    path = loc.split(str(srv.port), 1)[1]
    bad = "md5 " + b64(hashlib.md5(b"other").digest())
    out = await raw_request(srv.port, _chunked_patch(path, 0, [b"abc", b"def"], bad))
    assert out.startswith(b"HTTP/1.1 460"), out
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


async def test_announced_trailer_missing(srv: Running) -> None:
    loc = await srv.create(6)
    path = loc.split(str(srv.port), 1)[1]
    out = await raw_request(srv.port, _chunked_patch(path, 0, [b"abc"], None))
    assert out.startswith(b"HTTP/1.1 400"), out
    assert b"ERR_INVALID_CHECKSUM" in out
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


async def test_unannounced_trailer_is_refused_and_discarded(srv: Running) -> None:
    loc = await srv.create(6)
    path = loc.split(str(srv.port), 1)[1]
    good = "sha1 " + b64(hashlib.sha1(b"abc").digest())
    out = await raw_request(srv.port, _chunked_patch(path, 0, [b"abc"], good, announce=False))
    assert out.startswith(b"HTTP/1.1 400"), out
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


async def test_chunked_body_beyond_length_keeps_the_allowed_bytes(srv: Running) -> None:
    loc = await srv.create(4)
    path = loc.split(str(srv.port), 1)[1]
    req = _chunked_patch(path, 0, [b"ab", b"cdef"], None, announce=False)
    out = await raw_request(srv.port, req)
    assert out.startswith(b"HTTP/1.1 413"), out
    assert b"ERR_UPLOAD_SIZE_EXCEEDED" in out
    h = await srv.head(loc)
    assert h.headers["upload-offset"] == "4"
    assert (await srv.client.get(loc)).content == b"abcd"


async def test_concatenation(srv: Running) -> None:
    a = await srv.create(3, Upload_Concat="partial")
    b = await srv.create(2, Upload_Concat="partial")
    await srv.patch(a, 0, b"abc")
    await srv.patch(b, 0, b"de")
    h = await srv.head(a)
    assert h.headers["upload-concat"] == "partial"
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final;{a} {b}"})
    assert r.status_code == 201
    final = r.headers["location"]
    h = await srv.head(final)
    assert h.headers["upload-offset"] == "5"
    assert h.headers["upload-length"] == "5"
    assert h.headers["upload-concat"] == f"final;{a} {b}"
    assert (await srv.client.get(final)).content == b"abcde"
    r = await srv.patch(final, 5, b"x")
    assert r.status_code == 403
    assert r.text.startswith("ERR_MODIFY_FINAL")


async def test_concatenation_with_relative_urls(srv: Running) -> None:
    a = await srv.create(1, Upload_Concat="partial")
    await srv.patch(a, 0, b"z")
    b = await srv.create(1, Upload_Concat="partial")
    await srv.patch(b, 0, b"y")
    rel_a = "/files/" + a.rsplit("/", 1)[1]
    rel_b = "/files/" + b.rsplit("/", 1)[1]
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final; {rel_a} {rel_b}/"})
    assert r.status_code == 201
    assert (await srv.client.get(r.headers["location"])).content == b"zy"
    # The same partial twice (with and without a trailing slash) is one partial twice.
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final; {rel_a} {rel_a}/"})
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_CONCAT")


async def test_concatenation_unfinished(srv: Running) -> None:
    a = await srv.create(3, Upload_Concat="partial")
    b = await srv.create(None, Upload_Concat="partial", Upload_Defer_Length="1")
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final;{a} {b}"})
    assert r.status_code == 201
    final = r.headers["location"]
    h = await srv.head(final)
    assert "upload-offset" not in h.headers
    assert "upload-length" not in h.headers
    await srv.patch(a, 0, b"abc")
    await srv.patch(b, 0, b"de", Upload_Length="2")
    h = await srv.head(final)
    assert h.headers["upload-offset"] == "5"
    assert h.headers["upload-length"] == "5"
    assert (await srv.client.get(final)).content == b"abcde"


async def test_final_needs_partials(srv: Running) -> None:
    normal = await srv.create(1)
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final;{normal}"})
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_CONCAT")
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Concat": "final;/files/ffffffffffffffffffffffffffffffff"}
    )
    assert r.status_code == 404
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": "final;"})
    assert r.status_code == 400


async def test_expiration_headers_410_and_janitor(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(protocol={"expiration": 3600.0}, expiration_interval=3600.0)
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "4"})
    assert "upload-expires" in r.headers
    loc = r.headers["location"]
    p = await srv.patch(loc, 0, b"ab")
    expires = p.headers["upload-expires"]
    assert expires.endswith("GMT")
    assert (await srv.head(loc)).headers["upload-expires"] == expires
    done = await srv.patch(loc, 2, b"cd")
    assert "upload-expires" not in done.headers  # finished uploads do not expire
    other = await srv.create(4)
    # Make the second upload look untouched for two hours.
    upload_id = other.rsplit("/", 1)[1]
    data = os.path.join(srv.server.config.upload_dir, upload_id)
    old = time.time() - 7200
    os.utime(data, (old, old))
    info_path = data + ".info"
    import json

    with open(info_path) as handle:
        info = json.load(handle)
    info["CreatedAt"] = old
    with open(info_path, "w") as handle:
        json.dump(info, handle)
    assert (await srv.head(other)).status_code == 410
    r = await srv.patch(other, 0, b"x")
    assert r.status_code == 410
    assert r.text.startswith("ERR_UPLOAD_GONE")
    removed = await srv.server.runtime.janitor.sweep()
    assert removed == 1
    assert (await srv.head(other)).status_code == 404
    assert not os.path.exists(data)
    assert (await srv.head(loc)).status_code == 200  # the finished one stays


async def test_download_range_and_types(srv: Running) -> None:
    meta = f"filename {b64(b'pic.png')},filetype {b64(b'image/png')}"
    loc = await srv.create(10, Upload_Metadata=meta)
    await srv.patch(loc, 0, b"0123456789")
    r = await srv.client.get(loc, headers={"Range": "bytes=2-5"})
    assert r.status_code == 206
    assert r.content == b"2345"
    assert r.headers["content-range"] == "bytes 2-5/10"
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'inline;filename="pic.png"'
    r = await srv.client.get(loc, headers={"Range": "bytes=-3"})
    assert r.content == b"789"
    r = await srv.client.get(loc, headers={"Range": "bytes=20-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */10"


async def test_download_of_unfinished_upload_serves_received_bytes(srv: Running) -> None:
    loc = await srv.create(10)
    await srv.patch(loc, 0, b"abc")
    r = await srv.client.get(loc)
    assert r.status_code == 200
    assert r.content == b"abc"


async def test_large_download_streams(srv: Running) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    loc = await srv.create(len(payload))
    await srv.patch(loc, 0, payload)
    r = await srv.client.get(loc)
    assert r.content == payload


async def test_download_disabled(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(protocol={"disable_download": True})
    loc = await srv.create(1)
    r = await srv.client.get(loc)
    assert r.status_code == 405
    assert "GET" not in r.headers["allow"]


async def test_cors(srv: Running) -> None:
    r = await srv.client.options(srv.url, headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "PATCH" in r.headers["access-control-allow-methods"]
    assert "Upload-Checksum" in r.headers["access-control-allow-headers"]
    assert r.headers["access-control-max-age"] == "86400"
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "Origin": "https://app.example"}
    )
    assert "Location" in r.headers["access-control-expose-headers"]
    assert r.headers["vary"] == "Origin"


async def test_cors_denied_origin(make_server) -> None:  # type: ignore[no-untyped-def]
    cors = CorsConfig(allow_origin=r"^https://good\.example$", allow_credentials=True)
    srv = await make_server(protocol={"cors": cors})
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert r.text.startswith("ERR_ORIGIN_NOT_ALLOWED")
    r = await srv.client.options(srv.url, headers={"Origin": "https://good.example"})
    assert r.headers["access-control-allow-credentials"] == "true"


async def test_behind_proxy_location(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(protocol={"behind_proxy": True})
    r = await srv.client.post(
        srv.url,
        headers={
            **TUS,
            "Upload-Length": "1",
            "X-Forwarded-Host": "up.example",
            "X-Forwarded-Proto": "https",
        },
    )
    assert r.headers["location"].startswith("https://up.example/files/")
    r = await srv.client.post(
        srv.url,
        headers={
            **TUS,
            "Upload-Length": "1",
            "Forwarded": 'for=1.2.3.4;host="fw.example:443";proto=https',
        },
    )
    assert r.headers["location"].startswith("https://fw.example/files/")


async def test_proxy_headers_ignored_by_default(srv: Running) -> None:
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "X-Forwarded-Host": "evil.example"}
    )
    assert r.headers["location"].startswith(f"http://127.0.0.1:{srv.port}/files/")


async def test_relative_location(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(protocol={"relative_location": True, "base_path": "/up/"})
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.headers["location"].startswith("/up/")
    assert len(r.headers["location"]) == len("/up/") + 32


async def test_path_traversal_touches_no_file(srv: Running, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    for path in (
        "/files/../secret",
        "/files/%2e%2e/secret",
        "/files/a/%2E%2E/%2e%2e/secret",
        "/files/..%2fsecret",
        "/files/%00",
        "/files/a\\..\\b",
        "/files//etc/passwd",
        "/files/x.info",
        "/files/%252e%252e/secret",
    ):
        req = (f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()
        out = await raw_request(srv.port, req)
        assert out.split(b"\r\n", 1)[0] in (
            b"HTTP/1.1 404 Not Found",
            b"HTTP/1.1 400 Bad Request",
        ), (path, out)
    assert outside.read_bytes() == b"secret"
    assert sorted(os.listdir(srv.server.config.upload_dir)) == []


async def test_ids_with_slashes_from_disk(srv: Running) -> None:
    # tusd allows IDs with "/" (set by a pre-create hook); they map to sub-directories.
    directory = os.path.abspath(srv.server.config.upload_dir)
    os.makedirs(os.path.join(directory, "proj"))
    import json

    with open(os.path.join(directory, "proj", "abc.info"), "w") as handle:
        json.dump({"ID": "proj/abc", "Size": 2, "MetaData": {}}, handle)
    open(os.path.join(directory, "proj", "abc"), "wb").close()
    r = await srv.patch(srv.url + "proj/abc", 0, b"hi")
    assert r.status_code == 204
    assert (await srv.client.get(srv.url + "proj/abc")).content == b"hi"


async def test_not_found_head_has_empty_body(srv: Running) -> None:
    r = await srv.head(srv.url + "0" * 32)
    assert r.status_code == 404
    assert r.content == b""


async def test_expect_100_continue(srv: Running) -> None:
    loc = await srv.create(3)
    path = loc.split(str(srv.port), 1)[1]
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    async with stream:
        await stream.send_all(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"
            ).encode()
        )
        first = await stream.receive_some(1000)
        assert first.startswith(b"HTTP/1.1 100")
        await stream.send_all(b"abc")
        second = await stream.receive_some(1000)
        assert second.startswith(b"HTTP/1.1 204")


async def test_large_upload_with_checksum_is_byte_exact(srv: Running) -> None:
    payload = os.urandom(9 * 1024 * 1024 + 3)
    loc = await srv.create(len(payload))
    digest = b64(hashlib.sha256(payload).digest())
    r = await srv.patch(loc, 0, payload, Upload_Checksum=f"sha256 {digest}")
    assert r.status_code == 204
    assert (await srv.client.get(loc)).content == payload


async def test_large_upload_over_length_keeps_exactly_the_length(srv: Running) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    loc = await srv.create(len(payload) - 1000)
    path = loc.split(str(srv.port), 1)[1]
    # A chunked body longer than the upload (no Content-Length to refuse early).
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    body = b"".join(
        f"{len(payload[i : i + 65536]):x}\r\n".encode() + payload[i : i + 65536] + b"\r\n"
        for i in range(0, len(payload), 65536)
    )
    out = await raw_request(srv.port, head + body + b"0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert (await srv.client.get(loc)).content == payload[: len(payload) - 1000]
