"""HTTP hooks against a real endpoint (tests/hooks/hookserver.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from tests._support.hook_events import make_event
from tests._support.hookserver import Answer, HookServer
from tusd_trio._version import __version__
from tusd_trio.hooks.http import HTTPHookBackend
from tusd_trio.hooks.model import HookError, HookResponse, HTTPResponse, build_request

MakeBackend = Callable[..., HTTPHookBackend]


@pytest.fixture
async def make_backend() -> AsyncIterator[MakeBackend]:
    made: list[HTTPHookBackend] = []

    def make(url: str, **options: object) -> HTTPHookBackend:
        options.setdefault("backoff", 0.01)
        backend = HTTPHookBackend(url, **options)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_posts_the_request(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(
        Answer(body=b'{"HTTPResponse": {"StatusCode": 200, "Header": {"Link": "<x>"}}}')
    )
    backend = make_backend(hook_server.url)
    payload = build_request(make_event("pre-finish"), idempotency_key="idem-1")
    resp = await backend.invoke("pre-finish", payload)
    assert resp == HookResponse(http_response=HTTPResponse(200, None, {"Link": "<x>"}))
    [received] = hook_server.requests
    assert received.method == "POST"
    assert received.path == "/hook"
    assert received.header("Content-Type") == ["application/json"]
    assert received.header("Hook-Name") == ["pre-finish"]
    assert received.header("Idempotency-Key") == ["idem-1"]
    assert received.json == payload
    # No client header is forwarded unless asked for.
    assert received.header("Authorization") == []
    # tusd's hook requests name Go's HTTP client; ours name tusd-trio and its version.
    assert received.header("User-Agent") == [f"tusd-trio/{__version__}"]


async def test_a_forwarded_user_agent_replaces_ours(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    backend = make_backend(hook_server.url, forward_headers=["User-Agent"])
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    await backend.invoke("pre-create", payload, forward_headers={"User-Agent": ["uppy/4"]})
    [received] = hook_server.requests
    assert received.header("User-Agent") == ["uppy/4"]


async def test_forwards_named_headers(hook_server: HookServer, make_backend: MakeBackend) -> None:
    backend = make_backend(
        hook_server.url,
        forward_headers=["authorization", "X-Request-ID", "X-Missing", "Content-Type"],
    )
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    await backend.invoke("pre-create", payload)
    [received] = hook_server.requests
    assert received.header("authorization") == ["Bearer t0ken"]
    assert received.header("X-Request-Id") == ["abc"]
    assert received.header("X-Missing") == []
    # Content-Type stays the hook request's own.
    assert received.header("Content-Type") == ["application/json"]
    # Sent with the spelling given in the option (as tusd).
    names = [name for name, _ in received.headers]
    assert "authorization" in names and "X-Request-ID" in names


async def test_explicit_forward_headers(hook_server: HookServer, make_backend: MakeBackend) -> None:
    backend = make_backend(hook_server.url, forward_headers=["X-Tenant"])
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    await backend.invoke("pre-create", payload, forward_headers={"X-Tenant": ["a", "b"]})
    assert hook_server.requests[0].header("X-Tenant") == ["a", "b"]


async def test_case_insensitive_answer(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(Answer(body=b'{"stopupload": true, "HTTPRESPONSE": {"body": "stop"}}'))
    backend = make_backend(hook_server.url)
    resp = await backend.invoke("post-receive", build_request(make_event(), idempotency_key="k"))
    assert resp.stop_upload is True
    assert resp.http_response == HTTPResponse(None, "stop", {})


async def test_empty_body_with_json_type_is_fine(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(Answer(body=b"", content_type="application/json; charset=utf-8"))
    backend = make_backend(hook_server.url)
    resp = await backend.invoke("post-finish", build_request(make_event(), idempotency_key="k"))
    assert resp == HookResponse()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/jsonx", "text/json"])
async def test_content_type_must_be_json(
    hook_server: HookServer, make_backend: MakeBackend, content_type: str | None
) -> None:
    hook_server.answer(Answer(body=b"", content_type=content_type))
    backend = make_backend(hook_server.url)
    with pytest.raises(HookError, match="Content-Type"):
        await backend.invoke("post-finish", build_request(make_event(), idempotency_key="k"))


async def test_too_large_body(hook_server: HookServer, make_backend: MakeBackend) -> None:
    body = b'{"HTTPResponse": {"Body": "' + b"x" * 200 + b'"}}'
    hook_server.answer(Answer(body=body), Answer(body=body))
    payload = build_request(make_event(), idempotency_key="k")
    with pytest.raises(HookError, match="exceeded maximum size of 100 bytes"):
        await make_backend(hook_server.url, size_limit=100).invoke("post-finish", payload)
    # Exactly at the limit is allowed.
    resp = await make_backend(hook_server.url, size_limit=len(body)).invoke("pre-finish", payload)
    assert resp.http_response is not None
    assert resp.http_response.body == "x" * 200


async def test_4xx_is_an_error_without_retry(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(Answer(status=403, body=b"forbidden", content_type="text/plain"))
    backend = make_backend(hook_server.url)
    with pytest.raises(HookError, match=r"\(403\): forbidden"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert len(hook_server.requests) == 1


async def test_invalid_json_answer(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(Answer(body=b"{nope"))
    backend = make_backend(hook_server.url)
    with pytest.raises(HookError, match="failed to parse hook response"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))


async def test_retries_5xx_with_the_same_key(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(
        Answer(status=500, body=b"oops"),
        Answer(status=503, body=b"busy"),
        Answer(body=b'{"RejectUpload": true}'),
    )
    backend = make_backend(hook_server.url, retry=3, backoff=0.05)
    payload = build_request(make_event("pre-create"), idempotency_key="same-key")
    started = time.monotonic()
    resp = await backend.invoke("pre-create", payload)
    assert time.monotonic() - started >= 0.1  # two waits of `backoff`
    assert resp.reject_upload is True
    assert len(hook_server.requests) == 3
    assert {r.json["IdempotencyKey"] for r in hook_server.requests} == {"same-key"}
    assert {r.header("Idempotency-Key")[0] for r in hook_server.requests} == {"same-key"}
    assert len({r.body for r in hook_server.requests}) == 1


async def test_5xx_after_all_attempts(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.default = Answer(status=502, body=b"bad gateway")
    backend = make_backend(hook_server.url, retry=2)
    with pytest.raises(HookError, match=r"\(502\): bad gateway"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert len(hook_server.requests) == 2


async def test_retries_dropped_connections(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    hook_server.answer(Answer(drop=True), Answer(drop=True), Answer(body=b'{"StopUpload":true}'))
    backend = make_backend(hook_server.url, retry=3)
    resp = await backend.invoke("post-receive", build_request(make_event(), idempotency_key="k"))
    assert resp.stop_upload is True
    assert len(hook_server.requests) == 3


async def test_server_down(make_backend: MakeBackend) -> None:
    backend = make_backend(f"http://127.0.0.1:{free_port()}/hook", retry=3, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(HookError, match="failed to reach hook endpoint"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert time.monotonic() - started >= 0.1  # it waited between the three attempts


async def test_slow_endpoint_times_out(hook_server: HookServer, make_backend: MakeBackend) -> None:
    hook_server.answer(Answer(delay=5))
    backend = make_backend(hook_server.url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(HookError, match="timed out"):
        await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert time.monotonic() - started < 2
    # The backend still works afterwards.
    resp = await backend.invoke("pre-create", build_request(make_event(), idempotency_key="k"))
    assert resp == HookResponse()


async def test_retry_zero_still_tries_once(
    hook_server: HookServer, make_backend: MakeBackend
) -> None:
    backend = make_backend(hook_server.url, retry=0)
    await backend.invoke("post-create", build_request(make_event(), idempotency_key="k"))
    assert len(hook_server.requests) == 1


@pytest.mark.parametrize("url", ["localhost:8000/hook", "ftp://x/", "/hook"])
def test_url_needs_http_scheme(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        HTTPHookBackend(url)
