"""FileStore specifics: tusd's on-disk layout, permissions, real disk faults."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import time
from pathlib import Path

import pytest

from tests._support.tus import TUSD_INFO_KEYS
from tusd_trio.protocol.errors import InsufficientStorageError, StoreError, UploadNotFoundError
from tusd_trio.stores.file import FileStore

from ._helpers import new_info, read_all, write_chunk


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture
def store(directory: Path) -> FileStore:
    return FileStore(directory)


def read_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_bytes())
    assert isinstance(data, dict)
    return data


# --- layout -----------------------------------------------------------------


async def test_layout_is_tusds(store: FileStore, directory: Path) -> None:
    await store.create(new_info("abc", 11, metadata={"filename": "a.txt"}))
    data_file = directory / "abc"
    info_file = directory / "abc.info"
    assert data_file.is_file() and data_file.stat().st_size == 0
    doc = read_json(info_file)
    assert set(doc) >= set(TUSD_INFO_KEYS)
    assert set(doc) - set(TUSD_INFO_KEYS) <= {"CreatedAt"}  # an extra field tusd ignores
    assert doc["ID"] == "abc"
    assert doc["Size"] == 11
    assert doc["SizeIsDeferred"] is False
    assert doc["Offset"] == 0
    assert doc["MetaData"] == {"filename": "a.txt"}
    assert doc["IsPartial"] is False
    assert doc["IsFinal"] is False
    assert doc["PartialUploads"] is None
    assert doc["Storage"] == {
        "Type": "filestore",
        "Path": str(data_file),
        "InfoPath": str(info_file),
    }
    assert sorted(os.listdir(directory)) == ["abc", "abc.info"]


async def test_data_file_holds_raw_bytes(store: FileStore, directory: Path) -> None:
    info = await store.create(new_info("raw", 6))
    await write_chunk(store, info, b"\x00\x01ab")
    await write_chunk(store, info, b"cd", staged=True)
    assert (directory / "raw").read_bytes() == b"\x00\x01abcd"
    assert sorted(os.listdir(directory)) == ["raw", "raw.info"]  # no .part left behind


async def test_final_upload_info_lists_partials(store: FileStore, directory: Path) -> None:
    await store.create(
        new_info("fin", 0, size_is_deferred=True, is_final=True, partial_uploads=("a", "b"))
    )
    doc = read_json(directory / "fin.info")
    assert doc["IsFinal"] is True
    assert doc["SizeIsDeferred"] is True
    assert doc["PartialUploads"] == ["a", "b"]


async def test_declare_length_rewrites_info(store: FileStore, directory: Path) -> None:
    info = await store.create(new_info("dl", 0, size_is_deferred=True))
    await store.declare_length(info, 99)
    doc = read_json(directory / "dl.info")
    assert doc["Size"] == 99
    assert doc["SizeIsDeferred"] is False
    assert not list(directory.glob("*.tmp"))


async def test_concat_into_deferred_final_rewrites_info(store: FileStore, directory: Path) -> None:
    part = await store.create(new_info("p", 4, is_partial=True))
    await write_chunk(store, part, b"wxyz")
    final = await store.create(new_info("f", 0, size_is_deferred=True, is_final=True))
    await store.concat(final, [await store.get("p")])
    doc = read_json(directory / "f.info")
    assert doc["Size"] == 4
    assert doc["SizeIsDeferred"] is False
    assert (directory / "f").read_bytes() == b"wxyz"


async def test_concat_of_partial_shorter_than_its_size_fails(store: FileStore) -> None:
    part = await store.create(new_info("p", 10, is_partial=True))
    await write_chunk(store, part, b"short")
    final = await store.create(new_info("f", 10, is_final=True))
    with pytest.raises(StoreError, match="shorter"):
        await store.concat(final, [await store.get("p")])


async def test_ids_with_slash_make_subdirectories(store: FileStore, directory: Path) -> None:
    info = await store.create(new_info("tenant/2024/abc", 3))
    await write_chunk(store, info, b"xyz")
    assert (directory / "tenant" / "2024").is_dir()
    assert (directory / "tenant" / "2024" / "abc").read_bytes() == b"xyz"
    doc = read_json(directory / "tenant" / "2024" / "abc.info")
    assert doc["ID"] == "tenant/2024/abc"
    assert (await store.get("tenant/2024/abc")).offset == 3
    assert await store.list_ids() == ["tenant/2024/abc"]


async def test_create_existing_id_fails(store: FileStore) -> None:
    await store.create(new_info("dup", 1))
    with pytest.raises(StoreError, match="exists"):
        await store.create(new_info("dup", 1))


# --- files written by tusd ---------------------------------------------------------


def write_tusd_upload(
    directory: Path, upload_id: str, data: bytes, *, storage_path: str | None = None, **doc: object
) -> None:
    """Lay down an upload exactly as tusd's filestore writes it."""
    path = directory / upload_id
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "ID": upload_id,
        "Size": 100,
        "SizeIsDeferred": False,
        "Offset": 0,  # tusd never updates this: stale by design
        "MetaData": {"filename": "from-tusd.bin", "filetype": "application/octet-stream"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": {
            "Type": "filestore",
            "Path": storage_path or str(path),
            "InfoPath": str(path) + ".info",
        },
    }
    info.update(doc)
    Path(str(path) + ".info").write_text(json.dumps(info))
    (Path(storage_path) if storage_path else path).write_bytes(data)


