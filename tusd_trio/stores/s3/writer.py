"""The S3 store's writer: one request body streamed into parts of the multipart upload.

The body fills an in-memory buffer; :mod:`tusd_trio.protocol.parts` decides where a
part ends, and every full part goes to the store's background uploader
(:class:`~tusd_trio.stores._ordered_uploads.OrderedUploads`): at most
``concurrent_part_uploads`` parts in flight, at most ``max_buffered_parts`` held
(in flight, queued or being filled).  Bytes that do not fill a part are kept in the
``.part`` object on ``commit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import outcome
import trio

from ...protocol import errors
from ...protocol.errors import StoreError
from ...protocol.parts import Action, PartPlanError, PartState, next_step
from .._ordered_uploads import OrderedUploads
from .adapter import S3Adapter, s3_error
from .layout import StoredPart, UploadState

log = logging.getLogger("tusd_trio.s3store")


class PartUploadError(StoreError):
    """A part could not be uploaded; says whether the old ``.part`` is gone with it."""

    def __init__(self, error: StoreError, *, pending_deleted: bool) -> None:
        super().__init__(error.message, status=error.status, code=error.code)
        self.pending_deleted = pending_deleted


class _SentPart:
    __slots__ = ("part", "pending_deleted")

    def __init__(self, part: StoredPart, pending_deleted: bool) -> None:
        self.part = part
        self.pending_deleted = pending_deleted


#: Called when a commit completed the upload: (upload ID, every part, total bytes).
CompletionCallback = Callable[[str, tuple[StoredPart, ...], int], None]


class PartWriter:
    """Streams one request body into parts (unstaged writes).

    ``on_completed`` is told when this writer's commit stored the upload's last byte
    (every part acknowledged, no ``.part`` left), so that ``finish`` can complete
    the multipart upload without listing the parts again.
    """

    def __init__(
        self, store: S3Adapter, upload: UploadState, *, on_completed: CompletionCallback
    ) -> None:
        self._store = store
        self._up = upload
        self._on_completed = on_completed
        config = store.config
        self._uploads: OrderedUploads[_SentPart] = OrderedUploads(
            store.sdk,
            "UploadPart",
            in_flight=max(1, config.concurrent_part_uploads),
            held=max(1, config.max_buffered_parts - 1),
        )
        self._buf = bytearray()
        self._loaded = False  # the .part bytes are at the front of _buf
        self._old_len = 0
        self._old_part_intact = upload.pending > 0
        self._stream_pos = 0  # bytes of the stream (old .part + new) cut into parts
        self._cut_bytes = 0
        self._cut_parts = 0
        self._first_part_size = upload.first_part_size
        self._accepted = 0
        self._new_part_len = 0
        self._settled = False
        self._final_written = 0

    # --- accounting -------------------------------------------------------------

    @property
    def written(self) -> int:
        return self._final_written if self._settled else self._accepted

    def _pending_deleted(self) -> bool:
        """Whether a part upload deleted the old ``.part`` (its bytes went into the part)."""
        for result in self._uploads.outcomes():
            if isinstance(result, outcome.Value) and result.value.pending_deleted:
                return True
            if isinstance(result, outcome.Error):
                error = result.error
                if isinstance(error, PartUploadError) and error.pending_deleted:
                    return True
        return False

    def _durable(self) -> int:
        """Bytes of this request S3 holds (may be negative when a re-used .part was
        lost together with the part that carried it)."""
        acked = sum(sent.part.size for sent in self._uploads.done_prefix())
        intact = self._old_part_intact and not self._pending_deleted()
        kept = self._old_len if intact else 0
        return acked + self._new_part_len + kept - self._old_len

    def _state(self) -> PartState:
        return PartState(
            size=self._up.size,
            done_bytes=self._up.done_bytes + self._cut_bytes,
            done_parts=self._up.done_parts + self._cut_parts,
            first_part_size=self._first_part_size,
            buffered=len(self._buf),
        )

    # --- writing ------------------------------------------------------------------

    async def _load_pending(self) -> None:
        self._loaded = True
        if self._up.pending:
            store = self._store
            data = await store.sdk.run("get_pending", store._get_pending, self._up.object_id)
            self._old_len = len(data)
            self._old_part_intact = bool(data)
            self._buf += data

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._settled:
            raise StoreError("the writer is closed")
        if self._uploads.failure is not None:
            raise self._uploads.failure
        if not data:
            await trio.lowlevel.checkpoint()
            return
        if not self._loaded:
            await self._load_pending()
        self._buf += data
        self._accepted += len(data)
        await self._cut(end_of_body=False)

    async def _cut(self, *, end_of_body: bool) -> None:
        limits = self._store.limits
        while self._uploads.failure is None:
            try:
                step = next_step(limits, self._state(), end_of_body=end_of_body)
            except PartPlanError as exc:
                if end_of_body:
                    raise StoreError(f"S3 upload cannot take these bytes: {exc}") from None
                raise errors.SizeExceededError(str(exc)) from None
            if step.action is not Action.PART:
                return
            size = step.size
            data = bytes(self._buf[:size])
            del self._buf[:size]
            includes_old = self._stream_pos < self._old_len
            self._stream_pos += size
            number = self._up.done_parts + self._cut_parts + 1
            if number == 1:
                self._first_part_size = size
            self._cut_bytes += size
            self._cut_parts += 1
            await self._uploads.add(partial(self._send, number, data, includes_old))
        await trio.lowlevel.checkpoint()

    def _send(self, number: int, data: bytes, includes_old: bool) -> _SentPart:
        """Upload one part (in a worker thread)."""
        store = self._store
        up = self._up
        deleted = False
        try:
            if includes_old:
                # Deleted before its bytes go into a part: a crash in between loses
                # them (the offset goes back) but never counts them twice.
                store._delete_pending(up.object_id)
                deleted = True
            etag = store._upload_part(up.object_id, up.multipart_id, number, data)
        except Exception as exc:
            error = s3_error(exc, f"UploadPart {number}")
            if deleted and len(data) >= self._old_len:
                try:
                    store._put_pending(up.object_id, data[: self._old_len])
                    deleted = False
                except Exception:
                    log.warning("could not restore %s.part after a failed part", up.object_id)
            log.warning("S3 part %d of %s failed: %s", number, up.object_id, error)
            raise PartUploadError(error, pending_deleted=deleted) from None
        return _SentPart(StoredPart(number, len(data), etag, 0.0), deleted)

    # --- settling ---------------------------------------------------------------------

    async def commit(self) -> None:
        if self._settled:
            await trio.lowlevel.checkpoint()
            return
        try:
            if self._loaded and self._uploads.failure is None:
                await self._cut(end_of_body=True)
            await self._uploads.wait_idle()
            if self._uploads.failure is not None:
                raise self._uploads.failure
            leftover = len(self._buf)
            if self._loaded and leftover and (self._accepted or self._stream_pos):
                data = bytes(self._buf)
                store = self._store
                await store.sdk.run("put_pending", store._put_pending, self._up.object_id, data)
                self._old_part_intact = False  # replaced by the new .part
                self._new_part_len = leftover
            self._buf = bytearray()
            self._leave_completion()
        finally:
            self._settle()

    def _leave_completion(self) -> None:
        """When this commit completed the upload, hand its part list to ``finish``."""
        up = self._up
        if up.parts is None or up.size is None or self._uploads.failure is not None:
            return
        if self._old_part_intact and not self._pending_deleted():
            return  # the old .part is still there: finish must read it
        if self._new_part_len or self._buf:
            return  # a .part object is left: finish must read it
        sent = self._uploads.done_prefix()
        if len(sent) != self._cut_parts:
            return
        parts = (*up.parts, *(s.part for s in sent))
        total = sum(p.size for p in parts)
        if total == up.size:
            self._on_completed(up.upload_id, parts, total)

    def _settle(self) -> None:
        self._settled = True
        self._final_written = self._durable()
        self._buf = bytearray()

    async def discard(self) -> None:
        if self._settled:
            stored_any = any(isinstance(o, outcome.Value) for o in self._uploads.outcomes())
            self._final_written = self._final_written if stored_any else 0
            await trio.lowlevel.checkpoint()
            return
        self._uploads.drop_queued()
        self._buf = bytearray()
        try:
            await self._uploads.wait_idle()
        finally:
            self._settle()
        if self._final_written:
            log.warning(
                "discarded a chunk of %s, but %d bytes were already stored in parts",
                self._up.object_id,
                self._final_written,
            )

    async def aclose(self) -> None:
        if not self._settled:
            # Unstaged bytes are kept even without commit (an interrupted body).
            try:
                await self.commit()
            except StoreError as exc:
                log.warning("settling %s on close failed: %s", self._up.object_id, exc)
        await trio.lowlevel.checkpoint()
