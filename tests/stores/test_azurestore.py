"""AzureStore specifics against a real Azurite: tusd's layout in both directions,
streaming blocks, staged chunks, tiers and access types, concatenation, cleanup."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import trio
from azure.storage.blob import BlobClient, ContainerClient
from azure.storage.blob._generated.models import BlockLookupList

from tests._support.services import AZURE_ACCOUNT, AZURE_KEY, Service, azure_connection_string
from tests._support.tus import TUSD_INFO_KEYS
from tusd_trio.protocol.errors import (
    MaxSizeExceededError,
    StoreError,
    UploadNotFoundError,
)
from tusd_trio.stores.azure import AzureStore
from tusd_trio.stores.config import AzureConfig, MiB

from ._helpers import new_info, read_all, write_chunk

#: tusd's block IDs, written out: base64 of the little-endian uint32 index.
ID0, ID1, ID2, ID3 = "AAAAAA==", "AQAAAA==", "AgAAAA==", "AwAAAA=="
SENTINEL = "////fw=="  # index math.MaxInt32


def tusd_block_id(index: int) -> str:
    return base64.b64encode(struct.pack("<I", index)).decode()


@pytest.fixture
def container(azure_server: Service, bucket_name: str) -> Iterator[ContainerClient]:
    """A raw SDK client on the test's container (which the store creates lazily)."""
    client = ContainerClient.from_connection_string(
        azure_connection_string(azure_server.endpoint), bucket_name
    )
    yield client
    client.close()


@pytest.fixture
def make_store(
    azure_server: Service, azure_env: dict[str, str], bucket_name: str
) -> Callable[..., AzureStore]:
    def make(block_size: int = 8 * MiB, **config: str) -> AzureStore:
        return AzureStore(
            AzureConfig(
                container=bucket_name,
                account=AZURE_ACCOUNT,
                key=AZURE_KEY,
                endpoint=azure_server.endpoint,
                **config,
            ),
            block_size=block_size,
        )

    return make


def blocks(blob: BlobClient) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(committed, uncommitted) as (base64 ID, size), straight from the REST API."""
    result = blob._client.block_blob.get_block_list(list_type="all")
    return (
        [(b.name, b.size) for b in result.committed_blocks or []],
        [(b.name, b.size) for b in result.uncommitted_blocks or []],
    )


def stage(blob: BlobClient, block: str, data: bytes) -> None:
    blob._client.block_blob.stage_block(
        block_id=block, content_length=len(data), body=io.BytesIO(data)
    )


def tusd_offset(blob: BlobClient) -> int:
    """tusd's GetOffset, restated: uncommitted sizes without the sentinel, or the
    committed sizes when nothing is uncommitted."""
    committed, uncommitted = blocks(blob)
    if not uncommitted:
        return sum(size for _, size in committed)
    return sum(size for name, size in uncommitted if name != SENTINEL)


def tusd_commit(blob: BlobClient) -> None:
    """tusd's FinishUpload, restated: commit the uncommitted data blocks by index."""
    _, uncommitted = blocks(blob)
    indexes = sorted(
        struct.unpack("<I", base64.b64decode(name))[0]
        for name, _ in uncommitted
        if name != SENTINEL
    )
    blob._client.block_blob.commit_block_list(
        blocks=BlockLookupList(latest=[tusd_block_id(i) for i in indexes])
    )


# --- layout -------------------------------------------------------------------------