async def test_tusd_written_upload_is_read_with_offset_from_data_size(
    store: FileStore, directory: Path
) -> None:
    write_tusd_upload(directory, "0123456789abcdef0123456789abcdef", b"x" * 37)
    info = await store.get("0123456789abcdef0123456789abcdef")
    assert info.offset == 37  # the data file size, not the stale Offset of 0
    assert info.size == 100
    assert info.metadata == {"filename": "from-tusd.bin", "filetype": "application/octet-stream"}
    assert info.created > 0  # taken from the .info file's mtime
    # ...and it can be resumed.
    await write_chunk(store, info, b"y" * 63)
    done = await store.get(info.id)
    assert done.offset == 100 and done.is_complete
    assert await store.list_ids() == [info.id]


async def test_tusd_info_keys_are_case_insensitive(store: FileStore, directory: Path) -> None:
    (directory / "lc.info").write_text(json.dumps({"id": "lc", "size": 4, "metadata": {}}))
    (directory / "lc").write_bytes(b"ab")
    info = await store.get("lc")
    assert (info.size, info.offset) == (4, 2)


async def test_moved_directory_falls_back_to_default_path(
    store: FileStore, directory: Path
) -> None:
    # The .info names a data path that no longer exists (the directory moved).
    write_tusd_upload(directory, "moved", b"abc", Storage={"Type": "filestore", "Path": "/gone/x"})
    info = await store.get("moved")
    assert info.offset == 3
    assert await read_all(store, info, 0, 3) == b"abc"


