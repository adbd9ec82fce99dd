"""The Store / ChunkWriter contract, run against every store."""

from __future__ import annotations

import os
import tempfile

import pytest
import trio
from hypothesis import given, strategies as st

from tests._support.services import everything_stored
from tusd_trio.protocol.errors import UploadNotFoundError
from tusd_trio.stores.base import Store
from tusd_trio.stores.file import FileStore
from tusd_trio.stores.memory import MemoryStore

from ._helpers import new_info, read_all, readable, write_chunk

#: Stores whose unstaged writes reach the upload before ``commit`` (object stores
#: buffer up to a part or block and settle on ``commit``/``aclose``).
IMMEDIATE = {"memorystore", "filestore"}


async def test_create_then_get_has_offset_zero(store: Store) -> None:
    info = new_info("abc", 11, metadata={"filename": "a.txt"})
    created = await store.create(info)
    assert created.offset == 0
    assert created.storage is not None and created.storage["Type"] == store.name
    assert created.id == "abc" or created.id.startswith("abc+")  # S3 appends "+<multipart id>"
    got = await store.get(created.id)
    assert got.id == created.id
    assert got.offset == 0
    assert got.size == 11
    assert got.metadata == {"filename": "a.txt"}
    assert not got.size_is_deferred


async def test_get_unknown_upload_raises_not_found(store: Store) -> None:
    with pytest.raises(UploadNotFoundError):
        await store.get("nope")


async def test_open_writer_for_unknown_upload_raises_not_found(store: Store) -> None:
    for staged in (False, True):
        with pytest.raises(UploadNotFoundError):
            await store.open_writer(new_info("nope", 5), staged=staged)


async def test_unstaged_write_and_commit_advances_offset(store: Store) -> None:
    info = await store.create(new_info("u", 7))
    writer = await store.open_writer(info, staged=False)
    await writer.write(b"hello")
    await writer.write(b"")
    await writer.write(memoryview(b" w"))
    assert writer.written == 7
    await writer.commit()
    await writer.aclose()
    got = await store.get(info.id)
    assert got.offset == 7
    assert await read_all(store, await readable(store, got), 0, 7) == b"hello w"


async def test_unstaged_write_is_visible_before_commit(store: Store) -> None:
    # Unstaged bytes go straight to the upload (object stores: at the latest when the
    # writer is closed, even without commit): an interrupted body keeps them.
    info = await store.create(new_info("u", 10))
    writer = await store.open_writer(info, staged=False)
    await writer.write(b"abc")
    if store.name in IMMEDIATE:
        assert (await store.get(info.id)).offset == 3
    await writer.aclose()
    assert (await store.get(info.id)).offset == 3


async def test_staged_write_then_discard_leaves_offset_unchanged(store: Store) -> None:
    info = await store.create(new_info("s", 100))
    await write_chunk(store, info, b"first")
    writer = await store.open_writer(info, staged=True)
    await writer.write(b"unverified")
    assert writer.written == 10
    assert (await store.get(info.id)).offset == 5  # not visible while staged
    await writer.discard()
    assert writer.written == 0
    await writer.aclose()
    got = await store.get(info.id)
    assert got.offset == 5
    if store.capabilities.serve_incomplete:
        assert await read_all(store, got, 0, 5) == b"first"


async def test_staged_write_then_close_without_commit_drops_it(store: Store) -> None:
    info = await store.create(new_info("s", 100))
    writer = await store.open_writer(info, staged=True)
    await writer.write(b"xyz")
    await writer.aclose()
    assert (await store.get(info.id)).offset == 0


async def test_staged_write_then_commit_appends(store: Store) -> None:
    info = await store.create(new_info("s", 8))
    await write_chunk(store, info, b"abc")
    assert await write_chunk(store, info, b"defgh", staged=True) == 5
    got = await store.get(info.id)
    assert got.offset == 8
    assert await read_all(store, await readable(store, got), 0, 8) == b"abcdefgh"


async def test_staged_commit_of_nothing_changes_nothing(store: Store) -> None:
    info = await store.create(new_info("s", 100))
    await write_chunk(store, info, b"abc")
    assert await write_chunk(store, info, b"", staged=True) == 0
    assert (await store.get(info.id)).offset == 3


