"""The hook outbox's Redis store against a redis-server of the test's own (so that the
server's command counts are this test's alone): what a pass of the sender reads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from tests._support.redis import RedisServers
from tests._support.services import free_port
from tusd_trio.hooks.outbox import OutboxEntry
from tusd_trio.hooks.outbox_redis import RedisOutboxStore


def event(store: RedisOutboxStore, number: int) -> OutboxEntry:
    upload = f"upload-{number % 3}"
    return OutboxEntry(
        id=store.new_id(),
        hook_type="post-finish",
        upload_id=upload,
        payload={"Type": "post-finish", "Event": {"Upload": {"ID": upload}}, "N": number},
        created=1_000_000.0 + number,
    )


async def hmget_calls(port: int) -> int:
    """How many HMGET commands the server has run (the store reads events with HMGET)."""
    done = await trio.run_process(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_stdout=True
    )
    found = re.search(rb"cmdstat_hmget:calls=(\d+)", done.stdout)
    return int(found.group(1)) if found else 0


@asynccontextmanager
async def two_instances(
    redis_servers: RedisServers,
) -> AsyncIterator[tuple[int, RedisOutboxStore, RedisOutboxStore]]:
    """The stores of two instances sharing one outbox: one writes, one sends."""
    port = free_port()
    await trio.to_thread.run_sync(redis_servers.start, port)
    url = f"redis://127.0.0.1:{port}/0"
    writer = RedisOutboxStore(url, key_prefix="outbox-test:")
    sender = RedisOutboxStore(url, key_prefix="outbox-test:")
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await nursery.start(sender.run)
        try:
            yield port, writer, sender
        finally:
            writer.stop()
            sender.stop()


async def test_a_pass_reads_only_the_events_it_has_not_read(redis_servers: RedisServers) -> None:
    async with two_instances(redis_servers) as (port, writer, sender):
        written = [event(writer, n) for n in range(30)]
        for entry in written:
            await writer.put(entry)
        assert await sender.pending(2000) == written
        reads = await hmget_calls(port)
        # Passes over an unchanged queue read no stored event again.
        for _ in range(3):
            assert await sender.pending(2000) == written
        assert await hmget_calls(port) == reads
        # Events another instance delivered leave the list; new ones are read, once.
        for entry in written[:10]:
            await writer.complete(entry)
        more = [event(writer, n) for n in range(30, 35)]
        for entry in more:
            await writer.put(entry)
        assert await sender.pending(2000) == written[10:] + more
        assert await hmget_calls(port) == reads + 1
        assert await sender.pending(2000) == written[10:] + more
        assert await hmget_calls(port) == reads + 1


async def test_a_short_look_keeps_what_a_longer_one_read(redis_servers: RedisServers) -> None:
    """The readiness check looks at the oldest event only: the sender's next pass
    still reads nothing again, and an event delivered meanwhile is gone from it."""
    async with two_instances(redis_servers) as (port, writer, sender):
        written = [event(writer, n) for n in range(6)]
        for entry in written:
            await writer.put(entry)
        assert await sender.pending(2000) == written
        reads = await hmget_calls(port)
        assert await sender.pending(1) == written[:1]
        await writer.complete(written[3])
        assert await sender.pending(2) == written[:2]
        assert await sender.pending(2000) == written[:3] + written[4:]
        assert await hmget_calls(port) == reads


async def test_bury_and_complete_by_the_sender_itself(redis_servers: RedisServers) -> None:
    async with two_instances(redis_servers) as (_, writer, sender):
        written = [event(writer, n) for n in range(4)]
        for entry in written:
            await writer.put(entry)
        assert await sender.pending(2000) == written
        await sender.complete(written[0])
        assert await sender.bury(written[1], "gave up")
        assert not await sender.bury(written[1], "gave up")
        assert await sender.pending(2000) == written[2:]
        assert await writer.pending(2000) == written[2:]
        assert await sender.dead_count() == 1
