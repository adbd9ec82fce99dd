"""The Redis connection of everything that talks to Redis (the locker, the hook outbox's
Redis store, the Redis stream hook backend): opening a client for a
:class:`~.redis_url.RedisTarget`, so all read ``-redis-url`` alike; keeping one open
(:func:`keep_client`); and the Lua scripts the locker runs on it."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

import anyio
import trio
from coredis import Redis, RedisCluster, Sentinel
from coredis.commands.script import Script
from coredis.connection import TCPLocation
from coredis.exceptions import ConnectionError as RedisConnectionError, RedisError
from coredis.retry import ConstantRetryPolicy

from ..protocol.errors import LockerUnavailableError
from .redis_url import RedisTarget

log = logging.getLogger("tusd_trio.redislocker")

Client: TypeAlias = "Redis[bytes] | RedisCluster[bytes]"
T = TypeVar("T")

#: Waits between two attempts to open a client: the first, and the longest.
FIRST_RECONNECT = 0.1
MAX_RECONNECT = 2.0

# KEYS[1] lock key; ARGV[1] token, ARGV[2] ttl in ms.
# Returns -3 when the lock was taken, else the remaining TTL (ms) of the holder.
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -3
end
return redis.call('PTTL', KEYS[1])
"""

# KEYS[1] lock key; ARGV[1] token, ARGV[2] ttl in ms.  1 when still ours.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lock key; ARGV[1] token, ARGV[2] "released" channel, ARGV[3] upload id.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Connection:
    """A client and the locker's scripts registered with it."""

    client: Client
    acquire: Script[bytes]
    renew: Script[bytes]
    release: Script[bytes]


def as_int(value: object) -> int:
    if isinstance(value, int):
        return value
    raise LockerUnavailableError("the upload lock service is unavailable: odd answer from Redis")


def register_scripts(client: Client) -> Connection:
    return Connection(
        client,
        client.register_script(ACQUIRE),
        client.register_script(RENEW),
        client.register_script(RELEASE),
    )


@asynccontextmanager
async def open_client(target: RedisTarget, command_timeout: float) -> AsyncIterator[Client]:
    """A connected client for ``target`` (standalone, cluster or through sentinels);
    ``command_timeout`` bounds connecting and every command."""
    retry = ConstantRetryPolicy(
        (RedisConnectionError, OSError, TimeoutError), retries=1, delay=0.01
    )
    common: dict[str, Any] = {
        "connect_timeout": command_timeout,
        "stream_timeout": command_timeout,
    }
    ssl_context = ssl.create_default_context() if target.tls else None
    async with AsyncExitStack() as stack:
        client: Client
        if target.kind == "standalone":
            client = Redis.from_url(target.url, retry_policy=retry, **common)
        elif target.kind == "cluster":
            client = RedisCluster(
                startup_nodes=[TCPLocation(h, p) for h, p in target.hosts],
                username=target.username,
                password=target.password,
                ssl_context=ssl_context,
                retry_policy=retry,
                **common,
            )
        else:
            assert target.service_name is not None
            sentinel_kwargs: dict[str, Any] = dict(common)
            if target.sentinel_password is not None:
                sentinel_kwargs["password"] = target.sentinel_password
                sentinel_kwargs["username"] = target.sentinel_username
            if ssl_context is not None:
                sentinel_kwargs["ssl_context"] = ssl_context
            sentinel = Sentinel(
                [TCPLocation(h, p) for h, p in target.hosts],
                sentinel_kwargs=sentinel_kwargs,
                retry_policy=retry,
                username=target.username,
                password=target.password,
                db=target.db,
                ssl_context=ssl_context,
                **common,
            )
            await stack.enter_async_context(sentinel)
            client = sentinel.primary_for(target.service_name)
        await stack.enter_async_context(client)
        yield client


class ClientOwner(Protocol):
    """What :func:`keep_client` keeps a client open for."""

    #: Where to connect.
    target: RedisTarget
    #: Bounds connecting and every command (as for :func:`open_client`).
    timeout: float

    async def use_client(self, client: Client, ready: Callable[[], None]) -> None:
        """Serve with ``client``: call ``ready()`` once it serves, return once the owner
        closes, raise when the client fails."""

    def client_failed(self, exc: Exception) -> None:
        """Report that a client could not be opened or failed."""


async def keep_client(
    owner: ClientOwner,
    closing: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep a client of ``owner.target`` open and run ``owner.use_client`` on it, until
    ``closing`` is set.

    A client that cannot be opened, or that fails, is reported to ``owner.client_failed``
    and replaced after a wait that doubles from :data:`FIRST_RECONNECT` to
    :data:`MAX_RECONNECT` (back to the first once a client served).  Started once the
    first client serves, or after the first failure: the owner then runs (with Redis
    errors) until Redis can be reached.

    The client's connection pool lives in this task, so it closes only after
    ``use_client`` returned: the owner can still use the client in its ``finally``.
    Outside cancellation ends it like any trio call; an owner that must clean up first
    shields this call and sets ``closing`` instead.
    """
    started = False
    backoff = FIRST_RECONNECT

    def ready() -> None:
        nonlocal started, backoff
        backoff = FIRST_RECONNECT
        if not started:
            started = True
            task_status.started()

    while not closing.is_set():
        try:
            async with open_client(owner.target, owner.timeout) as client:
                await owner.use_client(client, ready)
        except Exception as exc:
            owner.client_failed(exc)
        if not started:
            started = True
            task_status.started()
        with trio.move_on_after(backoff):
            await closing.wait()
        backoff = min(backoff * 2, MAX_RECONNECT)


async def run_command(
    conn: Connection | None, command: Callable[[Connection], Awaitable[T]], op_timeout: float
) -> T:
    """Run one Redis operation on ``conn`` within ``op_timeout`` seconds; any failure
    to reach Redis is a :class:`LockerUnavailableError` (503)."""
    if conn is None:
        raise LockerUnavailableError()
    try:
        with trio.fail_after(op_timeout):
            return await command(conn)
    except trio.TooSlowError:
        raise LockerUnavailableError(
            "the upload lock service is unavailable: Redis did not answer in time"
        ) from None
    except (OSError, TimeoutError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
        raise LockerUnavailableError() from exc
    except RedisError as exc:
        if isinstance(exc, RedisConnectionError):
            raise LockerUnavailableError() from exc
        log.warning("Redis error in the locker: %s", exc)
        raise LockerUnavailableError(
            "the upload lock service is unavailable: Redis answered with an error"
        ) from exc
