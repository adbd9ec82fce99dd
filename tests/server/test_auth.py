"""Access control wired into the server: JWTs, API keys, pre-signed URLs, owners."""

from __future__ import annotations

import time
from typing import Any

import jwt
import trio_websocket

from tests._support.server import Running
from tests._support.tus import OCTET, TUS
from tusd_trio.auth import AuthConfig, hash_api_key, sign_upload_url

SECRET = "s" * 40


def token(sub: str, **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def bearer(sub: str, **claims: Any) -> dict[str, str]:
    return {**TUS, "Authorization": f"Bearer {token(sub, **claims)}"}


async def test_jwt_owner_checks(make_server: Any) -> None:
    srv: Running = await make_server(auth=AuthConfig(jwt_secret=SECRET, jwt_admin_claim="admin"))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "3"})
    assert r.status_code == 401
    assert r.text.startswith("ERR_UNAUTHORIZED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await srv.client.post(srv.url, headers={**bearer("alice"), "Upload-Length": "3"})
    assert r.status_code == 201
    loc = r.headers["location"]
    assert (await srv.client.head(loc, headers=bearer("alice"))).status_code == 200
    assert (await srv.client.head(loc, headers=bearer("bob"))).status_code == 403
    r = await srv.client.patch(
        loc, headers={**bearer("bob"), **OCTET, "Upload-Offset": "0"}, content=b"abc"
    )
    assert r.status_code == 403
    assert (await srv.client.head(loc, headers=bearer("root", admin=True))).status_code == 200
    r = await srv.client.patch(
        loc, headers={**bearer("alice"), **OCTET, "Upload-Offset": "0"}, content=b"abc"
    )
    assert r.status_code == 204
    # Bob cannot read Alice's bytes through a concatenation either.
    r = await srv.client.post(srv.url, headers={**bearer("bob"), "Upload-Concat": f"final;{loc}"})
    assert r.status_code in (400, 403)
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, SECRET, "HS256")
    r = await srv.client.head(loc, headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401


async def test_preflight_and_health_need_no_credential(make_server: Any) -> None:
    srv: Running = await make_server(auth=AuthConfig(jwt_secret=SECRET))
    r = await srv.client.options(srv.url, headers={"Origin": "https://app.example"})
    assert r.status_code == 200
    assert (await srv.client.get(f"http://127.0.0.1:{srv.port}/health")).status_code == 200


async def test_api_keys(make_server: Any, tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_text(hash_api_key("k-one-0123456789", "one") + "\n")
    srv: Running = await make_server(auth=AuthConfig(api_keys_file=str(keys)))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1", "X-API-Key": "nope"})
    assert r.status_code == 401
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "X-API-Key": "k-one-0123456789"}
    )
    assert r.status_code == 201
    h = await srv.client.head(r.headers["location"], headers={"X-API-Key": "k-one-0123456789"})
    assert h.status_code == 200


async def test_presigned_url_creates_one_upload(make_server: Any) -> None:
    secret = "p" * 32
    srv: Running = await make_server(auth=AuthConfig(signing_secret=secret))
    url = sign_upload_url(srv.url, secret, expires_in=60, max_size=10)
    r = await srv.client.post(url, headers={**OCTET, "Upload-Length": "10"}, content=b"01234")
    assert r.status_code == 201
    loc = r.headers["location"]
    assert "tus-access=" in loc
    # The Location alone lets the creator resume.
    assert (await srv.client.head(loc, headers=TUS)).headers["upload-offset"] == "5"
    r = await srv.client.patch(loc, headers={**OCTET, "Upload-Offset": "5"}, content=b"56789")
    assert r.status_code == 204
    # Used once; tampering and other uploads are refused.
    again = await srv.client.post(url, headers={**TUS, "Upload-Length": "1"})
    assert again.status_code == 403
    other = sign_upload_url(srv.url, secret, expires_in=60, max_size=10)
    r = await srv.client.post(other, headers={**TUS, "Upload-Length": "11"})
    assert r.status_code == 403
    tampered = other.replace("tus-max-size=10", "tus-max-size=99")
    r = await srv.client.post(tampered, headers={**TUS, "Upload-Length": "50"})
    assert r.status_code == 403
    bare = loc.split("?", 1)[0]
    assert (await srv.client.head(bare, headers=TUS)).status_code == 401


async def test_event_stream_is_for_admins(make_server: Any) -> None:
    srv: Running = await make_server(
        expose_events=True, auth=AuthConfig(jwt_secret=SECRET, jwt_admin_claim="admin")
    )
    url = f"ws://127.0.0.1:{srv.port}/events"
    for headers, status in (([], 401), ([("Authorization", f"Bearer {token('bob')}")], 403)):
        try:
            async with trio_websocket.open_websocket_url(
                url, extra_headers=[(k.encode(), v.encode()) for k, v in headers]
            ):
                raise AssertionError("should be refused")
        except trio_websocket.ConnectionRejected as exc:
            assert exc.status_code == status
    admin = [(b"Authorization", f"Bearer {token('root', admin=True)}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=admin) as ws:
        assert not ws.closed


async def test_a_refused_presigned_creation_leaves_the_url_usable(make_server: Any) -> None:
    secret = "p" * 32
    srv: Running = await make_server(auth=AuthConfig(signing_secret=secret))
    url = sign_upload_url(srv.url, secret, expires_in=60, max_size=10)
    r = await srv.client.post(url, headers={**TUS, "Upload-Length": "11"})
    assert r.status_code == 403
    r = await srv.client.post(url, headers={**TUS, "Upload-Length": "5"})
    assert r.status_code == 201
    again = await srv.client.post(url, headers={**TUS, "Upload-Length": "5"})
    assert again.status_code == 403


async def test_api_key_header_is_allowed_by_cors(make_server: Any, tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_text(hash_api_key("k-one-0123456789", "one") + "\n")
    srv: Running = await make_server(auth=AuthConfig(api_keys_file=str(keys)))
    r = await srv.client.options(srv.url, headers={"Origin": "https://app.example"})
    assert "X-API-Key" in r.headers["access-control-allow-headers"]
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "Origin": "https://app.example"}
    )
    assert "WWW-Authenticate" in r.headers["access-control-expose-headers"]


async def test_event_stream_401_has_a_challenge(make_server: Any) -> None:
    srv: Running = await make_server(expose_events=True, auth=AuthConfig(jwt_secret=SECRET))
    raw = (
        b"GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    from tests._support.raw_http import raw_request

    out = await raw_request(srv.port, raw, read_timeout=3)
    assert out.startswith(b"HTTP/1.1 401")
    assert b"www-authenticate: bearer" in out.lower()