async def test_custom_storage_path_is_honoured(
    store: FileStore, directory: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.bin"
    write_tusd_upload(directory, "reloc", b"hello", storage_path=str(elsewhere))
    assert not (directory / "reloc").exists()
    info = await store.get("reloc")
    assert info.offset == 5
    await write_chunk(store, info, b"!")
    assert elsewhere.read_bytes() == b"hello!"
    await store.terminate(info)
    assert not elsewhere.exists()
    assert not (directory / "reloc.info").exists()


async def test_unreadable_info_is_not_found(store: FileStore, directory: Path) -> None:
    (directory / "bad.info").write_text("{not json")
    (directory / "bad").write_bytes(b"")
    with pytest.raises(UploadNotFoundError):
        await store.get("bad")


async def test_info_naming_another_id_is_not_found(store: FileStore, directory: Path) -> None:
    write_tusd_upload(directory, "mine", b"")
    os.rename(directory / "mine.info", directory / "other.info")
    os.rename(directory / "mine", directory / "other")
    with pytest.raises(UploadNotFoundError):
        await store.get("other")


async def test_info_that_is_a_directory_is_not_found(store: FileStore, directory: Path) -> None:
    (directory / "weird.info").mkdir()
    with pytest.raises(UploadNotFoundError):
        await store.get("weird")


async def test_missing_data_file_is_not_found(store: FileStore, directory: Path) -> None:
    info = await store.create(new_info("gone", 5))
    os.unlink(directory / "gone")
    with pytest.raises(UploadNotFoundError):
        await store.get("gone")
    for staged in (False, True):
        with pytest.raises(UploadNotFoundError):
            await store.open_writer(info, staged=staged)
    with pytest.raises(UploadNotFoundError):
        await read_all(store, info, 0, 5)
    await store.terminate(info)  # removes the .info, ignores the missing data
    assert not (directory / "gone.info").exists()


async def test_staged_commit_after_terminate_does_not_resurrect(
    store: FileStore, directory: Path
) -> None:
    info = await store.create(new_info("zombie", 5))
    writer = await store.open_writer(info, staged=True)
    await writer.write(b"abc")
    await store.terminate(info)
    with pytest.raises(UploadNotFoundError):
        await writer.commit()
    await writer.aclose()
    assert os.listdir(directory) == []


async def test_data_path_that_cannot_be_stat_is_store_error(
    store: FileStore, directory: Path
) -> None:
    await store.create(new_info("loop", 1))
    os.unlink(directory / "loop")
    os.symlink(directory / "loop", directory / "loop")  # a real ELOOP
    with pytest.raises(StoreError) as caught:
        await store.get("loop")
    assert not isinstance(caught.value, UploadNotFoundError)


# --- fsync, permissions ------------------------------------------------------


async def test_fsync_mode_works(directory: Path) -> None:
    store = FileStore(directory, fsync=True)
    info = await store.create(new_info("sub/f", 0, size_is_deferred=True))
    await write_chunk(store, info, b"abc")
    await write_chunk(store, info, b"def", staged=True)
    await store.declare_length(info, 6)
    part = await store.create(new_info("p", 6, is_partial=True))
    await write_chunk(store, part, b"ABCDEF")
    final = await store.create(new_info("final", 12, is_final=True))
    await store.concat(final, [await store.get("sub/f"), await store.get("p")])
    got = await store.get("final")
    assert got.offset == 12
    assert await read_all(store, got, 0, 12) == b"abcdefABCDEF"
    assert read_json(directory / "sub" / "f.info")["Size"] == 6


async def test_empty_unstaged_commit_in_fsync_mode(directory: Path) -> None:
    store = FileStore(directory, fsync=True)
    info = await store.create(new_info("e", 1))
    assert await write_chunk(store, info, b"") == 0
    assert (await store.get("e")).offset == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask0")
@pytest.mark.parametrize(("dir_perms", "file_perms"), [(0o775, 0o664), (0o750, 0o600)])
async def test_permissions_are_honoured(directory: Path, dir_perms: int, file_perms: int) -> None:
    store = FileStore(directory, dir_perms=dir_perms, file_perms=file_perms)
    assert mode(directory) == dir_perms
    info = await store.create(new_info("a/b/c", 10))
    assert mode(directory / "a") == dir_perms
    assert mode(directory / "a" / "b") == dir_perms
    assert mode(directory / "a" / "b" / "c") == file_perms
    assert mode(directory / "a" / "b" / "c.info") == file_perms
    writer = await store.open_writer(info, staged=True)
    await writer.write(b"x")
    assert mode(directory / "a" / "b" / "c.part") == file_perms
    await writer.commit()
    await store.declare_length(info, 10)  # the rewritten .info keeps the mode
    assert mode(directory / "a" / "b" / "c.info") == file_perms


# --- a full disk ---------------------------------------------------------------


def fill(path: Path) -> None:
    """Fill the file system that holds ``path`` to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


async def test_enospc_is_507_and_keeps_bytes_before_it(small_fs: str) -> None:
    store = FileStore(small_fs)
    info = await store.create(new_info("big", 4 * 1024 * 1024))
    payload = os.urandom(4 * 1024 * 1024)
    writer = await store.open_writer(info, staged=False)
    with pytest.raises(InsufficientStorageError) as caught:
        for offset in range(0, len(payload), 64 * 1024):
            await writer.write(payload[offset : offset + 64 * 1024])
    assert caught.value.status == 507
    assert caught.value.code == "ERR_INSUFFICIENT_STORAGE"
    written = writer.written
    await writer.commit()
    assert 0 < written < len(payload)
    got = await store.get("big")
    assert got.offset == written
    assert await read_all(store, got, 0, written) == payload[:written]


async def test_enospc_in_one_big_write(small_fs: str) -> None:
    store = FileStore(small_fs)
    info = await store.create(new_info("big", 4 * 1024 * 1024))
    payload = os.urandom(2 * 1024 * 1024)
    writer = await store.open_writer(info, staged=False)
    with pytest.raises(InsufficientStorageError):
        await writer.write(payload)  # partly written, then ENOSPC
    assert 0 < writer.written < len(payload)
    await writer.aclose()
    got = await store.get("big")
    assert got.offset == writer.written
    assert await read_all(store, got, 0, got.offset) == payload[: got.offset]


async def test_enospc_in_staged_commit_keeps_upload_consistent(small_fs: str) -> None:
    store = FileStore(small_fs)
    info = await store.create(new_info("s", 4 * 1024 * 1024))
    await write_chunk(store, info, b"a" * (400 * 1024))
    writer = await store.open_writer(info, staged=True)
    await writer.write(b"b" * (400 * 1024))  # fits in the staging file...
    with pytest.raises(InsufficientStorageError):
        await writer.commit()  # ...but not twice
    await writer.aclose()
    got = await store.get("s")
    # All or nothing: the committed bytes stay, the staged chunk is not half-applied.
    assert got.offset == 400 * 1024
    assert await read_all(store, got, 0, got.offset) == b"a" * (400 * 1024)
    assert sorted(os.listdir(small_fs)) == ["s", "s.info"]


async def test_a_failed_staged_writer_closed_late_leaves_the_next_ones_chunk(
    small_fs: str,
) -> None:
    """The staging file is removed once, by the writer that made it: closing a writer
    whose commit failed does not remove the staging file a later writer made since."""
    store = FileStore(small_fs)
    info = await store.create(new_info("s", 4 * 1024 * 1024))
    await write_chunk(store, info, b"a" * (400 * 1024))
    failed = await store.open_writer(info, staged=True)
    await failed.write(b"b" * (400 * 1024))
    with pytest.raises(InsufficientStorageError):
        await failed.commit()
    following = await store.open_writer(await store.get("s"), staged=True)
    await following.write(b"xyz")
    await failed.aclose()
    await following.commit()
    got = await store.get("s")
    assert got.offset == 400 * 1024 + 3
    assert await read_all(store, got, got.offset - 4, got.offset) == b"axyz"
    assert sorted(os.listdir(small_fs)) == ["s", "s.info"]


async def test_create_on_a_full_disk_is_507_and_leaves_nothing(small_fs: str) -> None:
    store = FileStore(small_fs)
    fill(Path(small_fs) / "filler")
    with pytest.raises(InsufficientStorageError):
        await store.create(new_info("new", 1))
    assert os.listdir(small_fs) == ["filler"]
    with pytest.raises(InsufficientStorageError):
        await store.check_writable()
    os.unlink(Path(small_fs) / "filler")
    await store.check_writable()
    await store.create(new_info("new", 1))


async def test_declare_length_on_a_full_disk_is_507(small_fs: str) -> None:
    store = FileStore(small_fs)
    info = await store.create(new_info("d", 0, size_is_deferred=True))
    fill(Path(small_fs) / "filler")
    with pytest.raises(InsufficientStorageError):
        await store.declare_length(info, 5)
    assert read_json(Path(small_fs) / "d.info")["SizeIsDeferred"] is True
    assert not [n for n in os.listdir(small_fs) if n.endswith(".tmp")]


async def test_concat_on_a_full_disk_is_507(small_fs: str) -> None:
    store = FileStore(small_fs)
    part = await store.create(new_info("p", 600 * 1024, is_partial=True))
    await write_chunk(store, part, b"p" * (600 * 1024))
    final = await store.create(new_info("f", 600 * 1024, is_final=True))
    with pytest.raises(InsufficientStorageError):
        await store.concat(final, [await store.get("p")])


async def test_check_writable_recreates_a_removed_directory(directory: Path) -> None:
    # A creation would recreate it (as tusd does), so the health probe does too.
    store = FileStore(directory, dir_perms=0o710)
    os.rmdir(directory)
    await store.check_writable()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o710
    assert os.listdir(directory) == []


async def test_check_writable_fails_when_directory_cannot_be_recreated(directory: Path) -> None:
    store = FileStore(directory)
    os.rmdir(directory)
    directory.write_text("a file where the directory was")
    with pytest.raises(StoreError):
        await store.check_writable()


# --- leftovers -----------------------------------------------------------------


async def test_cleanup_leftovers_removes_part_and_tmp_files(
    store: FileStore, directory: Path
) -> None:
    info = await store.create(new_info("nested/up", 10))
    await write_chunk(store, info, b"abc")
    leftovers = [
        directory / "nested" / "up.part",
        directory / "crashed.part",
        directory / "nested" / "up.info.4242.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"junk")
    keep = [directory / "nested" / "up", directory / "nested" / "up.info", directory / "x.tmp"]
    keep[-1].write_bytes(b"not ours")
    removed = await store.cleanup_leftovers()
    assert sorted(removed) == sorted(str(p) for p in leftovers)
    for path in leftovers:
        assert not path.exists()
    for path in keep:
        assert path.exists()
    assert (await store.get("nested/up")).offset == 3


async def test_cleanup_leftovers_keeps_recent_files(store: FileStore, directory: Path) -> None:
    old = directory / "old.part"
    new = directory / "new.part"
    old.write_bytes(b"")
    new.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await store.cleanup_leftovers(older_than=600) == [str(old)]
    assert new.exists() and not old.exists()


# --- IDs that try to leave the directory ---------------------------------------------


ESCAPES = ["../escape", "a/../../escape", "/etc/passwd", "..", "", ".", "a/..", "x\0y"]


@pytest.mark.parametrize("upload_id", ESCAPES)
async def test_path_escape_attempts_are_refused(
    store: FileStore, tmp_path: Path, upload_id: str
) -> None:
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UploadNotFoundError):
        await store.create(new_info(upload_id, 1))
    with pytest.raises(UploadNotFoundError):
        await store.get(upload_id)
    with pytest.raises(UploadNotFoundError):
        await store.open_writer(new_info(upload_id, 1), staged=False)
    with pytest.raises(UploadNotFoundError):
        await store.terminate(new_info(upload_id, 1))
    assert sorted(os.listdir(tmp_path)) == before
    assert await store.list_ids() == []


async def test_concat_across_file_systems(small_fs: str, store: FileStore) -> None:
    # A partial whose data lives on another file system (a relocated Storage.Path):
    # the copy cannot use copy_file_range there and must still be byte-exact.
    directory = Path(store.directory)
    foreign = os.path.join(small_fs, "partial.bin")
    payload = os.urandom(300 * 1024)
    write_tusd_upload(
        directory, "far", payload, storage_path=foreign, Size=len(payload), IsPartial=True
    )
    near = await store.create(new_info("near", 3, is_partial=True))
    await write_chunk(store, near, b"end")
    final = await store.create(new_info("f", len(payload) + 3, is_final=True))
    await store.concat(final, [await store.get("far"), await store.get("near")])
    assert (directory / "f").read_bytes() == payload + b"end"


async def test_id_below_an_existing_upload_cannot_be_created(store: FileStore) -> None:
    await store.create(new_info("a", 1))
    with pytest.raises(StoreError):
        await store.create(new_info("a/b", 1))  # "a" is a file, not a directory
    assert (await store.get("a")).offset == 0


async def test_data_path_that_is_a_directory_is_store_error(
    store: FileStore, directory: Path
) -> None:
    await store.create(new_info("a/b", 1))
    (directory / "a.info").write_text(json.dumps({"ID": "a", "Size": 1}))
    info = await store.get("a")  # stat works on a directory...
    with pytest.raises(StoreError) as caught:
        await store.open_writer(info, staged=False)  # ...but it cannot be written
    assert not isinstance(caught.value, UploadNotFoundError)
    with pytest.raises(StoreError):
        await store.terminate(info)


async def test_info_path_that_cannot_be_read_is_store_error(
    store: FileStore, directory: Path
) -> None:
    os.symlink(directory / "loop.info", directory / "loop.info")
    with pytest.raises(StoreError) as caught:
        await store.get("loop")
    assert not isinstance(caught.value, UploadNotFoundError)


async def test_overlong_id_is_store_error(store: FileStore) -> None:
    with pytest.raises(StoreError):
        await store.create(new_info("x" * 300, 1))  # ENAMETOOLONG


async def test_read_past_the_end_stops_at_end_of_file(store: FileStore) -> None:
    info = await store.create(new_info("short", 10))
    await write_chunk(store, info, b"abc")
    assert await read_all(store, info, 1, 10) == b"bc"


async def test_staged_discard_after_cleanup_removed_the_part(store: FileStore) -> None:
    info = await store.create(new_info("s", 10))
    writer = await store.open_writer(info, staged=True)
    await writer.write(b"abc")
    assert len(await store.cleanup_leftovers()) == 1
    await writer.discard()
    await writer.aclose()
    assert (await store.get("s")).offset == 0


async def test_check_removes_an_interrupted_creation(tmp_path: pathlib.Path) -> None:
    from tusd_trio.stores.file import FileStore

    store = FileStore(tmp_path / "up")
    upload_id = "ab" * 16
    (tmp_path / "up" / upload_id).write_bytes(b"")
    (tmp_path / "up" / f"{upload_id}.info").write_bytes(b"")
    keep = "cd" * 16
    (tmp_path / "up" / keep).write_bytes(b"data")
    (tmp_path / "up" / f"{keep}.info").write_bytes(b"")
    actions = await store.check_consistency(0.0)
    assert any(a.startswith("Removed interrupted creation") for a in actions)
    assert not (tmp_path / "up" / upload_id).exists()
    assert not (tmp_path / "up" / f"{upload_id}.info").exists()
    # Bytes were stored under the other one: it is reported, not deleted.
    assert (tmp_path / "up" / keep).exists()
    assert any("unreadable info" in a and keep in a for a in actions)


# --- the .info cache ---------------------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [
        new_info("plain", 11, metadata={"filename": "a.txt", "empty": ""}, created=1.5e9),
        new_info("deferred", 0, size_is_deferred=True, created=time.time()),
        new_info("part", 5, is_partial=True, created=time.time(), modified=time.time()),
        new_info("final", 0, is_final=True, partial_uploads=("a", "b"), created=time.time()),
        new_info("uncreated", 3),  # no CreatedAt: reading back takes the file's mtime
    ],
    ids=lambda info: info.id,
)
async def test_info_a_store_wrote_is_what_another_process_reads(
    store: FileStore, directory: Path, info: object
) -> None:
    # The store keeps the info it wrote, to spare the next request reading it back:
    # what it serves must be what a store reading the file (another process) gets.
    assert isinstance(info, type(new_info("x")))
    await store.create(info)
    assert await store.get(info.id) == await FileStore(directory).get(info.id)
    if info.size_is_deferred:
        await store.declare_length(await store.get(info.id), 9)
        mine = await store.get(info.id)
        assert mine.size == 9
        assert mine == await FileStore(directory).get(info.id)


async def test_info_replaced_by_another_process_is_seen(store: FileStore, directory: Path) -> None:
    await store.create(new_info("shared", 0, size_is_deferred=True, created=time.time()))
    assert (await store.get("shared")).size_is_deferred
    other = FileStore(directory)  # another process sharing the upload directory
    await other.declare_length(await other.get("shared"), 42)
    seen = await store.get("shared")
    assert (seen.size, seen.size_is_deferred) == (42, False)


# --- the creation's descriptor, reused by the first writer ----------------------------


async def test_first_write_after_creation_lands_in_the_upload(
    store: FileStore, directory: Path
) -> None:
    info = await store.create(new_info("first", 6, created=time.time()))
    assert await write_chunk(store, info, b"abc") == 3
    info = await store.get("first")
    assert await write_chunk(store, info, b"def") == 3
    assert (directory / "first").read_bytes() == b"abcdef"


async def test_upload_written_by_another_process_after_creation(
    store: FileStore, directory: Path
) -> None:
    # A POST here, its first PATCH served by another process, the next one here: the
    # creation's descriptor must not be taken for a file that has grown meanwhile.
    created = await store.create(new_info("shared", 6, created=time.time()))
    other = FileStore(directory)
    await write_chunk(other, await other.get("shared"), b"abc")
    info = await store.get("shared")
    assert info.offset == 3
    writer = await store.open_writer(info, staged=False)
    await writer.write(b"xyz")
    await writer.discard()  # back to what the other process wrote, not to empty
    assert (directory / "shared").read_bytes() == b"abc"
    assert await write_chunk(store, await store.get("shared"), b"def") == 3
    assert (directory / "shared").read_bytes() == b"abcdef"
    assert created.offset == 0


async def test_upload_removed_and_created_again_by_another_process(
    store: FileStore, directory: Path
) -> None:
    info = await store.create(new_info("again", 3, created=time.time()))
    other = FileStore(directory)
    await other.terminate(await other.get("again"))
    await other.create(new_info("again", 3, created=time.time()))
    # Same ID, a new file: the write must reach it, not the removed one.
    assert await write_chunk(store, await store.get("again"), b"abc") == 3
    assert (directory / "again").read_bytes() == b"abc"
    assert info.offset == 0
