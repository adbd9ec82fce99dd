"""Answers compared with tusd v2's observed ones (issue 13's differential run).

Each test names what tusd answered.  Where tusd-trio answers the same, the test pins
tusd's answer; where it differs on purpose, the test pins ours and the README's
"Differences from tusd" table gives the reason.
"""

from __future__ import annotations

import base64
from typing import Any

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import OCTET, TUS


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_signed_numbers_as_tusd(srv: Running) -> None:
    # tusd (Go's strconv.ParseInt): "Upload-Length: +10" 201, "Upload-Offset: +0" 204.
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "+10"})
    assert r.status_code == 201
    loc = r.headers["location"]
    assert (await srv.head(loc)).headers["upload-length"] == "10"
    r = await srv.client.patch(loc, headers={**OCTET, "Upload-Offset": "+0"}, content=b"12345")
    assert (r.status_code, r.headers["upload-offset"]) == (204, "5")


async def test_two_upload_length_headers_as_tusd(srv: Running) -> None:
    # tusd uses the first of "Upload-Length: 10" and "Upload-Length: 20": 201.
    raw = (
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        b"Upload-Length: 10\r\nUpload-Length: 20\r\nConnection: close\r\n\r\n"
    )
    out = await raw_request(srv.port, raw)
    assert out.startswith(b"HTTP/1.1 201")
    upload_id = out.split(b"\r\nLocation: ", 1)[1].split(b"\r\n", 1)[0].rsplit(b"/", 1)[1]
    assert (await srv.head(srv.url + upload_id.decode())).headers["upload-length"] == "10"


async def test_lower_case_method_override_as_tusd(srv: Running) -> None:
    # tusd: "X-HTTP-Method-Override: patch" is 405 (methods are case-sensitive).
    loc = await srv.create(3)
    headers = {**OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "patch"}
    r = await srv.client.post(loc, headers=headers, content=b"abc")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, PATCH, DELETE"
    assert (await srv.head(loc)).headers["upload-offset"] == "0"


async def test_filetype_that_is_not_a_media_type(srv: Running) -> None:
    # tusd sends "Content-Type: foo"; we send application/octet-stream (listed).
    loc = await srv.create(2, Upload_Metadata=f"filetype {b64('foo')}")
    await srv.patch(loc, 0, b"ab")
    r = await srv.client.get(loc)
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment"


async def test_head_content_length(srv: Running) -> None:
    # Known length: tusd's Content-Length is the upload's size, and so is ours.
    loc = await srv.create(10)
    await srv.patch(loc, 0, b"abc")
    assert (await srv.head(loc)).headers["content-length"] == "10"
    # Deferred length: tusd sends none; we send the offset (listed).
    deferred = await srv.create(None, Upload_Defer_Length="1")
    await srv.patch(deferred, 0, b"abcd")
    r = await srv.head(deferred)
    assert (r.headers["upload-defer-length"], r.headers["content-length"]) == ("1", "4")


async def test_range_not_satisfiable(srv: Running) -> None:
    # tusd (Go's ServeFile): 416 with Content-Disposition and "invalid range: failed to
    # overlap"; ours: 416 ERR_RANGE_NOT_SATISFIABLE, no Content-Disposition (listed).
    loc = await srv.create(3, Upload_Metadata=f"filename {b64('a.txt')}")
    await srv.patch(loc, 0, b"abc")
    r = await srv.client.get(loc, headers={"Range": "bytes=5-9"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */3"
    assert r.text.startswith("ERR_RANGE_NOT_SATISFIABLE: ")
    assert "content-disposition" not in r.headers


async def test_headers_tusd_does_not_send(make_server: Any) -> None:
    # Listed: Cache-Control on GET, X-Request-ID on every response, our extensions'
    # headers in the CORS lists, Tus-Resumable on 403 ERR_ORIGIN_NOT_ALLOWED.
    srv: Running = await make_server(protocol={"cors": None})
    loc = await srv.create(4)
    await srv.patch(loc, 0, b"ab")
    assert (await srv.client.get(loc)).headers["cache-control"] == "no-store"
    await srv.patch(loc, 2, b"cd")
    assert (await srv.client.get(loc)).headers["cache-control"] == "private"
    for r in (
        await srv.client.get(srv.url + "missing"),
        await srv.client.put(loc, headers=TUS),
        await srv.client.options(srv.url),
    ):
        assert len(r.headers["x-request-id"]) == 16, r.status_code

    cors: Running = await make_server(protocol={"cors": _cors("^https://good\\.example$")})
    r = await cors.client.options(cors.url, headers={"Origin": "https://good.example"})
    assert "Upload-Checksum" in r.headers["access-control-allow-headers"]
    r = await cors.client.post(
        cors.url, headers={**TUS, "Upload-Length": "1", "Origin": "https://good.example"}
    )
    assert "Upload-Expires" in r.headers["access-control-expose-headers"]
    r = await cors.client.post(
        cors.url, headers={**TUS, "Upload-Length": "1", "Origin": "https://evil.example"}
    )
    assert (r.status_code, r.headers["tus-resumable"]) == (403, "1.0.0")


def _cors(origin: str) -> Any:
    from tusd_trio.protocol.core import CorsConfig

    return CorsConfig(allow_origin=origin)


async def test_deferred_length_body_beyond_max_size(make_server: Any) -> None:
    # tusd with -max-size 1000: a PATCH of 1,001 bytes into a deferred-length upload
    # gets 204 with Upload-Offset 1001 (all stored), a creation-with-upload of 1,001
    # bytes 201 with offset 1001.  Ours keeps -max-size: 413 before reading (listed).
    srv: Running = await make_server(protocol={"max_size": 1000})
    loc = await srv.create(None, Upload_Defer_Length="1")
    r = await srv.patch(loc, 0, b"x" * 1001)
    assert (r.status_code, r.text.split(":")[0]) == (413, "ERR_UPLOAD_SIZE_EXCEEDED")
    assert (await srv.head(loc)).headers["upload-offset"] == "0"
    headers = {**OCTET, "Upload-Defer-Length": "1"}
    r = await srv.client.post(srv.url, headers=headers, content=b"x" * 1001)
    assert r.status_code == 413
    assert (await srv.head(r.headers["location"])).headers["upload-offset"] == "0"