async def test_unstaged_discard_truncates_back_to_writer_start(store: Store) -> None:
    info = await store.create(new_info("d", 100))
    await write_chunk(store, info, b"keep")
    writer = await store.open_writer(info, staged=False)
    await writer.write(b"drop me")
    if store.name in IMMEDIATE:
        assert (await store.get(info.id)).offset == 11
    await writer.discard()
    assert writer.written == 0
    await writer.aclose()
    got = await store.get(info.id)
    assert got.offset == 4
    if store.capabilities.serve_incomplete:
        assert await read_all(store, got, 0, 4) == b"keep"


async def test_declare_length(store: Store) -> None:
    info = await store.create(new_info("dl", 0, size_is_deferred=True))
    assert (await store.get(info.id)).size_is_deferred
    await write_chunk(store, info, b"12345")
    returned = await store.declare_length(info, 42)
    assert returned.size == 42
    assert not returned.size_is_deferred
    got = await store.get(info.id)
    assert got.size == 42
    assert not got.size_is_deferred
    assert got.offset == 5


async def test_declare_length_of_unknown_upload_raises_not_found(store: Store) -> None:
    with pytest.raises(UploadNotFoundError):
        await store.declare_length(new_info("nope", 0, size_is_deferred=True), 3)


async def test_finish_keeps_the_upload(store: Store) -> None:
    info = await store.create(new_info("f", 3))
    await write_chunk(store, info, b"abc")
    await store.finish(await store.get(info.id))
    got = await store.get(info.id)
    assert got.offset == 3
    assert got.is_complete
    assert await read_all(store, got, 0, 3) == b"abc"


async def test_terminate_then_get_raises_not_found(store: Store) -> None:
    info = await store.create(new_info("t", 10))
    await write_chunk(store, info, b"data")
    await store.terminate(info)
    with pytest.raises(UploadNotFoundError):
        await store.get(info.id)
    assert info.id not in await store.list_ids()
    await store.terminate(info)  # a second time is not an error


async def test_terminated_upload_cannot_be_written(store: Store) -> None:
    info = await store.create(new_info("t", 10))
    await store.terminate(info)
    for staged in (False, True):
        with pytest.raises(UploadNotFoundError):
            await store.open_writer(info, staged=staged)
    with pytest.raises(UploadNotFoundError):
        await store.get(info.id)


async def test_id_can_be_reused_after_terminate(store: Store) -> None:
    info = await store.create(new_info("r", 10))
    await write_chunk(store, info, b"old")
    await store.terminate(info)
    info = await store.create(new_info("r", 10))
    assert (await store.get(info.id)).offset == 0


async def test_concat_partials_in_order_byte_exact(store: Store) -> None:
    pieces = [bytes(range(256)) * 3, b"", b"\x00middle\xff", os.urandom(70_000)]
    partials = []
    for index, piece in enumerate(pieces):
        info = await store.create(new_info(f"p{index}", len(piece), is_partial=True))
        await write_chunk(store, info, piece)
        await store.finish(await store.get(info.id))  # as the handler does
        partials.append(await store.get(info.id))
    final = await store.create(
        new_info("final", 0, size_is_deferred=True, is_final=True, partial_uploads=("p3", "p0"))
    )
    # Order is the order of the list given, not creation order.
    ordered = [partials[3], partials[1], partials[0], partials[2]]
    result = await store.concat(final, ordered)
    expected = pieces[3] + pieces[1] + pieces[0] + pieces[2]
    assert result.offset == result.size == len(expected)
    assert not result.size_is_deferred
    got = await store.get(final.id)
    assert got.offset == got.size == len(expected)
    assert not got.size_is_deferred
    assert await read_all(store, got, 0, got.size) == expected
    # The partials are untouched.
    for info, piece in zip(partials, pieces, strict=True):
        assert await read_all(store, await store.get(info.id), 0, len(piece)) == piece


async def test_concat_with_known_final_size(store: Store) -> None:
    a = await store.create(new_info("a", 3, is_partial=True))
    b = await store.create(new_info("b", 2, is_partial=True))
    await write_chunk(store, a, b"aaa")
    await write_chunk(store, b, b"bb")
    a = await readable(store, await store.get(a.id))
    b = await readable(store, await store.get(b.id))
    final = await store.create(new_info("final", 5, is_final=True))
    result = await store.concat(final, [a, b])
    assert result.offset == result.size == 5
    got = await store.get(final.id)
    assert (got.size, got.offset) == (5, 5)
    assert await read_all(store, got, 0, 5) == b"aaabb"


