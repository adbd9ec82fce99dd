"""Upload locks shared by every tusd-trio instance that talks to one Redis.

A lock is a *lease*: the key ``<prefix>lock:<upload id>`` holds a random owner
token and expires after ``ttl`` seconds.  It is taken with ``SET NX PX``,
renewed by :meth:`RedisLocker.run` every ``ttl / 3`` while it is held, and
deleted only by its owner (a Lua compare-and-delete).  A holder that dies
(SIGKILL, lost host) stops blocking the upload when its lease runs out.

Within one process the lock is first taken from a :class:`MemoryLocker`, so
requests of the same instance queue in arrival order; when the holder lets go
and another local request waits, the lease itself passes to it without a
round trip to Redis (unless a request of another instance asked first: then
the lease is given back to Redis so that both can compete for it).

Across instances, tusd's release handshake runs over pub/sub: a waiter
publishes ``"<waiter> <upload id>"`` on ``<prefix>release-request`` and the
holder's ``on_release_requested`` is called (once per waiter); the
compare-and-delete script publishes the id on ``<prefix>released``.  Waiters
also poll with a growing back-off (capped by the key's TTL): a lost message or
a dead holder costs time, never the lock.

Every access (``write``, ``read``, ``new``) is exclusive: a HEAD never reads an
offset in the middle of another instance's write.

A lease not renewed in time, vanished or owned by someone else calls the
holder's ``on_lost`` so that it stops writing.  A lease is not a fence: a holder
frozen for longer than ``ttl`` can overlap the next one; keep ``ttl`` large.

Unreachable Redis: :meth:`RedisLocker.acquire` raises
:class:`LockerUnavailableError` (503) within a few ``timeout`` seconds, whatever
``max_wait`` is; connections come back by themselves.

Its URL is read by :mod:`.redis_url`, its connection opened by :mod:`.redis_client`.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from ..protocol.errors import LockerUnavailableError, LockTimeoutError
from .base import LockContext, ReleaseCallback
from .memory import LockStatistics, MemoryLocker
from .redis_client import (
    Client,
    Connection,
    as_int,
    keep_client,
    register_scripts,
    run_command,
)
from .redis_url import parse_redis_url

log = logging.getLogger("tusd_trio.redislocker")

LostCallback = Callable[[], None]
T = TypeVar("T")

_ACQUIRED = -3
_MIN_POLL = 0.02


# --- state ------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Lease:
    upload_id: str
    key: str
    token: str
    #: trio time before which the key cannot have expired (the time the last
    #: successful SET/PEXPIRE was *sent*, plus ttl).
    valid_until: float
    renew_at: float
    on_release_requested: ReleaseCallback | None = None
    on_lost: LostCallback | None = None
    #: Waiters of other instances that asked this holder to let go.
    asked: set[str] = field(default_factory=set)
    remote_waiting: bool = False
    renewing: bool = False
    lost: bool = False
    deleting: bool = False


class RedisLocker(LockContext):
    """Distributed per-upload locks in Redis (see the module docstring).

    ``ttl`` is the lease length in seconds, ``timeout`` bounds connecting to
    Redis and every single command, ``max_poll_interval`` caps how long a waiter
    sleeps between two attempts when no ``released`` message arrives.

    :meth:`run` must be running (the server starts it in its supervisor
    nursery) for :meth:`acquire` to work; it holds the connections, renews the
    leases and listens for release requests.
    """

    name = "redislocker"

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 30.0,
        key_prefix: str = "tusd-trio:",
        timeout: float = 2.0,
        max_poll_interval: float = 1.0,
    ) -> None:
        if not ttl > 0.05:
            raise ValueError("ttl must be more than 0.05 seconds")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.target = parse_redis_url(url)
        self.ttl = float(ttl)
        self.key_prefix = key_prefix
        self.timeout = float(timeout)
        self.max_poll_interval = max(max_poll_interval, _MIN_POLL)
        self._ttl_ms = max(1, math.ceil(self.ttl * 1000))
        self._renew_interval = self.ttl / 3
        # A lease counts as lost this long before it could expire in Redis.
        self._safety = min(self.ttl / 6, 1.0)
        self._retry_interval = min(self.ttl / 10, 0.5)
        # One command: connect (timeout) plus an answer (timeout), one retry.
        self._op_timeout = 2.5 * self.timeout
        self._instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._request_channel = f"{key_prefix}release-request"
        self._released_channel = f"{key_prefix}released"
        self._local = MemoryLocker()
        self._held: dict[str, _Lease] = {}  # upload id -> lease of its local holder
        self._handoff: dict[str, _Lease] = {}  # leases kept for the next local waiter
        self._leases: set[_Lease] = set()  # every lease to keep renewing
        self._waiting: dict[str, int] = {}  # local requests queued per upload id
        self._released_events: dict[str, trio.Event] = {}
        self._pending_deletes: dict[str, trio.Event] = {}
        self._unreleased: dict[str, tuple[str, str]] = {}  # token -> (upload id, key)
        self._conn: Connection | None = None
        self._nursery: trio.Nursery | None = None
        self._run_scope: trio.CancelScope | None = None
        self._stopped: trio.Event | None = None
        self._closing: trio.Event | None = None
        self._renew_wakeup: trio.Event | None = None
        self._state: Literal["new", "running", "closed"] = "new"
        self.subscribed = False
        self._redis_ok = True

    # --- public API ---------------------------------------------------------------------

    def statistics(self) -> LockStatistics:
        return self._local.statistics()

    def key(self, upload_id: str) -> str:
        return f"{self.key_prefix}lock:{upload_id}"

    async def acquire(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: LostCallback | None = None,
    ) -> None:
        """Take the lock (every ``access`` is exclusive, across all instances).

        Raises :class:`LockTimeoutError` after ``max_wait`` seconds,
        :class:`LockerUnavailableError` when Redis cannot be reached and
        ``RuntimeError`` when :meth:`run` is not running.
        """
        if self._state != "running" or self._nursery is None:
            raise RuntimeError("RedisLocker.run() must be running before locks are taken")
        deadline = trio.current_time() + max_wait
        self._waiting[upload_id] = self._waiting.get(upload_id, 0) + 1
        try:
            await self._local.acquire(
                upload_id, max_wait=max_wait, on_release_requested=on_release_requested
            )
        except BaseException:
            self._leave_queue(upload_id)
            self._settle_handoff(upload_id)
            raise
        self._leave_queue(upload_id)
        try:
            lease = self._adopt(upload_id, on_release_requested, on_lost)
            if lease is None:
                lease = await self._obtain(upload_id, deadline)
                lease.on_release_requested = on_release_requested
                lease.on_lost = on_lost
        except BaseException:
            self._local.release(upload_id)
            raise
        self._held[upload_id] = lease

    def release(self, upload_id: str) -> None:
        lease = self._held.pop(upload_id, None)
        if lease is not None:
            lease.on_release_requested = None
            lease.on_lost = None
            if (
                self._waiting.get(upload_id, 0) > 0
                and not lease.lost
                and not lease.remote_waiting
                and self._state == "running"
            ):
                self._handoff[upload_id] = lease  # the next local waiter adopts it
            else:
                self._give_back(lease)
        self._local.release(upload_id)

    async def check(self) -> None:
        """Readiness: raise :class:`LockerUnavailableError` unless Redis answers."""
        if self._state != "running":
            raise LockerUnavailableError("the upload lock service is not running")
        await self.call(lambda conn: conn.client.ping())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the Redis connections, renew leases and answer release requests.

        Returns only when cancelled or closed; on the way out every lease this
        instance holds is deleted (bounded by ``timeout``).
        """
        if self._state != "new":
            raise RuntimeError("RedisLocker.run() can only be started once")
        self._state = "running"
        self._stopped = trio.Event()
        self._closing = trio.Event()
        self._renew_wakeup = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._run_scope = scope
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self._keep_connection)
                    nursery.start_soon(self._renew_loop)
                    task_status.started()
                    try:
                        await trio.sleep_forever()
                    finally:
                        self._closing.set()  # the shielded keeper cleans up and returns
        finally:
            self._state = "closed"
            self._nursery = None
            self._conn = None
            self.subscribed = False
            self._stopped.set()

    async def aclose(self) -> None:
        """Release every lock this instance holds and close the connections."""
        if self._state == "running" and self._run_scope is not None:
            assert self._closing is not None
            self._closing.set()
            self._run_scope.cancel()
            assert self._stopped is not None
            await self._stopped.wait()
        else:
            await trio.lowlevel.checkpoint()
        self._state = "closed"

    # --- acquiring --------------------------------------------------------------------------

    def _leave_queue(self, upload_id: str) -> None:
        left = self._waiting.get(upload_id, 1) - 1
        if left > 0:
            self._waiting[upload_id] = left
        else:
            self._waiting.pop(upload_id, None)

    def _settle_handoff(self, upload_id: str) -> None:
        """Give back a handed-over lease that no local request will adopt."""
        lease = self._handoff.get(upload_id)
        if lease is not None and not self._local.is_locked(upload_id):
            del self._handoff[upload_id]
            self._give_back(lease)

    def _adopt(
        self,
        upload_id: str,
        on_release_requested: ReleaseCallback | None,
        on_lost: LostCallback | None,
    ) -> _Lease | None:
        lease = self._handoff.pop(upload_id, None)
        if lease is None:
            return None
        if (
            lease.lost
            or lease.remote_waiting
            or trio.current_time() >= lease.valid_until - self._safety
        ):
            # Another instance asked for it meanwhile (compete fairly), or it
            # is about to run out: give it back and take a fresh one.
            self._give_back(lease)
            return None
        lease.on_release_requested = on_release_requested
        lease.on_lost = on_lost
        lease.asked.clear()
        return lease

    async def _obtain(self, upload_id: str, deadline: float) -> _Lease:
        """Take the Redis key; only one task per upload id gets here at a time."""
        key = self.key(upload_id)
        token = f"{self._instance}:{secrets.token_hex(8)}"
        waiter = secrets.token_hex(8)
        backoff = _MIN_POLL
        try:
            while True:
                # This instance's own release of the key may still be on its way.
                while (pending := self._pending_deletes.get(upload_id)) is not None:
                    await pending.wait()
                released = self._released_events[upload_id] = trio.Event()
                sent = trio.current_time()
                try:
                    left = as_int(
                        await self.call(
                            lambda conn: conn.acquire(keys=[key], args=[token, self._ttl_ms])
                        )
                    )
                except BaseException:
                    # The SET may have gone through before we stopped listening.
                    self._schedule_delete(upload_id, key, token, wait=False)
                    raise
                if left == _ACQUIRED:
                    lease = _Lease(
                        upload_id,
                        key,
                        token,
                        valid_until=sent + self.ttl,
                        renew_at=sent + self._renew_interval,
                    )
                    self._leases.add(lease)
                    return lease
                # Held by another instance (or by a lease of ours that is being
                # given back): ask its holder to let go, then wait for the
                # "released" message, the key's expiry or the next poll.
                await self.call(
                    lambda conn: conn.client.publish(self._request_channel, f"{waiter} {upload_id}")
                )
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    raise LockTimeoutError()
                wait = min(backoff, remaining)
                if left >= 0:
                    wait = min(wait, left / 1000 + 0.001)
                with trio.move_on_after(wait):
                    await released.wait()
                backoff = min(backoff * 2, self.max_poll_interval)
        finally:
            self._released_events.pop(upload_id, None)

    # --- releasing --------------------------------------------------------------------------

    def _give_back(self, lease: _Lease) -> None:
        """Stop renewing a lease and delete its key (in the background)."""
        self._leases.discard(lease)
        if self._handoff.get(lease.upload_id) is lease:
            del self._handoff[lease.upload_id]
        if not lease.deleting:
            lease.deleting = True
            self._schedule_delete(lease.upload_id, lease.key, lease.token)

    def _schedule_delete(self, upload_id: str, key: str, token: str, *, wait: bool = True) -> None:
        nursery = self._nursery
        if nursery is None:
            return  # not running any more: the key expires after ttl
        self._unreleased[token] = (upload_id, key)
        done = trio.Event()
        if wait:
            self._pending_deletes[upload_id] = done
        nursery.start_soon(self._delete, upload_id, key, token, done)

    async def _delete(self, upload_id: str, key: str, token: str, done: trio.Event) -> None:
        try:
            await self.call(
                lambda conn: conn.release(
                    keys=[key], args=[token, self._released_channel, upload_id]
                )
            )
        except LockerUnavailableError:
            log.warning(
                "could not delete the lock of upload %s; it expires in %ss", upload_id, self.ttl
            )
        finally:
            self._unreleased.pop(token, None)
            done.set()
            if self._pending_deletes.get(upload_id) is done:
                del self._pending_deletes[upload_id]

    async def _release_all(self) -> None:
        """On shutdown: delete every key this instance owns, tell holders."""
        leases = list(self._leases)
        self._leases.clear()
        self._handoff.clear()
        for lease in leases:
            lease.deleting = True
            self._unreleased[lease.token] = (lease.upload_id, lease.key)
        pending = list(self._unreleased.items())
        self._unreleased.clear()
        for lease in leases:
            if not lease.lost:
                self._lose(lease, "the locker is shutting down")
        if not pending or self._conn is None:
            return
        conn = self._conn

        async def delete(token: str, upload_id: str, key: str) -> None:
            try:
                await conn.release(keys=[key], args=[token, self._released_channel, upload_id])
            except (RedisError, OSError, TimeoutError):
                pass

        with trio.move_on_after(self._op_timeout):
            async with trio.open_nursery() as nursery:
                for token, (upload_id, key) in pending:
                    nursery.start_soon(delete, token, upload_id, key)

    # --- background -------------------------------------------------------------------------

    def _lose(self, lease: _Lease, why: str) -> None:
        if lease.lost:
            return
        lease.lost = True
        held = self._held.get(lease.upload_id) is lease
        if held or self._handoff.get(lease.upload_id) is lease:
            log.warning("lost the lock of upload %s: %s", lease.upload_id, why)
        self._give_back(lease)  # harmless when the key is someone else's now
        callback = lease.on_lost
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("on_lost callback of upload %s failed", lease.upload_id)

    def _poke(self) -> None:
        if self._renew_wakeup is not None:
            self._renew_wakeup.set()

    async def _renew_loop(self) -> None:
        nursery = self._nursery
        assert nursery is not None
        while True:
            self._renew_wakeup = trio.Event()
            now = trio.current_time()
            next_due = now + self._renew_interval
            for lease in list(self._leases):
                expires = lease.valid_until - self._safety
                if now >= expires:
                    self._lose(lease, f"the lease could not be renewed within {self.ttl}s")
                    continue
                next_due = min(next_due, expires)
                if lease.renewing:
                    continue
                if now >= lease.renew_at:
                    lease.renewing = True
                    nursery.start_soon(self._renew, lease)
                else:
                    next_due = min(next_due, lease.renew_at)
            with trio.move_on_at(next_due):
                await self._renew_wakeup.wait()

    async def _renew(self, lease: _Lease) -> None:
        sent = trio.current_time()
        try:
            result = as_int(
                await self.call(
                    lambda conn: conn.renew(keys=[lease.key], args=[lease.token, self._ttl_ms])
                )
            )
        except LockerUnavailableError:
            lease.renew_at = trio.current_time() + self._retry_interval
        else:
            if lease.lost:
                pass
            elif result == 1:
                lease.valid_until = sent + self.ttl
                lease.renew_at = sent + self._renew_interval
            else:
                self._lose(lease, "its key expired or was taken over")
        finally:
            lease.renewing = False
            self._poke()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        if channel == self._released_channel.encode():
            event = self._released_events.get(text)
            if event is not None:
                event.set()
            return
        if channel != self._request_channel.encode():
            return
        waiter, _, upload_id = text.partition(" ")
        lease = self._held.get(upload_id)
        if lease is not None and not lease.lost:
            lease.remote_waiting = True
            if waiter in lease.asked:
                return
            lease.asked.add(waiter)
            callback = lease.on_release_requested
            if callback is not None:
                try:
                    callback()
                except Exception:
                    log.exception("release request callback of upload %s failed", upload_id)
            return
        lease = self._handoff.get(upload_id)
        if lease is not None:
            lease.remote_waiting = True  # the adopter gives it back
            self._settle_handoff(upload_id)

    async def _listen(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Receive release requests and notifications; resubscribe after failures."""
        started = False
        backoff = 0.05
        while True:
            try:
                async with client.pubsub(
                    channels=[self._request_channel, self._released_channel],
                    ignore_subscribe_messages=True,
                    retry_policy=NoRetryPolicy(),
                    subscription_timeout=self.timeout,
                ) as pubsub:
                    self.subscribed = True
                    if not self._redis_ok:
                        log.info("Redis at %s is reachable again", self.target.describe())
                        self._redis_ok = True
                    if not started:
                        task_status.started()
                        started = True
                    backoff = 0.05
                    async for message in pubsub:
                        channel, data = message["channel"], message["data"]
                        if isinstance(channel, bytes) and isinstance(data, bytes):
                            self._on_message(channel, data)
            except Exception as exc:
                if self._redis_ok:
                    log.warning(
                        "lost the pub/sub connection to Redis at %s (%s); reconnecting",
                        self.target.describe(),
                        exc,
                    )
                    self._redis_ok = False
            finally:
                self.subscribed = False
            if not started:  # Redis is down at start-up: serve (with 503s) anyway
                task_status.started()
                started = True
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _keep_connection(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the client (its connection pool lives in this task) and the listener.

        Shielded from outside cancellation: it stops when ``_closing`` is set, in
        order (listener first, then the leases are given back, then the pool
        closes), since coredis' pub/sub clean-up fails on a closing pool.
        """
        assert self._closing is not None
        with trio.CancelScope(shield=True):
            await keep_client(self, self._closing, task_status=task_status)

    async def use_client(self, client: Client, ready: Callable[[], None]) -> None:
        """(For :func:`keep_client`.)  Listen and serve commands until closing."""
        closing = self._closing
        assert closing is not None
        self._conn = register_scripts(client)
        try:
            async with trio.open_nursery() as inner:
                await inner.start(self._listen, client)
                ready()
                await closing.wait()
                inner.cancel_scope.cancel()
        finally:
            await self._release_all()
            self._conn = None

    def client_failed(self, exc: Exception) -> None:
        log.warning("cannot connect to Redis at %s: %s", self.target.describe(), exc)

    async def call(self, command: Callable[[Connection], Awaitable[T]]) -> T:
        """Run one Redis operation (also the quota ledger's); unreachable Redis: a 503."""
        return await run_command(self._conn, command, self._op_timeout)