async def test_layout_is_tusds(
    make_store: Callable[..., AzureStore], container: ContainerClient, bucket_name: str
) -> None:
    store = make_store(block_size=4096, object_prefix="uploads")
    info = await store.create(new_info("abc", 10_240, metadata={"filename": "a.txt"}))
    assert sorted(container.list_blob_names()) == ["uploads/abc.info"]  # data: blocks only
    doc = json.loads(container.download_blob("uploads/abc.info").readall())
    assert set(doc) >= set(TUSD_INFO_KEYS)
    assert set(doc) - set(TUSD_INFO_KEYS) <= {"CreatedAt"}
    assert doc["ID"] == "abc"
    assert doc["Size"] == 10_240
    assert doc["SizeIsDeferred"] is False
    assert doc["Offset"] == 0
    assert doc["MetaData"] == {"filename": "a.txt"}
    assert doc["Storage"] == {"Type": "azurestore", "Container": bucket_name, "Key": "uploads/abc"}
    data_blob = container.get_blob_client("uploads/abc")
    assert blocks(data_blob) == ([], [(SENTINEL, 1)])

    data = os.urandom(10_240)
    assert await write_chunk(store, info, data) == 10_240
    committed, uncommitted = blocks(data_blob)
    assert committed == []
    assert sorted(uncommitted) == sorted([(SENTINEL, 1), (ID0, 4096), (ID1, 4096), (ID2, 2048)])
    assert tusd_offset(data_blob) == (await store.get("abc")).offset == 10_240

    await store.finish(await store.get("abc"))
    assert blocks(data_blob) == ([(ID0, 4096), (ID1, 4096), (ID2, 2048)], [])
    assert container.download_blob("uploads/abc").readall() == data
    got = await store.get("abc")
    assert got.offset == got.size == 10_240
    assert sorted(await store.list_ids()) == ["abc"]
    await store.aclose()


async def test_upload_written_the_tusd_way_is_resumed_and_finished(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(block_size=64)
    await store.check_writable()  # creates the container
    # What tusd leaves behind: its .info (Go's field names, no CreatedAt), the
    # sentinel and 130 one-PATCH blocks.  Indices from 128 on are not valid UTF-8
    # once decoded, and Azure lists block IDs alphabetically, not by index.
    upload_id = "0123456789abcdef0123456789abcdef"
    doc = {
        "ID": upload_id,
        "Size": 1000,
        "SizeIsDeferred": False,
        "Offset": 0,
        "MetaData": {"filename": "x.bin"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {"Type": "azurestore", "Container": "c", "Key": upload_id},
    }
    container.upload_blob(upload_id + ".info", json.dumps(doc).encode())
    data_blob = container.get_blob_client(upload_id)
    stage(data_blob, SENTINEL, b"\0")
    data = os.urandom(1000)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: stage(data_blob, tusd_block_id(i), data[i * 5 : i * 5 + 5]), range(130)
            )
        )

    got = await store.get(upload_id)
    assert (got.offset, got.size, got.metadata) == (650, 1000, {"filename": "x.bin"})
    assert await write_chunk(store, got, data[650:700]) == 50  # < one block: staged on commit
    got = await store.get(upload_id)
    assert got.offset == 700
    assert await write_chunk(store, got, data[700:], staged=True) == 300
    got = await store.get(upload_id)
    assert got.offset == tusd_offset(data_blob) == 1000
    await store.finish(got)
    committed, uncommitted = blocks(data_blob)
    assert uncommitted == []
    # tusd's 130 blocks, then ours continuing at index 130, in index order.
    assert [name for name, _ in committed] == [tusd_block_id(i) for i in range(len(committed))]
    assert len(committed) == 130 + 1 + 5
    assert container.download_blob(upload_id).readall() == data
    got = await store.get(upload_id)
    assert await read_all(store, got, 0, 1000) == data


