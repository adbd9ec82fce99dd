"""Quota usage in Redis, beside the locks of ``-locker redis``: every instance that
shares the Redis shares the counts, and each change is one Lua script, so two
instances racing for a principal's last bytes cannot both get them.

A principal's usage is the hash ``<prefix>quota:<owner id>`` with the fields
``bytes`` and ``uploads``.  The scripts apply the rules of :mod:`.policy` (a
limit of 0 is no limit).  Nothing expires: the counts live as long as the uploads
they count.  When Redis cannot be reached every operation is a
:class:`~tusd_trio.protocol.errors.LockerUnavailableError` (503): a creation is
refused rather than let past an unknown quota.
"""

from __future__ import annotations

from typing import Any

from coredis.commands.script import Script

from ..lockers.redis import RedisLocker
from ..lockers.redis_client import Client, Connection, as_int
from .policy import Charge, QuotaLimits, QuotaUsage

# Counts change with HINCRBY or are written with %d: Lua's own number formatting
# would turn a large count into "1e+15".
# KEYS[1] usage hash; ARGV bytes, uploads, bytes limit, uploads limit (0 = none).
# Returns {accepted (1/0), bytes, uploads}: the usage after, or as it is if refused.
RESERVE = """
local held = redis.call('HMGET', KEYS[1], 'bytes', 'uploads')
local used = tonumber(held[1] or '0')
local count = tonumber(held[2] or '0')
local b, u = tonumber(ARGV[1]), tonumber(ARGV[2])
local bl, ul = tonumber(ARGV[3]), tonumber(ARGV[4])
if (bl > 0 and b > 0 and used + b > bl) or (ul > 0 and u > 0 and count + u > ul) then
  return {0, used, count}
end
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'uploads', ARGV[2])
return {1, used + b, count + u}
"""

# KEYS[1] usage hash; ARGV want, bytes limit (0 = none).  Returns {granted, bytes, uploads}.
GRANT = """
local held = redis.call('HMGET', KEYS[1], 'bytes', 'uploads')
local used = tonumber(held[1] or '0')
local count = tonumber(held[2] or '0')
local want, bl = tonumber(ARGV[1]), tonumber(ARGV[2])
local granted = want
if bl > 0 then
  granted = math.max(0, math.min(want, bl - used))
end
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], 'bytes', string.format('%d', granted))
end
return {granted, used + granted, count}
"""

# KEYS[1] usage hash; ARGV bytes, uploads.  Never below zero; an empty hash is deleted.
RELEASE = """
local held = redis.call('HMGET', KEYS[1], 'bytes', 'uploads')
local used = math.max(0, tonumber(held[1] or '0') - tonumber(ARGV[1]))
local count = math.max(0, tonumber(held[2] or '0') - tonumber(ARGV[2]))
if used == 0 and count == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'bytes', string.format('%d', used),
             'uploads', string.format('%d', count))
end
return {used, count}
"""


def _triple(reply: Any) -> tuple[int, int, int]:
    values = [as_int(item) for item in reply]
    if len(values) != 3:
        raise ValueError("odd answer from a quota script")
    return values[0], values[1], values[2]


class RedisLedger:
    """Usage shared by every instance behind one Redis (see the module docstring);
    runs on the connection of ``locker``, whose ``run`` must be running."""

    kind = "redis"

    def __init__(self, locker: RedisLocker) -> None:
        self._locker = locker
        self._scripts: tuple[Client, Script[bytes], Script[bytes], Script[bytes]] | None = None

    def key(self, owner: str) -> str:
        return f"{self._locker.key_prefix}quota:{owner}"

    def _registered(self, client: Client) -> tuple[Script[bytes], Script[bytes], Script[bytes]]:
        # Scripts belong to a client; the locker makes a new one after reconnecting.
        if self._scripts is None or self._scripts[0] is not client:
            self._scripts = (
                client,
                client.register_script(RESERVE),
                client.register_script(GRANT),
                client.register_script(RELEASE),
            )
        return self._scripts[1], self._scripts[2], self._scripts[3]

    async def _run(self, which: int, owner: str, args: list[int]) -> Any:
        async def command(conn: Connection) -> Any:
            script = self._registered(conn.client)[which]
            return await script(keys=[self.key(owner)], args=args)

        return await self._locker.call(command)

    async def reserve(
        self, owner: str, limits: QuotaLimits, charge: Charge
    ) -> tuple[bool, QuotaUsage]:
        accepted, used, count = _triple(
            await self._run(
                0,
                owner,
                [charge.bytes, charge.uploads, limits.bytes or 0, limits.uploads or 0],
            )
        )
        return accepted == 1, QuotaUsage(used, count)

    async def grant(self, owner: str, limits: QuotaLimits, want: int) -> tuple[int, QuotaUsage]:
        granted, used, count = _triple(await self._run(1, owner, [want, limits.bytes or 0]))
        return granted, QuotaUsage(used, count)

    async def release(self, owner: str, charge: Charge) -> QuotaUsage:
        reply = await self._run(2, owner, [charge.bytes, charge.uploads])
        used, count = (as_int(item) for item in reply)
        return QuotaUsage(used, count)

    async def usage(self, owner: str) -> QuotaUsage:
        async def command(conn: Connection) -> Any:
            return await conn.client.hmget(self.key(owner), ["bytes", "uploads"])

        reply = await self._locker.call(command)
        used, count = (int(item) if item is not None else 0 for item in reply)
        return QuotaUsage(used, count)
