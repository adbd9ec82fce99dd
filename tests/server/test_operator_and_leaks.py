"""What an outsider or another user could read (issue 12): credential headers in the event
stream, hook failures and readiness details given to clients, and the operator endpoints
(/metrics, /health/ready details) while access control is on.  Real servers on real
sockets, real hook endpoints and scripts."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
import trio_websocket

from tests._support.hookserver import Answer, HookServer
from tests._support.server import Running, build_server
from tests._support.tus import TUS
from tusd_trio.auth import AuthConfig, hash_api_key
from tusd_trio.config import Config

SECRET = "j" * 40
ADMIN_KEY = "admin-key-0123456789abcdef"
USER_KEY = "user-key-0123456789abcdef"
METRICS_TOKEN = "metrics-token-0123456789abcdef"


def _keys(tmp_path: Path) -> str:
    path = tmp_path / "keys"
    path.write_text(
        hash_api_key(ADMIN_KEY, "root", admin=True) + "\n" + hash_api_key(USER_KEY, "user") + "\n"
    )
    return str(path)


def _bearer(sub: str) -> str:
    return "Bearer " + jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, "HS256")


async def _dead_port() -> int:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- 3. the event stream does not broadcast other users' credentials ----------------------


async def test_events_carry_no_credential_headers(
    make_server: Any, nursery: trio.Nursery, tmp_path: Path
) -> None:
    hook = HookServer()
    await nursery.start(hook.serve)
    srv: Running = await make_server(
        auth=AuthConfig(jwt_secret=SECRET, api_keys_file=_keys(tmp_path)),
        expose_events=True,
        hooks_http=hook.url,
        hooks_http_retry=1,
    )
    url = f"ws://127.0.0.1:{srv.port}/events?type=post-create"
    alice = _bearer("alice")
    secrets = [alice.split()[1], USER_KEY, "session=c00kie-value", "Basic cHJveHk6cHc="]
    async with trio_websocket.open_websocket_url(
        url, extra_headers=[(b"X-API-Key", ADMIN_KEY.encode())]
    ) as ws:
        await trio.sleep(0.1)
        r = await srv.client.post(
            srv.url,
            headers={
                **TUS,
                "Upload-Length": "1",
                "Authorization": alice,
                "Cookie": "session=c00kie-value",
                "Proxy-Authorization": "Basic cHJveHk6cHc=",
            },
        )
        assert r.status_code == 201
        r = await srv.client.post(
            srv.url, headers={**TUS, "Upload-Length": "1", "X-API-Key": USER_KEY}
        )
        assert r.status_code == 201
        with trio.fail_after(5):
            frames = [await ws.get_message(), await ws.get_message()]
    for frame in frames:
        for secret in secrets:
            assert secret not in frame
        header = json.loads(frame)["Event"]["HTTPRequest"]["Header"]
        names = {name.lower() for name in header}
        assert not names & {"authorization", "cookie", "proxy-authorization", "x-api-key"}
        assert header["Tus-Resumable"] == ["1.0.0"]  # other headers stay
    # Hooks keep tusd's behaviour: they get the request headers, credentials included.
    with trio.fail_after(5):
        while len([r for r in hook.requests if r.header("Hook-Name") == ["post-create"]]) < 2:
            await trio.sleep(0.02)
    sent = [r.json["Event"]["HTTPRequest"]["Header"] for r in hook.requests]
    assert any(h.get("Authorization") == [alice] for h in sent)
    assert any(h.get("X-Api-Key") == [USER_KEY] for h in sent)


# --- 6. hook failures do not leak internals to clients --------------------------------------


def _assert_generic_hook_failure(r: httpx.Response, *leaks: str) -> None:
    assert r.status_code == 500
    request_id = r.headers["x-request-id"]
    assert r.text == f"ERR_INTERNAL_SERVER_ERROR: hook failed (request ID {request_id})\n"
    for leak in leaks:
        assert leak not in r.text


async def test_failing_file_hook_output_stays_in_the_log(
    make_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tusd_trio")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    script = hooks / "pre-create"
    script.write_text("#!/bin/sh\necho 'internal db password=hunter2 at 10.0.0.5'\nexit 1\n")
    script.chmod(0o755)
    srv: Running = await make_server(hooks_dir=str(hooks))
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    _assert_generic_hook_failure(r, "hunter2", "10.0.0.5")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "hunter2" in logged and r.headers["x-request-id"] in logged
    assert [n for n in os.listdir(srv.server.config.upload_dir) if n.endswith(".info")] == []


async def test_failing_http_hook_body_and_address_stay_in_the_log(
    make_server: Any, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tusd_trio")
    hook = HookServer()
    await nursery.start(hook.serve)
    hook.default = Answer(status=500, body=b"postgres://admin:pw@db.internal:5432/uploads")
    srv: Running = await make_server(hooks_http=hook.url, hooks_http_retry=1)
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    _assert_generic_hook_failure(r, "postgres", "db.internal", str(hook.port))
    assert "db.internal" in "\n".join(record.getMessage() for record in caplog.records)
    dead = await _dead_port()
    down: Running = await make_server(
        hooks_http=f"http://127.0.0.1:{dead}/hook", hooks_http_retry=1
    )
    r = await down.client.post(down.url, headers={**TUS, "Upload-Length": "1"})
    _assert_generic_hook_failure(r, f"127.0.0.1:{dead}", "ConnectError")


async def test_readiness_details_need_operator_rights(make_server: Any, tmp_path: Path) -> None:
    dead = await _dead_port()
    srv: Running = await make_server(
        auth=AuthConfig(api_keys_file=_keys(tmp_path)),
        hooks_http=f"http://10.255.255.1:{dead}/hook",
        hooks_http_timeout=0.5,
    )
    ready = f"http://127.0.0.1:{srv.port}/health/ready"
    r = await srv.client.get(ready)
    assert r.status_code == 503
    assert str(dead) not in r.text and "10.255.255.1" not in r.text
    assert r.json() == {
        "status": "unavailable",
        "checks": {"store": "ok", "hooks_http": "failing"},
    }
    r = await srv.client.get(ready, headers={"X-API-Key": USER_KEY})
    assert r.status_code == 503 and str(dead) not in r.text
    r = await srv.client.get(ready, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 503
    details = r.json()["checks"]
    assert details["hooks_http"].startswith(f"failing: cannot connect to 10.255.255.1:{dead}")
    assert details["hooks"] == "http" and details["auth"] == "on"
    # Liveness stays open and says what it always said.
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health")
    assert r.status_code == 200 and r.json()["checks"] == {"store": "ok"}


# --- 7. the operator endpoints follow access control -------------------------------------


async def test_metrics_need_an_admin_credential(make_server: Any, tmp_path: Path) -> None:
    srv: Running = await make_server(
        protocol={"metrics_path": "/metrics"},
        auth=AuthConfig(jwt_secret=SECRET, api_keys_file=_keys(tmp_path)),
    )
    metrics = f"http://127.0.0.1:{srv.port}/metrics"
    r = await srv.client.get(metrics)
    assert r.status_code == 401
    assert r.text.startswith("ERR_UNAUTHORIZED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "tusd_requests_total" not in r.text
    for headers in ({"X-API-Key": USER_KEY}, {"Authorization": _bearer("alice")}):
        r = await srv.client.get(metrics, headers=headers)
        assert r.status_code == 403, headers
        assert "tusd_requests_total" not in r.text
    for headers in ({"X-API-Key": ADMIN_KEY}, {"Authorization": _bearer("root")}):
        r = await srv.client.get(metrics, headers=headers)
        assert r.status_code == (200 if "X-API-Key" in headers else 403), headers
    r = await srv.client.get(metrics, headers={"X-API-Key": ADMIN_KEY})
    assert "tusd_requests_total" in r.text
    # /health (liveness) needs nothing.
    assert (await srv.client.get(f"http://127.0.0.1:{srv.port}/health")).status_code == 200


async def test_the_metrics_token_unlocks_only_the_operator_endpoints(
    make_server: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text(METRICS_TOKEN + "\n")
    srv: Running = await make_server(
        protocol={"metrics_path": "/metrics"},
        auth=AuthConfig(jwt_secret=SECRET, api_keys_file=_keys(tmp_path)),
        metrics_token_file=str(token_file),
    )
    metrics = f"http://127.0.0.1:{srv.port}/metrics"
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    r = await srv.client.get(metrics, headers=token)
    assert r.status_code == 200 and "tusd_requests_total" in r.text
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready", headers=token)
    assert r.json()["checks"]["auth"] == "on"
    r = await srv.client.get(metrics, headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert r.status_code == 401
    # The metrics token is no upload credential.
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1", **token})
    assert r.status_code == 401


async def test_metrics_stay_open_without_access_control(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"metrics_path": "/metrics"})
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")
    assert r.status_code == 200 and "tusd_requests_total" in r.text
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready")
    assert r.json()["checks"]["hooks"] == "none"  # details, as before


async def test_operator_endpoints_can_be_made_public(make_server: Any, tmp_path: Path) -> None:
    srv: Running = await make_server(
        protocol={"metrics_path": "/metrics"},
        auth=AuthConfig(api_keys_file=_keys(tmp_path)),
        operator_endpoints_public=True,
    )
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")
    assert r.status_code == 200 and "tusd_requests_total" in r.text
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready")
    assert r.json()["checks"]["auth"] == "on"
    # Uploads still need credentials.
    r = await srv.client.post(srv.url, headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 401


async def test_metrics_listener_serves_operators_without_credentials(
    make_server: Any, tmp_path: Path
) -> None:
    srv: Running = await make_server(
        protocol={"metrics_path": "/metrics"},
        auth=AuthConfig(api_keys_file=_keys(tmp_path)),
        metrics_listen="127.0.0.1:0",
    )
    port = srv.server.operator_port
    assert port and port != srv.port
    base = f"http://127.0.0.1:{port}"
    r = await srv.client.get(f"{base}/metrics")
    assert r.status_code == 200 and "tusd_requests_total" in r.text
    r = await srv.client.get(f"{base}/health/ready")
    assert r.status_code == 200 and r.json()["checks"]["auth"] == "on"
    assert (await srv.client.get(f"{base}/health")).status_code == 200
    # Nothing else there: no uploads, no event stream.
    r = await srv.client.post(f"{base}/files/", headers={**TUS, "Upload-Length": "1"})
    assert r.status_code == 405
    assert (await srv.client.get(f"{base}/files/x")).status_code == 404
    # The upload port no longer serves metrics, even to an admin; health stays.
    upload_port = f"http://127.0.0.1:{srv.port}"
    r = await srv.client.get(f"{upload_port}/metrics", headers={"X-API-Key": ADMIN_KEY})
    assert "tusd_requests_total" not in r.text
    r = await srv.client.get(f"{upload_port}/health/ready", headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 200 and "auth" not in r.json()["checks"]


async def test_bad_metrics_settings_stop_the_start(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too-short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        build_server(Config(upload_dir=str(tmp_path / "d"), metrics_token_file=str(short)))
