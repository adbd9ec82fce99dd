"""FileStore.get's reuse of its last answer: valid only while nothing changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tusd_trio.stores.file import FileStore

from ._helpers import new_info, write_chunk


async def test_get_of_an_unchanged_upload_reuses_its_answer(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.create(new_info("same", 6, created=time.time()))
    await write_chunk(store, await store.get("same"), b"abc")
    first = await store.get("same")
    assert await store.get("same") is first
    assert first == await FileStore(tmp_path).get("same")


async def test_get_sees_every_change_to_the_data_or_the_info(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    other = FileStore(tmp_path)  # another process sharing the upload directory
    await store.create(new_info("moving", 0, size_is_deferred=True, created=time.time()))
    before = await store.get("moving")
    await write_chunk(other, await other.get("moving"), b"abc")
    grown = await store.get("moving")
    assert (before.offset, grown.offset) == (0, 3)
    # Same size, another mtime (a rewrite in place): the answer's mtime follows.
    data = tmp_path / "moving"
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns - 10**9))
    touched = await store.get("moving")
    assert touched.modified == data.stat().st_mtime != grown.modified
    await other.declare_length(await other.get("moving"), 9)
    declared = await store.get("moving")
    assert (declared.size, declared.size_is_deferred, declared.offset) == (9, False, 3)
    assert declared == await FileStore(tmp_path).get("moving")


async def test_get_after_terminate_and_creation_again_answers_the_new_upload(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path)
    await store.create(new_info("again", 3, created=time.time()))
    await write_chunk(store, await store.get("again"), b"abc")
    assert (await store.get("again")).offset == 3
    await store.terminate(await store.get("again"))
    await store.create(new_info("again", 5, created=time.time()))
    fresh = await store.get("again")
    assert (fresh.size, fresh.offset) == (5, 0)
