"""Settings of the lockers, filled by the CLI (tusd's flag names, through
:meth:`tusd_trio.config.Config.locker_settings`) or by an embedding application."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LockerConfig:
    #: "file" (processes on one host; only with the file store), "memory" or "redis".
    kind: str = "file"
    #: The Redis server(s) of the Redis locker (-redis-url).
    redis_url: str = ""
    #: Seconds a Redis lease lives unless renewed (-redis-lock-ttl).
    redis_lock_ttl: float = 30.0
    #: Prefix of the Redis keys (-redis-key-prefix).
    redis_key_prefix: str = "tusd-trio:"
    #: How often a holder of a file lock looks for release requests.
    filelock_holder_poll_interval: float = 5.0
    #: How often a request waiting for a file lock tries again.
    filelock_acquirer_poll_interval: float = 2.0
