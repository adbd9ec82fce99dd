"""The Redis stream hook backend against real Redis servers: the shared one on
127.0.0.1:6379 (a stream of its own per test) and, for outages, a redis-server of
the test's own on a free port."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from coredis.response.types import StreamPending

from tests._support.hook_events import UPLOAD_ID, make_event
from tests._support.redis import SHARED_REDIS, RedisServers, free_cluster_port
from tests._support.redis_stream import (
    all_entries,
    create_group,
    read_group,
    redis_client,
)
from tests._support.services import free_port
from tusd_trio.hooks.dispatcher import HookDispatcher
from tusd_trio.hooks.model import HookError, HookResponse, build_request
from tusd_trio.hooks.redis_stream import RedisStreamHookBackend, entry_fields

MakeBackend = Callable[..., RedisStreamHookBackend]


@asynccontextmanager
async def running(backend: RedisStreamHookBackend) -> AsyncIterator[RedisStreamHookBackend]:
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run)
        try:
            yield backend
        finally:
            await backend.aclose()


def payload(hook_type: str, key: str | None = None) -> dict[str, object]:
    return build_request(make_event(hook_type), idempotency_key=key or str(uuid.uuid4()))


async def test_entry_holds_type_upload_id_key_and_the_http_body(stream: str) -> None:
    sent = payload("post-finish", "key-1")
    async with running(RedisStreamHookBackend(SHARED_REDIS, stream)) as backend:
        assert await backend.invoke("post-finish", sent) == HookResponse()
    async with redis_client() as client:
        [entry] = await all_entries(client, stream)
    assert set(entry.fields) == {"type", "upload_id", "idempotency_key", "body"}
    assert entry.type == "post-finish"
    assert entry.upload_id == UPLOAD_ID
    assert entry.fields["idempotency_key"] == "key-1"
    # Byte for byte what an HTTP hook endpoint receives as its body.
    assert entry.fields == entry_fields("post-finish", sent)
    assert entry.body == sent
    assert backend.delivered == 1 and backend.failed == 0


async def test_blocking_hooks_are_not_sent(stream: str) -> None:
    async with running(RedisStreamHookBackend(SHARED_REDIS, stream)) as backend:
        for hook in ("pre-create", "pre-finish", "pre-terminate", "pre-access"):
            assert await backend.invoke(hook, payload(hook)) == HookResponse()
        await backend.invoke("post-create", payload("post-create"))
    async with redis_client() as client:
        assert [entry.type for entry in await all_entries(client, stream)] == ["post-create"]


async def test_consumer_group_reads_events_in_order(stream: str) -> None:
    hooks = ["post-create", "post-receive", "post-receive", "post-finish", "post-terminate"]
    dispatcher = HookDispatcher(
        [RedisStreamHookBackend(SHARED_REDIS, stream)], hooks, blocking_timeout=5
    )
    async with redis_client() as client:
        await create_group(client, stream, "workers")
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.run)
            for hook in hooks:
                await dispatcher.invoke(make_event(hook))
            await dispatcher.aclose()
            nursery.cancel_scope.cancel()
        first = await read_group(client, stream, "workers", "c1")
        assert await read_group(client, stream, "workers", "c2") == []  # all handed out
        pending = await client.xpending(stream, "workers")
    assert [entry.type for entry in first] == hooks
    assert [entry.body["Type"] for entry in first] == hooks
    # A new key per event, the body's own.
    assert len({entry.fields["idempotency_key"] for entry in first}) == len(hooks)
    for entry in first:
        assert entry.fields["idempotency_key"] == entry.body["IdempotencyKey"]
    assert isinstance(pending, StreamPending)  # the summary form (no range asked)
    assert pending.pending == 0  # every entry acknowledged


@pytest.mark.parametrize(("maxlen", "sent"), [(200, 1000), (0, 300)])
async def test_maxlen_bounds_the_stream(stream: str, maxlen: int, sent: int) -> None:
    keys = [f"k{n}" for n in range(sent)]
    async with running(RedisStreamHookBackend(SHARED_REDIS, stream, maxlen=maxlen)) as backend:
        for key in keys:
            await backend.invoke("post-receive", payload("post-receive", key))
    async with redis_client() as client:
        node_size = int(
            (await client.config_get(["stream-node-max-entries"]))[b"stream-node-max-entries"]
        )
        entries = await all_entries(client, stream)
    length = len(entries)
    if maxlen == 0:
        assert length == sent
    else:
        # MAXLEN ~ trims whole nodes: never below the bound, at most a node above it.
        assert maxlen <= length <= maxlen + node_size < sent
    # The newest entries are the ones kept, in order.
    assert [entry.fields["idempotency_key"] for entry in entries] == keys[-length:]


async def test_redis_down_fails_after_the_attempts_and_logs_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tusd_trio.hooks")
    port = free_port()  # nothing listens here
    backend = RedisStreamHookBackend(
        f"redis://127.0.0.1:{port}/0", "s", retry=3, backoff=0.01, timeout=0.5
    )
    async with running(backend):
        with pytest.raises(HookError, match=r"Redis stream 's' .* after 3 attempt"):
            await backend.invoke("post-create", payload("post-create"))
    assert backend.failed == 1 and backend.delivered == 0
    retries = [r for r in caplog.records if "attempt" in r.getMessage()]
    assert [r.getMessage().split("(")[1].split(")")[0] for r in retries] == [
        "attempt 1 of 3",
        "attempt 2 of 3",
    ]


async def test_once_makes_one_attempt_for_a_caller_that_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The outbox retries its events itself: its call is one XADD, not ``retry`` of them."""
    caplog.set_level(logging.WARNING, logger="tusd_trio.hooks")
    port = free_port()  # nothing listens here
    backend = RedisStreamHookBackend(
        f"redis://127.0.0.1:{port}/0", "s", retry=3, backoff=30.0, timeout=0.5
    )
    async with running(backend):
        with trio.fail_after(10), pytest.raises(HookError, match=r"after 1 attempt\(s\)"):
            await backend.invoke("post-create", payload("post-create"), once=True)
    assert backend.failed == 1
    assert not [r for r in caplog.records if "attempt" in r.getMessage()]


