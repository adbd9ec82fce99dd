"""The GCS store against the real gcp-storage-emulator: tusd's layout, buckets
written by tusd, compose trees, CRC32C checks and what tusd's store lacks."""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import google_crc32c
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[import-untyped]

from tests._support.services import Service
from tests._support.tus import TUSD_INFO_KEYS
from tusd_trio.protocol.errors import StoreError, UploadNotFoundError
from tusd_trio.protocol.info import UploadInfo
from tusd_trio.stores.config import GCSConfig
from tusd_trio.stores.gcs import GCSStore
from tusd_trio.stores.gcs.crc import crc32c_combine, crc32c_combine_all
from tusd_trio.stores.gcs.layout import StoredObject as _Obj

from ._helpers import new_info, read_all, write_chunk


@pytest.fixture
def bucket(gcs_store: GCSStore, gcs_server: Service, bucket_name: str) -> Any:
    """A plain client's handle on the test's bucket, to look behind the store's back."""
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=gcs_server.endpoint),
    )
    yield client.bucket(bucket_name)
    client.close()


def names(bucket: Any) -> set[str]:
    return {blob.name for blob in bucket.client.list_blobs(bucket)}


def make_store(
    gcs_server: Service, bucket_name: str, cls: type[GCSStore] = GCSStore, **kwargs: Any
) -> GCSStore:
    prefix = kwargs.pop("object_prefix", "")
    return cls(
        GCSConfig(bucket=bucket_name, endpoint=gcs_server.endpoint, object_prefix=prefix), **kwargs
    )


