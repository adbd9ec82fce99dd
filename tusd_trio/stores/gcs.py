"""The Google Cloud Storage store, in tusd's gcsstore layout (a bucket filled by
tusd is served by us and the other way round).

Objects, with ``<key>`` = ``<prefix>/<id>``:

- ``<key>.info``: the JSON info, with tusd's field names and
  ``Storage {"Type": "gcsstore", "Bucket": ..., "Key": <key>}``.
- ``<key>_<n>``: one chunk object per PATCH, n = highest existing index + 1.
  The offset is the sum of the chunk sizes.
- ``<key>``: the finished object.  ``finish`` composes the chunks into it (32
  sources per compose, deeper levels through ``<key>_tmp_<level>_<index>``),
  checks its CRC32C against the CRC32C combined from the sources, deletes the
  chunks and sets the upload metadata as object metadata.  Once it exists the
  offset is its size.
- ``<prefix>/.tusd-trio-staging/<id>.stage-<hex>``: a staged (checksum) chunk,
  outside ``<key>``'s names so neither tusd nor we count it; on commit it is
  copied to ``<key>_<n>`` and deleted, on discard deleted.

Beyond tusd: deferred length (``declare_length`` rewrites the ``.info``),
concatenation (compose of the partials' objects), checksum (staged chunks) and
GET of an unfinished upload (the chunks, read in order).

Memory: a PATCH body streams into its chunk object through a resumable upload
in pieces of ``piece_size`` (4 MiB): one piece in flight in a worker thread while
the next fills, so at most ``2 * piece_size + 256 KiB`` plus one body chunk per
writer.  A GET holds at most two 2 MiB pieces (one being yielded, one being
fetched).  Nothing is buffered on disk.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Generic, TypeVar

import google_crc32c
import outcome
import trio
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage  # type: ignore[import-untyped]
from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]

from ..protocol.config import StoreCapabilities
from ..protocol.errors import StoreError, TusError, UploadNotFoundError
from ..protocol.info import UploadInfo
from ._gcs_crc import crc32c_combine_all, decode_crc32c
from ._gcs_upload import ALIGN, HTTPAdapter, ResumableSession, SessionLostError
from .config import GCSConfig, MiB

log = logging.getLogger("tusd_trio.gcsstore")

T = TypeVar("T")

_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
#: GCS composes at most this many sources in one request.
MAX_COMPOSE_SOURCES = 32
#: Compose attempts whose result has the wrong CRC32C before giving up (as tusd).
COMPOSE_ATTEMPTS = 3
_READ_PIECE = 2 * MiB
_STAGING_DIR = ".tusd-trio-staging/"
_STAGE_MARK = ".stage-"
_PARALLEL = 16
_RETRY = DEFAULT_RETRY.with_timeout(60.0)
_CHUNK_INDEX = re.compile(r"[0-9]+")
_TEMP_SUFFIX = re.compile(r"tmp_[0-9]+_[0-9]+")
_ID_ENDING_IN_INDEX = re.compile(r"_[0-9]+$")
_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+")


# --- small helpers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Obj:
    name: str
    size: int
    crc: int | None
    generation: int | None
    updated: float


@dataclass(slots=True)
class _Layout:
    info: _Obj | None
    final: _Obj | None
    chunks: list[tuple[int, _Obj]]
    temps: list[_Obj]

    @property
    def data(self) -> list[_Obj]:
        """The objects holding the bytes, in order."""
        if self.final is not None:
            return [self.final]
        return [obj for _, obj in self.chunks]

    @property
    def offset(self) -> int:
        return sum(obj.size for obj in self.data)


def _obj(blob: Any) -> _Obj:
    updated = blob.updated
    return _Obj(
        name=blob.name,
        size=int(blob.size or 0),
        crc=decode_crc32c(blob.crc32c),
        generation=int(blob.generation) if blob.generation is not None else None,
        updated=updated.timestamp() if updated is not None else 0.0,
    )


def _obj_from_resource(resource: dict[str, Any]) -> _Obj:
    return _Obj(
        name=str(resource.get("name", "")),
        size=int(resource.get("size", 0)),
        crc=decode_crc32c(resource.get("crc32c")),
        generation=int(resource["generation"]) if resource.get("generation") else None,
        updated=time.time(),
    )


def _short(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else ""


def _store_error(exc: BaseException, what: str) -> TusError:
    if isinstance(exc, TusError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError):
        return StoreError(f"GCS {what} failed: {exc.code} {_short(exc.message)}")
    return StoreError(f"GCS {what} failed: {type(exc).__name__}: {_short(exc)}")


def _content_type(metadata: dict[str, str]) -> str:
    filetype = metadata.get("filetype", "")
    return filetype if _MIME.fullmatch(filetype) else "application/octet-stream"


class _Job(Generic[T]):
    """A blocking call running in its own thread while the caller goes on."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._done = trio.Event()
        self._result: outcome.Outcome[T] | None = None
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[T]) -> None:
            def settle() -> None:
                self._result = result
                self._done.set()

            try:
                token.run_sync_soon(settle)
            except trio.RunFinishedError:
                pass

        trio.lowlevel.start_thread_soon(fn, deliver, name="tusd-trio gcs")

    async def result(self) -> T:
        await self._done.wait()
        assert self._result is not None
        return self._result.unwrap()


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


