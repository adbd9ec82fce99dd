"""The file store's pieces below :class:`~.file.FileStore`: the writer that appends to
an upload's data file (or stages a chunk beside it), and the file-system helpers both use."""

from __future__ import annotations

import errno
import fcntl
import os

import trio

from ..protocol.errors import InsufficientStorageError, StoreError, UploadNotFoundError
from ..protocol.info import UploadInfo

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: A file system (or kernel) that cannot splice into a file answers one of these.
_NO_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in _NO_SPACE:
        return InsufficientStorageError(f"{what}: no space left on the storage device")
    return StoreError(f"{what}: {exc.strerror or exc}")


def copy_range(src_fd: int, dst_fd: int, count: int) -> int:
    """Copy ``count`` bytes from ``src_fd`` (at its position) to ``dst_fd``."""
    copied = 0
    while copied < count:
        try:
            n = os.copy_file_range(src_fd, dst_fd, count - copied)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = os.sendfile(dst_fd, src_fd, None, count - copied)
        if n == 0:
            break
        copied += n
    return copied


def makedirs(path: str, mode: int) -> None:
    """Like Go's ``MkdirAll``: every directory created gets ``mode``, not just the last."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        makedirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


class FileWriter:
    """Appends to the data file, or to ``<data>.part`` when staged."""

    #: Every write() reaches the upload at once (no buffer to drop on lease loss).
    durable_on_write = True

    def __init__(
        self,
        info: UploadInfo,
        data_path: str,
        staged: bool,
        *,
        file_perms: int,
        fsync: bool,
        fresh: tuple[int, int] | None = None,
    ) -> None:
        self._fsync = fsync
        self._info = info
        self._data_path = data_path
        self._staged = staged
        self._written = 0
        self._closed = False
        if fresh is not None:
            # The descriptor the creation opened (FileStore._fresh), and the size it has.
            self._fd, self._start = fresh
            return
        if staged and not os.path.isfile(data_path):
            # The staging file is created on demand: check the upload exists first.
            raise UploadNotFoundError()
        target = data_path + ".part" if staged else data_path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        if staged:
            flags |= os.O_CREAT | os.O_TRUNC
        try:
            self._fd = os.open(target, flags, file_perms)
        except FileNotFoundError:
            raise UploadNotFoundError() from None
        except OSError as exc:
            raise store_error(exc, "opening the upload") from exc
        self._start = os.fstat(self._fd).st_size if not staged else 0

    @property
    def written(self) -> int:
        return self._written

    def write_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Append inline (to the page cache): the upload hot path."""
        try:
            n = os.write(self._fd, data)
            self._written += n
            if n < len(data):
                with memoryview(data) as view:
                    while n < len(data):
                        step = os.write(self._fd, view[n:])
                        n += step
                        self._written += step
        except OSError as exc:
            raise store_error(exc, "writing the upload") from exc

    # --- splice (server/_splice.py): a body moved from the socket by the kernel -------
    # Linux refuses to splice into an O_APPEND descriptor, so while a body is spliced
    # the descriptor drops O_APPEND and each chunk goes to an explicit offset: the end
    # of the file as this writer knows it (the upload's lock keeps others out).

    def start_pipe_writes(self) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_APPEND)

    def end_pipe_writes(self) -> None:
        if not self._closed:
            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | os.O_APPEND)

    def write_from_pipe(self, pipe: int, count: int) -> bool:
        """Move the ``count`` bytes in ``pipe`` to the end of the file.  False when this
        kernel or file system cannot splice into it: the bytes were copied instead."""
        fd = self._fd
        try:
            while count > 0:
                offset = self._start + self._written
                try:
                    n = os.splice(pipe, fd, count, offset_dst=offset)
                except OSError as exc:
                    if exc.errno not in _NO_SPLICE:
                        raise
                    self._copy_from_pipe(pipe, count)
                    return False
                if n <= 0:
                    raise OSError(errno.EIO, "the pipe held fewer bytes than were put in")
                self._written += n
                count -= n
        except OSError as exc:
            raise store_error(exc, "writing the upload") from exc
        return True

    def _copy_from_pipe(self, pipe: int, count: int) -> None:
        while count > 0:
            data = os.read(pipe, min(count, 1024 * 1024))
            if not data:
                raise OSError(errno.EIO, "the pipe held fewer bytes than were put in")
            count -= len(data)
            with memoryview(data) as view:
                done = 0
                while done < len(data):
                    step = os.pwrite(self._fd, view[done:], self._start + self._written)
                    done += step
                    self._written += step

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.write_nowait(data)
        await trio.lowlevel.checkpoint_if_cancelled()

    async def commit(self) -> None:
        if self._staged:
            await trio.to_thread.run_sync(self._commit_staged)
        elif self._fsync and self._written:
            await trio.to_thread.run_sync(os.fsync, self._fd)
        await self.aclose()

    def _commit_staged(self) -> None:
        part_path = self._data_path + ".part"
        try:
            # copy_file_range refuses O_APPEND descriptors: seek to the end instead.
            with open(part_path, "rb") as src, open(self._data_path, "r+b") as dst:
                start = dst.seek(0, os.SEEK_END)
                try:
                    copy_range(src.fileno(), dst.fileno(), self._written)
                    if self._fsync:
                        os.fsync(dst.fileno())
                except OSError:
                    # All or nothing: a staged chunk is never left half-committed.
                    dst.truncate(start)
                    raise
        except FileNotFoundError:
            self._written = 0
            raise UploadNotFoundError() from None
        except OSError as exc:
            self._written = 0
            raise store_error(exc, "committing the chunk") from exc
        finally:
            # Here, in the worker thread: unlinking a large staging file can take a while.
            self._close()

    async def discard(self) -> None:
        if not self._staged:
            os.ftruncate(self._fd, self._start)
        self._written = 0
        await self.aclose()  # staged: the staging file goes with the writer

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()

    def _close(self) -> None:
        """Close the descriptor and, staged, remove the staging file: the one place that
        does either, once (a writer's later close must not remove the staging file of
        the upload's next writer)."""
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)
        if self._staged:
            try:
                os.unlink(self._data_path + ".part")
            except FileNotFoundError:
                pass
