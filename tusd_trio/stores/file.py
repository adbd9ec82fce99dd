"""The file store: tusd's on-disk layout, readable and writable by both daemons.

``<dir>/<id>`` holds the bytes, ``<dir>/<id>.info`` the JSON info with tusd's
field names.  The offset is the size of the data file, so a crash never reports
bytes that are not on disk.

Small writes go to the page cache inline, from the event loop: a thread hop
per 64 KiB chunk costs more than the write itself (see benchmarks/).  fsync,
copies for concatenation and staged chunks, and download reads run in worker
threads.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import trio

from .._fs import fsync_directory
from ..protocol.errors import StoreError, UploadNotFoundError
from ..protocol.info import SIDE_FILE_SUFFIXES, UploadInfo
from ._file_repair import repair_leftovers
from ._file_writer import FileWriter, copy_range, makedirs, store_error
from .config import FILE_CAPABILITIES

log = logging.getLogger("tusd_trio.filestore")

_READ_CHUNK = 1024 * 1024
#: Parsed info documents kept in memory (validated by a stat before each use).
_INFO_CACHE_SIZE = 4096


class FileStore:
    name = "filestore"
    capabilities = FILE_CAPABILITIES

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        dir_perms: int = 0o775,
        file_perms: int = 0o664,
        fsync: bool = False,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.dir_perms = dir_perms
        self.file_perms = file_perms
        self.fsync = fsync
        makedirs(self.directory, dir_perms)
        self._info_cache: dict[str, tuple[tuple[int, int, int], UploadInfo]] = {}
        #: The last answer of ``get`` per upload, with the parsed info it came from and
        #: the data file's size and mtime: the same three give the same answer.
        self._got: dict[str, tuple[UploadInfo, int, int, UploadInfo]] = {}
        #: The data file the last creation made, still open for appending: the writer
        #: of a creation-with-upload takes it instead of opening the file again.
        self._fresh: tuple[str, int] | None = None

    # --- paths --------------------------------------------------------------

    def _default_data_path(self, upload_id: str) -> str:
        if "/" not in upload_id and upload_id not in ("", ".", "..") and "\0" not in upload_id:
            return self.directory + os.sep + upload_id
        path = os.path.join(self.directory, upload_id)
        # IDs are validated by the protocol core; this is a second line of defence.
        normalized = os.path.normpath(path)
        if (
            "\0" in upload_id
            or normalized == self.directory
            or os.path.commonpath([self.directory, normalized]) != self.directory
        ):
            raise UploadNotFoundError()
        return path

    def info_path(self, upload_id: str) -> str:
        return self._default_data_path(upload_id) + ".info"

    def data_path(self, info: UploadInfo) -> str:
        default = self._default_data_path(info.id)
        custom = (info.storage or {}).get("Path")
        # A directory moved elsewhere keeps working: prefer the path recorded by
        # the writer (tusd does), fall back to the default location.
        if custom and custom != default and (os.path.exists(custom) or not os.path.exists(default)):
            return custom
        return default

    # --- info documents --------------------------------------------------------

    def _write_new_info(self, info: UploadInfo) -> os.stat_result:
        """Write the info of a new upload (no file to replace atomically); its stat."""
        path = self.info_path(info.id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self.file_perms)
            try:
                os.write(fd, info.to_json())
                if self.fsync:
                    os.fsync(fd)
                st = os.fstat(fd)
            except OSError:
                os.close(fd)
                os.unlink(path)
                raise
            os.close(fd)
        except OSError as exc:
            raise store_error(exc, "writing the upload info") from exc
        return st

    def _remember_info(self, path: str, st: os.stat_result, info: UploadInfo) -> None:
        """Cache the info just written to ``path`` (``st``: its stat after the write),
        so that the next request (the PATCH after a POST) skips reading and decoding
        it.  The copy is what reading the file back gives (``modified`` is not stored);
        the stat key revalidates it as for one read from the file.  On the event loop
        only: the cache is never touched from a worker thread."""
        created = info.created
        if not (isinstance(created, float) and 0.0 < created < 1e12):
            return  # reading back would fill it in from the mtime: let it
        cache = self._info_cache
        if len(cache) >= _INFO_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cache[path] = (key, info.with_changes(modified=0.0) if info.modified else info)

    def _write_info(self, info: UploadInfo) -> os.stat_result:
        """Replace an upload's .info atomically; its stat (maybe in a worker thread)."""
        path = self.info_path(info.id)
        tmp = f"{path}.{os.getpid()}.tmp"
        payload = info.to_json()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, self.file_perms)
            try:
                os.write(fd, payload)
                if self.fsync:
                    os.fsync(fd)
                st = os.fstat(fd)  # a rename keeps the inode and the mtime
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise store_error(exc, "writing the upload info") from exc
        return st

    def _read_info(self, upload_id: str) -> UploadInfo:
        path = self.info_path(upload_id)
        cache = self._info_cache
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            cache.pop(path, None)
            raise UploadNotFoundError() from None
        except OSError as exc:
            raise store_error(exc, "reading the upload info") from exc
        # Info files change only by being replaced (a new inode) or created: an
        # unchanged (inode, size, mtime) means the parsed copy is still right,
        # even when another process shares the directory.
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = os.read(fd, max(st.st_size, 1) + 1)
                while len(raw) <= st.st_size:
                    more = os.read(fd, 65536)
                    if not more:
                        break
                    raw += more
            finally:
                os.close(fd)
            created = st.st_mtime
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise UploadNotFoundError() from None
        except OSError as exc:
            raise store_error(exc, "reading the upload info") from exc
        try:
            info = UploadInfo.from_json(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable info file %s: %s", path, exc)
            raise UploadNotFoundError() from None
        if info.id != upload_id:
            raise UploadNotFoundError()
        if not info.created:
            info = replace(info, created=created)
        if len(cache) >= _INFO_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[path] = (key, info)
        return info

    # --- the Store protocol --------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        # The inline paths below (create, get, open_writer, finish) are cancellation
        # points but do not yield: a scheduler round trip costs about as much as the
        # work itself (~18k instructions, 1 % of a creation).  Fairness does not need
        # them: the handler yields once per request, after answering it (a pipelined
        # request already in the transport's buffer passes no other checkpoint), and
        # loops over many uploads (the janitor, the quota rebuild) yield per upload.
        await trio.lowlevel.checkpoint_if_cancelled()
        data_path = self._default_data_path(info.id)
        chosen = (info.storage or {}).get("Path")
        if chosen:
            # A pre-create hook chose where the bytes go (tusd: ChangeFileInfo.Storage.Path;
            # relative to the upload directory, or absolute).  The .info stays at the ID.
            data_path = os.path.join(self.directory, chosen)
        storage = {"Type": self.name, "Path": data_path, "InfoPath": self.info_path(info.id)}
        stored = info.with_changes(offset=0, storage=storage)
        if self.fsync:
            # fsync (of the .info, then of the directory) never runs on the event loop.
            st = await trio.to_thread.run_sync(
                functools.partial(self._create_files, stored, data_path, keep_open=False)
            )
            await trio.to_thread.run_sync(fsync_directory, os.path.dirname(data_path))
        else:
            # Inline: a worker thread per creation measured 30 % slower (see benchmarks/).
            st = self._create_files(stored, data_path, keep_open=True)
        self._remember_info(self.info_path(info.id), st, stored)
        return stored

    def _ensure_directory(self) -> bool:
        """Recreate the upload directory when something removed it under us (a clean-up
        job, a volume remounted empty), as tusd does; logged once per removal.  True when
        it had to be recreated."""
        if os.path.isdir(self.directory):
            return False
        makedirs(self.directory, self.dir_perms)
        log.warning(
            "The upload directory %s was missing and has been recreated (permissions 0%o)",
            self.directory,
            self.dir_perms,
        )
        return True

    def _new_data_file(self, stored: UploadInfo, data_path: str) -> int:
        if "/" in stored.id or os.path.dirname(data_path) != self.directory:
            # ID sub-directories, or a directory chosen by a pre-create hook.
            self._ensure_directory()
            makedirs(os.path.dirname(self._default_data_path(stored.id)), self.dir_perms)
            makedirs(os.path.dirname(data_path), self.dir_perms)
        return os.open(
            data_path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            self.file_perms,
        )

    def _create_files(
        self, stored: UploadInfo, data_path: str, *, keep_open: bool
    ) -> os.stat_result:
        """The data file and the .info of a new upload; the .info's stat."""
        try:
            try:
                fd = self._new_data_file(stored, data_path)
            except FileNotFoundError:
                # Checked only on failure: creation is a hot path.
                if not self._ensure_directory():
                    raise
                fd = self._new_data_file(stored, data_path)
        except FileExistsError:
            raise StoreError("an upload with this ID exists already") from None
        except OSError as exc:
            raise store_error(exc, "creating the upload") from exc
        try:
            st = self._write_new_info(stored)
        except StoreError:
            os.close(fd)
            try:
                os.unlink(data_path)
            except OSError:
                pass
            raise
        if keep_open:
            self._drop_fresh()
            self._fresh = (data_path, fd)
        else:
            os.close(fd)
        return st

    def _drop_fresh(self) -> None:
        if self._fresh is not None:
            os.close(self._fresh[1])
            self._fresh = None

    def _take_fresh(self, data_path: str, offset: int) -> tuple[int, int] | None:
        """The creation's descriptor of ``data_path`` with its size, if it is still the
        upload's file at ``offset`` bytes (not removed nor written to meanwhile, for
        example by another process after the creation's response); else None."""
        fresh = self._fresh
        if fresh is None or fresh[0] != data_path:
            return None
        self._fresh = None
        fd = fresh[1]
        try:
            st = os.fstat(fd)
        except OSError:
            st = None
        if st is None or st.st_nlink == 0 or st.st_size != offset:
            os.close(fd)
            return None
        return fd, st.st_size

    async def get(self, upload_id: str) -> UploadInfo:
        await trio.lowlevel.checkpoint_if_cancelled()  # no yield: see create
        info = self._read_info(upload_id)
        try:
            st = os.stat(self.data_path(info))
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFoundError() from None
        except OSError as exc:
            raise store_error(exc, "reading the upload") from exc
        size = st.st_size
        mtime_ns = st.st_mtime_ns
        got = self._got.get(upload_id)
        # The answer depends only on the parsed info (the cached object while the
        # .info is unchanged) and the data file's size and mtime: a HEAD of an upload
        # nobody wrote to since gets the last copy again instead of a new one.
        if got is not None and got[0] is info and got[1] == size and got[2] == mtime_ns:
            return got[3]
        answer = info.with_changes(offset=size, modified=st.st_mtime)
        if len(self._got) >= _INFO_CACHE_SIZE:
            self._got.pop(next(iter(self._got)))
        self._got[upload_id] = (info, size, mtime_ns, answer)
        return answer

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> FileWriter:
        await trio.lowlevel.checkpoint_if_cancelled()  # no yield: see create
        data_path = self.data_path(info)
        fresh = None if staged else self._take_fresh(data_path, info.offset)
        return FileWriter(
            info, data_path, staged, file_perms=self.file_perms, fsync=self.fsync, fresh=fresh
        )

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        stored = self._read_info(info.id)
        await self._store_info(replace(stored, size=length, size_is_deferred=False))
        return replace(info, size=length, size_is_deferred=False)

    async def _store_info(self, info: UploadInfo) -> None:
        """Replace an upload's .info; with -fsync in a worker thread (fsync blocks)."""
        path = self.info_path(info.id)
        self._info_cache.pop(path, None)
        if self.fsync:
            st = await trio.to_thread.run_sync(self._write_info, info)
        else:
            st = self._write_info(info)
            await trio.lowlevel.checkpoint()
        self._remember_info(path, st, info)

    async def finish(self, info: UploadInfo) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()  # no yield: see create

    async def terminate(self, info: UploadInfo) -> None:
        self._info_cache.pop(self.info_path(info.id), None)
        self._got.pop(info.id, None)
        data_path = self.data_path(info)
        if self._fresh is not None and self._fresh[0] == data_path:
            self._drop_fresh()
        for path in (data_path, data_path + ".part", self.info_path(info.id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise store_error(exc, "removing the upload") from exc
        await trio.lowlevel.checkpoint()

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        sources = [(self.data_path(p), p.size) for p in partials]
        target = self.data_path(info)

        def work() -> int:
            with open(target, "r+b") as dst:
                dst.truncate(0)
                total = 0
                for path, size in sources:
                    with open(path, "rb") as src:
                        dst.seek(total)
                        copied = copy_range(src.fileno(), dst.fileno(), size)
                        if copied != size:
                            raise StoreError(f"partial upload {path} is shorter than its size")
                        total += copied
                if self.fsync:
                    os.fsync(dst.fileno())
                return total

        try:
            total = await trio.to_thread.run_sync(work)
        except FileNotFoundError:
            raise UploadNotFoundError() from None
        except OSError as exc:
            raise store_error(exc, "concatenating the uploads") from exc
        if info.size_is_deferred or info.size != total:
            stored = self._read_info(info.id)
            await self._store_info(replace(stored, size=total, size_is_deferred=False))
        return replace(info, size=total, size_is_deferred=False, offset=total)

    async def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.data_path(info)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UploadNotFoundError() from None
        try:
            position = start
            while position < end:
                count = min(_READ_CHUNK, end - position)
                chunk = await trio.to_thread.run_sync(os.pread, fd, count, position)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def list_ids(self) -> list[str]:
        def walk() -> list[str]:
            found: list[str] = []
            for root, _dirs, files in os.walk(self.directory):
                for name in files:
                    if name.endswith(".info"):
                        full = os.path.join(root, name[: -len(".info")])
                        found.append(os.path.relpath(full, self.directory))
            return found

        return await trio.to_thread.run_sync(walk)

    async def check_writable(self) -> None:
        probe = os.path.join(self.directory, f".health-{os.getpid()}.tmp")

        def work() -> None:
            # Truthful: a creation would recreate a removed directory, so the probe does.
            self._ensure_directory()
            with open(probe, "wb") as handle:
                handle.write(b"ok")
            os.unlink(probe)

        try:
            await trio.to_thread.run_sync(work)
        except OSError as exc:
            raise store_error(exc, "store is not writable") from exc

    async def cleanup_leftovers(self, older_than: float = 0.0) -> list[str]:
        """Remove staging files left by a crash; return what was removed."""
        cutoff = time.time() - older_than

        def work() -> list[str]:
            removed: list[str] = []
            for root, _dirs, files in os.walk(self.directory):
                for name in files:
                    full = os.path.join(root, name)
                    leftover = name.endswith(".part") or (
                        name.endswith(".tmp") and ".info." in name
                    )
                    if not leftover:
                        continue
                    try:
                        if os.stat(full).st_mtime <= cutoff:
                            os.unlink(full)
                            removed.append(full)
                    except OSError:
                        continue
            return removed

        return await trio.to_thread.run_sync(work)

    async def check_consistency(self, older_than: float = 60.0) -> list[str]:
        """Find and fix what a crash can leave behind; one message per action.

        Run at start-up, before serving.  Only files older than ``older_than``
        seconds are touched, so that another process sharing the directory can
        finish what it is doing.  A file that belongs to an upload whose lock is
        held by a live process is left alone.
        """
        return await trio.to_thread.run_sync(
            repair_leftovers, self.directory, older_than, self._forget_info
        )

    def _forget_info(self, info_path: str) -> None:
        """Drop a cached info document (its file was removed by the repair)."""
        self._info_cache.pop(info_path, None)

    async def aclose(self) -> None:
        self._drop_fresh()
        await trio.lowlevel.checkpoint()


__all__ = ["SIDE_FILE_SUFFIXES", "FileStore"]
