"""The hook outbox inside a real server (in-process, real HTTP receiver): a failing
post-create holds back its upload's post-finish, not other uploads' events; every attempt
carries the same key; what the outbox keeps on disk."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from tests._support.hookserver import Answer, HookServer, Received
from tests._support.server import Running
from tusd_trio.hooks.outbox import retry_delay


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_failing_post_create_holds_back_its_post_finish_only(
    make_server: Any, nursery: trio.Nursery
) -> None:
    hook_server = HookServer()
    await nursery.start(hook_server.serve)
    failures: Counter[str] = Counter()
    slow_upload: list[str] = []

    def respond(received: Received) -> Answer:
        doc = received.json
        upload = doc["Event"]["Upload"]["ID"]
        if doc["Type"] == "post-create" and upload in slow_upload and failures[upload] < 3:
            failures[upload] += 1
            return Answer(status=500, body=b"not yet")
        return Answer()

    hook_server.respond = respond
    srv: Running = await make_server(
        hooks_http=hook_server.url,
        # Not used for outbox events: the outbox alone retries them, one request an attempt.
        hooks_http_retry=3,
        hooks_http_backoff=0.01,
        hooks_enabled_events=("post-create", "post-finish"),
        hooks_outbox_max_backoff=0.2,
        protocol={"metrics_path": "/metrics"},
    )
    first = await srv.create(2)
    slow_upload.append(first.rsplit("/", 1)[1])
    assert (await srv.patch(first, 0, b"ab")).status_code == 204
    second = await srv.create(2)
    assert (await srv.patch(second, 0, b"cd")).status_code == 204
    slow, fast = slow_upload[0], second.rsplit("/", 1)[1]

    def of(upload: str) -> list[Received]:
        return [r for r in hook_server.requests if r.json["Event"]["Upload"]["ID"] == upload]

    # The other upload is not held back by the failing one.
    await wait_for(lambda: [r.json["Type"] for r in of(fast)] == ["post-create", "post-finish"])
    await wait_for(lambda: any(r.json["Type"] == "post-finish" for r in of(slow)))
    types = [r.json["Type"] for r in of(slow)]
    assert types == ["post-create"] * 4 + ["post-finish"]
    keys = {r.json["IdempotencyKey"] for r in of(slow) if r.json["Type"] == "post-create"}
    assert len(keys) == 1
    assert keys == {r.header("Idempotency-Key")[0] for r in of(slow)[:4]}
    outbox = Path(srv.server.config.upload_dir) / ".hooks-outbox"
    await wait_for(lambda: not list(outbox.glob("*.json")))
    metrics = (await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")).text
    assert 'tusd_trio_hook_outbox_failures_total{backend="http"} 3' in metrics
    assert 'tusd_trio_hook_outbox_deliveries_total{backend="http"} 4' in metrics
    assert 'tusd_hook_errors_total{hooktype="post-create"} 3' in metrics


async def test_event_is_on_disk_when_the_response_arrives(
    make_server: Any, nursery: trio.Nursery
) -> None:
    hook_server = HookServer()
    await nursery.start(hook_server.serve)
    hook_server.default = Answer(status=503)  # never taken: the events stay
    srv: Running = await make_server(
        hooks_http=hook_server.url,
        hooks_http_retry=1,
        hooks_enabled_events=("post-create", "post-finish"),
    )
    location = await srv.create(2)
    outbox = Path(srv.server.config.upload_dir) / ".hooks-outbox"
    stored = [json.loads(p.read_bytes()) for p in sorted(outbox.glob("*.json"))]
    assert [d["type"] for d in stored] == ["post-create"]
    assert stored[0]["upload"] == location.rsplit("/", 1)[1]
    assert (await srv.patch(location, 0, b"ab")).status_code == 204
    stored = [json.loads(p.read_bytes()) for p in sorted(outbox.glob("*.json"))]
    assert [d["type"] for d in stored] == ["post-create", "post-finish"]
    assert stored[1]["request"]["Event"]["Upload"]["Offset"] == 2


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay(10_000, 60.0) == 60.0