async def test_an_event_is_delivered_when_redis_returns_within_the_attempts(
    redis_servers: RedisServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tusd_trio.hooks")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    backend = RedisStreamHookBackend(url, "events", retry=100, backoff=0.05, timeout=0.5)
    async with running(backend), trio.open_nursery() as nursery:
        result: list[HookResponse] = []

        async def send() -> None:
            result.append(await backend.invoke("post-finish", payload("post-finish", "late")))

        nursery.start_soon(send)
        with trio.fail_after(10):
            while not any("attempt 1 of 100" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)
        await trio.to_thread.run_sync(redis_servers.start, port)
        with trio.fail_after(20):
            while not result:
                await trio.sleep(0.01)
    async with redis_client(url) as client:
        [entry] = await all_entries(client, "events")
    assert entry.fields["idempotency_key"] == "late"
    assert backend.delivered == 1 and backend.failed == 0


async def test_events_flow_again_after_a_redis_restart(redis_servers: RedisServers) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = await trio.to_thread.run_sync(redis_servers.start, port)
    backend = RedisStreamHookBackend(url, "events", retry=1, timeout=0.5)
    async with running(backend):
        await backend.invoke("post-create", payload("post-create", "before"))
        await trio.to_thread.run_sync(redis_servers.stop, proc)
        with pytest.raises(HookError):
            await backend.invoke("post-receive", payload("post-receive", "during"))
        await trio.to_thread.run_sync(redis_servers.start, port)
        await backend.invoke("post-finish", payload("post-finish", "after"))
    async with redis_client(url) as client:
        entries = await all_entries(client, "events")
    # The restarted server starts empty (no persistence): only the later event.
    assert [entry.fields["idempotency_key"] for entry in entries] == ["after"]
    assert (backend.delivered, backend.failed) == (2, 1)


async def test_without_run_events_fail_clearly() -> None:
    backend = RedisStreamHookBackend(SHARED_REDIS, "never", retry=1)
    with pytest.raises(HookError, match=r"not running: start RedisStreamHookBackend\.run"):
        await backend.invoke("post-create", payload("post-create"))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"stream": ""}, "name"), ({"maxlen": -1}, "maxlen"), ({"timeout": 0}, "timeout")],
)
def test_invalid_settings_are_refused(options: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"url": SHARED_REDIS, "stream": "s", **options}
    with pytest.raises(ValueError, match=message):
        RedisStreamHookBackend(**settings)  # type: ignore[arg-type]


