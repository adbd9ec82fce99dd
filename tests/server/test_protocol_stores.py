"""The tus protocol over HTTP against every store: memory, file, and the object
stores on their real servers (moto, gcp-storage-emulator, Azurite).

Each test runs a real daemon on a real socket with the store under test, so what
a client sees (status codes, headers, offsets, bytes) is the same whatever
stores the data, and what a store cannot do is not advertised.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from typing import Any

import httpx
import pytest
import trio

from tests._support.server import Running, ServerFactory
from tests._support.services import everything_stored
from tests._support.tus import OCTET, TUS
from tusd_trio.stores.base import Store
from tusd_trio.stores.file import FileStore
from tusd_trio.stores.memory import MemoryStore

MiB = 1024 * 1024


@pytest.fixture(params=["memory", "file", "s3", "gcs", "azure"])
def any_store(request: pytest.FixtureRequest, tmp_path: Any) -> Store:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "file":
        return FileStore(str(tmp_path / "uploads"))
    found: Store = request.getfixturevalue(f"{request.param}_store")
    return found


async def start(make_server: ServerFactory, store: Store, **protocol: Any) -> Running:
    return await make_server(protocol=protocol or None, store=store)


async def download(srv: Running, location: str, **headers: str) -> httpx.Response:
    return await srv.client.get(location, headers=headers)


async def test_options_advertises_what_the_store_can_do(
    make_server: ServerFactory, any_store: Store
) -> None:
    srv = await start(make_server, any_store)
    r = await srv.client.options(srv.url, headers=TUS)
    assert r.status_code in (200, 204)
    extensions = set(r.headers["tus-extension"].split(","))
    caps = any_store.capabilities
    assert {"creation", "creation-with-upload"} <= extensions
    assert ("termination" in extensions) == caps.terminate
    assert ("concatenation" in extensions) == caps.concatenate
    assert ("creation-defer-length" in extensions) == caps.defer_length
    assert ("checksum" in extensions) == caps.checksum


async def test_create_patch_head_get_round_trip(
    make_server: ServerFactory, any_store: Store
) -> None:
    srv = await start(make_server, any_store)
    data = os.urandom(300_000)
    meta = (
        "filename "
        + base64.b64encode(b"photo.jpg").decode()
        + ",filetype "
        + (base64.b64encode(b"image/jpeg").decode())
    )
    location = await srv.create(len(data), Upload_Metadata=meta)
    head = await srv.head(location)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == str(len(data))
    offset = 0
    for size in (1, 1000, 100_000, len(data) - 101_001):
        r = await srv.patch(location, offset, data[offset : offset + size])
        assert r.status_code == 204, r.text
        offset += size
        assert r.headers["upload-offset"] == str(offset)
        assert (await srv.head(location)).headers["upload-offset"] == str(offset)
    got = await download(srv, location)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == "image/jpeg"
    assert 'filename="photo.jpg"' in got.headers["content-disposition"]
    ranged = await download(srv, location, Range="bytes=1000-1999")
    assert ranged.status_code == 206
    assert ranged.content == data[1000:2000]
    head = await srv.head(location)
    assert "filename" in head.headers["upload-metadata"]


async def test_parts_larger_than_the_s3_minimum(
    make_server: ServerFactory, any_store: Store
) -> None:
    """Bodies that cross S3's 5 MiB part minimum, split at awkward places."""
    srv = await start(make_server, any_store)
    data = os.urandom(11 * MiB + 12345)
    location = await srv.create(len(data))
    cuts = [0, 3 * MiB + 1, 9 * MiB + 7, len(data)]
    for start_, end in itertools.pairwise(cuts):
        r = await srv.patch(location, start_, data[start_:end])
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(end)
    got = await download(srv, location)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()


