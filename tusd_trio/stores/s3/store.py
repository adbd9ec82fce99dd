"""The S3 store: the Store protocol over :class:`~.adapter.S3Adapter`, with the
hand-offs between the steps of one locked request (see the package docstring)."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import trio

from ...protocol import errors
from ...protocol.errors import StoreError
from ...protocol.info import UploadInfo
from ...protocol.parts import PartPlanError, check_size
from .._spool import SpooledWriter
from ..config import S3_CAPABILITIES, S3Config
from .adapter import STORE_NAME, S3Adapter
from .layout import StoredPart, UploadState, contiguous, split_upload_id, upload_state
from .writer import PartWriter

_READ_PIECE = 1024 * 1024
#: Parallel requests when listing every upload's info.
_LIST_CONCURRENCY = 16
#: Seconds a state learned by get() (or a commit) may be handed to the next step.
_HANDOFF_TTL = 2.0
#: At most this many hand-offs are held (older ones are dropped first) ...
_HANDOFF_MAX = 1024
#: ... and at most this many parts (with ETags) in them all: ~150 bytes each.
_HANDOFF_MAX_PARTS = 50_000
#: Upload IDs remembered as complete (their get() reads only ``.info``).
_COMPLETE_MAX = 4096


@dataclass(slots=True)
class _Handoff:
    """What ``get`` learned, for the ``open_writer`` given the same info object."""

    info: UploadInfo
    upload: UploadState
    at: float


@dataclass(slots=True)
class _Completed:
    """Every part of an upload a commit just completed, for ``finish``."""

    parts: tuple[StoredPart, ...]
    total: int
    at: float


class S3Store(S3Adapter):
    """Uploads in an S3 bucket, in tusd's layout (see the package docstring)."""

    name = STORE_NAME
    # Everything but GET of an unfinished upload (S3 cannot read parts before completion).
    capabilities = S3_CAPABILITIES

    def __init__(self, config: S3Config) -> None:
        super().__init__(config)
        # Hand-offs between the steps of one locked request (package docstring).
        self._handoff_ttl = _HANDOFF_TTL
        self._handoffs: dict[str, _Handoff] = {}
        self._handoff_parts = 0
        self._completed: dict[str, _Completed] = {}
        self._complete_ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    # --- hand-offs within one locked request -------------------------------------------

    def _prune_handoffs(self, now: float) -> None:
        """Drop hand-offs that are too old or too many (oldest first)."""
        ttl = self._handoff_ttl
        while self._handoffs:
            upload_id, handoff = next(iter(self._handoffs.items()))
            if now - handoff.at <= ttl and len(self._handoffs) < _HANDOFF_MAX:
                break
            self._drop_handoff(upload_id)
        while self._completed:
            upload_id, completed = next(iter(self._completed.items()))
            if now - completed.at <= ttl and len(self._completed) < _HANDOFF_MAX:
                break
            self._drop_completed(upload_id)

    def _drop_handoff(self, upload_id: str) -> _Handoff | None:
        entry = self._handoffs.pop(upload_id, None)
        if entry is not None and entry.upload.parts is not None:
            self._handoff_parts -= len(entry.upload.parts)
        return entry

    def _drop_completed(self, upload_id: str) -> _Completed | None:
        entry = self._completed.pop(upload_id, None)
        if entry is not None:
            self._handoff_parts -= len(entry.parts)
        return entry

    def _fits(self, parts: tuple[StoredPart, ...]) -> bool:
        """Count ``parts`` against the budget of parts held in hand-offs."""
        if self._handoff_parts + len(parts) > _HANDOFF_MAX_PARTS:
            return False
        self._handoff_parts += len(parts)
        return True

    def _forget(self, upload_id: str) -> None:
        """Drop every hand-off of an upload (it is being changed)."""
        self._drop_handoff(upload_id)
        self._drop_completed(upload_id)

    def _leave_handoff(self, info: UploadInfo, upload: UploadState) -> None:
        """Called by ``get`` (and ``create``) with the info it returns."""
        now = time.monotonic()
        self._drop_handoff(info.id)
        self._prune_handoffs(now)
        if upload.parts is not None and not self._fits(upload.parts):
            upload = replace(upload, parts=None)  # finish will list them
        self._handoffs[info.id] = _Handoff(info, upload, now)

    def _take_handoff(self, info: UploadInfo) -> UploadState | None:
        """The state ``get`` learned, if ``info`` is the very object it returned,
        the hand-off is fresh and the offsets agree; taken at most once."""
        entry = self._drop_handoff(info.id)
        if entry is None or entry.info is not info:
            return None
        if time.monotonic() - entry.at > self._handoff_ttl:
            return None
        upload = entry.upload
        if upload.done_bytes + upload.pending != info.offset:
            return None
        return replace(upload, size=None if info.size_is_deferred else info.size)

    def _leave_completed(self, upload_id: str, parts: tuple[StoredPart, ...], total: int) -> None:
        """Called by a writer whose commit completed the upload."""
        now = time.monotonic()
        self._drop_completed(upload_id)
        self._prune_handoffs(now)
        if self._fits(parts):
            self._completed[upload_id] = _Completed(parts, total, now)

    def _take_completed(self, info: UploadInfo) -> _Completed | None:
        entry = self._drop_completed(info.id)
        if entry is None or time.monotonic() - entry.at > self._handoff_ttl:
            return None
        if info.size_is_deferred or entry.total != info.size:
            return None
        return entry

    def _remember_complete(self, upload_id: str) -> None:
        self._complete_ids[upload_id] = None
        self._complete_ids.move_to_end(upload_id)
        while len(self._complete_ids) > _COMPLETE_MAX:
            self._complete_ids.popitem(last=False)

    # --- the Store protocol -----------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        try:
            check_size(self.limits, None if info.size_is_deferred else info.size)
        except PartPlanError as exc:
            raise errors.MaxSizeExceededError(f"S3 store: {exc}") from None
        created = await self.sdk.run("create_sync", self._create_sync, info)
        self._created(created)
        return created

    def _created(self, info: UploadInfo) -> None:
        """A new multipart upload has no parts and no ``.part``: a writer opened
        with this very info (creation-with-upload) need not ask S3."""
        object_id, multipart_id = split_upload_id(info.id)
        size = None if info.size_is_deferred else info.size
        self._leave_handoff(info, upload_state(object_id, multipart_id, size, [], 0))
        if size == 0:
            self._leave_completed(info.id, (), 0)

    async def get(self, upload_id: str) -> UploadInfo:
        object_id, multipart_id = split_upload_id(upload_id)
        if upload_id in self._complete_ids:
            # Seen complete: its multipart upload is gone for good (a multipart ID is
            # never reused), so only .info (still there? same upload?) is read.
            done, done_modified = await self.sdk.run(
                "read_info", self._read_info, object_id, upload_id
            )
            return replace(
                done,
                offset=done.size,
                modified=done_modified,
                created=done.created or done_modified,
            )
        # At once; of several failures the info's is raised, then the parts'.
        found: list[Any] = await self.sdk.gather(
            "get",
            [
                partial(self._read_info, object_id, upload_id),
                partial(self._list_parts, object_id, multipart_id),
                partial(self._head_pending, object_id),
            ],
        )
        info: UploadInfo
        info_modified: float
        (info, info_modified), parts, (pending, pending_modified) = found
        modified = max(info_modified, pending_modified)
        stored = None if parts is None else contiguous(parts)
        if stored is None:
            offset = info.size
        else:
            offset = sum(p.size for p in stored) + pending
            modified = max([modified] + [p.modified for p in stored])
        result = replace(
            info, offset=offset, modified=modified, created=info.created or info_modified
        )
        if stored is None:
            self._remember_complete(upload_id)
        else:
            size = None if info.size_is_deferred else info.size
            state = upload_state(object_id, multipart_id, size, stored, pending)
            self._leave_handoff(result, state)
        return result

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> PartWriter | SpooledWriter:
        upload = self._take_handoff(info)
        self._forget(info.id)
        if upload is None:
            upload = await self.sdk.run("writer_state", self._writer_state, info)
        else:
            await trio.lowlevel.checkpoint()
        open_parts = partial(PartWriter, self, upload, on_completed=self._leave_completed)
        if staged:
            return SpooledWriter(open_parts, self.sdk, file_prefix="tusd-trio-s3-staged-")
        return open_parts()

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        try:
            check_size(self.limits, length)
        except PartPlanError as exc:
            raise errors.MaxSizeExceededError(f"S3 store: {exc}") from None
        object_id, _ = split_upload_id(info.id)
        self._forget(info.id)
        stored, _ = await self.sdk.run("read_info", self._read_info, object_id, info.id)
        declared = replace(stored, size=length, size_is_deferred=False)
        await self.sdk.run("write_info", self._write_info, declared)
        return replace(info, size=length, size_is_deferred=False)

    async def finish(self, info: UploadInfo) -> None:
        known = self._take_completed(info)
        self._forget(info.id)
        if info.id in self._complete_ids:
            # Finished before (finish is idempotent): only check it still exists.
            object_id, _ = split_upload_id(info.id)
            await self.sdk.run("read_info", self._read_info, object_id, info.id)
            return
        parts = known.parts if known is not None else None
        await self.sdk.run("finish_sync", self._finish_sync, info, parts)
        self._remember_complete(info.id)

    async def terminate(self, info: UploadInfo) -> None:
        self._forget(info.id)
        self._complete_ids.pop(info.id, None)
        await self.sdk.run("terminate_sync", self._terminate_sync, info)

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        object_id, multipart_id = split_upload_id(info.id)
        self._forget(info.id)
        sources = [split_upload_id(partial.id)[0] for partial in partials]
        sizes = await self.sdk.run("partial_sizes", self._partial_sizes, sources)
        total = sum(sizes)
        try:
            check_size(self.limits, total)
        except PartPlanError as exc:
            raise errors.MaxSizeExceededError(f"S3 store: {exc}") from None
        stored, _ = await self.sdk.run("read_info", self._read_info, object_id, info.id)
        final = replace(stored, size=total, size_is_deferred=False)
        await self.sdk.run("write_info", self._write_info, final)
        plan = self._copy_plan(sizes)
        if plan is not None:
            await self._concat_by_copy(object_id, multipart_id, sources, plan)
        else:
            await self._concat_by_streaming(final, sources, sizes)
        await self.finish(final)
        return replace(final, offset=total, modified=time.time())

    def _copy_plan(self, sizes: list[int]) -> list[list[tuple[int, int]]] | None:
        """Byte ranges per partial for UploadPartCopy, or ``None`` when the partials
        cannot become parts as they are (a small one, equal-parts mode, too many)."""
        limits = self.limits
        if limits.equal_parts or not sizes or min(sizes) < limits.min_part_size:
            return None
        plan: list[list[tuple[int, int]]] = []
        for size in sizes:
            pieces = -(-size // limits.max_part_size)
            step = -(-size // pieces)
            plan.append([(start, min(size, start + step)) for start in range(0, size, step)])
        if sum(len(ranges) for ranges in plan) > limits.max_parts:
            return None
        return plan

    async def _concat_by_copy(
        self,
        object_id: str,
        multipart_id: str,
        sources: list[str],
        plan: list[list[tuple[int, int]]],
    ) -> None:
        copies: list[Callable[[], None]] = []
        for source, ranges in zip(sources, plan, strict=True):
            for start, end in ranges:
                number = len(copies) + 1
                ranged = len(ranges) > 1
                copies.append(
                    partial(
                        self._copy_part,
                        object_id,
                        multipart_id,
                        number,
                        source,
                        start,
                        end,
                        ranged,
                    )
                )
        limit = max(1, self.config.concurrent_part_uploads)
        await self.sdk.gather("UploadPartCopy", copies, limit=limit)

    async def _concat_by_streaming(
        self, final: UploadInfo, sources: list[str], sizes: list[int]
    ) -> None:
        upload = await self.sdk.run("writer_state", self._writer_state, final)
        writer = PartWriter(self, upload, on_completed=self._leave_completed)
        try:
            for source, size in zip(sources, sizes, strict=True):
                if size:
                    async for piece in self._stream(source, 0, size):
                        await writer.write(piece)
            await writer.commit()
        finally:
            await writer.aclose()
        if writer.written != sum(sizes):
            raise StoreError("S3 concatenation stored fewer bytes than the partials hold")

    async def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        object_id, _ = split_upload_id(info.id)
        if start >= end:
            await trio.lowlevel.checkpoint()
            return
        async for piece in self._stream(object_id, start, end):
            yield piece

    async def _stream(self, object_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        body = await self.sdk.run("open_body", self._open_body, object_id, start, end)
        try:
            while True:
                piece: bytes = await self.sdk.run("read", body.read, _READ_PIECE)
                if not piece:
                    break
                yield piece
        finally:
            body.close()

    async def list_ids(self) -> list[str]:
        keys = await self.sdk.run("info_keys", self._info_keys)
        found = await self.sdk.gather(
            "GetObject .info",
            [partial(self._info_id, object_id) for object_id in keys],
            limit=_LIST_CONCURRENCY,
        )
        return [upload_id for upload_id in found if upload_id is not None]  # None: removed

    async def check_writable(self) -> None:
        await self.sdk.run("check_bucket", self._check_bucket)

    async def aclose(self) -> None:
        self._close_clients()
        await trio.lowlevel.checkpoint()