@asynccontextmanager
async def _nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery that raises its first failure itself (a TusError first), not a group."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if not all(isinstance(exc, Exception) for exc in leaves):
            raise  # cancellation and the like stay as they are
        chosen = next((exc for exc in leaves if isinstance(exc, TusError)), leaves[0])
        raise chosen from None


class _Gone(Exception):
    """An object vanished while being read (a concurrent finish deleted a chunk)."""


# --- the writer --------------------------------------------------------------------------------


class _GCSWriter:
    """Streams one PATCH body into a chunk object (or a staging object)."""

    def __init__(self, store: GCSStore, upload_id: str, target: str, staged: bool) -> None:
        self._store = store
        self._id = upload_id
        self._target = target
        self._staged = staged
        self._buffer = bytearray()
        self._received = 0
        self._written = 0
        self._settled = False
        self._session: ResumableSession | None = None
        self._job: _Job[None] | None = None
        self._failure: TusError | None = None

    @property
    def written(self) -> int:
        return self._written if self._settled else self._received

    async def write(self, data: bytes) -> None:
        if self._settled:
            raise StoreError("the chunk was already committed or discarded")
        if self._failure is not None:
            raise self._failure
        piece_size = self._store.piece_size
        self._buffer += data
        self._received += len(data)
        if len(self._buffer) < piece_size:
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        while len(self._buffer) >= piece_size:
            # One piece in flight, the next one filling: memory stays bounded.
            await self._wait_job()
            if self._failure is not None:
                raise self._failure
            piece = bytes(self._buffer[:piece_size])
            del self._buffer[:piece_size]
            self._job = _Job(partial(self._push, piece))

    def _push(self, piece: bytes) -> None:
        if self._session is None:
            self._session = self._store._open_session(self._target)
        self._session.push(piece)

    async def _wait_job(self) -> None:
        job = self._job
        if job is None:
            return
        try:
            await job.result()
        except Exception as exc:
            self._failure = _store_error(exc, "upload of a chunk")
        self._job = None

    async def commit(self) -> None:
        if self._settled:
            return
        await self._wait_job()
        self._settled = True
        tail = bytes(self._buffer)
        self._buffer = bytearray()
        store = self._store
        obj: _Obj | None
        if self._failure is not None and self._staged:
            # A staged chunk is all or nothing.
            self._written = 0
            if self._session is not None:
                await trio.to_thread.run_sync(self._session.cancel)
            raise self._failure
        try:
            if self._failure is not None:
                # Keep exactly what GCS has; the handler already reports the failure.
                obj = await store._run("saving a chunk", self._finish_acked)
            elif self._session is None:
                obj = None
                if tail:
                    obj = await store._run(
                        "upload of a chunk", store._upload_small, self._target, tail
                    )
            else:
                session = self._session
                obj = await store._run("upload of a chunk", self._finish_session, session, tail)
        except TusError:
            self._written = 0
            if self._session is not None and not self._staged and self._failure is None:
                # The end did not go through: keep whatever GCS acknowledged.
                try:
                    kept = await store._run("saving a chunk", self._finish_acked)
                except TusError:
                    kept = None
                self._written = kept.size if kept is not None else 0
            elif self._session is not None:
                await trio.to_thread.run_sync(self._session.cancel)
            raise
        if obj is None:
            self._written = 0
            return
        if self._staged:
            try:
                obj = await store._run(
                    "commit of a staged chunk", store._promote_staged, self._id, obj
                )
            except TusError:
                self._written = 0
                raise
        self._written = obj.size

    def _finish_acked(self) -> _Obj | None:
        if self._session is None:
            return None
        try:
            resource = self._session.finish_with_acked()
        except SessionLostError:
            return None
        if resource is None:
            return None
        return self._store._check_finished(self._session, resource)

    def _finish_session(self, session: ResumableSession, tail: bytes) -> _Obj:
        resource = session.finish(tail)
        return self._store._check_finished(session, resource)

    async def discard(self) -> None:
        await self._wait_job()
        self._buffer = bytearray()
        if not self._settled:
            self._settled = True
            if self._session is not None:
                await trio.to_thread.run_sync(self._session.cancel)
        self._written = 0

    async def aclose(self) -> None:
        if not self._settled:
            if self._staged:
                await self.discard()
            else:
                # An interrupted body keeps the bytes received so far.
                await self.commit()
        else:
            await self._wait_job()
        await trio.lowlevel.checkpoint()