async def test_creation_with_upload(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    r = await srv.client.post(
        srv.url,
        headers={**OCTET, "Upload-Length": "10"},
        content=b"0123456",
    )
    assert r.status_code == 201
    assert r.headers["upload-offset"] == "7"
    location = r.headers["location"]
    r = await srv.patch(location, 7, b"789")
    assert r.headers["upload-offset"] == "10"
    assert (await download(srv, location)).content == b"0123456789"


async def test_deferred_length(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Defer-Length": "1"})
    if not any_store.capabilities.defer_length:
        assert r.status_code == 501
        return
    assert r.status_code == 201
    location = r.headers["location"]
    head = await srv.head(location)
    assert head.headers["upload-defer-length"] == "1"
    r = await srv.patch(location, 0, b"hello ")
    assert r.status_code == 204
    r = await srv.patch(location, 6, b"world", Upload_Length="11")
    assert r.status_code == 204
    head = await srv.head(location)
    assert head.headers["upload-length"] == "11"
    assert "upload-defer-length" not in head.headers
    assert (await download(srv, location)).content == b"hello world"


async def test_termination(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    location = await srv.create(100)
    await srv.patch(location, 0, b"x" * 40)
    r = await srv.client.delete(location, headers=TUS)
    assert r.status_code == 204
    assert (await srv.head(location)).status_code == 404
    assert await any_store.list_ids() == []
    r = await srv.client.delete(location, headers=TUS)
    assert r.status_code == 404


async def test_concatenation(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    pieces = [os.urandom(5000), b"middle", os.urandom(70_000)]
    partials = []
    for piece in pieces:
        location = await srv.create(len(piece), Upload_Concat="partial")
        r = await srv.patch(location, 0, piece)
        assert r.status_code == 204
        partials.append(location)
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)}
    )
    assert r.status_code == 201, r.text
    final = r.headers["location"]
    head = await srv.head(final)
    assert head.headers["upload-offset"] == head.headers["upload-length"]
    assert head.headers["upload-length"] == str(sum(map(len, pieces)))
    assert (await download(srv, final)).content == b"".join(pieces)


async def test_concatenation_of_partials_above_the_part_minimum(
    make_server: ServerFactory, any_store: Store
) -> None:
    """Partials of at least 5 MiB: S3 copies them server-side (UploadPartCopy)."""
    srv = await start(make_server, any_store)
    pieces = [os.urandom(5 * MiB + 1), os.urandom(5 * MiB + 2)]
    partials = []
    for piece in pieces:
        location = await srv.create(len(piece), Upload_Concat="partial")
        assert (await srv.patch(location, 0, piece)).status_code == 204
        partials.append(location)
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)}
    )
    assert r.status_code == 201, r.text
    got = await download(srv, r.headers["location"])
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(b"".join(pieces)).digest()


