"""The blocking half of the GCS store: the google-cloud-storage client, one method per
operation on the bucket (each run in a worker thread through :attr:`GCSAdapter.sdk`),
and the mapping of the SDK's errors to store errors.  :class:`~.store.GCSStore` adds
the async Store protocol on top."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage  # type: ignore[import-untyped]
from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped]
from requests.adapters import HTTPAdapter

from ...protocol.errors import StoreError, TusError, UploadNotFoundError
from ...protocol.info import UploadInfo
from .._sdk_calls import SDKCalls
from ..config import GCSConfig
from .crc import crc32c_combine_all, decode_crc32c
from .layout import (
    CHUNK_INDEX,
    STAGE_MARK,
    STAGING_DIR,
    TEMP_SUFFIX,
    StoredObject,
    UploadLayout,
    content_type,
    object_from_blob,
    object_from_resource,
)
from .session import ResumableSession

log = logging.getLogger("tusd_trio.gcsstore")

#: The store's name, also the ``Storage.Type`` of its info documents (tusd's).
STORE_NAME = "gcsstore"
_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
#: Compose attempts whose result has the wrong CRC32C before giving up (as tusd).
COMPOSE_ATTEMPTS = 3
RETRY = DEFAULT_RETRY.with_timeout(60.0)


def _short(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else ""


def gcs_error(exc: Exception, what: str) -> TusError:
    """A one-line StoreError for an SDK failure (no traceback text for the client)."""
    if isinstance(exc, TusError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError):
        return StoreError(f"GCS {what} failed: {exc.code} {_short(exc.message)}")
    return StoreError(f"GCS {what} failed: {type(exc).__name__}: {_short(exc)}")


class GCSAdapter:
    """One bucket (and object prefix) through google-cloud-storage; every method
    here blocks."""

    def __init__(self, config: GCSConfig) -> None:
        if not config.bucket:
            raise ValueError("GCS bucket name is empty")
        if "_" in config.object_prefix:
            raise ValueError(
                f"gcs-object-prefix {config.object_prefix!r} must not contain '_' "
                "(chunk objects are named <id>_<n>, as in tusd)"
            )
        self.config = config
        self.bucket_name = config.bucket
        prefix = config.object_prefix
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.prefix = prefix
        self.staging_prefix = prefix + STAGING_DIR
        self.sdk = SDKCalls(gcs_error, thread_name="gcs")
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
                # Imported only when a service account file is configured.
                from google.oauth2 import service_account

                load = service_account.Credentials.from_service_account_file
                creds: Credentials = load(  # type: ignore[no-untyped-call]
                    config.service_account_file, scopes=[_SCOPE]
                )
                return creds
            if config.endpoint:
                return AnonymousCredentials()  # type: ignore[no-untyped-call]
            # Imported only for Application Default Credentials.
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

    # --- the upload's objects ---------------------------------------------------------------

    def _scan(self, upload_id: str) -> UploadLayout:
        """List ``<key>*`` once: the info, the final object, the chunks, compose leftovers."""
        key = self.key(upload_id)
        info: StoredObject | None = None
        final: StoredObject | None = None
        chunks: list[tuple[int, StoredObject]] = []
        temps: list[StoredObject] = []
        for blob in self._client.list_blobs(self._bucket, prefix=key, retry=RETRY):
            name: str = blob.name
            if name == key:
                final = object_from_blob(blob)
            elif name == key + ".info":
                info = object_from_blob(blob)
            elif name.startswith(key + "_"):
                rest = name[len(key) + 1 :]
                if CHUNK_INDEX.fullmatch(rest):
                    chunks.append((int(rest), object_from_blob(blob)))
                elif TEMP_SUFFIX.fullmatch(rest):
                    temps.append(object_from_blob(blob))
        chunks.sort(key=lambda item: item[0])
        return UploadLayout(info, final, chunks, temps)

    def _staged_names(self, upload_id: str) -> list[str]:
        """The upload's staging objects (staged chunks never committed or discarded)."""
        start = f"{self.staging_prefix}{upload_id}{STAGE_MARK}"
        found = []
        for blob in self._client.list_blobs(self._bucket, prefix=start, retry=RETRY):
            rest = blob.name[len(start) :]
            if len(rest) == 32 and all(c in "0123456789abcdef" for c in rest):
                found.append(blob.name)
        return found

    def _read_info(self, upload_id: str) -> tuple[UploadInfo, StoredObject]:
        blob = self._bucket.blob(self.info_name(upload_id))
        try:
            raw = blob.download_as_bytes(retry=RETRY)
        except gexc.NotFound:
            raise UploadNotFoundError() from None
        try:
            info = UploadInfo.from_json(raw)
        except ValueError as exc:
            log.warning("ignoring unreadable info %s: %s", blob.name, exc)
            raise UploadNotFoundError() from None
        if info.id != upload_id:
            raise UploadNotFoundError()
        return info, object_from_blob(blob)

    def _write_info(self, info: UploadInfo, *, new: bool) -> None:
        blob = self._bucket.blob(self.info_name(info.id))
        payload = info.to_json()
        try:
            blob.upload_from_string(
                payload,
                content_type="application/json",
                if_generation_match=0 if new else None,
                retry=RETRY,
            )
        except gexc.PreconditionFailed:
            try:
                if blob.download_as_bytes(retry=RETRY) == payload:
                    return  # our own write, answered late
            except gexc.NotFound:
                pass
            raise StoreError("an upload with this ID exists already") from None

    def _write_size(self, upload_id: str, size: int) -> None:
        """Rewrite the info with a known size (declared length, concatenation)."""
        stored, _info_obj = self._read_info(upload_id)
        self._write_info(replace(stored, size=size, size_is_deferred=False), new=False)

    def _delete_quietly(self, name: str, generation: int | None = None) -> None:
        try:
            self._bucket.blob(name, generation=generation).delete(retry=RETRY)
        except gexc.NotFound:
            pass

    # --- writing chunks -----------------------------------------------------------------------

    def _open_session(self, name: str) -> ResumableSession:
        blob = self._bucket.blob(name)
        url = blob.create_resumable_upload_session(
            content_type="application/octet-stream",
            checksum=None,
            if_generation_match=0,
            retry=RETRY,
        )
        return ResumableSession(self._http, url, name)

    def _check_finished(self, session: ResumableSession, resource: dict[str, Any]) -> StoredObject:
        obj = object_from_resource(resource)
        if obj.size != session.acked or (obj.crc is not None and obj.crc != session.crc):
            self._delete_quietly(obj.name, obj.generation)
            raise StoreError(
                f"GCS stored {obj.name} with a different size or CRC32C than sent; removed"
            )
        return obj

    def _upload_small(self, name: str, data: bytes) -> StoredObject:
        """A body smaller than a piece: one request instead of a session."""
        blob = self._bucket.blob(name)
        try:
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=0,
                checksum="crc32c",
                retry=RETRY,
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
            return object_from_blob(existing)
        return object_from_blob(blob)

    def _promote_staged(self, upload_id: str, staged: StoredObject) -> StoredObject:
        """Copy a verified staged chunk to ``<key>_<n>`` and drop the staging object."""
        try:
            layout = self._scan(upload_id)
            if layout.info is None:
                raise UploadNotFoundError()
            target = self._bucket.blob(self.chunk_name(upload_id, layout.next_chunk))
            source = self._bucket.blob(staged.name)
            token: str | None = None
            while True:
                token, _done, _total = target.rewrite(
                    source,
                    token=token,
                    if_generation_match=0,
                    if_source_generation_match=staged.generation,
                    retry=RETRY,
                )
                if token is None:
                    break
            result = object_from_blob(target)
            if result.size != staged.size or (
                staged.crc is not None and result.crc is not None and result.crc != staged.crc
            ):
                self._delete_quietly(target.name, result.generation)
                raise StoreError("GCS copy of a staged chunk differs from its source")
            return result
        finally:
            self._delete_quietly(staged.name)

    # --- the final object -------------------------------------------------------------------

    def _compose(
        self, name: str, sources: list[StoredObject], metadata: dict[str, str] | None
    ) -> StoredObject:
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
                target.content_type = content_type(metadata)
            else:
                target.content_type = "application/octet-stream"
            target.compose(handles, if_source_generation_match=pin, retry=RETRY)
            result = object_from_blob(target)
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

    def _put_empty(self, name: str, metadata: dict[str, str]) -> StoredObject:
        blob = self._bucket.blob(name)
        blob.metadata = dict(metadata) or None
        blob.upload_from_string(b"", content_type=content_type(metadata), retry=RETRY)
        return object_from_blob(blob)

    # --- reading, listing, health -------------------------------------------------------------

    def _segments(self, upload_id: str) -> list[StoredObject]:
        final = self._bucket.get_blob(self.key(upload_id), retry=RETRY)
        if final is not None:
            return [object_from_blob(final)]
        layout = self._scan(upload_id)
        if layout.info is None:
            raise UploadNotFoundError()
        return layout.data

    def _download(self, obj: StoredObject, first: int, last: int) -> bytes | None:
        """Bytes ``[first, last)`` of ``obj``; None when it is gone (a concurrent
        ``finish`` composed the chunks and deleted them)."""
        blob = self._bucket.blob(obj.name, generation=obj.generation)
        try:
            data: bytes = blob.download_as_bytes(
                start=first, end=last - 1, raw_download=True, checksum=None, retry=RETRY
            )
        except gexc.NotFound:
            return None
        return data

    def _list_ids(self) -> list[str]:
        found: list[str] = []
        for blob in self._client.list_blobs(self._bucket, prefix=self.prefix, retry=RETRY):
            name: str = blob.name
            if name.endswith(".info") and not name.startswith(self.staging_prefix):
                found.append(name[len(self.prefix) : -len(".info")])
        return found

    def _check_bucket(self) -> None:
        blobs = self._client.list_blobs(
            self._bucket, prefix=self.prefix, max_results=1, retry=RETRY
        )
        for _ in blobs:
            break

    def _close_clients(self) -> None:
        self._client.close()
        self._http.close()  # type: ignore[no-untyped-call]
