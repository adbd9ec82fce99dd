"""The outbox in Redis (with ``-locker redis``): every instance writes there and any
instance delivers, so the events a dead instance left are sent by another.

Keys (``<prefix>`` is ``-redis-key-prefix``; the ``{outbox}`` hash tag keeps them in
one cluster slot, so the scripts may touch several):

* ``<prefix>{outbox}:seq``: the counter giving each event its place;
* ``<prefix>{outbox}:queue``: sorted set of pending event ids, scored by that place;
* ``<prefix>{outbox}:events``: hash, event id -> the stored event (JSON);
* ``<prefix>{outbox}:lease:<upload id>``: who delivers that upload's events now;
* ``<prefix>{outbox}:dead``, ``<prefix>{outbox}:dead-reason``: hashes of dead events;
* ``<prefix>{outbox}:reporter``: the process reporting the outbox's gauges.

An instance sends an upload's oldest event only while it holds the upload's lease
(``SET NX PX``, renewed while the delivery runs, given back after it), and the claim
checks the event is still pending in the same script, so two instances never send an
event at the same time and an event delivered by one is not sent again by another.
A lease whose holder died runs out after ``lease_ttl`` seconds.

A pass of the sender lists the ids of the oldest pending events (a sorted-set range)
but reads a stored event (``HMGET``) only the first time it sees its id: an event
never changes once written, so a backlog costs its ids per pass, not its bodies.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio
from coredis.commands.script import Script
from coredis.response.types import ScoredMember

from .._logging import error_event
from ..lockers.redis_client import RENEW, Client, keep_client
from ..lockers.redis_url import parse_redis_url
from .outbox import OutboxEntry

__all__ = ["RedisOutboxStore"]

# KEYS seq, queue, events; ARGV id, event.
_PUT = """
local place = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], place, ARGV[1])
return place
"""

# KEYS queue, lease; ARGV id, token, ttl ms.  1 when claimed.
_CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""

# KEYS lease; ARGV token, ttl ms.  1 when taken.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

# KEYS lease; ARGV token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS queue, events; ARGV id.
_COMPLETE = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""

# KEYS queue, events, dead, dead-reason; ARGV id, reason.  1 when moved.
_BURY = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local event = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if event then
  redis.call('HSET', KEYS[3], ARGV[1], event)
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
end
return 1
"""


_SCRIPTS = (
    ("put", _PUT),
    ("claim", _CLAIM),
    ("take", _TAKE),
    ("renew", RENEW),
    ("release", _RELEASE),
    ("complete", _COMPLETE),
    ("bury", _BURY),
)