# --- the store -----------------------------------------------------------------------------------


class GCSStore:
    name = "gcsstore"
    capabilities = StoreCapabilities(
        terminate=True,
        concatenate=True,
        defer_length=True,
        checksum=True,
        serve_incomplete=True,
    )

    def __init__(self, config: GCSConfig, *, piece_size: int = 4 * MiB) -> None:
        if not config.bucket:
            raise ValueError("GCS bucket name is empty")
        if "_" in config.object_prefix:
            raise ValueError(
                f"gcs-object-prefix {config.object_prefix!r} must not contain '_' "
                "(chunk objects are named <id>_<n>, as in tusd)"
            )
        if piece_size < ALIGN or piece_size % ALIGN:
            raise ValueError(f"piece_size must be a positive multiple of {ALIGN}")
        self.config = config
        self.bucket_name = config.bucket
        self.piece_size = piece_size
        prefix = config.object_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        self.staging_prefix = prefix + _STAGING_DIR
        credentials = self._credentials(config)
        http = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        self._http = http
        options = ClientOptions(api_endpoint=config.endpoint) if config.endpoint else None
        project = config.project or None
        if project is None and isinstance(credentials, AnonymousCredentials):
            project = "<none>"
        self._client = storage.Client(
            project=project, credentials=credentials, client_options=options, _http=http
        )
        self._bucket = self._client.bucket(config.bucket)

    @staticmethod
    def _credentials(config: GCSConfig) -> Credentials:
        try:
            if config.service_account_file:
                from google.oauth2 import service_account

                load = service_account.Credentials.from_service_account_file
                creds: Credentials = load(  # type: ignore[no-untyped-call]
                    config.service_account_file, scopes=[_SCOPE]
                )
                return creds
            if config.endpoint:
                return AnonymousCredentials()  # type: ignore[no-untyped-call]
            import google.auth

            found, _project = google.auth.default(scopes=[_SCOPE])
            return found
        except (OSError, ValueError, auth_exc.GoogleAuthError) as exc:
            raise ValueError(f"GCS credentials: {_short(exc)}") from None

    # --- names ---------------------------------------------------------------------------

    def key(self, upload_id: str) -> str:
        return self.prefix + upload_id

    def info_name(self, upload_id: str) -> str:
        return self.key(upload_id) + ".info"

    def chunk_name(self, upload_id: str, index: int) -> str:
        return f"{self.key(upload_id)}_{index}"

    # --- plumbing -------------------------------------------------------------------------

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except TusError:
            raise
        except Exception as exc:
            raise _store_error(exc, what) from exc

    def _open_session(self, name: str) -> ResumableSession:
        blob = self._bucket.blob(name)
        url = blob.create_resumable_upload_session(
            content_type="application/octet-stream",
            checksum=None,
            if_generation_match=0,
            retry=_RETRY,
        )
        return ResumableSession(self._http, url, name)

    def _check_finished(self, session: ResumableSession, resource: dict[str, Any]) -> _Obj:
        obj = _obj_from_resource(resource)
        if obj.size != session.acked or (obj.crc is not None and obj.crc != session.crc):
            self._delete_quietly(obj.name, obj.generation)
            raise StoreError(
                f"GCS stored {obj.name} with a different size or CRC32C than sent; removed"
            )
        return obj

    def _upload_small(self, name: str, data: bytes) -> _Obj:
        """A body smaller than a piece: one request instead of a session."""
        blob = self._bucket.blob(name)
        try:
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=0,
                checksum="crc32c",
                retry=_RETRY,
            )
        except gexc.PreconditionFailed:
            # A retry after a lost answer finds our own object; anything else is a clash.
            existing = self._bucket.get_blob(name)
            if (
                existing is None
                or int(existing.size or 0) != len(data)
                or decode_crc32c(existing.crc32c) != google_crc32c.value(data)
            ):
                raise StoreError(
                    f"GCS object {name} exists already (another server writing this upload?)"
                ) from None
            return _obj(existing)
        return _obj(blob)

    def _delete_quietly(self, name: str, generation: int | None = None) -> None:
        try:
            self._bucket.blob(name, generation=generation).delete(retry=_RETRY)
        except gexc.NotFound:
            pass

    async def _delete_many(self, names: list[str]) -> None:
        if not names:
            return
        limiter = trio.CapacityLimiter(_PARALLEL)

        async def one(name: str) -> None:
            async with limiter:
                await self._run("delete", self._delete_quietly, name)

        async with _nursery() as nursery:
            for name in names:
                nursery.start_soon(one, name)

    def _scan(self, upload_id: str) -> _Layout:
        """List ``<key>*`` once: the info, the final object, the chunks, compose leftovers."""
        key = self.key(upload_id)
        info: _Obj | None = None
        final: _Obj | None = None
        chunks: list[tuple[int, _Obj]] = []
        temps: list[_Obj] = []
        for blob in self._client.list_blobs(self._bucket, prefix=key, retry=_RETRY):
            name: str = blob.name
            if name == key:
                final = _obj(blob)
            elif name == key + ".info":
                info = _obj(blob)
            elif name.startswith(key + "_"):
                rest = name[len(key) + 1 :]
                if _CHUNK_INDEX.fullmatch(rest):
                    chunks.append((int(rest), _obj(blob)))
                elif _TEMP_SUFFIX.fullmatch(rest):
                    temps.append(_obj(blob))
        chunks.sort(key=lambda item: item[0])
        return _Layout(info, final, chunks, temps)

    def _read_info(self, upload_id: str) -> tuple[UploadInfo, _Obj]:
        blob = self._bucket.blob(self.info_name(upload_id))
        try:
            raw = blob.download_as_bytes(retry=_RETRY)
        except gexc.NotFound:
            raise UploadNotFoundError() from None
        try:
            info = UploadInfo.from_json(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable info %s: %s", blob.name, exc)
            raise UploadNotFoundError() from None
        if info.id != upload_id:
            raise UploadNotFoundError()
        return info, _obj(blob)

    def _write_info(self, info: UploadInfo, *, new: bool) -> None:
        blob = self._bucket.blob(self.info_name(info.id))
        payload = info.to_json()
        try:
            blob.upload_from_string(
                payload,
                content_type="application/json",
                if_generation_match=0 if new else None,
                retry=_RETRY,
            )
        except gexc.PreconditionFailed:
            try:
                if blob.download_as_bytes(retry=_RETRY) == payload:
                    return  # our own write, answered late
            except gexc.NotFound:
                pass
            raise StoreError("an upload with this ID exists already") from None

    async def _gather(self, what: str, *calls: Callable[[], Any]) -> list[Any]:
        results: list[Any] = [None] * len(calls)

        async def one(index: int, call: Callable[[], Any]) -> None:
            results[index] = await self._run(what, call)

        async with _nursery() as nursery:
            for index, call in enumerate(calls):
                nursery.start_soon(one, index, call)
        return results

    # --- the Store protocol ------------------------------------------------------------------

    async def create(self, info: UploadInfo) -> UploadInfo:
        last = info.id.rsplit("/", 1)[-1]
        if _ID_ENDING_IN_INDEX.search(last):
            # <a>_<n> would be read as chunk n of upload <a>.
            raise StoreError("upload IDs ending in _<number> cannot be stored in GCS")
        storage_info = {"Type": self.name, "Bucket": self.bucket_name, "Key": self.key(info.id)}
        stored = replace(info, offset=0, storage=storage_info)
        await self._run("creation of the upload", lambda: self._write_info(stored, new=True))
        return stored

    async def get(self, upload_id: str) -> UploadInfo:
        found = await self._gather(
            "reading the upload", lambda: self._read_info(upload_id), lambda: self._scan(upload_id)
        )
        info: UploadInfo = found[0][0]
        info_obj: _Obj = found[0][1]
        layout: _Layout = found[1]
        data = layout.data
        modified = max([info_obj.updated, *(obj.updated for obj in data)])
        created = info.created or info_obj.updated
        return replace(info, offset=layout.offset, modified=modified, created=created)

    async def open_writer(self, info: UploadInfo, *, staged: bool) -> _GCSWriter:
        layout = await self._run("opening the upload", self._scan, info.id)
        if layout.info is None:
            raise UploadNotFoundError()
        if staged:
            target = f"{self.staging_prefix}{info.id}{_STAGE_MARK}{secrets.token_hex(16)}"
        else:
            index = layout.chunks[-1][0] + 1 if layout.chunks else 0
            target = self.chunk_name(info.id, index)
        return _GCSWriter(self, info.id, target, staged)

    def _promote_staged(self, upload_id: str, staged: _Obj) -> _Obj:
        """Copy a verified staged chunk to ``<key>_<n>`` and drop the staging object."""
        try:
            layout = self._scan(upload_id)
            if layout.info is None:
                raise UploadNotFoundError()
            index = layout.chunks[-1][0] + 1 if layout.chunks else 0
            target = self._bucket.blob(self.chunk_name(upload_id, index))
            source = self._bucket.blob(staged.name)
            token: str | None = None
            while True:
                token, _done, _total = target.rewrite(
                    source,
                    token=token,
                    if_generation_match=0,
                    if_source_generation_match=staged.generation,
                    retry=_RETRY,
                )
                if token is None:
                    break
            result = _obj(target)
            if result.size != staged.size or (
                staged.crc is not None and result.crc is not None and result.crc != staged.crc
            ):
                self._delete_quietly(target.name, result.generation)
                raise StoreError("GCS copy of a staged chunk differs from its source")
            return result
        finally:
            self._delete_quietly(staged.name)

    async def declare_length(self, info: UploadInfo, length: int) -> UploadInfo:
        def work() -> None:
            stored = self._read_info(info.id)[0]
            self._write_info(replace(stored, size=length, size_is_deferred=False), new=False)

        await self._run("declaring the length", work)
        return replace(info, size=length, size_is_deferred=False)

    async def finish(self, info: UploadInfo) -> None:
        layout = await self._run("finishing the upload", self._scan, info.id)
        if layout.info is None:
            raise UploadNotFoundError()
        key = self.key(info.id)
        if layout.final is None:
            sources = [obj for _, obj in layout.chunks]
            await self._build(key, sources, info.metadata)
        # The chunks (and compose leftovers) go only once the final object exists.
        leftovers = [obj.name for _, obj in layout.chunks] + [obj.name for obj in layout.temps]
        await self._delete_many(leftovers)

    async def _build(self, key: str, sources: list[_Obj], metadata: dict[str, str]) -> _Obj:
        """Make ``key`` the concatenation of ``sources`` (compose tree), metadata set."""
        if not sources:
            return await self._run("finishing the upload", self._put_empty, key, metadata)
        level = 0
        current = sources
        temps: list[str] = []
        try:
            while len(current) > MAX_COMPOSE_SOURCES:
                groups = [
                    current[start : start + MAX_COMPOSE_SOURCES]
                    for start in range(0, len(current), MAX_COMPOSE_SOURCES)
                ]
                names = [f"{key}_tmp_{level}_{index}" for index in range(len(groups))]
                temps.extend(names)
                current = await self._compose_groups(list(zip(names, groups, strict=True)))
                level += 1
            return await self._run("composing the upload", self._compose, key, current, metadata)
        finally:
            with trio.CancelScope(shield=True):
                await self._delete_many(temps)

    async def _compose_groups(self, jobs: list[tuple[str, list[_Obj]]]) -> list[_Obj]:
        results: list[_Obj | None] = [None] * len(jobs)
        limiter = trio.CapacityLimiter(_PARALLEL)

        async def one(index: int, name: str, group: list[_Obj]) -> None:
            async with limiter:
                results[index] = await self._run(
                    "composing the upload", self._compose, name, group, None
                )

        async with _nursery() as nursery:
            for index, (name, group) in enumerate(jobs):
                nursery.start_soon(one, index, name, group)
        return [obj for obj in results if obj is not None]

    def _compose(self, name: str, sources: list[_Obj], metadata: dict[str, str] | None) -> _Obj:
        """One compose request, its CRC32C checked against the combined sources'."""
        expected: int | None = None
        if all(obj.crc is not None for obj in sources):
            expected = crc32c_combine_all([(obj.crc or 0, obj.size) for obj in sources])
        handles = [self._bucket.blob(obj.name) for obj in sources]
        generations = [obj.generation for obj in sources]
        pin = generations if all(g is not None for g in generations) else None
        for attempt in range(1, COMPOSE_ATTEMPTS + 1):
            # Always a fresh handle: compose sends the handle's properties as the
            # destination resource (a stale crc32c there would be refused).
            target = self._bucket.blob(name)
            if metadata is not None:
                target.metadata = dict(metadata) or None
                target.content_type = _content_type(metadata)
            else:
                target.content_type = "application/octet-stream"
            target.compose(handles, if_source_generation_match=pin, retry=_RETRY)
            result = _obj(target)
            if expected is None or result.crc == expected:
                return result
            if attempt == COMPOSE_ATTEMPTS:
                break
            log.warning(
                "GCS compose of %s: CRC32C %s, expected %s; composing again",
                name,
                result.crc,
                expected,
            )
        self._delete_quietly(name)
        raise StoreError(f"GCS compose of {name} failed: mismatch of CRC32C checksums")

    def _put_empty(self, name: str, metadata: dict[str, str]) -> _Obj:
        blob = self._bucket.blob(name)
        blob.metadata = dict(metadata) or None
        blob.upload_from_string(b"", content_type=_content_type(metadata), retry=_RETRY)
        return _obj(blob)

    async def terminate(self, info: UploadInfo) -> None:
        upload_id = info.id

        def staged_names() -> list[str]:
            start = f"{self.staging_prefix}{upload_id}{_STAGE_MARK}"
            found = []
            for blob in self._client.list_blobs(self._bucket, prefix=start, retry=_RETRY):
                rest = blob.name[len(start) :]
                if len(rest) == 32 and all(c in "0123456789abcdef" for c in rest):
                    found.append(blob.name)
            return found

        layout, staged = await self._gather(
            "removing the upload", lambda: self._scan(upload_id), staged_names
        )
        names = [obj.name for _, obj in layout.chunks] + [obj.name for obj in layout.temps]
        names += staged
        if layout.final is not None:
            names.append(layout.final.name)
        await self._delete_many(names)
        # The .info goes last: an interrupted terminate can be repeated.
        await self._run("removing the upload", self._delete_quietly, self.info_name(upload_id))

    async def concat(self, info: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        layouts: list[_Layout | None] = [None] * len(partials)
        limiter = trio.CapacityLimiter(_PARALLEL)

        async def scan(index: int, upload_id: str) -> None:
            async with limiter:
                layouts[index] = await self._run("reading a partial upload", self._scan, upload_id)

        async with _nursery() as nursery:
            for index, partial in enumerate(partials):
                nursery.start_soon(scan, index, partial.id)
        sources: list[_Obj] = []
        for layout in layouts:
            if layout is None or layout.info is None:
                raise UploadNotFoundError()
            sources.extend(obj for obj in layout.data if obj.size)
        final = await self._build(self.key(info.id), sources, info.metadata)
        total = final.size
        if info.size_is_deferred or info.size != total:

            def rewrite_info() -> None:
                stored, _info_obj = self._read_info(info.id)
                self._write_info(replace(stored, size=total, size_is_deferred=False), new=False)

            await self._run("updating the final upload", rewrite_info)
        return replace(info, size=total, size_is_deferred=False, offset=total)

    def _segments(self, upload_id: str) -> list[_Obj]:
        final = self._bucket.get_blob(self.key(upload_id), retry=_RETRY)
        if final is not None:
            return [_obj(final)]
        layout = self._scan(upload_id)
        if layout.info is None:
            raise UploadNotFoundError()
        return layout.data

    def _download(self, obj: _Obj, first: int, last: int) -> bytes:
        blob = self._bucket.blob(obj.name, generation=obj.generation)
        try:
            data: bytes = blob.download_as_bytes(
                start=first, end=last - 1, raw_download=True, checksum=None, retry=_RETRY
            )
        except gexc.NotFound:
            raise _Gone() from None
        return data

    @staticmethod
    def _pieces(segments: list[_Obj], start: int, end: int) -> Iterator[tuple[_Obj, int, int]]:
        base = 0
        for obj in segments:
            low = max(start, base)
            high = min(end, base + obj.size)
            while low < high:
                step = min(high, low + _READ_PIECE)
                yield obj, low - base, step - base
                low = step
            base += obj.size
            if base >= end:
                return

    async def read(self, info: UploadInfo, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        segments = await self._run("reading the upload", self._segments, info.id)
        position = start
        resolved_again = False
        pieces = self._pieces(segments, position, end)
        current = next(pieces, None)
        job = self._download_job(current)
        while current is not None and job is not None:
            try:
                data = await job.result()
            except _Gone:
                # finish() composed and deleted the chunks meanwhile: read the result.
                if resolved_again:
                    raise UploadNotFoundError() from None
                resolved_again = True
                log.debug("chunks of %s vanished mid-read; reading the final object", info.id)
                segments = await self._run("reading the upload", self._segments, info.id)
                pieces = self._pieces(segments, position, end)
                current = next(pieces, None)
                job = self._download_job(current)
                continue
            except TusError:
                raise
            except Exception as exc:
                raise _store_error(exc, "download") from exc
            following = next(pieces, None)
            job = self._download_job(following)  # fetched while this piece is sent
            position += len(data)
            yield data
            current = following

    def _download_job(self, piece: tuple[_Obj, int, int] | None) -> _Job[bytes] | None:
        if piece is None:
            return None
        obj, first, last = piece
        return _Job(lambda: self._download(obj, first, last))

    async def list_ids(self) -> list[str]:
        def work() -> list[str]:
            found: list[str] = []
            for blob in self._client.list_blobs(self._bucket, prefix=self.prefix, retry=_RETRY):
                name: str = blob.name
                if name.endswith(".info") and not name.startswith(self.staging_prefix):
                    found.append(name[len(self.prefix) : -len(".info")])
            return found

        return await self._run("listing the uploads", work)

    async def check_writable(self) -> None:
        def work() -> None:
            blobs = self._client.list_blobs(
                self._bucket, prefix=self.prefix, max_results=1, retry=_RETRY
            )
            for _ in blobs:
                break

        await self._run(f"access to bucket {self.bucket_name}", work)

    async def aclose(self) -> None:
        def work() -> None:
            self._client.close()
            self._http.close()  # type: ignore[no-untyped-call]

        await trio.to_thread.run_sync(work)


__all__ = ["GCSStore"]
