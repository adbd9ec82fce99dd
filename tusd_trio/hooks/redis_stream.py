"""Redis Streams hooks: every notification event appended to a stream (``-hooks-redis-stream``).

tusd has no such transport; it is an addition for consumers that want a durable,
replayable feed read by consumer groups instead of an endpoint called per event.

Each entry (``XADD <stream> MAXLEN ~ <maxlen> * ...``) has these fields:

``type``
    The hook type (``post-create``, ``post-receive``, ``post-finish``, ``post-terminate``).
``upload_id``
    The upload's ID (also in the body), so a consumer can shard without parsing JSON.
``idempotency_key``
    The event's idempotency key: the body's ``IdempotencyKey``, the one every other
    backend sees for the same event.
``body``
    The hook request as JSON, byte for byte the body an HTTP hook gets.

Only notifications go to the stream: a blocking hook (``pre-*``) needs an answer, and a
stream has no one to give it, so this backend skips them (the other backends still get
them).  Delivery is at least once: an ``XADD`` whose answer was lost is sent again, so a
consumer that must not act twice drops entries whose ``idempotency_key`` it has seen.

Requires coredis (``pip install 'tusd-trio[redis]'``); the client is opened from the
``-redis-url`` exactly as the Redis locker opens its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import trio
from coredis.exceptions import RedisError
from coredis.tokens import PureToken

from ..lockers.redis_client import Client, keep_client
from ..lockers.redis_url import parse_redis_url
from .model import BLOCKING, HookError, HookResponse

__all__ = ["DEFAULT_MAXLEN", "RedisStreamHookBackend"]

log = logging.getLogger("tusd_trio.hooks")

#: Entries kept by default (``MAXLEN ~``): a few hours of a busy server's events.
DEFAULT_MAXLEN = 100_000

# Besides coredis' own errors: Redis could not be reached or did not answer in time.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    trio.TooSlowError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)


def entry_fields(hook_type: str, payload: dict[str, Any]) -> dict[str, str]:
    """The fields of the stream entry for one event (see the module docstring)."""
    upload = payload.get("Event", {}).get("Upload", {})
    return {
        "type": hook_type,
        "upload_id": str(upload.get("ID", "")),
        "idempotency_key": str(payload.get("IdempotencyKey", "")),
        "body": json.dumps(payload, separators=(",", ":")),
    }


class RedisStreamHookBackend:
    """Append notification events to the Redis stream ``stream``.

    ``maxlen`` bounds the stream with ``MAXLEN ~`` (Redis trims whole macro nodes, so
    it may keep somewhat more); 0 leaves it unbounded.  An ``XADD`` that cannot reach
    Redis (or that Redis answers with an error: a replica made read-only by a
    failover, a key of another type) is tried ``retry`` times in all, ``backoff``
    seconds apart, or once when the caller retries (``invoke(..., once=True)``: the
    outbox); ``timeout`` bounds connecting and each command.  Every failure raises
    :class:`HookError`, which the server logs and counts; a notification never fails
    the request that caused it.

    :meth:`run` holds the connection pool and must be running (the dispatcher's
    :meth:`~.dispatcher.HookDispatcher.run` starts it) for events to be sent.
    ``delivered`` and ``failed`` count events (not attempts).
    """

    name = "redis-stream"

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        maxlen: int = DEFAULT_MAXLEN,
        retry: int = 3,
        backoff: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        if not stream:
            raise ValueError("the Redis stream needs a name")
        if maxlen < 0:
            raise ValueError("maxlen must not be negative")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.target = parse_redis_url(url)
        self.stream = stream
        self.maxlen = maxlen
        self.attempts = max(1, retry)
        self.backoff = max(0.0, backoff)
        self.timeout = float(timeout)
        # One command: connecting (timeout) plus the answer (timeout), and the
        # client's own single reconnect.
        self._op_timeout = 2.5 * self.timeout
        self.delivered = 0
        self.failed = 0
        self._client: Client | None = None
        self._run_scope: trio.CancelScope | None = None
        #: Never set: the backend ends by cancellation (nothing uses the client after).
        self._closing = trio.Event()
        self._stopped: trio.Event | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the client until cancelled (or :meth:`aclose`); reopen it when opening
        fails (a sentinel or cluster that cannot be reached at start-up).  Until Redis
        can be reached, events fail (and are logged)."""
        if self._stopped is not None:
            raise RuntimeError("RedisStreamHookBackend.run() can only be started once")
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._run_scope = scope
                await keep_client(self, self._closing, task_status=task_status)
        finally:
            self._client = None
            self._stopped.set()

    async def use_client(self, client: Client, ready: Callable[[], None]) -> None:
        """(For :func:`keep_client`.)  Send events through ``client`` until cancelled."""
        self._client = client
        try:
            ready()
            await self._closing.wait()
        finally:
            self._client = None

    def client_failed(self, exc: Exception) -> None:
        log.warning(
            "cannot connect to Redis at %s for the hook stream: %s", self.target.describe(), exc
        )

    async def invoke(
        self,
        hook_type: str,
        payload: dict[str, Any],
        *,
        forward_headers: dict[str, list[str]] | None = None,
        once: bool = False,
    ) -> HookResponse:
        if hook_type in BLOCKING:
            # Nobody could answer through a stream; the other backends decide.
            await trio.lowlevel.checkpoint()
            return HookResponse()
        fields = entry_fields(hook_type, payload)
        attempts = 1 if once else self.attempts
        problem = ""
        for attempt in range(1, attempts + 1):
            try:
                await self._add(fields)
            except (RedisError, *_UNREACHABLE) as exc:
                problem = str(exc) or type(exc).__name__
                if attempt < attempts:
                    log.warning(
                        "cannot add %s event to Redis stream %r (attempt %d of %d): %s",
                        hook_type,
                        self.stream,
                        attempt,
                        attempts,
                        problem,
                    )
                    await trio.sleep(self.backoff)
            else:
                self.delivered += 1
                return HookResponse()
        self.failed += 1
        raise HookError(
            f"cannot add the event to Redis stream {self.stream!r} at "
            f"{self.target.describe()} after {attempts} attempt(s): {problem}"
        )

    async def check(self) -> None:
        """Readiness: return when Redis answers a ``PING``, else raise :class:`HookError`."""
        client = self._client
        if client is None:
            await trio.lowlevel.checkpoint()
            raise HookError(self._no_client())
        try:
            with trio.fail_after(self._op_timeout):
                await client.ping()
        except (RedisError, *_UNREACHABLE) as exc:
            raise HookError(
                f"cannot reach Redis at {self.target.describe()}: {str(exc) or type(exc).__name__}"
            ) from None

    async def _add(self, fields: dict[str, str]) -> None:
        client = self._client
        if client is None:
            await trio.lowlevel.checkpoint()
            raise ConnectionError(self._no_client())
        with trio.fail_after(self._op_timeout):
            if self.maxlen > 0:
                await client.xadd(
                    self.stream,
                    fields,
                    trim_strategy=PureToken.MAXLEN,
                    trim_operator=PureToken.APPROXIMATELY,
                    threshold=self.maxlen,
                )
            else:
                await client.xadd(self.stream, fields)

    def _no_client(self) -> str:
        if self._stopped is None:
            # An embedding that builds the backend itself must run it (the server does).
            return "not running: start RedisStreamHookBackend.run (HookDispatcher.run does)"
        return f"no connection to Redis at {self.target.describe()} yet"

    async def aclose(self) -> None:
        """Close the client (stops :meth:`run`)."""
        if self._run_scope is not None and self._stopped is not None:
            self._run_scope.cancel()
            await self._stopped.wait()
        else:
            await trio.lowlevel.checkpoint()