class RedisOutboxStore:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "tusd-trio:",
        lease_ttl: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self.target = parse_redis_url(url)
        base = f"{key_prefix}{{outbox}}:"
        self.seq_key = base + "seq"
        self.queue_key = base + "queue"
        self.events_key = base + "events"
        self.dead_key = base + "dead"
        self.dead_reason_key = base + "dead-reason"
        self._lease_base = base + "lease:"
        self.lease_ttl_ms = max(1000, int(lease_ttl * 1000))
        self.timeout = timeout
        self._client: Client | None = None
        self._scripts: dict[str, Script[bytes]] = {}
        #: The events :meth:`pending` has read, by id, with their places in the queue:
        #: each is read from Redis once, not on every pass of the sender.
        self._read: dict[str, tuple[float, OutboxEntry]] = {}
        #: Leases held now: upload id -> token.
        self._held: dict[str, str] = {}
        self._instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._closing = trio.Event()
        self.reporter_key = base + "reporter"
        self._reporting = False

    def lease_key(self, upload_id: str) -> str:
        return self._lease_base + upload_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a client open (reconnecting after a failure) and renew the held leases,
        until :meth:`stop`: shielded, so the deliveries can still give their leases
        back while the outbox shuts down."""
        with trio.CancelScope(shield=True):
            await keep_client(self, self._closing, task_status=task_status)

    async def use_client(self, client: Client, ready: Callable[[], None]) -> None:
        """(For :func:`keep_client`.)  Serve the outbox and renew leases until :meth:`stop`."""
        self._scripts = {name: client.register_script(text) for name, text in _SCRIPTS}
        self._client = client
        try:
            ready()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._renew_leases)
                await self._closing.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._client = None

    def client_failed(self, exc: Exception) -> None:
        error_event("HookOutboxRedisError", redis=self.target.describe(), error=repr(exc))

    def stop(self) -> None:
        self._closing.set()

    async def _renew_leases(self) -> None:
        while True:
            await self._keep_reporter()
            await trio.sleep(self.lease_ttl_ms / 3000)
            for upload_id, token in list(self._held.items()):
                await self._script("renew", [self.lease_key(upload_id)], [token, self.lease_ttl_ms])

    async def _keep_reporter(self) -> None:
        """Hold (or try to take) the reporter lease: the one process, of all instances
        and workers, that reports the outbox's gauges, so their sum stays true."""
        key = self.reporter_key
        if self._reporting:
            renewed = await self._script("renew", [key], [self._instance, self.lease_ttl_ms])
            self._reporting = renewed == 1
        if not self._reporting:
            taken = await self._script("take", [key], [self._instance, self.lease_ttl_ms])
            self._reporting = taken == 1

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._connected()
        with trio.fail_after(self.timeout):
            return await self._scripts[name](keys=keys, args=args)

    def _connected(self) -> Client:
        client = self._client
        if client is None:
            raise ConnectionError(f"no connection to Redis at {self.target.describe()}")
        return client

    def new_id(self) -> str:
        return f"{time.time_ns():020d}-{uuid.uuid4().hex}"

    async def put(self, entry: OutboxEntry) -> None:
        await self._script(
            "put",
            [self.seq_key, self.queue_key, self.events_key],
            [entry.id, entry.to_json()],
        )

    async def pending(self, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` events: their ids and places are read every time, the
        stored event only for ids not read before (an event never changes)."""
        client = self._connected()
        read = self._read
        with trio.fail_after(self.timeout):
            listed = await client.zrange(self.queue_key, 0, limit - 1, withscores=True)
            places: dict[str, float] = {}
            for item in listed:
                assert isinstance(item, ScoredMember)  # what withscores answers
                member = item.member
                places[member.decode() if isinstance(member, bytes) else member] = item.score
            unread = [event_id for event_id in places if event_id not in read]
            values = await client.hmget(self.events_key, unread) if unread else ()
        # Forget the events gone from the part of the queue just listed; those after it
        # (listed by an earlier, longer look) are still pending.
        covered = max(places.values(), default=math.inf) if len(places) == limit else math.inf
        for event_id in [i for i, (place, _) in read.items() if place <= covered]:
            if event_id not in places:
                del read[event_id]
        for event_id, value in zip(unread, values, strict=True):
            if value is not None:  # None: delivered between the two reads
                read[event_id] = (places[event_id], OutboxEntry.from_json(value))
        return [read[event_id][1] for event_id in places if event_id in read]

    async def claim(self, entry: OutboxEntry) -> bool:
        token = f"{self._instance}-{uuid.uuid4().hex[:8]}"
        taken = await self._script(
            "claim",
            [self.queue_key, self.lease_key(entry.upload_id)],
            [entry.id, token, self.lease_ttl_ms],
        )
        if taken == 1:
            self._held[entry.upload_id] = token
            return True
        return False

    async def release(self, entry: OutboxEntry) -> None:
        token = self._held.pop(entry.upload_id, None)
        if token is not None:
            await self._script("release", [self.lease_key(entry.upload_id)], [token])

    async def complete(self, entry: OutboxEntry) -> None:
        await self._script("complete", [self.queue_key, self.events_key], [entry.id])
        self._forget(entry.id)

    def _forget(self, event_id: str) -> None:
        self._read.pop(event_id, None)

    async def bury(self, entry: OutboxEntry, reason: str) -> bool:
        moved = await self._script(
            "bury",
            [self.queue_key, self.events_key, self.dead_key, self.dead_reason_key],
            [entry.id, reason],
        )
        self._forget(entry.id)
        return bool(moved == 1)

    async def dead_count(self) -> int:
        client = self._connected()
        with trio.fail_after(self.timeout):
            return int(await client.hlen(self.dead_key))

    def reports_gauges(self) -> bool:
        return self._reporting

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