async def test_finish_twice_is_harmless(store: Store) -> None:
    info = await store.create(new_info("f2", 4))
    await write_chunk(store, info, b"abcd")
    await store.finish(await store.get(info.id))
    await store.finish(await store.get(info.id))
    got = await store.get(info.id)
    assert got.offset == got.size == 4
    assert await read_all(store, got, 0, 4) == b"abcd"


async def test_empty_upload_finishes_and_reads_empty(store: Store) -> None:
    info = await store.create(new_info("e", 0))
    await store.finish(await store.get(info.id))
    got = await store.get(info.id)
    assert got.offset == got.size == 0
    assert got.is_complete
    assert await read_all(store, got, 0, 0) == b""


async def test_terminated_empty_upload_leaves_nothing(
    store: Store, request: pytest.FixtureRequest
) -> None:
    """A zero-length upload created, finished, terminated: nothing is left in the store
    (Azure kept the empty data blob, which has no block to notice it by)."""
    info = await store.create(new_info("empty", 0))
    await store.finish(await store.get(info.id))
    assert await everything_stored(store, request) != []
    await store.terminate(await store.get(info.id))
    assert await everything_stored(store, request) == []


async def test_concat_with_unknown_partial_raises_not_found(store: Store) -> None:
    final = await store.create(new_info("final", 0, size_is_deferred=True, is_final=True))
    with pytest.raises(UploadNotFoundError):
        await store.concat(final, [new_info("ghost", 3, is_partial=True)])


DATA = bytes(range(256)) * 8  # 2 KiB, every byte value


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, len(DATA)), (0, 0), (5, 5), (0, 1), (100, 1000), (len(DATA) - 1, len(DATA)), (7, 8)],
)
async def test_read_ranges(store: Store, start: int, end: int) -> None:
    info = await store.create(new_info("r", len(DATA)))
    await write_chunk(store, info, DATA)
    got = await readable(store, await store.get(info.id))
    assert await read_all(store, got, start, end) == DATA[start:end]


async def test_read_large_range_spans_several_chunks(store: Store) -> None:
    data = os.urandom(2 * 1024 * 1024 + 123)
    info = await store.create(new_info("big", len(data)))
    await write_chunk(store, info, data)
    got = await readable(store, await store.get(info.id))
    chunks = [chunk async for chunk in store.read(got, 1, len(data))]
    assert len(chunks) > 1
    assert b"".join(chunks) == data[1:]


async def test_read_of_unknown_upload_raises_not_found(store: Store) -> None:
    with pytest.raises(UploadNotFoundError):
        await read_all(store, new_info("nope", 3), 0, 3)


async def test_list_ids(store: Store) -> None:
    assert await store.list_ids() == []
    ids = [
        (await store.create(new_info(upload_id, 1))).id for upload_id in ("one", "two", "dir/three")
    ]
    assert sorted(await store.list_ids()) == sorted(ids)
    await store.terminate(await store.get(ids[0]))
    assert sorted(await store.list_ids()) == sorted(ids[1:])


async def test_check_writable(store: Store) -> None:
    await store.check_writable()
    await store.aclose()


@given(
    data=st.binary(max_size=3000),
    cut=st.tuples(st.integers(0, 3200), st.integers(0, 3200)),
    chunks=st.integers(1, 4),
)
def test_read_matches_slice_for_any_range(data: bytes, cut: tuple[int, int], chunks: int) -> None:
    """Property: after any chunking, read(start, end) is data[start:end] in both stores."""
    start, end = sorted(cut)
    end = min(end, len(data))
    start = min(start, end)

    async def check(store: Store) -> None:
        info = await store.create(new_info("h", len(data)))
        step = max(1, len(data) // chunks)
        for offset in range(0, len(data), step):
            await write_chunk(store, info, data[offset : offset + step], staged=offset % 2 == 1)
        got = await store.get("h")
        assert got.offset == len(data)
        assert await read_all(store, got, start, end) == data[start:end]

    trio.run(check, MemoryStore())
    with tempfile.TemporaryDirectory() as directory:
        trio.run(check, FileStore(directory))
