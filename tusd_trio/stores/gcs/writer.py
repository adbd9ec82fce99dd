"""The GCS store's writer: one PATCH body streamed into a chunk object (or, staged, a
staging object) through a resumable upload session, piece by piece.

The pieces go to the background uploader one at a time (a session takes them in
order): one piece in flight while the next one fills, so memory stays bounded.
"""

from __future__ import annotations

from functools import partial

import trio

from ...protocol.errors import StoreError, TusError
from .._ordered_uploads import OrderedUploads
from .adapter import GCSAdapter
from .layout import StoredObject
from .session import ResumableSession, SessionLostError


class ChunkObjectWriter:
    """Streams one PATCH body into a chunk object (or a staging object)."""

    def __init__(
        self, store: GCSAdapter, upload_id: str, target: str, staged: bool, *, piece_size: int
    ) -> None:
        self._store = store
        self._piece_size = piece_size
        self._id = upload_id
        self._target = target
        self._staged = staged
        self._buffer = bytearray()
        self._received = 0
        self._written = 0
        self._settled = False
        self._session: ResumableSession | None = None
        # One piece in flight, the next one waiting while the body fills a third.
        self._uploads: OrderedUploads[None] = OrderedUploads(
            store.sdk, "upload of a chunk", in_flight=1, held=2, keep_results=False
        )

    @property
    def written(self) -> int:
        return self._written if self._settled else self._received

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._settled:
            raise StoreError("the chunk was already committed or discarded")
        if self._uploads.failure is not None:
            raise self._uploads.failure
        piece_size = self._piece_size
        self._buffer += data
        self._received += len(data)
        if len(self._buffer) < piece_size:
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        while len(self._buffer) >= piece_size:
            piece = bytes(self._buffer[:piece_size])
            del self._buffer[:piece_size]
            await self._uploads.add(partial(self._push, piece))
            if self._uploads.failure is not None:
                raise self._uploads.failure

    def _push(self, piece: bytes) -> None:
        if self._session is None:
            self._session = self._store._open_session(self._target)
        self._session.push(piece)

    async def _cancel_session(self) -> None:
        if self._session is not None:
            await trio.to_thread.run_sync(self._session.cancel)

    async def commit(self) -> None:
        if self._settled:
            return
        await self._uploads.wait_idle()
        self._settled = True
        tail = bytes(self._buffer)
        self._buffer = bytearray()
        store = self._store
        failure = self._uploads.failure
        obj: StoredObject | None
        if failure is not None and self._staged:
            # A staged chunk is all or nothing.
            self._written = 0
            await self._cancel_session()
            raise failure
        try:
            if failure is not None:
                # Keep exactly what GCS has; the handler already reports the failure.
                obj = await store.sdk.run("saving a chunk", self._finish_acked)
            elif self._session is None:
                obj = None
                if tail:
                    obj = await store.sdk.run(
                        "upload of a chunk", store._upload_small, self._target, tail
                    )
            else:
                session = self._session
                obj = await store.sdk.run("upload of a chunk", self._finish_session, session, tail)
        except TusError:
            self._written = 0
            if self._session is not None and not self._staged and failure is None:
                # The end did not go through: keep whatever GCS acknowledged.
                try:
                    kept = await store.sdk.run("saving a chunk", self._finish_acked)
                except TusError:
                    kept = None
                self._written = kept.size if kept is not None else 0
            else:
                await self._cancel_session()
            raise
        if obj is None:
            self._written = 0
            return
        if self._staged:
            try:
                obj = await store.sdk.run(
                    "commit of a staged chunk", store._promote_staged, self._id, obj
                )
            except TusError:
                self._written = 0
                raise
        self._written = obj.size

    def _finish_acked(self) -> StoredObject | None:
        if self._session is None:
            return None
        try:
            resource = self._session.finish_with_acked()
        except SessionLostError:
            return None
        if resource is None:
            return None
        return self._store._check_finished(self._session, resource)

    def _finish_session(self, session: ResumableSession, tail: bytes) -> StoredObject:
        resource = session.finish(tail)
        return self._store._check_finished(session, resource)

    async def discard(self) -> None:
        self._uploads.drop_queued()
        await self._uploads.wait_idle()
        self._buffer = bytearray()
        if not self._settled:
            self._settled = True
            await self._cancel_session()
        self._written = 0

    async def aclose(self) -> None:
        if not self._settled:
            if self._staged:
                await self.discard()
            else:
                # An interrupted body keeps the bytes received so far.
                await self.commit()
        else:
            await self._uploads.wait_idle()
        await trio.lowlevel.checkpoint()