class CountingStore(GCSStore):
    """Records every compose request (destination, number of sources)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.composes: list[tuple[str, int]] = []

    def _compose(self, name: str, sources: list[_Obj], metadata: dict[str, str] | None) -> _Obj:
        self.composes.append((name, len(sources)))
        return super()._compose(name, sources, metadata)


# --- configuration -----------------------------------------------------------------------------


def test_prefix_with_underscore_is_refused() -> None:
    with pytest.raises(ValueError, match="must not contain '_'"):
        GCSStore(GCSConfig(bucket="b", endpoint="http://127.0.0.1:1", object_prefix="my_uploads"))


def test_piece_size_must_be_a_multiple_of_256_kib() -> None:
    with pytest.raises(ValueError, match="multiple"):
        GCSStore(GCSConfig(bucket="b", endpoint="http://127.0.0.1:1"), piece_size=1000)


async def test_id_that_names_a_chunk_is_refused(gcs_store: GCSStore) -> None:
    with pytest.raises(StoreError, match="_<number>"):
        await gcs_store.create(new_info("abc_1", 3))


def test_crc32c_combine_matches_the_real_thing() -> None:
    pieces = [os.urandom(n) for n in (0, 1, 7, 4096, 100_000, 0, 3)]
    combined = crc32c_combine_all([(google_crc32c.value(p), len(p)) for p in pieces])
    assert combined == google_crc32c.value(b"".join(pieces))
    a, b = os.urandom(1000), os.urandom(333)
    assert crc32c_combine(google_crc32c.value(a), google_crc32c.value(b), 333) == (
        google_crc32c.value(a + b)
    )
    assert crc32c_combine(1, 2, 3) != crc32c_combine(1, 2, 4)


# --- tusd's layout -----------------------------------------------------------------------------


async def test_layout_is_tusds(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    store = make_store(gcs_server, bucket_name, object_prefix="up/loads")
    info = await store.create(new_info("abc", 11, metadata={"filename": "a.txt"}))
    assert info.storage == {"Type": "gcsstore", "Bucket": bucket_name, "Key": "up/loads/abc"}
    await write_chunk(store, info, b"hello ")
    await write_chunk(store, info, b"world")
    assert names(bucket) == {"up/loads/abc.info", "up/loads/abc_0", "up/loads/abc_1"}
    document = json.loads(bucket.blob("up/loads/abc.info").download_as_bytes())
    assert set(TUSD_INFO_KEYS) <= set(document) <= {*TUSD_INFO_KEYS, "CreatedAt"}
    assert document["ID"] == "abc"
    assert document["Size"] == 11
    assert document["MetaData"] == {"filename": "a.txt"}
    assert document["Storage"] == {
        "Type": "gcsstore",
        "Bucket": bucket_name,
        "Key": "up/loads/abc",
    }
    assert bucket.blob("up/loads/abc_1").download_as_bytes() == b"world"
    assert (await store.get("abc")).offset == 11
    await store.finish(await store.get("abc"))
    assert names(bucket) == {"up/loads/abc.info", "up/loads/abc"}
    assert bucket.blob("up/loads/abc").download_as_bytes() == b"hello world"
    assert await store.list_ids() == ["abc"]


async def test_bucket_written_by_tusd_is_resumed_and_finished(
    gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    # What tusd leaves after two PATCHes: Go's json.Marshal of FileInfo, and two chunks.
    document = {
        "ID": "0123456789abcdef0123456789abcdef",
        "Size": 20,
        "SizeIsDeferred": False,
        "Offset": 0,
        "MetaData": {"filename": "report.pdf", "filetype": "application/pdf"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {
            "Type": "gcsstore",
            "Bucket": bucket_name,
            "Key": "0123456789abcdef0123456789abcdef",
        },
    }
    upload_id = str(document["ID"])
    bucket.blob(upload_id + ".info").upload_from_string(json.dumps(document))
    bucket.blob(upload_id + "_0").upload_from_string(b"first-")
    bucket.blob(upload_id + "_1").upload_from_string(b"second-")
    info = await gcs_store.get(upload_id)
    assert info.offset == 13
    assert info.size == 20
    assert info.metadata == {"filename": "report.pdf", "filetype": "application/pdf"}
    assert await read_all(gcs_store, info, 3, 13) == b"st-second-"
    assert await write_chunk(gcs_store, info, b"third!!") == 7
    assert upload_id + "_2" in names(bucket)
    info = await gcs_store.get(upload_id)
    assert info.offset == info.size == 20
    await gcs_store.finish(info)
    assert names(bucket) == {upload_id, upload_id + ".info"}
    final = bucket.get_blob(upload_id)
    assert final.download_as_bytes() == b"first-second-third!!"
    assert final.metadata == {"filename": "report.pdf", "filetype": "application/pdf"}
    assert final.content_type == "application/pdf"
    got = await gcs_store.get(upload_id)
    assert got.offset == 20
    assert await read_all(gcs_store, got, 0, 20) == b"first-second-third!!"


async def test_finished_upload_left_by_a_crash_mid_finish(gcs_store: GCSStore, bucket: Any) -> None:
    # Compose done, chunk deletion interrupted: the final object wins (as in tusd).
    info = await gcs_store.create(new_info("c", 6))
    await write_chunk(gcs_store, info, b"abc")
    await write_chunk(gcs_store, info, b"def")
    bucket.blob("c").compose([bucket.blob("c_0"), bucket.blob("c_1")])
    assert (await gcs_store.get("c")).offset == 6
    await gcs_store.finish(info)
    assert names(bucket) == {"c", "c.info"}
    assert await read_all(gcs_store, await gcs_store.get("c"), 0, 6) == b"abcdef"


# --- compose trees and CRC32C -------------------------------------------------------------------


async def test_finish_composes_more_than_32_chunks_in_a_tree(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    store = make_store(gcs_server, bucket_name, cls=CountingStore)
    assert isinstance(store, CountingStore)
    pieces = [f"<{n:03d}>".encode() * (n % 3 + 1) for n in range(70)]
    info = await store.create(new_info("many", sum(map(len, pieces)), metadata={"k": "v"}))
    for piece in pieces:
        await write_chunk(store, info, piece)
    assert len(names(bucket)) == 71
    await store.finish(await store.get("many"))
    assert all(count <= 32 for _, count in store.composes)
    assert sorted(store.composes) == [
        ("many", 3),
        ("many_tmp_0_0", 32),
        ("many_tmp_0_1", 32),
        ("many_tmp_0_2", 6),
    ]
    assert names(bucket) == {"many", "many.info"}  # chunks and temporaries are gone
    final = bucket.get_blob("many")
    assert final.download_as_bytes() == b"".join(pieces)
    assert final.metadata == {"k": "v"}
    await store.finish(await store.get("many"))  # idempotent
    assert len(store.composes) == 4


async def test_compose_crc32c_mismatch_is_detected(
    gcs_server: Service,
    gcs_store: GCSStore,
    bucket: Any,
    bucket_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A source changes between listing and composing (another writer, bit rot): the
    composed object's CRC32C (computed by the server) then differs from the CRC32C
    combined from the listed sources.  Real GCS would refuse the pinned source
    generation; the emulator ignores generation preconditions, so the compose really
    runs on the changed bytes and the CRC check is what catches it."""

    class MeddlingStore(CountingStore):
        def _compose(self, name: str, sources: list[_Obj], metadata: dict[str, str] | None) -> _Obj:
            bucket.blob("x_1").upload_from_string(b"EVIL")  # same size, other bytes
            return super()._compose(name, sources, metadata)

    store = make_store(gcs_server, bucket_name, cls=MeddlingStore)
    assert isinstance(store, MeddlingStore)
    info = await store.create(new_info("x", 8))
    await write_chunk(store, info, b"good")
    await write_chunk(store, info, b"data")
    with pytest.raises(StoreError, match="CRC32C"):
        await store.finish(await store.get("x"))
    # Three compose attempts, as tusd: two warnings, then the error.
    assert len([r for r in caplog.records if "composing again" in r.getMessage()]) == 2
    assert names(bucket) == {"x.info", "x_0", "x_1"}  # no final object; chunks kept


