"""Cases found by a black-box review, each fixed and pinned here."""

from __future__ import annotations

import os
from typing import Any

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import OCTET, TUS


async def test_large_head_arriving_whole_gets_431(srv: Running) -> None:
    req = (
        b"HEAD /files/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    out = await raw_request(srv.port, req)
    assert out.startswith(b"HTTP/1.1 431"), out[:100]


async def test_metadata_over_the_header_limit_creates_nothing(srv: Running) -> None:
    req = (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 1\r\n"
        b"Upload-Metadata: k " + b"QUFB" * 20_000 + b"\r\nConnection: close\r\n\r\n"
    )
    out = await raw_request(srv.port, req)
    assert out.startswith(b"HTTP/1.1 431")
    assert os.listdir(srv.server.config.upload_dir) == []


async def test_content_length_and_transfer_encoding_together_are_refused(srv: Running) -> None:
    loc = await srv.create(3)
    path = loc.split(str(srv.port), 1)[1]
    req = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
    ).encode()
    out = await raw_request(srv.port, req)
    assert out.startswith(b"HTTP/1.1 400")
    assert out.count(b"HTTP/1.1") == 1  # the connection was closed after the answer
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


async def test_creation_with_too_long_body_gives_location(srv: Running) -> None:
    r = await srv.client.post(
        srv.url, headers={**OCTET, "Upload-Length": "10"}, content=b"0123456789AB"
    )
    assert r.status_code == 413
    assert r.text.startswith("ERR_UPLOAD_SIZE_EXCEEDED")
    h = await srv.head(r.headers["location"])
    assert h.status_code == 200
    assert h.headers["upload-offset"] == "0"


async def test_max_size_holds_for_unfinished_concatenation(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"max_size": 10})
    a = await srv.create(None, Upload_Concat="partial", Upload_Defer_Length="1")
    b = await srv.create(None, Upload_Concat="partial", Upload_Defer_Length="1")
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Concat": f"final;{a} {b}"})
    final = r.headers["location"]
    assert (await srv.patch(a, 0, b"x" * 10, Upload_Length="10")).status_code == 204
    assert (await srv.patch(b, 0, b"y" * 10, Upload_Length="10")).status_code == 204
    h = await srv.head(final)
    assert h.status_code == 413
    assert (await srv.client.get(final)).status_code == 413


async def test_overlong_ids_are_not_found(srv: Running) -> None:
    for length in (250, 300, 4000):
        target = srv.url + "a" * length
        assert (await srv.client.get(target)).status_code == 404
        assert (await srv.client.delete(target, headers=TUS)).status_code == 404
        assert (await srv.patch(target, 0, b"x")).status_code == 404


async def test_head_errors_have_a_length_not_chunked(srv: Running) -> None:
    out = await raw_request(
        srv.port, b"HEAD /files/" + b"0" * 32 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head = out.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 404")
    assert b"transfer-encoding" not in head
    assert b"content-length:" in head


async def test_invalid_filetype_is_served_as_attachment(srv: Running) -> None:
    import base64

    meta = "filetype " + base64.b64encode(b"image/png;\x01").decode()
    loc = await srv.create(1, Upload_Metadata=meta)
    await srv.patch(loc, 0, b"x")
    r = await srv.client.get(loc)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment"
    assert "last-modified" in r.headers
