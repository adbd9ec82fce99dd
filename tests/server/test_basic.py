"""The tus 1.0.0 core and creation extensions over real sockets."""

from __future__ import annotations

import base64
import json
import os

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import OCTET, TUS, TUSD_INFO_KEYS


async def test_create_patch_head_download(srv: Running) -> None:
    loc = await srv.create(11, Upload_Metadata="filename " + base64.b64encode(b"a.txt").decode())
    assert loc.startswith(srv.url)
    r = await srv.patch(loc, 0, b"hello world")
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "11"
    assert r.headers["tus-resumable"] == "1.0.0"
    h = await srv.head(loc)
    assert h.status_code == 200
    assert h.headers["upload-offset"] == "11"
    assert h.headers["upload-length"] == "11"
    assert h.headers["cache-control"] == "no-store"
    assert h.headers["upload-metadata"] == "filename YS50eHQ="
    g = await srv.client.get(loc)
    assert g.status_code == 200
    assert g.content == b"hello world"
    assert g.headers["content-disposition"] == 'attachment;filename="a.txt"'


async def test_info_file_has_tusd_layout(srv: Running) -> None:
    loc = await srv.create(5, Upload_Metadata="filetype dGV4dC9wbGFpbg==")
    upload_id = loc.rsplit("/", 1)[1]
    directory = srv.server.config.upload_dir
    with open(os.path.join(directory, upload_id + ".info")) as handle:
        info = json.load(handle)
    for key in TUSD_INFO_KEYS:
        assert key in info
    assert info["ID"] == upload_id
    assert info["Size"] == 5
    assert info["MetaData"] == {"filetype": "text/plain"}
    assert info["Storage"]["Type"] == "filestore"
    assert info["Storage"]["Path"] == os.path.join(os.path.abspath(directory), upload_id)
    assert info["Storage"]["InfoPath"] == info["Storage"]["Path"] + ".info"


async def test_serves_an_upload_written_by_tusd(srv: Running) -> None:
    directory = os.path.abspath(srv.server.config.upload_dir)
    upload_id = "0123456789abcdef0123456789abcdef"
    info = {
        "ID": upload_id,
        "Size": 10,
        "SizeIsDeferred": False,
        "Offset": 0,
        "MetaData": {"filename": "t.bin"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {
            "Type": "filestore",
            "Path": os.path.join(directory, upload_id),
            "InfoPath": os.path.join(directory, upload_id + ".info"),
        },
    }
    with open(os.path.join(directory, upload_id + ".info"), "w") as handle:
        json.dump(info, handle)
    with open(os.path.join(directory, upload_id), "wb") as handle:
        handle.write(b"abcd")
    loc = srv.url + upload_id
    h = await srv.head(loc)
    assert h.headers["upload-offset"] == "4"
    r = await srv.patch(loc, 4, b"efghij")
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "10"
    with open(os.path.join(directory, upload_id), "rb") as handle:
        assert handle.read() == b"abcdefghij"


async def test_creation_with_upload(srv: Running) -> None:
    r = await srv.client.post(srv.url, headers={**OCTET, "Upload-Length": "10"}, content=b"12345")
    assert r.status_code == 201
    assert r.headers["upload-offset"] == "5"
    loc = r.headers["location"]
    r = await srv.patch(loc, 5, b"67890")
    assert r.headers["upload-offset"] == "10"
    assert (await srv.client.get(loc)).content == b"1234567890"


async def test_creation_without_octet_stream_ignores_body(srv: Running) -> None:
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "10", "Content-Type": "text/plain"}, content=b"xx"
    )
    assert r.status_code == 201
    assert "upload-offset" not in r.headers
    assert (await srv.head(r.headers["location"])).headers["upload-offset"] == "0"


async def test_empty_upload_is_complete_at_once(srv: Running) -> None:
    loc = await srv.create(0)
    h = await srv.head(loc)
    assert h.headers["upload-offset"] == "0"
    assert h.headers["upload-length"] == "0"
    g = await srv.client.get(loc)
    assert g.status_code == 200
    assert g.content == b""
    assert srv.server.runtime.metrics.uploads_finished == 1


async def test_deferred_length(srv: Running) -> None:
    loc = await srv.create(None, Upload_Defer_Length="1")
    h = await srv.head(loc)
    assert h.headers["upload-defer-length"] == "1"
    assert "upload-length" not in h.headers
    r = await srv.patch(loc, 0, b"abc")
    assert r.headers["upload-offset"] == "3"
    assert (await srv.head(loc)).headers["upload-defer-length"] == "1"
    r = await srv.patch(loc, 3, b"de", Upload_Length="5")
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "5"
    h = await srv.head(loc)
    assert h.headers["upload-length"] == "5"
    assert "upload-defer-length" not in h.headers
    # Once declared, it cannot change.
    r = await srv.patch(loc, 5, b"", Upload_Length="6")
    assert r.status_code == 204  # complete: answered without reading