async def test_stream_through_sentinel_lands_on_the_primary(redis_servers: RedisServers) -> None:
    primary_port, sentinel_port = free_port(), free_port()
    await trio.to_thread.run_sync(redis_servers.start, primary_port)
    await trio.to_thread.run_sync(
        lambda: redis_servers.start(
            sentinel_port,
            "--sentinel",
            config=f"sentinel monitor tusmaster 127.0.0.1 {primary_port} 1\n",
        )
    )
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/tusmaster/1"
    async with running(RedisStreamHookBackend(url, "events")) as backend:
        await backend.invoke("post-finish", payload("post-finish", "via-sentinel"))
    async with redis_client(f"redis://127.0.0.1:{primary_port}/1") as primary:
        [entry] = await all_entries(primary, "events")
    assert entry.fields["idempotency_key"] == "via-sentinel"


async def test_stream_on_a_cluster(redis_servers: RedisServers) -> None:
    port = free_cluster_port()
    await trio.to_thread.run_sync(
        lambda: redis_servers.start(
            port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"
        )
    )
    cli = ["redis-cli", "-p", str(port)]
    await trio.run_process([*cli, "cluster", "addslotsrange", "0", "16383"], capture_stdout=True)
    with trio.fail_after(20):
        while (
            "cluster_state:ok"
            not in (
                await trio.run_process([*cli, "cluster", "info"], capture_stdout=True)
            ).stdout.decode()
        ):
            await trio.sleep(0.05)
    async with running(RedisStreamHookBackend(f"redis+cluster://127.0.0.1:{port}", "events")) as b:
        await b.invoke("post-create", payload("post-create", "on-cluster"))
    async with redis_client(f"redis://127.0.0.1:{port}/0") as node:
        [entry] = await all_entries(node, "events")
    assert entry.fields["idempotency_key"] == "on-cluster"


async def test_sentinels_down_at_start_then_up(
    redis_servers: RedisServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tusd_trio.hooks")
    primary_port, sentinel_port = free_port(), free_port()
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/tusmaster/0"
    async with running(RedisStreamHookBackend(url, "events", retry=1, timeout=0.5)) as backend:
        with pytest.raises(HookError):
            await backend.invoke("post-create", payload("post-create", "too-early"))
        await trio.to_thread.run_sync(redis_servers.start, primary_port)
        await trio.to_thread.run_sync(
            lambda: redis_servers.start(
                sentinel_port,
                "--sentinel",
                config=f"sentinel monitor tusmaster 127.0.0.1 {primary_port} 1\n",
            )
        )
        with trio.fail_after(20):
            while True:
                try:
                    await backend.invoke("post-finish", payload("post-finish", "in-time"))
                    break
                except HookError:
                    await trio.sleep(0.1)
    async with redis_client(f"redis://127.0.0.1:{primary_port}/0") as primary:
        keys = [entry.fields["idempotency_key"] for entry in await all_entries(primary, "events")]
    assert keys == ["in-time"]
