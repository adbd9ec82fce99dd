"""The S3 store: tusd's s3store layout, readable and writable by both daemons.

Layout (``<p>`` = the object prefix, with a trailing ``/`` when set):

* upload ID ``<objectId>+<multipartUploadId>`` (split on the last ``+``);
* ``<p><objectId>.info``: the JSON info (``Storage`` = Type, Bucket, Key);
* the S3 multipart upload of ``<p><objectId>``, holding the parts;
* ``<p><objectId>.part``: bytes that do not fill a part yet, between PATCHes;
* ``<p><objectId>``: the final object, once the multipart upload is completed.

The offset is the sum of the parts numbered 1, 2, ... without a gap (ListParts)
plus the size of ``.part``; without a multipart upload but with ``.info`` the
upload is complete.  Where to cut parts is decided by
:mod:`tusd_trio.protocol.parts`, which keeps every upload within the part limits.

Writes: the request body fills an in-memory part buffer; every full part is
handed to a worker thread (``UploadPart``) while the body goes on.  At most
``concurrent_part_uploads`` parts of one upload are in flight and at most
``max_buffered_parts`` parts (in flight, queued or being filled) are held in
memory; beyond that ``write`` waits (backpressure to the client).  Memory per
upload is therefore bounded by ``max_buffered_parts * part size`` (part size:
see the planner; 50 MiB by default) plus 1 MiB for staged (checksummed) chunks,
which are spooled to a temporary file until they are verified, plus the list of
the upload's parts (at most ``max_parts``, ~150 bytes each).  The store-wide
hand-off tables below hold at most 1024 entries each, 50,000 parts in all
(~8 MiB), and 4096 IDs of complete uploads.

Requests per PATCH.  ``get`` reads ``.info``, ListParts and HEAD ``.part`` (at
once); the writer then needs the same parts list and ``.part`` size.  Instead of
asking S3 again, ``get`` leaves what it learned in a small hand-off table and
``open_writer`` takes it, once, when it is given the very ``UploadInfo`` object
that ``get`` returned, within :data:`_HANDOFF_TTL` seconds, and the offsets agree.
Likewise a writer whose commit completed the upload (every part acknowledged, no
``.part`` left) leaves the part list (with ETags) for ``finish``, which then sends
only CompleteMultipartUpload; a new upload from ``create`` is known to be empty;
an upload seen complete is remembered so ``get`` then reads only ``.info``.  A
PATCH is thus GET ``.info`` + ListParts + HEAD ``.part`` + its part uploads (+ GET
``.part`` when one must be merged, + CompleteMultipartUpload on the last one).

**Assumption** (why a hand-off is safe): the handler holds the upload's lock from
``get`` until the write is settled and ``finish`` has run, and every instance
sharing the bucket uses the same locker (e.g. Redis), so nobody else can change
the parts or ``.part`` in between.  Without a shared locker two instances writing
the same upload are unsafe anyway (parts would be overwritten).  Whenever the
hand-off does not apply (another ``UploadInfo``, too old, already taken, dropped
by a write, ``terminate``, ``finish``, ``concat`` or ``declare_length``) the store
asks S3 as before.  A completion hint whose ETags no longer match (a part
uploaded again meanwhile) is refused by S3 (InvalidPart); ``finish`` then lists
the parts and completes with those.  Remembering complete uploads needs no lock:
a multipart upload ID is never reused, so a complete upload stays complete until
it is deleted, which the GET ``.info`` that ``get`` still sends notices.
"""

from __future__ import annotations

import collections
import logging
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import outcome
import trio
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..protocol import errors
from ..protocol.config import StoreCapabilities
from ..protocol.errors import StoreError, UploadNotFoundError
from ..protocol.info import UploadInfo
from ..protocol.parts import (
    Action,
    PartLimits,
    PartPlanError,
    PartState,
    check_size,
    finishing_parts,
    next_step,
)
from .config import S3Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("tusd_trio.s3store")

T = TypeVar("T")