async def test_finish_sets_metadata_and_content_type(gcs_store: GCSStore, bucket: Any) -> None:
    metadata = {"filename": "notes.txt", "filetype": "text/plain", "empty": ""}
    info = await gcs_store.create(new_info("m", 5, metadata=metadata))
    await write_chunk(gcs_store, info, b"notes")
    await gcs_store.finish(await gcs_store.get("m"))
    final = bucket.get_blob("m")
    assert final.metadata == metadata
    assert final.content_type == "text/plain"
    # An empty upload gets an empty object with its metadata too.
    empty = await gcs_store.create(new_info("e", 0, metadata={"filename": "nothing"}))
    await gcs_store.finish(empty)
    blob = bucket.get_blob("e")
    assert blob.size == 0
    assert blob.metadata == {"filename": "nothing"}


# --- streaming into chunk objects -----------------------------------------------------------


async def test_patch_streams_into_one_chunk_object_in_pieces(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    store = make_store(gcs_server, bucket_name, piece_size=256 * 1024)
    data = os.urandom(1024 * 1024 + 12345)
    info = await store.create(new_info("big", len(data)))
    writer = await store.open_writer(info, staged=False)
    buffer = bytearray(65536)  # reused after every write, as the handler's
    for start in range(0, len(data), 65536):
        piece = data[start : start + 65536]
        buffer[: len(piece)] = piece
        view: Any = memoryview(buffer)[: len(piece)]
        await writer.write(view)
        buffer[:] = bytes(65536)
    await writer.commit()
    assert writer.written == len(data)
    await writer.aclose()
    assert names(bucket) == {"big.info", "big_0"}
    blob = bucket.get_blob("big_0")
    assert blob.size == len(data)
    assert blob.download_as_bytes() == data
    got = await store.get("big")
    assert got.offset == len(data)
    assert await read_all(store, got, 1000, len(data) - 7) == data[1000:-7]


async def test_interrupted_body_keeps_what_was_received(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    store = make_store(gcs_server, bucket_name, piece_size=256 * 1024)
    data = os.urandom(700 * 1024)
    info = await store.create(new_info("cut", 10 * len(data)))
    writer = await store.open_writer(info, staged=False)
    await writer.write(data)
    await writer.aclose()  # no commit: the client went away
    assert writer.written == len(data)
    assert (await store.get("cut")).offset == len(data)
    assert bucket.blob("cut_0").download_as_bytes() == data


async def test_unstaged_discard_of_a_streamed_chunk_leaves_nothing(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    store = make_store(gcs_server, bucket_name, piece_size=256 * 1024)
    info = await store.create(new_info("d", 10 * 1024 * 1024))
    writer = await store.open_writer(info, staged=False)
    await writer.write(os.urandom(600 * 1024))  # two pieces went to GCS already
    await writer.discard()
    await writer.aclose()
    assert writer.written == 0
    assert names(bucket) == {"d.info"}
    assert (await store.get("d")).offset == 0


# --- checksum (staged chunks) -------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 600 * 1024])  # one request; a resumable session
async def test_staged_chunk_discard_leaves_no_trace(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str, size: int
) -> None:
    store = make_store(gcs_server, bucket_name, piece_size=256 * 1024)
    info = await store.create(new_info("s", 10 * 1024 * 1024))
    await write_chunk(store, info, b"kept")
    writer = await store.open_writer(info, staged=True)
    await writer.write(os.urandom(size))
    assert (await store.get("s")).offset == 4  # not counted while staged
    await writer.discard()
    await writer.aclose()
    assert names(bucket) == {"s.info", "s_0"}
    assert (await store.get("s")).offset == 4


@pytest.mark.parametrize("size", [10, 600 * 1024])
async def test_staged_chunk_commit_becomes_the_next_chunk(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str, size: int
) -> None:
    store = make_store(gcs_server, bucket_name, piece_size=256 * 1024)
    data = os.urandom(size)
    info = await store.create(new_info("s", 4 + size))
    await write_chunk(store, info, b"kept")
    writer = await store.open_writer(info, staged=True)
    await writer.write(data)
    # Pieces of an unfinished resumable session are no object yet; nothing counts.
    assert names(bucket) == {"s.info", "s_0"}
    assert (await store.get("s")).offset == 4
    await writer.commit()
    await writer.aclose()
    assert writer.written == size
    assert names(bucket) == {"s.info", "s_0", "s_1"}
    assert bucket.blob("s_1").download_as_bytes() == data
    assert await store.list_ids() == ["s"]


# --- deferred length, concatenation ------------------------------------------------------------


async def test_declare_length_rewrites_the_info(gcs_store: GCSStore, bucket: Any) -> None:
    info = await gcs_store.create(new_info("dl", 0, size_is_deferred=True))
    await write_chunk(gcs_store, info, b"12345")
    await gcs_store.declare_length(info, 9)
    document = json.loads(bucket.blob("dl.info").download_as_bytes())
    assert document["Size"] == 9
    assert document["SizeIsDeferred"] is False
    got = await gcs_store.get("dl")
    assert (got.size, got.offset, got.size_is_deferred) == (9, 5, False)


async def test_concat_of_more_than_32_partials(
    gcs_server: Service, gcs_store: GCSStore, bucket: Any, bucket_name: str
) -> None:
    store = make_store(gcs_server, bucket_name, cls=CountingStore)
    assert isinstance(store, CountingStore)
    partials: list[UploadInfo] = []
    expected = b""
    for n in range(40):
        piece = f"[{n}]".encode()
        info = await store.create(new_info(f"p{n}", len(piece), is_partial=True))
        await write_chunk(store, info, piece)
        if n % 2:
            await store.finish(await store.get(info.id))  # finished and unfinished mixed
        partials.append(await store.get(info.id))
        expected += piece
    final = await store.create(
        new_info("final", 0, size_is_deferred=True, is_final=True, metadata={"a": "b"})
    )
    result = await store.concat(final, partials)
    assert result.size == result.offset == len(expected)
    assert all(count <= 32 for _, count in store.composes[-3:])
    assert [name for name, _ in store.composes[-3:]].count("final") == 1
    blob = bucket.get_blob("final")
    assert blob.download_as_bytes() == expected
    assert blob.metadata == {"a": "b"}
    assert not [name for name in names(bucket) if "_tmp_" in name]
    got = await store.get("final")
    assert (got.size, got.offset, got.size_is_deferred) == (len(expected), len(expected), False)
    assert await read_all(store, got, 0, got.size) == expected
    await store.finish(got)  # the handler may call it: nothing changes
    assert bucket.get_blob("final").download_as_bytes() == expected


# --- terminate, GET of unfinished uploads -------------------------------------------------------


async def test_terminate_removes_everything_and_only_that(gcs_store: GCSStore, bucket: Any) -> None:
    info = await gcs_store.create(new_info("t", 100))
    await write_chunk(gcs_store, info, b"one")
    await write_chunk(gcs_store, info, b"two")
    neighbour = await gcs_store.create(new_info("t-2", 100))  # shares the name prefix
    await write_chunk(gcs_store, neighbour, b"other")
    # Leftovers of a crash: a compose temporary and an abandoned staged chunk.
    bucket.blob("t_tmp_0_0").upload_from_string(b"tmp")
    bucket.blob(f".tusd-trio-staging/t.stage-{secrets.token_hex(16)}").upload_from_string(b"x")
    await gcs_store.terminate(info)
    assert names(bucket) == {"t-2.info", "t-2_0"}
    with pytest.raises(UploadNotFoundError):
        await gcs_store.get("t")
    await gcs_store.terminate(info)  # idempotent
    # A finished upload too.
    await gcs_store.finish(await gcs_store.get("t-2"))
    await gcs_store.terminate(neighbour)
    assert names(bucket) == set()


async def test_get_of_unfinished_upload_reads_the_chunks_in_order(
    gcs_store: GCSStore,
) -> None:
    parts = [b"alpha-", b"", b"beta-", os.urandom(3 * 1024 * 1024), b"-gamma"]
    data = b"".join(parts)
    info = await gcs_store.create(new_info("g", len(data) + 10))
    for part in parts:
        await write_chunk(gcs_store, info, part)
    got = await gcs_store.get("g")
    assert got.offset == len(data)
    for start, end in [(0, len(data)), (3, 9), (6, 11), (10, 20), (len(data) - 8, len(data))]:
        assert await read_all(gcs_store, got, start, end) == data[start:end]
    # Reading beyond what is there stops at the end of the data.
    assert await read_all(gcs_store, got, len(data) - 2, len(data) + 5) == data[-2:]


# --- faults --------------------------------------------------------------------------------------


async def test_gcs_going_away_mid_body_reports_nothing_written(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real outage: the emulator is stopped while a body streams into an unfinished
    resumable session.  No object was finalized, so nothing may count as written."""
    from contextlib import ExitStack

    from tests._support.services import running
    from tusd_trio.stores.gcs import session as _gcs_upload

    monkeypatch.setattr(_gcs_upload, "_ATTEMPTS", 2)
    monkeypatch.setattr(_gcs_upload, "_BASE_DELAY", 0.01)
    with ExitStack() as stack:
        server = stack.enter_context(running("gcs", tmp_path / "own-gcs"))
        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=server.endpoint),
        )
        client.create_bucket("outage")
        client.close()
        store = make_store(server, "outage", piece_size=256 * 1024)
        info = await store.create(new_info("o", 10 * 1024 * 1024))
        writer = await store.open_writer(info, staged=False)
        piece = os.urandom(256 * 1024 + 1)
        await writer.write(piece)  # first piece in flight
        await writer.write(piece)  # waits for it: the session exists on the server
        stack.close()  # the server is gone
        with pytest.raises(StoreError):
            for _ in range(3):
                await writer.write(piece)
            await writer.commit()
        if writer.written:  # the write failed: the handler commits what GCS has
            with pytest.raises(StoreError):
                await writer.commit()
        await writer.aclose()
        assert writer.written == 0
        await store.aclose()


async def test_read_goes_on_from_the_final_object_when_finish_removes_the_chunks(
    gcs_store: GCSStore, bucket: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="tusd_trio.gcsstore")
    parts = [os.urandom(2 * 1024 * 1024 + 500_000) for _ in range(3)]
    data = b"".join(parts)
    info = await gcs_store.create(new_info("race", len(data)))
    for part in parts:
        await write_chunk(gcs_store, info, part)
    got = await gcs_store.get("race")
    reader = gcs_store.read(got, 0, len(data))
    received = [await reader.__anext__()]
    await gcs_store.finish(got)  # composes, then deletes the chunks being read
    assert names(bucket) == {"race", "race.info"}
    received.extend([chunk async for chunk in reader])
    assert b"".join(received) == data
    assert any("vanished mid-read" in record.getMessage() for record in caplog.records)
