"""Locks that hold across processes on one host, in tusd's lock-file format.

The lock for upload ``<id>`` is the file ``<dir>/<id>.lock`` holding the
owner's PID; it is created with a hard link so it appears complete or not at
all.  A lock whose owner is dead is stale and taken over.

Every lock file of a process is a hard link to one *owner file* of its own,
``<dir>/.owner.lock.<pid>.<n>.tmp`` (holding ``<pid>\n``), made at the first lock
and removed by :meth:`FileLocker.aclose`: taking a lock is one ``link()`` and
releasing it one ``unlink()``, and no inode is created or freed per lock.  That
matters on ext4 without a journal, where every new inode walks the recently
freed ones (benchmarks/PROFILE.md).  The start-up repair of the file store
removes the owner file of a dead process, as any ``.lock.<pid>...tmp`` file.

A process that wants a lock another process holds creates ``<dir>/<id>.stop``;
the holder looks for that file every ``holder_poll_interval`` and then lets go,
as tusd does.

Within one process the lock is first taken from a :class:`MemoryLocker`, so
requests in the same process queue fairly and hand over at once; the lock file
is only polled when another process holds it.
"""

from __future__ import annotations

import errno
import logging
import os

import trio

from .._process import pid_alive
from ..protocol.errors import LockTimeoutError, UploadNotFoundError
from .base import LockContext, ReleaseCallback
from .memory import LockStatistics, MemoryLocker

log = logging.getLogger("tusd_trio.filelocker")