#: tusd replaces every character outside these in S3 user metadata with "?".
_NON_PRINTABLE = re.compile(r"[^\x09\x20-\x7E]")
_READ_PIECE = 1024 * 1024
#: Staged bytes kept in memory before they are spooled to a temporary file.
_SPOOL_MEMORY = 1024 * 1024
_MISSING_OBJECT = {"NoSuchKey", "404", "NotFound"}
_MISSING_UPLOAD = {"NoSuchUpload", "NoSuchKey", "404", "NotFound"}
_NO_ACCESS = {"AccessDenied", "Forbidden", "403"}
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
_BAD_PART_LIST = {"InvalidPart", "InvalidPartOrder"}


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _store_error(exc: BaseException, what: str) -> StoreError:
    """A one-line StoreError for an SDK failure (no traceback text for the client)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    elif isinstance(exc, BotoCoreError):
        detail = type(exc).__name__
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return StoreError(f"S3 {what} failed ({detail})")


def split_upload_id(upload_id: str) -> tuple[str, str]:
    """``(objectId, multipartUploadId)``; a missing half means no such upload."""
    object_id, plus, multipart_id = upload_id.rpartition("+")
    if not plus or not object_id or not multipart_id:
        raise UploadNotFoundError()
    return object_id, multipart_id


@dataclass(frozen=True, slots=True)
class _Part:
    number: int
    size: int
    etag: str
    modified: float


def _contiguous(parts: list[_Part]) -> list[_Part]:
    """Parts 1, 2, ... up to the first gap (a failed part leaves later ones stale)."""
    result: list[_Part] = []
    for part in sorted(parts, key=lambda p: p.number):
        if part.number != len(result) + 1:
            break
        result.append(part)
    return result


def _timestamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


@dataclass(slots=True)
class _Upload:
    """What a writer needs to know of an upload (from ListParts and HEAD .part)."""

    object_id: str
    multipart_id: str
    size: int | None
    done_bytes: int
    done_parts: int
    first_part_size: int
    pending: int  # size of the .part object
    #: The stored parts 1..done_parts with their ETags, when kept (for finish).
    parts: tuple[_Part, ...] | None = None

    @property
    def upload_id(self) -> str:
        return f"{self.object_id}+{self.multipart_id}"


def _upload_state(
    object_id: str,
    multipart_id: str,
    size: int | None,
    stored: list[_Part],
    pending: int,
) -> _Upload:
    return _Upload(
        object_id=object_id,
        multipart_id=multipart_id,
        size=size,
        done_bytes=sum(p.size for p in stored),
        done_parts=len(stored),
        first_part_size=stored[0].size if stored else 0,
        pending=pending,
        parts=tuple(stored),
    )


@dataclass(slots=True)
class _Handoff:
    """What ``get`` learned, for the ``open_writer`` given the same info object."""

    info: UploadInfo
    upload: _Upload
    at: float


@dataclass(slots=True)
class _Completed:
    """Every part of an upload a commit just completed, for ``finish``."""

    parts: tuple[_Part, ...]
    total: int
    at: float


class _PartResult:
    __slots__ = ("error", "etag", "old_part_deleted")

    def __init__(self) -> None:
        self.etag = ""
        self.error: StoreError | None = None
        self.old_part_deleted = False


class _PartWriter:
    """Streams one request body into parts (unstaged writes)."""

    def __init__(self, store: S3Store, upload: _Upload) -> None:
        self._store = store
        self._up = upload
        self._token = trio.lowlevel.current_trio_token()
        self._lot = trio.lowlevel.ParkingLot()
        self._buf = bytearray()
        self._loaded = False  # the .part bytes are at the front of _buf
        self._old_len = 0
        self._old_part_intact = upload.pending > 0
        self._stream_pos = 0  # bytes of the stream (old .part + new) cut into parts
        self._cut_bytes = 0
        self._cut_parts = 0
        self._first_part_size = upload.first_part_size
        self._queue: collections.deque[tuple[int, bytes, bool]] = collections.deque()
        self._inflight = 0
        self._acked: dict[int, tuple[int, str]] = {}  # number -> (size, ETag)
        self._error: StoreError | None = None
        self._accepted = 0
        self._new_part_len = 0
        self._settled = False
        self._final_written = 0

    # --- accounting -------------------------------------------------------------

    @property
    def written(self) -> int:
        return self._final_written if self._settled else self._accepted

    def _durable(self) -> int:
        """Bytes of this request S3 holds (may be negative when a re-used .part was
        lost together with the part that carried it)."""
        acked = 0
        number = self._up.done_parts + 1
        while number in self._acked:
            acked += self._acked[number][0]
            number += 1
        kept = self._old_len if self._old_part_intact else 0
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
            data = await self._store._run(self._store._get_pending, self._up.object_id)
            self._old_len = len(data)
            self._old_part_intact = bool(data)
            self._buf += data

    async def write(self, data: bytes) -> None:
        if self._settled:
            raise StoreError("the writer is closed")
        if self._error is not None:
            raise self._error
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
        while self._error is None:
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
            self._queue.append((number, data, includes_old))
            self._pump()
            held = max(1, self._store.config.max_buffered_parts - 1)
            while self._error is None and self._inflight + len(self._queue) >= held:
                await self._lot.park()
        await trio.lowlevel.checkpoint()

    def _pump(self) -> None:
        limit = max(1, self._store.config.concurrent_part_uploads)
        while self._queue and self._inflight < limit and self._error is None:
            number, data, includes_old = self._queue.popleft()
            self._inflight += 1
            self._start(number, data, includes_old)

    def _start(self, number: int, data: bytes, includes_old: bool) -> None:
        store = self._store
        up = self._up
        token = self._token

        def job() -> _PartResult:
            result = _PartResult()
            try:
                if includes_old:
                    # Deleted before its bytes go into a part: a crash in between loses
                    # them (the offset goes back) but never counts them twice.
                    store._delete_pending(up.object_id)
                    result.old_part_deleted = True
                result.etag = store._upload_part(up.object_id, up.multipart_id, number, data)
            except Exception as exc:
                result.error = _store_error(exc, f"UploadPart {number}")
                if result.old_part_deleted and len(data) >= self._old_len:
                    try:
                        store._put_pending(up.object_id, data[: self._old_len])
                        result.old_part_deleted = False
                    except Exception:
                        log.warning("could not restore %s.part after a failed part", up.object_id)
            return result

        def deliver(result: outcome.Outcome[_PartResult]) -> None:
            try:
                token.run_sync_soon(self._finished, number, len(data), result)
            except trio.RunFinishedError:
                pass

        trio.lowlevel.start_thread_soon(job, deliver)

    def _finished(self, number: int, size: int, result: outcome.Outcome[_PartResult]) -> None:
        self._inflight -= 1
        try:
            part = result.unwrap()
        except BaseException as exc:  # job() catches everything; defensive only
            part = _PartResult()
            part.error = _store_error(exc, f"UploadPart {number}")
        if part.old_part_deleted:
            self._old_part_intact = False
        if part.error is None:
            self._acked[number] = (size, part.etag)
        elif self._error is None:
            log.warning("S3 part %d of %s failed: %s", number, self._up.object_id, part.error)
            self._error = part.error
            self._queue.clear()  # parts after a failed one would leave a gap
        self._pump()
        self._lot.unpark_all()

    async def _wait_idle(self) -> None:
        while self._inflight:
            await self._lot.park()

    # --- settling ---------------------------------------------------------------------

    async def commit(self) -> None:
        if self._settled:
            await trio.lowlevel.checkpoint()
            return
        try:
            if self._loaded and self._error is None:
                await self._cut(end_of_body=True)
            self._queue_drop_on_error()
            await self._wait_idle()
            if self._error is not None:
                raise self._error
            leftover = len(self._buf)
            if self._loaded and leftover and (self._accepted or self._stream_pos):
                data = bytes(self._buf)
                try:
                    await self._store._run(self._store._put_pending, self._up.object_id, data)
                except StoreError:
                    raise
                self._old_part_intact = False  # replaced by the new .part
                self._new_part_len = leftover
            self._buf = bytearray()
            self._leave_completion()
        finally:
            self._settle()

    def _leave_completion(self) -> None:
        """When this commit completed the upload, hand its part list to ``finish``."""
        up = self._up
        if up.parts is None or up.size is None or self._error is not None:
            return
        if self._old_part_intact or self._new_part_len or self._buf:
            return  # a .part object is left: finish must read it
        parts = list(up.parts)
        number = up.done_parts + 1
        while number in self._acked:
            size, etag = self._acked[number]
            parts.append(_Part(number, size, etag, 0.0))
            number += 1
        if len(parts) != up.done_parts + self._cut_parts:
            return
        total = sum(p.size for p in parts)
        if total == up.size:
            self._store._leave_completed(up.upload_id, tuple(parts), total)

    def _queue_drop_on_error(self) -> None:
        if self._error is not None:
            self._queue.clear()

    def _settle(self) -> None:
        self._settled = True
        self._final_written = self._durable()
        self._buf = bytearray()

    async def discard(self) -> None:
        if self._settled:
            self._final_written = 0 if not self._acked else self._final_written
            await trio.lowlevel.checkpoint()
            return
        self._queue.clear()
        self._buf = bytearray()
        try:
            await self._wait_idle()
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


class _StagedWriter:
    """Keeps the chunk out of the upload until it is verified: 1 MiB in memory,
    the rest in a temporary file; ``commit`` streams it through the part writer."""

    def __init__(self, store: S3Store, upload: _Upload) -> None:
        self._store = store
        self._upload = upload
        self._memory = bytearray()
        self._file: Any = None
        self._count = 0
        self._written = 0
        self._settled = False

    @property
    def written(self) -> int:
        return self._written if self._settled else self._count

    async def write(self, data: bytes) -> None:
        if self._settled:
            raise StoreError("the writer is closed")
        self._memory += data
        self._count += len(data)
        if len(self._memory) >= _SPOOL_MEMORY:
            chunk = bytes(self._memory)
            self._memory = bytearray()
            await trio.to_thread.run_sync(self._spool, chunk)
        else:
            await trio.lowlevel.checkpoint()

    def _spool(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="tusd-trio-s3-staged-")  # noqa: SIM115
        self._file.write(chunk)

    def _read_spool(self) -> bytes:
        data: bytes = self._file.read(_READ_PIECE)
        return data

    async def commit(self) -> None:
        if self._settled:
            await trio.lowlevel.checkpoint()
            return
        inner = _PartWriter(self._store, self._upload)
        try:
            try:
                if self._file is not None:
                    await trio.to_thread.run_sync(self._file.seek, 0)
                    while piece := await trio.to_thread.run_sync(self._read_spool):
                        await inner.write(piece)
                await inner.write(bytes(self._memory))
            except errors.TusError:
                pass  # the part writer keeps its error; commit reports it
            await inner.commit()
        finally:
            self._written = inner.written
            await self._close()

    async def discard(self) -> None:
        self._count = 0
        self._written = 0
        await self._close()

    async def _close(self) -> None:
        self._settled = True
        self._memory = bytearray()
        if self._file is not None:
            handle, self._file = self._file, None
            await trio.to_thread.run_sync(handle.close)
        else:
            await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._settled:
            self._written = 0
        await self._close()


class S3Store:
    """Uploads in an S3 bucket, in tusd's layout (see the module docstring)."""

    name = "s3store"
    capabilities = StoreCapabilities(
        terminate=True,
        concatenate=True,
        defer_length=True,
        checksum=True,
        serve_incomplete=False,
    )

    def __init__(self, config: S3Config) -> None:
        self.config = config
        prefix = config.object_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        self.bucket = config.bucket
        try:
            self.limits = PartLimits(
                preferred_part_size=config.part_size,
                min_part_size=config.min_part_size,
                max_part_size=config.max_part_size,
                max_parts=config.max_parts,
                max_object_size=config.max_object_size,
                equal_parts=config.equal_parts,
            )
        except PartPlanError as exc:
            raise ValueError(f"invalid S3 part settings: {exc}") from None
        session = boto3.session.Session()
        region = config.region or session.region_name or "us-east-1"
        s3_options: dict[str, Any] = {}
        if config.endpoint:
            s3_options["addressing_style"] = "path"
        if config.transfer_acceleration:
            s3_options["use_accelerate_endpoint"] = True
        extra: dict[str, Any] = {}
        if config.disable_content_hashes:
            s3_options["payload_signing_enabled"] = False
            extra["request_checksum_calculation"] = "when_required"
        boto_config = BotoConfig(
            region_name=region,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=max(10, 2 * config.concurrent_part_uploads + 8),
            s3=s3_options,  # type: ignore[arg-type]
            **extra,
        )
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=config.endpoint or None,
            use_ssl=not config.disable_ssl,
            config=boto_config,
        )
        self._http: Any = None
        if config.disable_content_hashes:
            import httpx

            self._http = httpx.Client(
                timeout=httpx.Timeout(60.0, connect=10.0),
                transport=httpx.HTTPTransport(retries=3),
            )
        if config.log_api_calls:
            self._client.meta.events.register("before-call.s3", self._log_call)
        # Hand-offs between the steps of one locked request (module docstring).
        self._handoff_ttl = _HANDOFF_TTL
        self._handoffs: dict[str, _Handoff] = {}
        self._handoff_parts = 0
        self._completed: dict[str, _Completed] = {}
        self._complete_ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    @staticmethod
    def _log_call(model: Any = None, params: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "?")
        log.debug("S3 call %s", name)

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

    def _fits(self, parts: tuple[_Part, ...]) -> bool:
        """Count ``parts`` against the budget of parts held in hand-offs."""
        if self._handoff_parts + len(parts) > _HANDOFF_MAX_PARTS:
            return False
        self._handoff_parts += len(parts)
        return True

    def _forget(self, upload_id: str) -> None:
        """Drop every hand-off of an upload (it is being changed)."""
        self._drop_handoff(upload_id)
        self._drop_completed(upload_id)

    def _leave_handoff(self, info: UploadInfo, upload: _Upload) -> None:
        """Called by ``get`` (and ``create``) with the info it returns."""
        now = time.monotonic()
        self._drop_handoff(info.id)
        self._prune_handoffs(now)
        if upload.parts is not None and not self._fits(upload.parts):
            upload = replace(upload, parts=None)  # finish will list them
        self._handoffs[info.id] = _Handoff(info, upload, now)

    def _take_handoff(self, info: UploadInfo) -> _Upload | None:
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

    def _leave_completed(self, upload_id: str, parts: tuple[_Part, ...], total: int) -> None:
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

    # --- keys and blocking helpers (run in worker threads) ---------------------------

    def _key(self, object_id: str) -> str:
        return self.prefix + object_id

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking SDK call in a worker thread; SDK errors become StoreError."""
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except (ClientError, BotoCoreError) as exc:
            raise _store_error(exc, getattr(fn, "__name__", "call").strip("_")) from None

    def _read_info(self, object_id: str, upload_id: str | None) -> tuple[UploadInfo, float]:
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(object_id) + ".info"
            )
        except ClientError as exc:
            if _code(exc) in _MISSING_OBJECT:
                raise UploadNotFoundError() from None
            raise
        with response["Body"] as body:
            raw = body.read()
        try:
            info = UploadInfo.from_json(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable info object for %s: %s", object_id, exc)
            raise UploadNotFoundError() from None
        if upload_id is not None and info.id != upload_id:
            raise UploadNotFoundError()  # an older upload that reused the object ID
        return info, _timestamp(response.get("LastModified"))

    def _write_info(self, info: UploadInfo) -> None:
        object_id, _ = split_upload_id(info.id)
        payload = info.to_json()
        self._client.put_object(
            Bucket=self.bucket,
            Key=self._key(object_id) + ".info",
            Body=payload,
            ContentLength=len(payload),
        )

    def _list_parts(self, object_id: str, multipart_id: str) -> list[_Part] | None:
        """Every part (paginated); ``None`` when the multipart upload is gone."""
        parts: list[_Part] = []
        marker = 0
        while True:
            try:
                response = self._client.list_parts(
                    Bucket=self.bucket,
                    Key=self._key(object_id),
                    UploadId=multipart_id,
                    PartNumberMarker=marker,
                )
            except ClientError as exc:
                if _code(exc) in _MISSING_UPLOAD:
                    return None
                raise
            parts.extend(
                _Part(
                    number=int(item.get("PartNumber", 0)),
                    size=int(item.get("Size", 0)),
                    etag=str(item.get("ETag", "")),
                    modified=_timestamp(item.get("LastModified")),
                )
                for item in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return parts
            next_marker = int(response.get("NextPartNumberMarker", 0) or 0)
            if next_marker <= marker:
                return parts
            marker = next_marker

    def _head_pending(self, object_id: str) -> tuple[int, float]:
        try:
            response = self._client.head_object(
                Bucket=self.bucket, Key=self._key(object_id) + ".part"
            )
        except ClientError as exc:
            if _code(exc) in _MISSING_OBJECT | _NO_ACCESS:
                return 0, 0.0
            raise
        return int(response.get("ContentLength", 0)), _timestamp(response.get("LastModified"))

    def _get_pending(self, object_id: str) -> bytes:
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(object_id) + ".part"
            )
        except ClientError as exc:
            if _code(exc) in _MISSING_OBJECT | _NO_ACCESS:
                return b""
            raise
        with response["Body"] as body:
            data: bytes = body.read()
        return data

    def _put_pending(self, object_id: str, data: bytes) -> None:
        self._client.put_object(
            Bucket=self.bucket,
            Key=self._key(object_id) + ".part",
            Body=data,
            ContentLength=len(data),
        )

    def _delete_pending(self, object_id: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(object_id) + ".part")

    def _upload_part(self, object_id: str, multipart_id: str, number: int, data: bytes) -> str:
        if self._http is not None:
            # -s3-disable-content-hashes: a presigned UploadPart sent as a plain PUT
            # with an explicit Content-Length, so no hash of the body is computed.
            url = self._client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(object_id),
                    "UploadId": multipart_id,
                    "PartNumber": number,
                },
                ExpiresIn=15 * 60,
            )
            response = self._http.put(url, content=data, headers={"Content-Length": str(len(data))})
            if response.status_code != 200:
                raise StoreError(f"S3 UploadPart {number} failed (HTTP {response.status_code})")
            return str(response.headers.get("ETag", ""))
        result = self._client.upload_part(
            Bucket=self.bucket,
            Key=self._key(object_id),
            UploadId=multipart_id,
            PartNumber=number,
            Body=data,
            ContentLength=len(data),
        )
        return str(result.get("ETag", ""))

    def _writer_state(self, info: UploadInfo) -> _Upload:
        """The fallback when no hand-off from ``get`` applies: ask S3."""
        object_id, multipart_id = split_upload_id(info.id)
        parts = self._list_parts(object_id, multipart_id)
        if parts is None:
            self._read_info(object_id, info.id)  # raises UploadNotFoundError when gone
            raise StoreError("the S3 upload is already complete")
        stored = _contiguous(parts)
        pending, _ = self._head_pending(object_id)
        size = None if info.size_is_deferred else info.size
        return _upload_state(object_id, multipart_id, size, stored, pending)

    # --- the Store protocol -----------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        try:
            check_size(self.limits, None if info.size_is_deferred else info.size)
        except PartPlanError as exc:
            raise errors.MaxSizeExceededError(f"S3 store: {exc}") from None
        created = await self._run(self._create_sync, info)
        self._created(created)
        return created

    def _create_sync(self, info: UploadInfo) -> UploadInfo:
        object_id = info.id
        key = self._key(object_id)
        metadata = {k: _NON_PRINTABLE.sub("?", v) for k, v in info.metadata.items()}
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Metadata": metadata}
        if "filetype" in info.metadata:
            params["ContentType"] = info.metadata["filetype"]
        response = self._client.create_multipart_upload(**params)
        multipart_id = response["UploadId"]
        stored = replace(
            info,
            id=f"{object_id}+{multipart_id}",
            offset=0,
            storage={"Type": self.name, "Bucket": self.bucket, "Key": key},
            created=info.created or time.time(),
        )
        self._write_info(stored)
        return stored

    def _created(self, info: UploadInfo) -> None:
        """A new multipart upload has no parts and no ``.part``: a writer opened
        with this very info (creation-with-upload) need not ask S3."""
        object_id, multipart_id = split_upload_id(info.id)
        size = None if info.size_is_deferred else info.size
        self._leave_handoff(info, _upload_state(object_id, multipart_id, size, [], 0))
        if size == 0:
            self._leave_completed(info.id, (), 0)

    async def get(self, upload_id: str) -> UploadInfo:
        object_id, multipart_id = split_upload_id(upload_id)
        if upload_id in self._complete_ids:
            # Seen complete: its multipart upload is gone for good (a multipart ID is
            # never reused), so only .info (still there? same upload?) is read.
            done, done_modified = await self._run(self._read_info, object_id, upload_id)
            return replace(
                done,
                offset=done.size,
                modified=done_modified,
                created=done.created or done_modified,
            )
        results: dict[str, Any] = {}

        async def fetch(name: str, fn: Callable[..., Any], *args: Any) -> None:
            try:
                results[name] = await self._run(fn, *args)
            except (StoreError, UploadNotFoundError) as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, "info", self._read_info, object_id, upload_id)
            nursery.start_soon(fetch, "parts", self._list_parts, object_id, multipart_id)
            nursery.start_soon(fetch, "pending", self._head_pending, object_id)
        for name in ("info", "parts", "pending"):
            if isinstance(results[name], Exception):
                raise results[name]
        info: UploadInfo = results["info"][0]
        info_modified: float = results["info"][1]
        parts: list[_Part] | None = results["parts"]
        pending, pending_modified = results["pending"]
        modified = max(info_modified, pending_modified)
        stored = None if parts is None else _contiguous(parts)
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
            state = _upload_state(object_id, multipart_id, size, stored, pending)
            self._leave_handoff(result, state)
        return result

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> _PartWriter | _StagedWriter:
        upload = self._take_handoff(info)
        self._forget(info.id)
        if upload is None:
            upload = await self._run(self._writer_state, info)
        else:
            await trio.lowlevel.checkpoint()
        if staged:
            return _StagedWriter(self, upload)
        return _PartWriter(self, upload)

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        try:
            check_size(self.limits, length)
        except PartPlanError as exc:
            raise errors.MaxSizeExceededError(f"S3 store: {exc}") from None
        object_id, _ = split_upload_id(info.id)
        self._forget(info.id)
        stored, _ = await self._run(self._read_info, object_id, info.id)
        await self._run(self._write_info, replace(stored, size=length, size_is_deferred=False))
        return replace(info, size=length, size_is_deferred=False)

    async def finish(self, info: UploadInfo) -> None:
        known = self._take_completed(info)
        self._forget(info.id)
        if info.id in self._complete_ids:
            # Finished before (finish is idempotent): only check it still exists.
            object_id, _ = split_upload_id(info.id)
            await self._run(self._read_info, object_id, info.id)
            return
        await self._run(self._finish_sync, info, known)
        self._remember_complete(info.id)

    def _finish_sync(self, info: UploadInfo, known: _Completed | None = None) -> None:
        object_id, multipart_id = split_upload_id(info.id)
        if known is not None:
            # The commit just before (same locked request) stored every byte in
            # these parts and left no .part: no ListParts / GET .part needed.
            stored = list(known.parts)
            pending = b""
        else:
            parts = self._list_parts(object_id, multipart_id)
            if parts is None:
                # Completed before (finish is idempotent), or gone.
                self._read_info(object_id, info.id)
                return
            stored = _contiguous(parts)
            pending = self._get_pending(object_id)
        state = PartState(
            size=None,
            done_bytes=sum(p.size for p in stored),
            done_parts=len(stored),
            first_part_size=stored[0].size if stored else 0,
            buffered=len(pending),
        )
        try:
            needed = finishing_parts(self.limits, state)
        except PartPlanError as exc:
            raise StoreError(f"S3 upload cannot be completed: {exc}") from None
        if needed:
            number = len(stored) + 1
            if pending:
                self._delete_pending(object_id)
            etag = self._upload_part(object_id, multipart_id, number, pending)
            stored.append(_Part(number, len(pending), etag, 0.0))
        try:
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(object_id),
                UploadId=multipart_id,
                MultipartUpload={
                    "Parts": [{"ETag": p.etag, "PartNumber": p.number} for p in stored]
                },
            )
        except ClientError as exc:
            if known is not None and _code(exc) in _BAD_PART_LIST:
                log.warning("stale part list for %s; listing the parts", object_id)
                self._finish_sync(info)
                return
            if _code(exc) not in _MISSING_UPLOAD:
                raise
            self._read_info(object_id, info.id)  # completed meanwhile, or gone

    async def terminate(self, info: UploadInfo) -> None:
        self._forget(info.id)
        self._complete_ids.pop(info.id, None)
        await self._run(self._terminate_sync, info)

    def _terminate_sync(self, info: UploadInfo) -> None:
        object_id, multipart_id = split_upload_id(info.id)
        key = self._key(object_id)
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart_id)
        except ClientError as exc:
            if _code(exc) not in _MISSING_UPLOAD:
                raise
        response = self._client.delete_objects(
            Bucket=self.bucket,
            Delete={
                "Objects": [{"Key": key}, {"Key": key + ".part"}, {"Key": key + ".info"}],
                "Quiet": True,
            },
        )
        failed = [e for e in response.get("Errors", []) if e.get("Code") not in _MISSING_OBJECT]
        if failed:
            raise StoreError(
                f"S3 DeleteObjects failed ({failed[0].get('Code')}: {failed[0].get('Key')})"
            )

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        object_id, multipart_id = split_upload_id(info.id)
        self._forget(info.id)
        sources = [split_upload_id(partial.id)[0] for partial in partials]
        sizes = await self._run(self._partial_sizes, sources)
        total = sum(sizes)
        try:
            check_size(self.limits, total)
        except PartPlanError as exc:
            raise errors.MaxSizeExceededError(f"S3 store: {exc}") from None
        stored, _ = await self._run(self._read_info, object_id, info.id)
        final = replace(stored, size=total, size_is_deferred=False)
        await self._run(self._write_info, final)
        plan = self._copy_plan(sizes)
        if plan is not None:
            await self._concat_by_copy(object_id, multipart_id, sources, plan)
        else:
            await self._concat_by_streaming(final, sources, sizes)
        await self.finish(final)
        return replace(final, offset=total, modified=time.time())

    def _partial_sizes(self, sources: list[str]) -> list[int]:
        sizes = []
        for source in sources:
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=self._key(source))
            except ClientError as exc:
                if _code(exc) in _MISSING_OBJECT:
                    raise UploadNotFoundError() from None
                raise
            sizes.append(int(head.get("ContentLength", 0)))
        return sizes

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
        limiter = trio.CapacityLimiter(max(1, self.config.concurrent_part_uploads))
        jobs: list[tuple[int, str, int, int, bool]] = []
        for source, ranges in zip(sources, plan, strict=True):
            for start, end in ranges:
                jobs.append((len(jobs) + 1, source, start, end, len(ranges) > 1))

        async def copy(job: tuple[int, str, int, int, bool]) -> None:
            number, source, start, end, ranged = job
            await trio.to_thread.run_sync(
                self._copy_part,
                object_id,
                multipart_id,
                number,
                source,
                start,
                end,
                ranged,
                limiter=limiter,
            )

        try:
            async with trio.open_nursery() as nursery:
                for job in jobs:
                    nursery.start_soon(copy, job)
        except (ClientError, BotoCoreError) as exc:
            raise _store_error(exc, "UploadPartCopy") from None
        except BaseExceptionGroup as group:
            first = group.exceptions[0]
            if isinstance(first, ClientError | BotoCoreError):
                raise _store_error(first, "UploadPartCopy") from None
            raise

    def _copy_part(
        self,
        object_id: str,
        multipart_id: str,
        number: int,
        source: str,
        start: int,
        end: int,
        ranged: bool,
    ) -> None:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(object_id),
            "UploadId": multipart_id,
            "PartNumber": number,
            "CopySource": {"Bucket": self.bucket, "Key": self._key(source)},
        }
        if ranged:
            params["CopySourceRange"] = f"bytes={start}-{end - 1}"
        self._client.upload_part_copy(**params)

    async def _concat_by_streaming(
        self, final: UploadInfo, sources: list[str], sizes: list[int]
    ) -> None:
        upload = await self._run(self._writer_state, final)
        writer = _PartWriter(self, upload)
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
        def open_body() -> Any:
            try:
                response = self._client.get_object(
                    Bucket=self.bucket, Key=self._key(object_id), Range=f"bytes={start}-{end - 1}"
                )
            except ClientError as exc:
                if _code(exc) in _MISSING_OBJECT:
                    raise UploadNotFoundError() from None
                raise
            return response["Body"]

        body = await self._run(open_body)
        try:
            while True:
                piece: bytes = await self._run(body.read, _READ_PIECE)
                if not piece:
                    break
                yield piece
        finally:
            body.close()

    async def list_ids(self) -> list[str]:
        keys = await self._run(self._info_keys)
        limiter = trio.CapacityLimiter(_LIST_CONCURRENCY)
        found: list[str] = []

        async def read_one(object_id: str) -> None:
            try:
                info, _ = await trio.to_thread.run_sync(
                    self._read_info, object_id, None, limiter=limiter
                )
            except UploadNotFoundError:
                return  # removed meanwhile, or unreadable
            except (ClientError, BotoCoreError) as exc:
                raise _store_error(exc, "GetObject .info") from None
            found.append(info.id)

        async with trio.open_nursery() as nursery:
            for object_id in keys:
                nursery.start_soon(read_one, object_id)
        return found

    def _info_keys(self) -> list[str]:
        object_ids = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item.get("Key", "")
                if key.endswith(".info"):
                    object_ids.append(key[len(self.prefix) : -len(".info")])
        return object_ids

    async def check_writable(self) -> None:
        await self._run(self._check_bucket)

    def _check_bucket(self) -> None:
        self._client.head_bucket(Bucket=self.bucket)

    async def aclose(self) -> None:
        self._client.close()
        if self._http is not None:
            self._http.close()
        await trio.lowlevel.checkpoint()