async def test_declare_length_smaller_than_offset_is_refused(srv: Running) -> None:
    loc = await srv.create(None, Upload_Defer_Length="1")
    await srv.patch(loc, 0, b"abcdef")
    r = await srv.patch(loc, 6, b"", Upload_Length="3")
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_UPLOAD_LENGTH")


async def test_patch_errors(srv: Running) -> None:
    loc = await srv.create(5)
    r = await srv.client.patch(
        loc, headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/plain"}, content=b"a"
    )
    assert r.status_code == 415
    assert r.text == "ERR_INVALID_CONTENT_TYPE: missing or invalid Content-Type header\n"
    r = await srv.client.patch(loc, headers={**OCTET, "Upload-Offset": "-1"}, content=b"a")
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_OFFSET")
    r = await srv.patch(loc, 3, b"a")
    assert r.status_code == 409
    assert r.text.startswith("ERR_MISMATCHED_OFFSET")
    r = await srv.patch(loc, 0, b"toolong")
    assert r.status_code == 413
    assert r.text.startswith("ERR_UPLOAD_SIZE_EXCEEDED")
    assert (await srv.head(loc)).headers["upload-offset"] == "0"
    r = await srv.patch(srv.url + "ffffffffffffffffffffffffffffffff", 0, b"a")
    assert r.status_code == 404
    assert r.text.startswith("ERR_UPLOAD_NOT_FOUND")


async def test_missing_tus_resumable_is_412_with_tus_version(srv: Running) -> None:
    r = await srv.client.post(srv.url, headers={"Upload-Length": "1"})
    assert r.status_code == 412
    assert r.headers["tus-version"] == "1.0.0"
    assert r.text.startswith("ERR_UNSUPPORTED_VERSION")


async def test_options(srv: Running) -> None:
    r = await srv.client.options(srv.url)
    assert r.status_code == 200
    assert r.headers["tus-version"] == "1.0.0"
    extensions = r.headers["tus-extension"].split(",")
    for name in (
        "creation",
        "creation-with-upload",
        "termination",
        "concatenation",
        "concatenation-unfinished",
        "creation-defer-length",
        "checksum",
        "checksum-trailer",
    ):
        assert name in extensions
    assert "expiration" not in extensions
    assert "tus-max-size" not in r.headers
    assert r.headers["tus-checksum-algorithm"] == "sha1,md5,sha256,sha512"


async def test_options_reflect_configuration(make_server) -> None:  # type: ignore[no-untyped-def]
    srv = await make_server(
        protocol={
            "max_size": 1000,
            "disable_termination": True,
            "expiration": 3600,
            "disable_concatenation": True,
            "checksum_algorithms": (),
        }
    )
    r = await srv.client.options(srv.url)
    assert r.headers["tus-max-size"] == "1000"
    extensions = r.headers["tus-extension"].split(",")
    assert "termination" not in extensions
    assert "concatenation" not in extensions
    assert "checksum" not in extensions
    assert "expiration" in extensions
    assert "tus-checksum-algorithm" not in r.headers
    loc = await srv.create(1)
    d = await srv.client.delete(loc, headers=TUS)
    assert d.status_code == 405
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1001"})
    assert r.status_code == 413
    assert r.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Concat": "partial", "Upload-Length": "1"}
    )
    assert r.status_code == 400
    assert r.text.startswith("ERR_CONCATENATION_UNSUPPORTED")


async def test_termination(srv: Running) -> None:
    loc = await srv.create(3)
    await srv.patch(loc, 0, b"abc")
    d = await srv.client.delete(loc, headers=TUS)
    assert d.status_code == 204
    assert (await srv.head(loc)).status_code == 404
    assert (await srv.client.delete(loc, headers=TUS)).status_code == 404
    upload_id = loc.rsplit("/", 1)[1]
    assert not os.path.exists(os.path.join(srv.server.config.upload_dir, upload_id))


async def test_method_override(srv: Running) -> None:
    loc = await srv.create(3)
    r = await srv.client.post(
        loc,
        headers={**OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
        content=b"abc",
    )
    assert r.status_code == 204
    assert r.headers["upload-offset"] == "3"
    r = await srv.client.post(loc, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 204
    r = await srv.client.post(loc, headers={**TUS, "X-HTTP-Method-Override": "BREW"})
    assert r.status_code == 405


async def test_greeting_and_health(srv: Running) -> None:
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/")
    assert r.status_code == 200
    assert "tus" in r.text
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_base_path_without_trailing_slash(srv: Running) -> None:
    r = await srv.client.post(srv.url.rstrip("/"), headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 201


async def test_keep_alive_and_pipelining(srv: Running) -> None:
    loc = await srv.create(4)
    path = loc.split(str(srv.port), 1)[1]
    req = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 2\r\n\r\nab"
        f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 2\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\ncd"
    ).encode()
    out = await raw_request(srv.port, req)
    statuses = [line for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.1")]
    assert statuses == [b"HTTP/1.1 204 No Content", b"HTTP/1.1 200 OK", b"HTTP/1.1 204 No Content"]
    assert b"Upload-Offset: 4" in out
