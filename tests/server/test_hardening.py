"""Findings of an adversarial review (issue 12), each pinned against a real server on a
real socket: concatenation amplification and lengths, the reserved owner key, Host
validation, the origin policy of the event stream, a deleted upload directory and the
CORS start-up warning."""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from typing import Any

import httpx
import jwt
import pytest
import trio
import trio_websocket

from tests._support.raw_http import raw_request
from tests._support.server import Running
from tests._support.tus import OCTET, TUS
from tusd_trio.auth import AuthConfig
from tusd_trio.protocol.core import CorsConfig

MAX_INT64 = 2**63 - 1


async def _partial(srv: Running, data: bytes) -> str:
    location = await srv.create(len(data), Upload_Concat="partial")
    assert (await srv.patch(location, 0, data)).status_code == 204
    return location


async def _final(srv: Running, partials: list[str]) -> httpx.Response:
    return await srv.client.post(
        srv.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(partials)}
    )


def _stored_files(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.endswith(".lock"))


# --- 1. concatenation amplification ---------------------------------------------------------


async def test_final_naming_the_same_partial_twice_is_refused(srv: Running) -> None:
    partial = await _partial(srv, b"x" * 1000)
    before = _stored_files(srv.server.config.upload_dir)
    r = await _final(srv, [partial] * 3)
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_CONCAT")
    assert "twice" in r.text
    # Nothing was created: no final upload, no extra bytes on disk.
    assert _stored_files(srv.server.config.upload_dir) == before
    # Two different partials still make a final upload.
    other = await _partial(srv, b"y" * 10)
    r = await _final(srv, [partial, other])
    assert r.status_code == 201, r.text


async def test_final_with_more_partials_than_the_limit_is_refused(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"max_concat_partials": 3})
    partials = [await _partial(srv, bytes([n])) for n in range(4)]
    r = await _final(srv, partials)
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_CONCAT")
    assert "at most 3" in r.text
    r = await _final(srv, partials[:3])
    assert r.status_code == 201, r.text
    assert (await srv.client.get(r.headers["location"])).content == b"\x00\x01\x02"


async def test_the_default_limit_of_partials_is_one_thousand(srv: Running) -> None:
    partial = await _partial(srv, b"z")
    # 1,001 distinct URLs, most naming unknown uploads: refused for their number first.
    names = [f"/files/{n:032x}" for n in range(1000)]
    r = await _final(srv, [partial, *names])
    assert r.status_code == 400
    assert "at most 1000" in r.text
    assert srv.server.config.protocol.max_concat_partials == 1000


# --- 9. final upload length beyond int64 ------------------------------------------------


async def test_final_longer_than_int64_is_refused(srv: Running) -> None:
    partials = [await srv.create(MAX_INT64, Upload_Concat="partial") for _ in range(3)]
    r = await _final(srv, partials)
    assert r.status_code == 413, r.text
    assert r.text.startswith("ERR_MAX_SIZE_EXCEEDED")
    assert str(MAX_INT64) in r.text
    infos = [name for name in os.listdir(srv.server.config.upload_dir) if name.endswith(".info")]
    assert len(infos) == 3  # the three partials, no final


# --- 8. the reserved owner key --------------------------------------------------------------


async def test_client_cannot_set_the_owner_key_while_access_control_is_off(
    make_server: Any,
) -> None:
    open_srv: Running = await make_server()
    # "tusd-trio-owner jwt:alice", base64
    location = await open_srv.create(3, Upload_Metadata="tusd-trio-owner and0OmFsaWNl,name eA==")
    head = await open_srv.head(location)
    assert "tusd-trio-owner" not in head.headers["upload-metadata"]
    assert "name" in head.headers["upload-metadata"]
    upload_id = location.rsplit("/", 1)[1]
    with open(os.path.join(open_srv.server.config.upload_dir, upload_id + ".info")) as handle:
        assert "tusd-trio-owner" not in handle.read()
    # Access control turned on later: alice does not own the upload (only admins reach it).
    secret = "s" * 40
    guarded: Running = await make_server(auth=AuthConfig(jwt_secret=secret))
    alice = jwt.encode({"sub": "alice", "exp": 2**40}, secret, algorithm="HS256")
    path = location.split(str(open_srv.port), 1)[1]
    r = await guarded.client.head(
        f"http://127.0.0.1:{guarded.port}{path}",
        headers={**TUS, "Authorization": f"Bearer {alice}"},
    )
    assert r.status_code == 403


# --- 5. Host and forwarded host ------------------------------------------------------------