async def test_checksum_good_and_bad(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    location = await srv.create(10)
    good = base64.b64encode(hashlib.sha1(b"01234").digest()).decode()
    r = await srv.patch(location, 0, b"01234", Upload_Checksum=f"sha1 {good}")
    assert r.status_code == 204
    bad = base64.b64encode(hashlib.sha1(b"nope").digest()).decode()
    r = await srv.patch(location, 5, b"56789", Upload_Checksum=f"sha1 {bad}")
    assert r.status_code == 460
    assert "ERR_CHECKSUM_MISMATCH" in r.text
    assert (await srv.head(location)).headers["upload-offset"] == "5"
    r = await srv.patch(location, 5, b"56789")
    assert r.status_code == 204
    assert (await download(srv, location)).content == b"0123456789"


async def test_offset_mismatch_and_size_exceeded(
    make_server: ServerFactory, any_store: Store
) -> None:
    srv = await start(make_server, any_store)
    location = await srv.create(5)
    assert (await srv.patch(location, 0, b"ab")).status_code == 204
    r = await srv.patch(location, 1, b"b")
    assert r.status_code == 409
    r = await srv.patch(location, 2, b"cdefg")
    assert r.status_code == 413
    assert (await srv.head(location)).headers["upload-offset"] == "2"


async def test_unknown_upload_is_404(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    for method in ("HEAD", "PATCH", "GET", "DELETE"):
        headers = OCTET | {"Upload-Offset": "0"} if method == "PATCH" else TUS
        r = await srv.client.request(method, srv.url + "nosuchupload", headers=headers)
        assert r.status_code == 404, method


async def test_download_of_an_unfinished_upload(
    make_server: ServerFactory, any_store: Store
) -> None:
    srv = await start(make_server, any_store)
    location = await srv.create(10)
    await srv.patch(location, 0, b"abcd")
    r = await download(srv, location)
    if any_store.capabilities.serve_incomplete:
        assert r.status_code == 200
        assert r.content == b"abcd"
    else:
        # tusd's S3 store answers so; Azure cannot read uncommitted blocks.
        assert r.status_code == 400
        assert "ERR_INCOMPLETE_UPLOAD" in r.text


async def test_empty_upload(make_server: ServerFactory, any_store: Store) -> None:
    srv = await start(make_server, any_store)
    location = await srv.create(0)
    head = await srv.head(location)
    assert head.headers["upload-offset"] == "0"
    r = await download(srv, location)
    assert r.status_code in (200, 204)  # tusd: 200 from its file store, 204 from S3
    assert r.content == b""


async def test_deleted_empty_upload_leaves_nothing(
    make_server: ServerFactory, any_store: Store, request: pytest.FixtureRequest
) -> None:
    """Upload-Length: 0, DELETE, HEAD 404: and nothing of it stays in the store (Azure
    kept the empty data blob)."""
    srv = await start(make_server, any_store)
    location = await srv.create(0)
    assert (await srv.head(location)).status_code == 200
    assert (await srv.client.delete(location, headers=TUS)).status_code == 204
    assert (await srv.head(location)).status_code == 404
    # Lock files, and the file locker's owner file (the running server's, not the upload's).
    leftovers = [
        n
        for n in await everything_stored(any_store, request)
        if not n.endswith(".lock") and not n.startswith(".owner.lock.")
    ]
    assert leftovers == []


async def test_download_of_an_untouched_upload(
    make_server: ServerFactory, any_store: Store
) -> None:
    """Offset 0: nothing to read.  The stores that cannot serve unfinished data answer
    204 as tusd does (before asking the store), not 400 ERR_INCOMPLETE_UPLOAD."""
    srv = await start(make_server, any_store)
    meta = "filename " + base64.b64encode(b"a.txt").decode()
    location = await srv.create(10, Upload_Metadata=meta)
    r = await download(srv, location)
    if any_store.capabilities.serve_incomplete:
        assert r.status_code == 200
        assert r.headers["content-length"] == "0"
    else:
        assert r.status_code == 204, r.text
        assert "content-length" not in r.headers
    assert r.content == b""
    assert 'filename="a.txt"' in r.headers["content-disposition"]
    # Once bytes arrived, those stores still refuse to stream an unfinished upload.
    await srv.patch(location, 0, b"ab")
    r = await download(srv, location)
    assert r.status_code == (200 if any_store.capabilities.serve_incomplete else 400)


async def test_interrupted_body_keeps_received_bytes(
    make_server: ServerFactory, any_store: Store
) -> None:
    """A client that vanishes mid-body: the bytes the server acknowledged in the
    next HEAD are really stored, and the upload resumes to a byte-exact result."""
    srv = await start(make_server, any_store)
    data = os.urandom(6 * MiB + 5)
    location = await srv.create(len(data))
    path = httpx.URL(location).raw_path.decode()
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await stream.send_all(head + data[: 5 * MiB + 300])
    await trio.sleep(0.3)
    await stream.aclose()
    # The server settles the bytes (parts, .part objects, blocks) after the disconnect.
    offset = -1
    with trio.fail_after(30):
        while True:
            r = await srv.head(location)
            if r.status_code == 200:
                offset = int(r.headers["upload-offset"])
                if offset > 0:
                    break
            await trio.sleep(0.05)
    assert 0 < offset <= 5 * MiB + 300
    r = await srv.patch(location, offset, data[offset:])
    assert r.status_code == 204, r.text
    got = await download(srv, location)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()


async def test_expired_upload_is_removed(make_server: ServerFactory, any_store: Store) -> None:
    srv = await make_server(protocol={"expiration": 1.0}, store=any_store, expiration_interval=0.2)
    location = await srv.create(100)
    r = await srv.patch(location, 0, b"x" * 10)
    assert "upload-expires" in r.headers
    with trio.fail_after(30):
        while (await srv.head(location)).status_code != 404:
            await trio.sleep(0.1)
    assert await any_store.list_ids() == []
