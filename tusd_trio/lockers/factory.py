"""Build a locker from its settings (:mod:`.config`)."""

from __future__ import annotations

from .base import Locker
from .config import LockerConfig
from .file import FileLocker
from .memory import MemoryLocker


def build_locker(settings: LockerConfig, *, upload_dir: str | None) -> Locker:
    """The locker ``settings`` configure.

    ``upload_dir``: the file store's directory, where the file locker keeps its lock
    files next to the uploads; ``None`` with any other store, which then gets the
    memory locker unless Redis is configured (tusd's rule).
    """
    if settings.kind == "redis":
        # coredis is an optional dependency: imported only when Redis is chosen.
        from .redis import RedisLocker

        return RedisLocker(
            settings.redis_url,
            ttl=settings.redis_lock_ttl,
            key_prefix=settings.redis_key_prefix,
        )
    if settings.kind == "file" and upload_dir is not None:
        return FileLocker(
            upload_dir,
            holder_poll_interval=settings.filelock_holder_poll_interval,
            acquirer_poll_interval=settings.filelock_acquirer_poll_interval,
        )
    return MemoryLocker()
