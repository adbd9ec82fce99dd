"""A hook stream read as its consumers read it: a consumer group on a real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from tests._support.redis import SHARED_REDIS
from tusd_trio.lockers.redis_client import Client, open_client
from tusd_trio.lockers.redis_url import parse_redis_url


@dataclass(frozen=True)
class Entry:
    """One stream entry, decoded."""

    id: str
    fields: dict[str, str]

    @property
    def type(self) -> str:
        return self.fields["type"]

    @property
    def upload_id(self) -> str:
        return self.fields["upload_id"]

    @property
    def body(self) -> Any:
        return json.loads(self.fields["body"])


def _decode(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Any) -> list[Entry]:
    return [
        Entry(
            _decode(item.identifier), {_decode(k): _decode(v) for k, v in item.field_values.items()}
        )
        for item in raw
    ]


@asynccontextmanager
async def redis_client(url: str = SHARED_REDIS) -> AsyncIterator[Client]:
    async with open_client(parse_redis_url(url), 2.0) as client:
        yield client


@asynccontextmanager
async def fresh_stream(url: str = SHARED_REDIS) -> AsyncIterator[str]:
    """A stream name no other test uses; the stream is deleted afterwards."""
    name = f"tusd-trio-test:hooks:{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            async with redis_client(url) as client:
                await client.delete([name])


async def all_entries(client: Client, stream: str) -> list[Entry]:
    """Every entry of the stream, oldest first (XRANGE - +)."""
    return _entries(await client.xrange(stream))


async def create_group(client: Client, stream: str, group: str) -> None:
    """A consumer group reading the stream from its first entry (made if missing)."""
    await client.xgroup_create(stream, group, identifier="0", mkstream=True)


async def read_group(client: Client, stream: str, group: str, consumer: str) -> list[Entry]:
    """What ``consumer`` of ``group`` has not been given yet, acknowledged as read."""
    read: list[Entry] = []
    while True:
        answer = await client.xreadgroup(group, consumer, streams={stream: ">"}, count=100)
        if not answer:
            return read
        batch = [entry for raw in answer.values() for entry in _entries(raw)]
        if not batch:
            return read
        await client.xack(stream, group, [entry.id for entry in batch])
        read.extend(batch)


async def wait_for_entries(
    client: Client, stream: str, count: int, timeout: float = 15.0
) -> list[Entry]:
    """The stream's entries once it has at least ``count`` of them."""
    with trio.fail_after(timeout):
        while len(entries := await all_entries(client, stream)) < count:
            await trio.sleep(0.02)
    return entries
