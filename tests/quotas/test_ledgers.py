"""Both ledgers count alike; the Redis one (real Redis on 127.0.0.1:6379, a key prefix
of the test's own) stays exact when two instances race for the same principal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from tests._support.redis import SHARED_REDIS as REDIS, redis_cli
from tusd_trio.lockers.redis import RedisLocker
from tusd_trio.quotas.ledger import MemoryLedger, QuotaLedger
from tusd_trio.quotas.policy import Charge, QuotaLimits, QuotaUsage
from tusd_trio.quotas.redis_ledger import RedisLedger


@asynccontextmanager
async def redis_ledgers(count: int) -> AsyncIterator[list[RedisLedger]]:
    """``count`` ledgers on lockers of their own (as separate instances) sharing a prefix."""
    prefix = f"tq-{uuid.uuid4().hex[:10]}:"
    async with trio.open_nursery() as nursery:
        lockers = [RedisLocker(REDIS, key_prefix=prefix) for _ in range(count)]
        for locker in lockers:
            await nursery.start(locker.run)
        try:
            yield [RedisLedger(locker) for locker in lockers]
        finally:
            for key in redis_cli("--scan", "--pattern", f"{prefix}quota:*").split():
                redis_cli("DEL", key)
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def ledger_of(kind: str) -> AsyncIterator[QuotaLedger]:
    if kind == "memory":
        yield MemoryLedger()
        return
    async with redis_ledgers(1) as (ledger,):
        yield ledger


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_reserve_grant_release(kind: str) -> None:
    limits = QuotaLimits(bytes=1000, uploads=2)
    async with ledger_of(kind) as ledger:
        assert await ledger.reserve("jwt:alice", limits, Charge(600, 1)) == (
            True,
            QuotaUsage(600, 1),
        )
        # Refused: nothing changes, the usage as it is comes back.
        assert await ledger.reserve("jwt:alice", limits, Charge(401, 1)) == (
            False,
            QuotaUsage(600, 1),
        )
        assert await ledger.reserve("jwt:alice", limits, Charge(400, 1)) == (
            True,
            QuotaUsage(1000, 2),
        )
        assert (await ledger.reserve("jwt:alice", limits, Charge(0, 1)))[0] is False
        assert await ledger.usage("jwt:bob") == QuotaUsage()
        assert await ledger.release("jwt:alice", Charge(300, 1)) == QuotaUsage(700, 1)
        assert await ledger.grant("jwt:alice", limits, 500) == (300, QuotaUsage(1000, 1))
        assert await ledger.grant("jwt:alice", limits, 5) == (0, QuotaUsage(1000, 1))
        # Releasing more than is held stops at zero.
        assert await ledger.release("jwt:alice", Charge(5000, 9)) == QuotaUsage()
        assert await ledger.usage("jwt:alice") == QuotaUsage()


async def test_counts_beyond_float_formatting_stay_exact_in_redis() -> None:
    big = 10**15 + 7  # Lua would print this as 1e+15
    async with redis_ledgers(1) as (ledger,):
        assert await ledger.reserve("k:x", QuotaLimits(), Charge(big, 0)) == (
            True,
            QuotaUsage(big, 0),
        )
        assert await ledger.release("k:x", Charge(3, 0)) == QuotaUsage(big - 3, 0)
        assert await ledger.usage("k:x") == QuotaUsage(big - 3, 0)


async def test_two_instances_racing_never_exceed_the_quota() -> None:
    limits = QuotaLimits(bytes=1000, uploads=50)
    accepted: list[bool] = []
    async with redis_ledgers(2) as ledgers:

        async def one(index: int) -> None:
            ok, _ = await ledgers[index % 2].reserve("jwt:racer", limits, Charge(100, 1))
            accepted.append(ok)

        async with trio.open_nursery() as nursery:
            for index in range(40):
                nursery.start_soon(one, index)
        assert accepted.count(True) == 10
        assert await ledgers[0].usage("jwt:racer") == QuotaUsage(1000, 10)
