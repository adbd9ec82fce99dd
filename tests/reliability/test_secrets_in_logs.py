"""Pre-signed URL signatures and tus-access grants never leave the daemon (issue 12).

A real daemon process with its default log settings, a real HTTP hook endpoint that
receives every event type, and a real /events subscriber: a pre-signed creation and the
grant it returns are used for every method (and a request that fails with 500, which
logs an InternalServerError line with the request's path), then the daemon's whole
output, every hook request and every event frame are searched for the secrets.  Whatever
the log line format, the secrets must not appear anywhere."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import trio
import trio_websocket

from tests._support.daemon import DaemonFactory
from tests._support.hookserver import Answer, HookServer
from tusd_trio.auth import hash_api_key, sign_upload_url
from tusd_trio.hooks.model import HOOK_TYPES

SIGNING_SECRET = "signing-secret-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {**TUS, "Content-Type": "application/offset+octet-stream"}


async def _drain(ws: trio_websocket.WebSocketConnection, quiet: float = 0.5) -> list[str]:
    frames: list[str] = []
    while True:
        with trio.move_on_after(quiet):
            frame = await ws.get_message()
            assert isinstance(frame, str), frame  # the event stream sends text frames
            frames.append(frame)
            continue
        return frames


async def test_credentials_in_urls_never_reach_logs_hooks_or_events(
    daemon_factory: DaemonFactory, nursery: trio.Nursery, tmp_path: Path
) -> None:
    hook = HookServer()
    await nursery.start(hook.serve)
    keys = tmp_path / "keys"
    keys.write_text(hash_api_key(ADMIN_KEY, "root", admin=True) + "\n")
    daemon = await trio.to_thread.run_sync(
        lambda: daemon_factory.start(
            "-auth-signing-secret",
            SIGNING_SECRET,
            "-auth-api-keys",
            str(keys),
            "-hooks-http",
            hook.url,
            "-hooks-http-retry",
            "1",
            "-hooks-enabled-events",
            ",".join(HOOK_TYPES),  # every event, pre-access included
            "-expose-events",
        )
    )
    base = f"http://127.0.0.1:{daemon.port}"
    presigned = sign_upload_url(f"{base}/files/", SIGNING_SECRET, expires_in=600, max_size=100)
    query = parse_qs(urlsplit(presigned).query)
    signature, nonce = query["tus-signature"][0], query["tus-nonce"][0]

    async with (
        trio_websocket.open_websocket_url(
            f"ws://127.0.0.1:{daemon.port}/events",
            extra_headers=[(b"X-API-Key", ADMIN_KEY.encode())],
        ) as ws,
        httpx.AsyncClient(timeout=30) as client,
    ):
        await trio.sleep(0.1)
        r = await client.post(
            presigned,
            headers={**OCTET, "Upload-Length": "6"},
            content=b"abc",
        )
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        grant = parse_qs(urlsplit(location).query)["tus-access"][0]
        grant_signature = grant.rsplit(".", 1)[1]
        assert (await client.head(location, headers=TUS)).status_code == 200
        r = await client.patch(
            location,
            headers={**OCTET, "Upload-Offset": "3"},
            content=b"def",
        )
        assert r.status_code == 204, r.text
        assert (await client.get(location)).content == b"abcdef"
        # A failing hook: the 500 is logged (InternalServerError, with the request's path).
        hook.default = Answer(status=500, body=b"hook down")
        r = await client.delete(location, headers=TUS)
        assert r.status_code == 500
        # The same pre-signed URL again: refused, and logged as well.
        r = await client.post(presigned, headers={**TUS, "Upload-Length": "1"})
        assert r.status_code == 403
        frames = await _drain(ws)

    await trio.sleep(0.6)  # request lines are flushed every quarter of a second
    log = "\n".join(daemon.stdout_lines) + "\n" + daemon.stderr_tail(10_000)
    hook_bodies = [request.body.decode() for request in hook.requests]
    assert frames and hook_bodies
    assert "RequestIncoming" in log  # the default settings log every request
    # tusd's path field is relative to the base path, without the query string.
    assert 'method=POST path="" requestId=""' in log
    assert "level=ERROR event=InternalServerError method=DELETE" in log
    assert 'message="hook failed (request ID ' in log
    for secret in (signature, grant, grant_signature):
        assert secret not in log
        for text in (*hook_bodies, *frames):
            assert secret not in text
    assert nonce not in log
    uris = [json.loads(text)["Event"]["HTTPRequest"]["URI"] for text in (*hook_bodies, *frames)]
    assert any("tus-signature=REDACTED" in uri and "tus-nonce=REDACTED" in uri for uri in uris)
    assert any(uri.endswith("?tus-access=REDACTED") for uri in uris)
    assert all(nonce not in uri for uri in uris)
    # The client itself still got its grant, and it still works.
    assert grant.count(".") == 2 and int(grant.split(".")[1]) > time.time()