async def test_upload_written_by_us_is_finished_the_tusd_way(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(block_size=1000)
    info = await store.create(new_info("ours", 5000))
    data = os.urandom(5000)
    await write_chunk(store, info, data[:2500])
    await write_chunk(store, await store.get("ours"), data[2500:], staged=True)
    blob = container.get_blob_client("ours")
    assert tusd_offset(blob) == 5000
    tusd_commit(blob)
    assert container.download_blob("ours").readall() == data
    got = await store.get("ours")
    assert got.offset == got.size == 5000
    await store.finish(got)  # committed already: nothing changes
    assert container.download_blob("ours").readall() == data


# --- writing ---------------------------------------------------------------------


async def test_several_patches_of_mixed_sizes_are_byte_exact(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    block = 64 * 1024
    store = make_store(block_size=block)
    patches = [1, block - 1, block, block + 1, 200_000, 3, 0, 2 * block + 5, 777_777]
    data = os.urandom(sum(patches))
    info = await store.create(new_info("mix", len(data)))
    buffer = bytearray(256 * 1024)  # reused between chunks, like the HTTP layer's
    offset = 0
    for number, size in enumerate(patches):
        info = await store.get("mix")
        assert info.offset == offset
        writer = await store.open_writer(info, staged=number % 3 == 2)
        sent = 0
        step = 64 * 1024 + 123 * number
        while sent < size:
            n = min(step, size - sent)
            buffer[:n] = data[offset + sent : offset + sent + n]
            await writer.write(memoryview(buffer)[:n])
            buffer[:n] = b"\xee" * n  # the caller reuses its buffer
            sent += n
        await writer.commit()
        assert writer.written == size
        await writer.aclose()
        offset += size
    info = await store.get("mix")
    assert info.offset == len(data)
    await store.finish(info)
    assert container.download_blob("mix").readall() == data
    assert await read_all(store, await store.get("mix"), 0, len(data)) == data


async def test_full_blocks_are_staged_while_the_body_streams(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(block_size=4096)
    info = await store.create(new_info("s", 4 * 4096))
    writer = await store.open_writer(info, staged=False)
    await writer.write(os.urandom(3 * 4096 + 10))
    # Two blocks at most in flight: the third could only start once the first was
    # staged.  Nothing is committed and no whole-body buffer is needed.
    _, uncommitted = blocks(container.get_blob_client("s"))
    assert (ID0, 4096) in uncommitted
    await writer.commit()
    await writer.aclose()
    assert writer.written == 3 * 4096 + 10
    assert sorted(blocks(container.get_blob_client("s"))[1]) == sorted(
        [(SENTINEL, 1), (ID0, 4096), (ID1, 4096), (ID2, 4096), (ID3, 10)]
    )


async def test_writer_closed_without_commit_keeps_what_was_received(
    make_store: Callable[..., AzureStore],
) -> None:
    # The handler always commits; an aborted request closing the writer keeps its
    # bytes all the same (unstaged), including the partly filled last block.
    store = make_store(block_size=4096)
    info = await store.create(new_info("c", 100_000))
    writer = await store.open_writer(info, staged=False)
    await writer.write(b"x" * 5000)
    await writer.aclose()
    assert writer.written == 5000
    assert (await store.get("c")).offset == 5000


async def test_staged_chunk_is_invisible_until_commit_and_discard_leaves_no_trace(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(block_size=256 * 1024)
    info = await store.create(new_info("st", 10 * MiB))
    await write_chunk(store, info, b"head")
    blob = container.get_blob_client("st")
    before = sorted(blocks(blob)[1])
    info_before = container.get_blob_client("st.info").download_blob().readall()
    writer = await store.open_writer(await store.get("st"), staged=True)
    chunk = os.urandom(1024 * 1024 + 4567)  # beyond the in-memory spool
    for start in range(0, len(chunk), 100_000):
        await writer.write(chunk[start : start + 100_000])
    assert writer.written == len(chunk)
    assert sorted(blocks(blob)[1]) == before  # nothing staged yet
    assert (await store.get("st")).offset == 4
    await writer.discard()
    await writer.aclose()
    assert writer.written == 0
    assert sorted(blocks(blob)[1]) == before
    assert container.get_blob_client("st.info").download_blob().readall() == info_before
    assert sorted(container.list_blob_names()) == ["st.info"]
    # The same chunk committed: in blocks of the configured size, after "head".
    assert await write_chunk(store, await store.get("st"), chunk, staged=True) == len(chunk)
    sizes = sorted(size for name, size in blocks(blob)[1] if name != SENTINEL)
    assert sizes == sorted([4, 256 * 1024, 256 * 1024, 256 * 1024, 256 * 1024, 4567])
    got = await store.get("st")
    assert got.offset == 4 + len(chunk)
    await store.declare_length(got, got.offset)
    await store.finish(await store.get("st"))
    assert container.download_blob("st").readall() == b"head" + chunk


async def test_patch_marks_the_upload_modified(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store()
    info = await store.create(new_info("m", 10))
    created = await store.get("m")
    assert created.created > 0 and created.modified > 0
    assert (
        "tusdtriomodified" not in container.get_blob_client("m.info").get_blob_properties().metadata
    )
    await write_chunk(store, info, b"abc")
    assert "tusdtriomodified" in container.get_blob_client("m.info").get_blob_properties().metadata
    assert (await store.get("m")).modified >= created.modified


# --- container, tier ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("access", "expected"), [("", None), ("blob", "blob"), ("container", "container")]
)
async def test_container_is_created_on_first_use_with_its_access_type(
    make_store: Callable[..., AzureStore],
    container: ContainerClient,
    access: str,
    expected: str | None,
) -> None:
    store = make_store(container_access_type=access)
    assert not container.exists()  # the constructor does no I/O
    await store.create(new_info("x", 1))
    assert container.get_container_properties().public_access == expected
    await store.aclose()
    # An existing container is used as it is.
    again = make_store(container_access_type="container" if expected != "container" else "")
    await again.check_writable()
    assert (await again.get("x")).size == 1
    assert container.get_container_properties().public_access == expected


async def test_access_tier_is_applied_on_finish(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(blob_access_tier="cool")
    info = await store.create(new_info("t", 3))
    await write_chunk(store, info, b"abc")
    await store.finish(await store.get("t"))
    assert container.get_blob_client("t").get_blob_properties().blob_tier == "Cool"
    plain = make_store()
    info = await plain.create(new_info("u", 3))
    await write_chunk(plain, info, b"abc")
    await plain.finish(await plain.get("u"))
    assert container.get_blob_client("u").get_blob_properties().blob_tier != "Cool"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="access type"):
        AzureStore(AzureConfig(container="c", account="a", key="k", container_access_type="x"))
    with pytest.raises(ValueError, match="tier"):
        AzureStore(AzureConfig(container="c", account="a", key="k", blob_access_tier="premium"))
    with pytest.raises(ValueError, match="AZURE_STORAGE_ACCOUNT"):
        AzureStore(AzureConfig(container="c", key="k"))
    store = AzureStore(AzureConfig(container="c", account="acc", key=AZURE_KEY))
    assert store.endpoint == "https://acc.blob.core.windows.net"


async def test_wrong_key_is_a_store_error_not_a_missing_upload(
    azure_server: Service, bucket_name: str
) -> None:
    wrong = base64.b64encode(b"not the key" * 4).decode()
    store = AzureStore(
        AzureConfig(
            container=bucket_name, account=AZURE_ACCOUNT, key=wrong, endpoint=azure_server.endpoint
        )
    )
    with pytest.raises(StoreError, match="access denied") as caught:
        await store.check_writable()
    assert "Traceback" not in caught.value.message
    await store.aclose()


async def test_unreadable_info_is_not_found(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store()
    await store.check_writable()
    container.upload_blob("broken.info", b"{not json")
    with pytest.raises(UploadNotFoundError):
        await store.get("broken")


async def test_sizes_beyond_azures_limits_are_refused(
    make_store: Callable[..., AzureStore],
) -> None:
    store = make_store()
    assert store.max_upload_size == 45_000 * 100 * MiB
    with pytest.raises(MaxSizeExceededError):
        await store.create(new_info("huge", store.max_upload_size + 1))
    info = await store.create(new_info("d", 0, size_is_deferred=True))
    with pytest.raises(MaxSizeExceededError):
        await store.declare_length(info, store.max_upload_size + 1)
    # Large known sizes get larger blocks, within Azure's 50,000 blocks.
    assert store.block_size_for(new_info("a", 10 * MiB)) == 8 * MiB
    big = store.block_size_for(new_info("b", 1024 * 1024 * MiB))  # 1 TiB
    assert 8 * MiB < big <= 100 * MiB and big * 45_000 >= 1024 * 1024 * MiB
    assert store.block_size_for(new_info("c", store.max_upload_size)) == 100 * MiB


# --- concatenation, termination, listing -------------------------------------------


async def test_concat_builds_a_committed_final_blob(
    make_store: Callable[..., AzureStore],
    container: ContainerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store(block_size=4096, blob_access_tier="hot", object_prefix="p/")
    pieces = [os.urandom(10_000), b"", os.urandom(4096), os.urandom(1)]
    partials = []
    for index, piece in enumerate(pieces):
        info = await store.create(new_info(f"part{index}", len(piece), is_partial=True))
        await write_chunk(store, info, piece)
        await store.finish(await store.get(info.id))
        partials.append(await store.get(info.id))
    final = await store.create(
        new_info("final", 0, size_is_deferred=True, is_final=True, partial_uploads=("a",))
    )
    with caplog.at_level(logging.WARNING, logger="tusd_trio.azurestore"):
        result = await store.concat(final, partials)
    # Azurite has no Put Block From URL: the bytes were copied through us instead.
    assert "Put Block From URL" in caplog.text
    expected = b"".join(pieces)
    assert (result.offset, result.size, result.size_is_deferred) == (
        len(expected),
        len(expected),
        False,
    )
    final_blob = container.get_blob_client("p/final")
    committed, uncommitted = blocks(final_blob)
    assert uncommitted == []
    # 10,000 bytes in 4 KiB blocks: 3; then 0, 1 and 1.
    assert [name for name, _ in committed] == [tusd_block_id(i) for i in range(5)]
    assert final_blob.download_blob().readall() == expected
    assert final_blob.get_blob_properties().blob_tier == "Hot"
    doc = json.loads(container.download_blob("p/final.info").readall())
    assert (doc["Size"], doc["SizeIsDeferred"], doc["IsFinal"]) == (len(expected), False, True)
    got = await store.get("final")
    assert got.offset == got.size == len(expected)
    # A second run (e.g. after a crash before the info was written) gives the same.
    await store.concat(final, partials)
    assert final_blob.download_blob().readall() == expected
    for info, piece in zip(partials, pieces, strict=True):
        assert container.download_blob(f"p/{info.id}").readall() == piece


async def test_concat_refuses_an_unfinished_partial(make_store: Callable[..., AzureStore]) -> None:
    store = make_store()
    partial = await store.create(new_info("a", 3, is_partial=True))
    await write_chunk(store, partial, b"abc")  # not finished: no committed blob
    final = await store.create(new_info("f", 0, size_is_deferred=True, is_final=True))
    with pytest.raises(UploadNotFoundError):
        await store.concat(final, [await store.get("a")])


async def test_terminate_removes_everything(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(block_size=4096)
    unfinished = await store.create(new_info("u", 100_000))
    await write_chunk(store, unfinished, os.urandom(9000))
    finished = await store.create(new_info("f", 3))
    await write_chunk(store, finished, b"abc")
    await store.finish(await store.get("f"))
    assert sorted(container.list_blob_names()) == ["f", "f.info", "u.info"]
    await store.terminate(unfinished)
    await store.terminate(finished)
    await store.terminate(finished)  # idempotent
    assert list(container.list_blob_names()) == []
    # No uncommitted block of the old upload survives into a new one with its ID.
    with pytest.raises(Exception, match="BlobNotFound"):
        blocks(container.get_blob_client("u"))
    again = await store.create(new_info("u", 10))
    assert blocks(container.get_blob_client("u")) == ([], [(SENTINEL, 1)])
    assert (await store.get(again.id)).offset == 0


async def test_create_refuses_an_existing_id(make_store: Callable[..., AzureStore]) -> None:
    store = make_store()
    await store.create(new_info("dup", 1))
    with pytest.raises(StoreError, match="exists already"):
        await store.create(new_info("dup", 1))


async def test_list_ids_sees_only_info_blobs_under_the_prefix(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(object_prefix="a/b")
    await store.create(new_info("one", 1))
    await store.create(new_info("x/two", 1))
    container.upload_blob("other.info", b"{}")
    container.upload_blob("a/b/stray", b"data")
    assert sorted(await store.list_ids()) == ["one", "x/two"]


async def test_failed_staging_reports_only_the_staged_bytes(
    make_store: Callable[..., AzureStore], container: ContainerClient
) -> None:
    store = make_store(block_size=4096)
    info = await store.create(new_info("f", 100_000))
    blob = container.get_blob_client("f")
    writer = await store.open_writer(info, staged=False)
    await writer.write(b"a" * 4096)  # one full block: staged in the background
    while (ID0, 4096) not in blocks(blob)[1]:
        await trio.sleep(0.01)
    container.delete_container()  # a real fault: every later call fails
    await writer.write(b"b" * 100)
    with pytest.raises(StoreError, match="container does not exist") as caught:
        await writer.commit()
    await writer.aclose()
    assert writer.written == 4096  # the bytes Azure took, not the 4196 received
    assert "\n" not in caught.value.message
    with pytest.raises(StoreError, match="container does not exist"):
        await store.get("f")  # not a 404: the configuration is wrong
