"""The dispatcher with real backends, several at once."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import trio

from tests._support.hook_events import make_event
from tests._support.hookserver import Answer, HookServer
from tusd_trio.hooks.dispatcher import HookDispatcher
from tusd_trio.hooks.file import FileHookBackend
from tusd_trio.hooks.http import HTTPHookBackend
from tusd_trio.hooks.model import (
    DEFAULT_ENABLED,
    HOOK_TYPES,
    HookError,
    HookResponse,
    HTTPResponse,
    build_request,
    parse_enabled_events,
)
from tusd_trio.hooks.plugin import PluginHookBackend

RECORD_STDIN = f"""#!{sys.executable}
import json, sys
doc = json.load(sys.stdin)
with open("seen.jsonl", "a") as f:
    f.write(json.dumps(doc) + "\\n")
print(json.dumps({{
    "HTTPResponse": {{
        "StatusCode": 201, "Body": "from file", "Header": {{"X-A": "file", "X-F": "1"}},
    }},
    "ChangeFileInfo": {{"ID": "file-id", "MetaData": {{"from": "file"}}}},
}}))
"""


def write_hook(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)
    (directory / name).chmod(0o755)


async def test_disabled_or_no_backend_gives_none(tmp_path: Path) -> None:
    dispatcher = HookDispatcher([FileHookBackend(tmp_path)], DEFAULT_ENABLED)
    assert await dispatcher.invoke(make_event("pre-finish")) is None
    assert dispatcher.invocations == {}
    assert not dispatcher.is_enabled("pre-access")
    empty = HookDispatcher([], frozenset(HOOK_TYPES))
    assert await empty.invoke(make_event("pre-create")) is None
    assert not empty.is_enabled("pre-create")


async def test_two_backends_merge_and_share_the_key(
    tmp_path: Path, hook_server: HookServer
) -> None:
    write_hook(tmp_path, "pre-create", RECORD_STDIN)
    hook_server.answer(
        Answer(status=500),
        Answer(
            body=json.dumps(
                {
                    "RejectUpload": True,
                    "HTTPResponse": {"Body": "", "Header": {"x-a": "http", "X-H": "1"}},
                    "ChangeFileInfo": {"Storage": {"Path": "elsewhere"}},
                }
            ).encode()
        ),
    )
    http = HTTPHookBackend(hook_server.url, backoff=0.01, forward_headers=["Authorization"])
    dispatcher = HookDispatcher(
        [FileHookBackend(tmp_path), http], parse_enabled_events("pre-create,post-finish")
    )
    try:
        resp = await dispatcher.invoke(make_event("pre-create", method="POST"))
    finally:
        await dispatcher.aclose()
    assert resp is not None
    assert resp.reject_upload is True
    assert resp.http_response == HTTPResponse(
        201, "from file", {"X-F": "1", "x-a": "http", "X-H": "1"}
    )
    assert resp.change_file_info is not None
    assert resp.change_file_info.id == "file-id"
    assert resp.change_file_info.metadata == {"from": "file"}
    assert resp.change_file_info.storage == {"Path": "elsewhere"}
    # One key for the event: the file hook and both HTTP attempts saw the same one.
    [file_doc] = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(hook_server.requests) == 2
    keys = {file_doc["IdempotencyKey"]} | {r.json["IdempotencyKey"] for r in hook_server.requests}
    assert len(keys) == 1
    assert len(keys.pop()) == 36
    assert file_doc == hook_server.requests[0].json
    assert hook_server.requests[0].header("Authorization") == ["Bearer t0ken"]
    assert dispatcher.invocations == {"pre-create": 1}
    assert dispatcher.errors == {}


async def test_each_event_gets_a_new_key(hook_server: HookServer) -> None:
    dispatcher = HookDispatcher([HTTPHookBackend(hook_server.url)], frozenset(HOOK_TYPES))
    try:
        await dispatcher.invoke(make_event("post-receive"))
        await dispatcher.invoke(make_event("post-receive"))
    finally:
        await dispatcher.aclose()
    keys = [r.json["IdempotencyKey"] for r in hook_server.requests]
    assert len(set(keys)) == 2
    assert dispatcher.invocations["post-receive"] == 2


async def test_failing_backend_fails_the_event(tmp_path: Path, hook_server: HookServer) -> None:
    write_hook(tmp_path, "pre-terminate", "#!/bin/sh\nexit 1\n")
    dispatcher = HookDispatcher(
        [FileHookBackend(tmp_path), HTTPHookBackend(hook_server.url)],
        parse_enabled_events(""),
    )
    try:
        with pytest.raises(HookError, match="unexpected return code 1"):
            await dispatcher.invoke(make_event("pre-terminate", method="DELETE"))
    finally:
        await dispatcher.aclose()
    assert hook_server.requests == []
    assert dispatcher.invocations == {"pre-terminate": 1}
    assert dispatcher.errors == {"pre-terminate": 1}


async def test_hook_server_down(tmp_path: Path) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dispatcher = HookDispatcher(
        [HTTPHookBackend(f"http://127.0.0.1:{port}/", retry=3, backoff=0.02)],
        DEFAULT_ENABLED,
    )
    try:
        with pytest.raises(HookError, match="failed to reach hook endpoint"):
            await dispatcher.invoke(make_event("post-finish"))
    finally:
        await dispatcher.aclose()
    assert dispatcher.errors == {"post-finish": 1}


async def test_blocking_timeout(hook_server: HookServer) -> None:
    hook_server.default = Answer(delay=3)
    dispatcher = HookDispatcher(
        [HTTPHookBackend(hook_server.url)], frozenset(HOOK_TYPES), blocking_timeout=0.3
    )
    started = time.monotonic()
    try:
        with pytest.raises(HookError, match=r"pre-create timed out after 0\.3s"):
            await dispatcher.invoke(make_event("pre-create"))
    finally:
        await dispatcher.aclose()
    assert time.monotonic() - started < 2
    assert dispatcher.errors == {"pre-create": 1}


async def test_blocking_timeout_with_a_stuck_sync_plugin() -> None:
    release = trio.Event()

    class Stuck:
        def pre_access(self, request: dict[str, object]) -> None:
            trio.from_thread.run(release.wait)

    dispatcher = HookDispatcher(
        [PluginHookBackend(plugin=Stuck())], frozenset(HOOK_TYPES), blocking_timeout=0.2
    )
    with pytest.raises(HookError, match="pre-access timed out"):
        await dispatcher.invoke(make_event("pre-access"))
    release.set()


async def test_non_blocking_hooks_have_no_dispatcher_timeout() -> None:
    class Slow:
        async def post_finish(self, request: dict[str, object]) -> dict[str, object]:
            await trio.sleep(0.3)
            return {"StopUpload": True}

    dispatcher = HookDispatcher(
        [PluginHookBackend(plugin=Slow())], frozenset(HOOK_TYPES), blocking_timeout=0.1
    )
    resp = await dispatcher.invoke(make_event("post-finish"))
    assert resp == HookResponse(stop_upload=True)


async def test_unexpected_backend_exception_becomes_hook_error() -> None:
    class Broken:
        name = "broken"

        async def invoke(
            self,
            hook_type: str,
            payload: dict[str, object],
            *,
            forward_headers: dict[str, list[str]] | None = None,
            once: bool = False,
        ) -> HookResponse:
            raise KeyError("boom")

        async def aclose(self) -> None:
            pass

    dispatcher = HookDispatcher([Broken()], frozenset(HOOK_TYPES))
    with pytest.raises(HookError, match="boom") as info:
        await dispatcher.invoke(make_event("post-create"))
    assert isinstance(info.value.__cause__, KeyError)
    assert dispatcher.errors == {"post-create": 1}


async def test_event_without_request(tmp_path: Path) -> None:
    write_hook(tmp_path, "post-terminate", RECORD_STDIN)
    dispatcher = HookDispatcher([FileHookBackend(tmp_path)], DEFAULT_ENABLED)
    await dispatcher.invoke(make_event("post-terminate", request=False))
    doc = json.loads((tmp_path / "seen.jsonl").read_text())
    assert doc["Event"]["HTTPRequest"] == {"Method": "", "URI": "", "RemoteAddr": "", "Header": {}}


async def test_send_tells_each_backend_outcome_and_stops_at_the_first_failure(
    tmp_path: Path, hook_server: HookServer
) -> None:
    """The one round over the backends (also the outbox's): each outcome reported, the
    failing backend's own exception raised, the backends after it not called."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_hook(tmp_path, "post-finish", RECORD_STDIN)
    dispatcher = HookDispatcher(
        [
            FileHookBackend(tmp_path),
            HTTPHookBackend(f"http://127.0.0.1:{port}/", retry=1),
            HTTPHookBackend(hook_server.url),
        ],
        DEFAULT_ENABLED,
    )
    outcomes: list[tuple[str, Exception | None]] = []
    payload = build_request(make_event("post-finish"), idempotency_key="k")
    try:
        with pytest.raises(HookError, match="failed to reach hook endpoint") as info:
            await dispatcher.send(
                "post-finish", payload, observe=lambda name, error: outcomes.append((name, error))
            )
    finally:
        await dispatcher.aclose()
    assert outcomes == [("file", None), ("http", info.value)]
    assert hook_server.requests == []
    assert (tmp_path / "seen.jsonl").exists()
    # Not an invoke(): the dispatcher's per-type counts are the caller's business.
    assert dispatcher.invocations == {} and dispatcher.errors == {}
