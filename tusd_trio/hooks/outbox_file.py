"""The outbox in a directory: next to the file store's uploads, one file per event.

``<dir>/<id>.json`` holds one pending event; the id starts with the nanosecond time
it was written, so the names sort in the order the events happened.  A file is
written under a temporary name and renamed into place (readers never see half an
event); with ``fsync`` the file and the directory are flushed first, so an event a
client was answered for survives a power cut, not just a crash.  Dead events move
to ``<dir>/dead/``.

Worker processes (``-workers``) share the directory: each writes its own events,
and the one holding an exclusive ``flock`` on ``<dir>/sender.flock`` delivers them
all.  The kernel drops the lock when that process dies, so another takes over.
"""

from __future__ import annotations

import fcntl
import itertools
import math
import os
import time

import trio

from .._fs import fsync_directory
from .._logging import error_event
from .outbox import OutboxEntry

__all__ = ["FileOutboxStore"]

_SUFFIX = ".json"


class FileOutboxStore:
    name = "file"

    def __init__(self, directory: str, *, fsync: bool = False) -> None:
        self.directory = directory
        self.dead_directory = os.path.join(directory, "dead")
        self.fsync = fsync
        self._last_ns = 0
        self._counter = itertools.count()
        self._lock_fd: int | None = None
        self._last_lock_try = -math.inf
        #: Parsed pending events by file name (a file never changes once written).
        self._cache: dict[str, OutboxEntry] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Nothing to open.  The directories are made with the first event: an upload
        # directory that never saw one stays as it was.
        await trio.lowlevel.checkpoint()
        task_status.started()

    def stop(self) -> None:
        pass

    def new_id(self) -> str:
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        return f"{now:020d}-{os.getpid()}-{next(self._counter)}"

    def _path(self, entry: OutboxEntry) -> str:
        return os.path.join(self.directory, entry.id + _SUFFIX)

    async def put(self, entry: OutboxEntry) -> None:
        await trio.to_thread.run_sync(self._write, entry)
        self._cache[entry.id + _SUFFIX] = entry

    def _write(self, entry: OutboxEntry) -> None:
        path = self._path(entry)
        temporary = path + ".tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except FileNotFoundError:
            os.makedirs(self.dead_directory, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, entry.to_json())
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        if self.fsync:
            fsync_directory(self.directory)

    async def pending(self, limit: int) -> list[OutboxEntry]:
        # The cache is only touched here, on the event loop; the thread gets its keys.
        names, listed, read = await trio.to_thread.run_sync(
            self._scan, frozenset(self._cache), limit
        )
        # Forget only events no longer stored (not those beyond ``limit``).
        for gone in self._cache.keys() - listed:
            del self._cache[gone]
        self._cache.update(read)
        return [self._cache[name] for name in names if name in self._cache]

    def _scan(
        self, known: frozenset[str], limit: int
    ) -> tuple[list[str], set[str], dict[str, OutboxEntry]]:
        """The oldest ``limit`` event files, every event file stored, and those of the
        oldest not in ``known`` read."""
        try:
            listed = {name for name in os.listdir(self.directory) if name.endswith(_SUFFIX)}
        except FileNotFoundError:
            return [], set(), {}
        names = sorted(listed)[:limit]
        read: dict[str, OutboxEntry] = {}
        for name in names:
            if name in known:
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as handle:
                    read[name] = OutboxEntry.from_json(handle.read())
            except FileNotFoundError:
                continue  # delivered by another process meanwhile
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._set_aside(name, exc)
        return names, listed, read

    def _set_aside(self, name: str, exc: Exception) -> None:
        """A file that cannot be read as an event goes to dead/ (it is never lost)."""
        error_event("HookOutboxUnreadableEvent", file=name, error=repr(exc))
        try:
            os.replace(os.path.join(self.directory, name), os.path.join(self.dead_directory, name))
        except OSError:
            pass

    async def claim(self, entry: OutboxEntry) -> bool:
        await trio.lowlevel.checkpoint()
        if self._lock_fd is not None:
            return True
        # Another process sends: ask again at most once a second, not once per event.
        now = time.monotonic()
        if now - self._last_lock_try < 1.0:
            return False
        self._last_lock_try = now
        return await trio.to_thread.run_sync(self._take_sender_lock)

    def _take_sender_lock(self) -> bool:
        # In a worker thread: the open may touch a network file system.  Only called
        # for an event that was listed, so the directory exists.
        fd = os.open(os.path.join(self.directory, "sender.flock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def reports_gauges(self) -> bool:
        return self._lock_fd is not None

    async def release(self, entry: OutboxEntry) -> None:
        # The sender lock is kept for the life of the process.
        await trio.lowlevel.checkpoint()

    async def complete(self, entry: OutboxEntry) -> None:
        self._cache.pop(entry.id + _SUFFIX, None)
        await trio.to_thread.run_sync(self._remove, self._path(entry))

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    async def bury(self, entry: OutboxEntry, reason: str) -> bool:
        self._cache.pop(entry.id + _SUFFIX, None)
        return await trio.to_thread.run_sync(self._move_to_dead, entry, reason)

    def _move_to_dead(self, entry: OutboxEntry, reason: str) -> bool:
        # The reason goes beside the event (the event file itself stays as written).
        target = os.path.join(self.dead_directory, entry.id + _SUFFIX)
        try:
            os.replace(self._path(entry), target)
        except FileNotFoundError:
            return False
        with open(target[: -len(_SUFFIX)] + ".reason", "w", encoding="utf-8") as handle:
            handle.write(reason + "\n")
        return True

    async def dead_count(self) -> int:
        def count() -> int:
            try:
                listed = os.listdir(self.dead_directory)
            except FileNotFoundError:
                return 0
            return sum(1 for name in listed if name.endswith(_SUFFIX))

        return await trio.to_thread.run_sync(count)

    async def aclose(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        await trio.lowlevel.checkpoint()