class _NoSpaceForLockError(Exception):
    pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class FileLocker(LockContext):
    name = "filelocker"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        holder_poll_interval: float = 5.0,
        acquirer_poll_interval: float = 2.0,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self._directory_prefix = os.path.join(self.directory, "")
        self.holder_poll_interval = holder_poll_interval
        self.acquirer_poll_interval = acquirer_poll_interval
        self._local = MemoryLocker()
        self._held: dict[str, ReleaseCallback | None] = {}
        self._pid = os.getpid()
        self._pid_line = f"{self._pid}\n".encode("ascii")
        self._modes: dict[str, str] = {}
        #: The owner file lock files are linked to (made at the first lock).
        self._owner_path: str | None = None
        #: Owner files that reached the file system's link limit (removed at close).
        self._retired_owners: list[str] = []
        self._owner_count = 0

    def statistics(self) -> LockStatistics:
        return self._local.statistics()

    def _lock_path(self, upload_id: str) -> str:
        if upload_id.startswith("/"):
            return os.path.join(self.directory, upload_id) + ".lock"
        # What os.path.join gives for a relative ID (every valid one), without its
        # cost: a third of a HEAD's work in this locker.
        return self._directory_prefix + upload_id + ".lock"

    def _new_owner_file(self, directory: str) -> str:
        """Create a file holding our PID in ``directory``, to hard-link lock files to.

        Never an existing one (``O_EXCL``): truncating an owner file would empty every
        lock file linked to it, which another process would then take for stale (a
        second locker of this process on the directory, a file left by a dead process
        whose PID we reuse)."""
        try:
            while True:
                self._owner_count += 1
                name = f".owner.lock.{self._pid}.{self._owner_count}.tmp"
                path = os.path.join(directory, name)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                    break
                except FileExistsError:
                    continue
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFoundError() from None  # the upload's directory is missing
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _NoSpaceForLockError() from exc
            raise
        try:
            os.write(fd, self._pid_line)
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(path)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _NoSpaceForLockError() from exc
            raise
        os.close(fd)
        return path

    def _link_lock_file(self, path: str) -> None:
        """Create the lock file ``path`` as a link to our owner file (made on first
        use, and again if something removed it).  FileExistsError when it exists."""
        for _attempt in range(2):
            owner = self._owner_path
            if owner is None:
                owner = self._owner_path = self._new_owner_file(self.directory)
            try:
                os.link(owner, path)
                return
            except FileNotFoundError:
                if os.path.exists(owner):
                    raise UploadNotFoundError() from None  # the upload's directory is missing
                self._owner_path = None  # removed under us (a clean-up job): make a new one
            except OSError as exc:
                if exc.errno == errno.EMLINK:
                    # The file system's limit of links per inode: start another owner file.
                    self._retired_owners.append(owner)
                    self._owner_path = None
                elif exc.errno == errno.EXDEV:
                    # The upload's sub-directory is another file system: a one-off
                    # owner file next to the lock, removed once linked.
                    one_off = self._new_owner_file(os.path.dirname(path))
                    try:
                        os.link(one_off, path)
                    finally:
                        _unlink_quietly(one_off)
                    return
                else:
                    raise
        raise UploadNotFoundError()

    def _try_lock_file(self, upload_id: str) -> bool:
        """Try once to create the lock file.  True when we now own it."""
        path = self._lock_path(upload_id)
        for _attempt in range(3):
            try:
                self._link_lock_file(path)
                return True
            except FileExistsError:
                owner = self._read_owner(path)
                # An unreadable PID is stale too, as in tusd's lockfile (ErrInvalidPid).
                stale = owner is None or owner == self._pid or not pid_alive(owner)
                if not stale:
                    return False
                log.info("taking over stale lock %s of dead process %s", path, owner)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _NoSpaceForLockError() from exc
                raise
        return False

    @staticmethod
    def _read_owner(path: str) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0  # gone meanwhile: treat as stale so we retry
        try:
            raw = os.read(fd, 64)
        finally:
            os.close(fd)
        try:
            return int(raw.decode("ascii", errors="replace").strip())
        except ValueError:
            return None

    def _held_elsewhere(self, upload_id: str) -> bool:
        """Whether a live other process holds the lock file (no file: False)."""
        path = self._lock_path(upload_id)
        if not os.access(path, os.F_OK):
            # The usual answer (a HEAD on an upload nobody writes), from the same one
            # system call as the open below but without raising FileNotFoundError,
            # which costs half of this function.  A file made just after is a
            # lock taken after this check, as if the check had come first.
            return False
        owner = self._read_owner(path)
        if owner == 0 or owner is None or owner == self._pid:
            return False
        return pid_alive(owner)

    def _unlock_file(self, upload_id: str) -> None:
        path = self._lock_path(upload_id)
        for target in (path, path[: -len(".lock")] + ".stop"):
            try:
                os.unlink(target)
            except FileNotFoundError:
                pass

    def _request_stop(self, upload_id: str) -> None:
        stop = os.path.join(self.directory, upload_id) + ".stop"
        try:
            os.close(os.open(stop, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        except OSError:
            pass

    async def acquire(
        self,
        upload_id: str,
        *,
        max_wait: float,
        on_release_requested: ReleaseCallback | None = None,
        access: str = "write",
        on_lost: ReleaseCallback | None = None,
    ) -> None:
        """Take the lock.

        ``access="write"`` (the default) creates the lock file.  ``"read"`` (HEAD, a
        download) only makes sure no other process holds the lock, asking it to let
        go if one does, without creating a lock file.  ``"new"`` is for an upload
        created by this very request, whose ID nobody else knows yet: the
        in-process lock is enough.
        """
        deadline = trio.current_time() + max_wait
        await self._local.acquire(
            upload_id, max_wait=max_wait, on_release_requested=on_release_requested
        )
        try:
            if access == "write":
                try:
                    while not self._try_lock_file(upload_id):
                        await self._wait_for_other_process(upload_id, deadline)
                except _NoSpaceForLockError:
                    # A full disk: no lock file can be written.  Fall back to making
                    # sure no other live process holds the lock, so that a DELETE can
                    # still free space.
                    log.warning("no space for lock file of %s; locking in-process only", upload_id)
                    access = "read"
                    while self._held_elsewhere(upload_id):
                        await self._wait_for_other_process(upload_id, deadline)
            elif access == "read":
                while self._held_elsewhere(upload_id):
                    await self._wait_for_other_process(upload_id, deadline)
        except BaseException:
            self._local.release(upload_id)
            raise
        self._modes[upload_id] = access
        self._held[upload_id] = on_release_requested

    async def _wait_for_other_process(self, upload_id: str, deadline: float) -> None:
        self._request_stop(upload_id)
        remaining = deadline - trio.current_time()
        if remaining <= 0:
            raise LockTimeoutError()
        await trio.sleep(min(self.acquirer_poll_interval, remaining))

    def release(self, upload_id: str) -> None:
        self._held.pop(upload_id, None)
        if self._modes.pop(upload_id, "write") == "write":
            self._unlock_file(upload_id)
        self._local.release(upload_id)

    async def watch_stop_requests(self) -> None:
        """Run for ever: tell holders when another process asks them to let go."""
        while True:
            await trio.sleep(self.holder_poll_interval)
            for upload_id, callback in list(self._held.items()):
                if callback is None:
                    continue
                stop = os.path.join(self.directory, upload_id) + ".stop"
                try:
                    os.unlink(stop)
                except FileNotFoundError:
                    continue
                callback()

    async def aclose(self) -> None:
        """Remove the owner file(s).  Lock files still held keep their content (a
        link keeps the inode) and are stale once this process is gone."""
        owners = [*self._retired_owners, *([self._owner_path] if self._owner_path else [])]
        self._owner_path = None
        self._retired_owners = []
        for path in owners:
            _unlink_quietly(path)
        await trio.lowlevel.checkpoint()
