"""-hooks-redis-stream in a running server: a consumer group sees every notification of
an upload session in order, an HTTP hook endpoint beside it gets the same events,
an unreachable Redis fails the notification (logged, counted) but never the upload,
and the flag without -redis-url is refused at start-up."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from tests._support.hookserver import HookServer
from tests._support.redis import SHARED_REDIS, RedisServers
from tests._support.redis_stream import (
    Entry,
    all_entries,
    create_group,
    read_group,
    redis_client,
    wait_for_entries,
)
from tests._support.server import Running, ServerFactory
from tests._support.services import free_port
from tests._support.tus import TUS
from tusd_trio.cli.build import build_config
from tusd_trio.cli.flags import UsageError, parse_args
from tusd_trio.cli.main import main
from tusd_trio.config import Config, ConfigError
from tusd_trio.hooks.model import HOOK_TYPES
from tusd_trio.hooks.redis_stream import RedisStreamHookBackend


def stream_backend(srv: Running) -> RedisStreamHookBackend:
    hooks = srv.server.runtime.hooks
    assert hooks is not None
    [backend] = [b for b in hooks.backends if isinstance(b, RedisStreamHookBackend)]
    return backend


async def session(srv: Running, uploads: int) -> list[str]:
    """Create, PATCH in two halves (the second one finishes) and terminate each upload."""
    ids = []
    for _ in range(uploads):
        location = await srv.create(6)
        assert (await srv.patch(location, 0, b"abc")).status_code == 204
        assert (await srv.patch(location, 3, b"def")).status_code == 204
        assert (await srv.client.delete(location, headers=TUS)).status_code == 204
        ids.append(location.rsplit("/", 1)[1])
    return ids


async def test_consumer_group_gets_every_event_in_order_per_upload(
    make_server: ServerFactory, stream: str
) -> None:
    async with redis_client() as client:
        await create_group(client, stream, "indexers")
        srv = await make_server(
            redis_url=SHARED_REDIS,
            hooks_redis_stream=stream,
            hooks_enabled_events=HOOK_TYPES,  # the pre-* ones too: they must stay out
        )
        ids = await session(srv, uploads=3)
        entries = await wait_for_entries_of_type(client, stream, "post-terminate", 3)
        # Two consumers of one group share the entries; together they see each once.
        first = await read_group(client, stream, "indexers", "a")
        rest = await read_group(client, stream, "indexers", "b")
    assert [e.id for e in first + rest] == [e.id for e in entries]
    assert {entry.upload_id for entry in entries} == set(ids)
    for upload_id in ids:
        mine = [entry for entry in entries if entry.upload_id == upload_id]
        types = [entry.type for entry in mine]
        # Progress events may be several per PATCH (and the last one may follow
        # post-finish); what comes first and last, and the offsets' order, is fixed.
        assert types[0] == "post-create" and types[-1] == "post-terminate", types
        assert types.count("post-finish") == 1, types
        assert set(types[1:-1]) == {"post-receive", "post-finish"}, types
        offsets = [entry.body["Event"]["Upload"]["Offset"] for entry in mine]
        assert offsets == sorted(offsets) and offsets[-1] == 6
        for entry in mine:
            body = entry.body
            assert body["Type"] == entry.type
            assert body["Event"]["Upload"]["ID"] == upload_id
            assert entry.fields["idempotency_key"] == body["IdempotencyKey"]
            assert body["Event"]["HTTPRequest"]["Method"] in ("POST", "PATCH", "DELETE")
    keys = [entry.fields["idempotency_key"] for entry in entries]
    assert len(set(keys)) == len(keys)
    assert stream_backend(srv).failed == 0


async def wait_for_entries_of_type(
    client: Any, stream: str, hook_type: str, count: int
) -> list[Entry]:
    with trio.fail_after(15):
        while True:
            entries = await all_entries(client, stream)
            if sum(entry.type == hook_type for entry in entries) >= count:
                return entries
            await trio.sleep(0.02)


async def test_an_http_hook_beside_the_stream_gets_the_same_events(
    make_server: ServerFactory, stream: str, nursery: trio.Nursery
) -> None:
    endpoint = HookServer()
    await nursery.start(endpoint.serve)
    srv = await make_server(
        redis_url=SHARED_REDIS,
        hooks_redis_stream=stream,
        hooks_http=endpoint.url,
        hooks_enabled_events=("pre-create", "post-create", "post-finish"),
    )
    location = await srv.create(3)
    assert (await srv.patch(location, 0, b"abc")).status_code == 204
    async with redis_client() as client:
        entries = await wait_for_entries(client, stream, 2)
    with trio.fail_after(10):
        while len(endpoint.requests) < 3:
            await trio.sleep(0.01)
    http_events = [
        (r.header("Hook-Name")[0], r.header("Idempotency-Key")[0]) for r in endpoint.requests
    ]
    stream_events = [(e.type, e.fields["idempotency_key"]) for e in entries]
    # The HTTP endpoint also answers pre-create; the stream gets the notifications,
    # each with the key the HTTP endpoint saw for the same event.
    assert [name for name, _ in http_events] == ["pre-create", "post-create", "post-finish"]
    assert stream_events == http_events[1:]
    assert [e.body for e in entries] == [r.json for r in endpoint.requests[1:]]


async def test_redis_down_fails_the_notification_not_the_upload(
    make_server: ServerFactory,
    redis_servers: RedisServers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tusd_trio")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = await trio.to_thread.run_sync(redis_servers.start, port)
    srv = await make_server(
        redis_url=url,
        hooks_redis_stream="events",
        hooks_redis_stream_retry=2,
        hooks_redis_stream_backoff=0.05,
        hooks_enabled_events=("post-create", "post-finish"),
        # Sent once from memory: with the outbox (on by default) the failed events would be
        # retried until Redis is back (test_redis_down_with_the_outbox_delays_the_events).
        hooks_outbox=False,
    )
    backend = stream_backend(srv)
    await trio.to_thread.run_sync(redis_servers.stop, proc)
    location = await srv.create(3)
    assert (await srv.patch(location, 0, b"abc")).status_code == 204
    assert (await srv.head(location)).headers["Upload-Offset"] == "3"
    with trio.fail_after(20):
        while backend.failed < 2:
            await trio.sleep(0.02)
    errors = srv.server.runtime.metrics.hook_errors_total
    assert (errors["post-create"], errors["post-finish"]) == (1, 1)
    assert "HookInvocationError" in caplog.text
    assert "cannot add the event to Redis stream 'events'" in caplog.text
    # Redis back: the next upload's events arrive (the client reconnects by itself).
    await trio.to_thread.run_sync(redis_servers.start, port)
    later = await srv.create(1)
    async with redis_client(url) as client:
        [entry] = await wait_for_entries(client, "events", 1)
    assert (entry.type, entry.upload_id) == ("post-create", later.rsplit("/", 1)[1])


async def test_redis_down_with_the_outbox_delays_the_events(
    make_server: ServerFactory, redis_servers: RedisServers
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = await trio.to_thread.run_sync(redis_servers.start, port)
    srv = await make_server(
        redis_url=url,
        hooks_redis_stream="events",
        hooks_redis_stream_retry=1,
        hooks_enabled_events=("post-create", "post-finish"),
        hooks_outbox_max_backoff=0.2,
    )
    backend = stream_backend(srv)
    await trio.to_thread.run_sync(redis_servers.stop, proc)
    location = await srv.create(3)
    assert (await srv.patch(location, 0, b"abc")).status_code == 204
    with trio.fail_after(20):
        while backend.failed < 2:  # post-create tried (at least) twice, post-finish waits
            await trio.sleep(0.02)
    await trio.to_thread.run_sync(redis_servers.start, port)
    async with redis_client(url) as client:
        entries = await wait_for_entries(client, "events", 2)
    upload_id = location.rsplit("/", 1)[1]
    assert [(e.type, e.upload_id) for e in entries] == [
        ("post-create", upload_id),
        ("post-finish", upload_id),
    ]


def test_the_flag_without_redis_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="-hooks-redis-stream needs -redis-url"):
        Config(hooks_redis_stream="events")
    with pytest.raises(UsageError, match="-hooks-redis-stream needs -redis-url"):
        build_config(parse_args(["-hooks-redis-stream=events"]))
    assert main(["-hooks-redis-stream=events", "-port=0"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.splitlines()[0].startswith(
        "tusd-trio: -hooks-redis-stream needs -redis-url"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-hooks-redis-stream=e", "-redis-url=http://x"], "-redis-url"),
        (["-hooks-redis-stream-maxlen=-1"], "-hooks-redis-stream-maxlen"),
    ],
)
def test_invalid_stream_settings_name_their_flag(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_config(parse_args(argv))


def test_stream_flags_reach_the_config() -> None:
    config = build_config(
        parse_args(
            [
                "-redis-url=redis://127.0.0.1:6379/3",
                "-hooks-redis-stream=uploads",
                "-hooks-redis-stream-maxlen=0",
                "-hooks-redis-stream-retry=0",
                "-hooks-redis-stream-backoff=250ms",
            ]
        )
    )
    assert config.hooks_redis_stream == "uploads"
    assert config.hooks_redis_stream_maxlen == 0
    assert config.hooks_redis_stream_retry == 1  # at least one attempt, as -hooks-http-retry
    assert config.hooks_redis_stream_backoff == 0.25
    assert config.locker == "file"  # the stream does not choose the locker
    defaults = build_config(parse_args(["-redis-url=redis://h", "-hooks-redis-stream=s"]))
    assert (defaults.hooks_redis_stream_maxlen, defaults.hooks_redis_stream_retry) == (100_000, 3)


async def test_readiness_reports_the_stream_redis(
    make_server: ServerFactory, redis_servers: RedisServers
) -> None:
    port = free_port()
    proc = await trio.to_thread.run_sync(redis_servers.start, port)
    srv = await make_server(redis_url=f"redis://127.0.0.1:{port}/0", hooks_redis_stream="events")
    ready = f"http://127.0.0.1:{srv.port}/health/ready"
    r = await srv.client.get(ready)
    assert r.status_code == 200
    assert r.json()["checks"]["hooks"] == "redis-stream"
    assert r.json()["checks"]["hooks_redis_stream"] == "ok"
    await trio.to_thread.run_sync(redis_servers.stop, proc)
    r = await srv.client.get(ready)
    assert r.status_code == 503
    assert r.json()["checks"]["hooks_redis_stream"].startswith(
        f"failing: cannot reach Redis at redis://127.0.0.1:{port}/0"
    )
    assert r.json()["checks"]["store"] == "ok"  # uploads themselves still work