def _raw_post(host: str, *extra: str) -> bytes:
    lines = [
        "POST /files/ HTTP/1.1",
        f"Host: {host}",
        "Tus-Resumable: 1.0.0",
        "Upload-Length: 1",
        *extra,
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _status_and_location(raw: bytes) -> tuple[int, str | None]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    location = None
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "location":
            location = value.strip()
    return int(head[0].split()[1]), location


@pytest.mark.parametrize(
    "host", ["evil.example/phish?", 'x"><script>alert(1)</script>', "a b", "h@st", "[::1"]
)
async def test_invalid_host_is_refused(srv: Running, host: str) -> None:
    status, location = _status_and_location(await raw_request(srv.port, _raw_post(host)))
    assert status == 400
    assert location is None
    assert os.listdir(srv.server.config.upload_dir) == []


@pytest.mark.parametrize(
    "host", ["uploads.example.com", "127.0.0.1:1080", "[::1]:8080", "xn--bcher-kva.example"]
)
async def test_valid_host_builds_the_location(srv: Running, host: str) -> None:
    status, location = _status_and_location(await raw_request(srv.port, _raw_post(host)))
    assert status == 201
    assert location is not None and location.startswith(f"http://{host}/files/")


@pytest.mark.parametrize(
    "header",
    [
        "X-Forwarded-Host: evil.example/phish?",
        'X-Forwarded-Host: x"><script>',
        "Forwarded: host=evil.example/phish?;proto=https",
    ],
)
async def test_invalid_forwarded_host_is_ignored(make_server: Any, header: str) -> None:
    srv: Running = await make_server(protocol={"behind_proxy": True})
    raw = await raw_request(srv.port, _raw_post("uploads.example", header))
    status, location = _status_and_location(raw)
    assert status == 201
    assert location is not None
    assert "evil" not in location and "script" not in location
    assert location.split("/files/")[0].endswith("://uploads.example")


async def test_invalid_http2_authority_is_refused(make_server: Any) -> None:
    srv: Running = await make_server(enable_h2c=True)
    async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
        # httpx sends the Host header as the :authority pseudo-header over HTTP/2.
        r = await client.post(
            srv.url, headers={**TUS, "Upload-Length": "1", "Host": "evil.example/phish?"}
        )
        assert r.http_version == "HTTP/2"
        assert r.status_code == 400
        assert "location" not in r.headers
        r = await client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
        assert r.status_code == 201


# --- 4. the origin policy applies to the event stream's handshake --------------------------


async def test_event_stream_handshake_follows_the_origin_policy(make_server: Any) -> None:
    srv: Running = await make_server(
        expose_events=True,
        protocol={"cors": CorsConfig(allow_origin=r"^https://app\.example$")},
    )
    url = f"ws://127.0.0.1:{srv.port}/events"
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(
            url, extra_headers=[(b"Origin", b"https://evil.example")]
        ):
            raise AssertionError("a disallowed Origin must not get the event stream")
    assert refused.value.status_code == 403
    assert refused.value.body is not None and b"ERR_ORIGIN_NOT_ALLOWED" in refused.value.body
    for headers in ([(b"Origin", b"https://app.example")], None):
        async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
            await trio.sleep(0.1)
            await srv.create(1)
            with trio.fail_after(5):
                message = await ws.get_message()
            assert isinstance(message, str) and "pre-create" in message


# --- 10. the upload directory removed under a running daemon -------------------------------


async def test_removed_upload_directory_is_recreated(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tusd_trio")
    srv: Running = await make_server(dir_perms=0o750)
    directory = srv.server.config.upload_dir
    first = await srv.create(3)
    shutil.rmtree(directory)
    assert (await srv.head(first)).status_code == 404
    health = await srv.client.get(f"http://127.0.0.1:{srv.port}/health")
    assert health.status_code == 200, health.text
    shutil.rmtree(directory)
    locations = [await srv.create(3) for _ in range(3)]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o750
    for location in locations:
        assert (await srv.patch(location, 0, b"abc")).status_code == 204
        assert (await srv.client.get(location)).content == b"abc"
    recreated = [r for r in caplog.records if "recreated" in r.getMessage()]
    assert len(recreated) == 2, [r.getMessage() for r in recreated]  # once per removal
    assert directory in recreated[0].getMessage()


async def test_health_fails_while_the_upload_directory_cannot_be_recreated(
    srv: Running,
) -> None:
    directory = srv.server.config.upload_dir
    shutil.rmtree(directory)
    with open(directory, "w") as handle:  # a file where the directory was
        handle.write("not a directory")
    health = await srv.client.get(f"http://127.0.0.1:{srv.port}/health")
    assert health.status_code == 503
    assert "failing" in health.json()["checks"]["store"]
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 500
    os.unlink(directory)
    assert (await srv.client.get(f"http://127.0.0.1:{srv.port}/health")).status_code == 200
    await srv.create(1)


# --- 11. an unanchored CORS origin pattern with credentials --------------------------------


@pytest.mark.parametrize(
    ("pattern", "credentials", "warned"),
    [
        (r"https://app\.example\.com", True, True),
        (r"^https://app\.example\.com", True, True),
        (r"^https://app\.example\.com$", True, False),
        (r"\Ahttps://app\.example\.com\Z", True, False),
        (r"^https://a\.example$|https://b\.example", True, True),
        (r"https://app\.example\.com", False, False),
    ],
)
async def test_unanchored_origin_pattern_with_credentials_warns_once(
    make_server: Any,
    caplog: pytest.LogCaptureFixture,
    pattern: str,
    credentials: bool,
    warned: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="tusd_trio")
    cors = CorsConfig(allow_origin=pattern, allow_credentials=credentials)
    srv: Running = await make_server(protocol={"cors": cors})
    # tusd's semantics stay: the unanchored pattern still matches a longer origin.
    longer = "https://app.example.com.evil.net"
    r = await srv.client.options(srv.url, headers={"Origin": longer})
    assert r.status_code == (200 if re.search(pattern, longer) else 403)
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "-cors-allow-origin" in r.getMessage()
    ]
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert "anchor" in warnings[0].getMessage()


async def test_creation_with_upload_still_works_with_credentials_cors(make_server: Any) -> None:
    cors = CorsConfig(allow_origin=r"^https://app\.example\.com$", allow_credentials=True)
    srv: Running = await make_server(protocol={"cors": cors})
    r = await srv.client.post(
        srv.url,
        headers={**OCTET, "Upload-Length": "2", "Origin": "https://app.example.com"},
        content=b"ok",
    )
    assert r.status_code == 201
    assert r.headers["access-control-allow-credentials"] == "true"
