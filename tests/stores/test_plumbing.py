"""The object stores' shared plumbing on its own: the SDK call helper, the ordered
bounded uploader and the spool, with real worker threads and real files (the stores'
own suites cover them again against the real emulators)."""

from __future__ import annotations

import tempfile
import threading
import time
from functools import partial

import pytest
import trio
import trio.testing

from tusd_trio.protocol.errors import StoreError, TusError, UploadNotFoundError
from tusd_trio.stores._ordered_uploads import OrderedUploads
from tusd_trio.stores._sdk_calls import SDKCalls
from tusd_trio.stores._spool import SpooledWriter
from tusd_trio.stores.base import ChunkWriter
from tusd_trio.stores.memory import MemoryStore

from ._helpers import new_info, read_all


class SDKFailure(Exception):
    """Stands for an SDK's own exception type."""


def map_error(exc: Exception, what: str) -> TusError:
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


def sdk() -> SDKCalls:
    return SDKCalls(map_error, sdk_errors=(SDKFailure,))


class Gate:
    """Blocking calls that wait until the test lets them go; counts how many run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started: list[int] = []
        self.opened = threading.Event()

    def call(self, value: int, *, fail: bool = False) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(value)
        try:
            self.opened.wait(10)
            if fail:
                raise SDKFailure(f"piece {value}")
            return value
        finally:
            with self.lock:
                self.running -= 1


# --- SDKCalls ------------------------------------------------------------------------------


async def test_run_maps_sdk_errors_and_lets_others_through() -> None:
    calls = sdk()

    def fail(exc: Exception) -> None:
        raise exc

    with pytest.raises(StoreError, match="reading: SDKFailure: down"):
        await calls.run("reading", fail, SDKFailure("down"))
    with pytest.raises(TypeError):  # not the SDK's: a bug, shown as one
        await calls.run("reading", fail, TypeError("bug"))
    with pytest.raises(UploadNotFoundError):  # already a store error: unchanged
        await calls.run("reading", fail, UploadNotFoundError())


async def test_gather_keeps_the_order_and_raises_the_earliest_failure_itself() -> None:
    calls = sdk()

    def after(seconds: float, value: int, fail: bool = False) -> int:
        time.sleep(seconds)
        if fail:
            raise SDKFailure(f"call {value}")
        return value

    delays = [0.05, 0.0, 0.03, 0.01]
    calls_in_order = [partial(after, delay, index) for index, delay in enumerate(delays)]
    assert await calls.gather("x", calls_in_order) == [0, 1, 2, 3]
    # Call 2 fails first, call 1 later: call 1's failure is raised, as itself.
    with pytest.raises(StoreError, match="call 1"):
        await calls.gather(
            "x",
            [
                lambda: after(0.0, 0),
                lambda: after(0.1, 1, fail=True),
                lambda: after(0.0, 2, fail=True),
            ],
        )


async def test_gather_stops_calls_not_started_after_a_failure() -> None:
    calls = sdk()
    ran: list[int] = []

    def one(value: int) -> int:
        ran.append(value)
        raise SDKFailure(f"call {value}")

    with pytest.raises(StoreError, match="call "):
        await calls.gather("x", [partial(one, v) for v in range(20)], limit=1)
    # The first call fails; at most the call already handed the free slot starts
    # after it, none of the 18 others.
    assert 1 <= len(ran) <= 2


async def test_background_call_maps_its_error() -> None:
    def fail() -> None:
        raise ValueError("in the thread")

    call = sdk().start("staging", fail)
    with pytest.raises(StoreError, match="staging: ValueError: in the thread"):
        await call.result()
    assert call.done


# --- OrderedUploads --------------------------------------------------------------------------


async def test_uploads_are_bounded_in_flight_and_held() -> None:
    gate = Gate()
    uploads: OrderedUploads[int] = OrderedUploads(sdk(), "piece", in_flight=2, held=3)
    returned = 0

    async def add_all() -> None:
        nonlocal returned
        for value in range(6):
            await uploads.add(partial(gate.call, value))
            returned += 1
            # add() returns only once fewer than `held` pieces run or wait.
            assert uploads.running + uploads.queued < 3

    async with trio.open_nursery() as nursery:
        nursery.start_soon(add_all)
        await trio.testing.wait_all_tasks_blocked()
        # Two run, one waits, and the third add() has not returned.
        assert (uploads.running, uploads.queued, returned) == (2, 1, 2)
        with trio.fail_after(10):
            while gate.running < 2:  # both threads are inside their call
                await trio.sleep(0.005)
        gate.opened.set()
    await uploads.wait_idle()
    assert gate.most == 2
    assert uploads.done_prefix() == [0, 1, 2, 3, 4, 5]
    assert uploads.stored == 6
    assert uploads.failure is None


async def test_a_failure_stops_the_queue_and_is_raised_by_the_next_add() -> None:
    gate = Gate()
    uploads: OrderedUploads[int] = OrderedUploads(sdk(), "piece", in_flight=1, held=4)
    await uploads.add(lambda: gate.call(0))
    await uploads.add(lambda: gate.call(1, fail=True))
    await uploads.add(lambda: gate.call(2))  # queued behind the failing one
    gate.opened.set()
    await uploads.wait_idle()
    # One at a time, in order; piece 2 never started: it would be behind a hole.
    assert gate.started == [0, 1]
    assert isinstance(uploads.failure, StoreError)
    assert "piece 1" in uploads.failure.message
    assert uploads.done_prefix() == [0]
    with pytest.raises(StoreError, match="piece 1"):
        await uploads.add(lambda: gate.call(3))


async def test_fill_holes_runs_a_failed_piece_again_only_when_a_later_one_was_stored() -> None:
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(value: int, failures: int) -> int:
        with lock:
            attempts[value] = attempts.get(value, 0) + 1
            count = attempts[value]
        if count <= failures:
            raise SDKFailure(f"piece {value} attempt {count}")
        return value

    uploads: OrderedUploads[int] = OrderedUploads(
        sdk(), "block", in_flight=2, held=3, stop_on_failure=False
    )
    await uploads.add(lambda: flaky(0, failures=1))  # fails once; piece 1 is stored
    await uploads.add(lambda: flaky(1, failures=0))
    await uploads.fill_holes()
    assert uploads.failure is None
    assert uploads.done_prefix() == [0, 1]
    assert attempts == {0: 2, 1: 1}
    # A failed last piece has nothing stored after it: no hole, not run again.
    await uploads.add(lambda: flaky(2, failures=5))
    await uploads.fill_holes()
    assert attempts[2] == 1
    assert uploads.failure is not None and "piece 2 attempt 1" in uploads.failure.message
    assert uploads.done_prefix() == [0, 1]


# --- SpooledWriter ---------------------------------------------------------------------------


async def test_spooled_chunk_reaches_the_upload_only_on_commit_in_order() -> None:
    store = MemoryStore()
    info = await store.create(new_info("u", 0, size_is_deferred=True))
    opened: list[ChunkWriter] = []
    data = bytes(range(256)) * 40  # 10 KiB: memory, then the temporary file
    inner = await store.open_writer(info, staged=False)

    def make() -> ChunkWriter:
        opened.append(inner)
        return inner

    spool = SpooledWriter(make, sdk(), file_prefix="tusd-trio-test-", memory=1000)
    for start in range(0, len(data), 700):
        await spool.write(data[start : start + 700])
    assert spool.written == len(data)
    assert (await store.get("u")).offset == 0  # nothing in the upload yet
    assert opened == []
    await spool.commit()
    assert spool.written == len(data)
    got = await store.get("u")
    assert await read_all(store, got, 0, got.offset) == data
    # Discarding another chunk never opens the unstaged writer.
    other = SpooledWriter(make, sdk(), file_prefix="tusd-trio-test-", memory=1000)
    await other.write(data)
    await other.discard()
    await other.aclose()
    assert other.written == 0 and len(opened) == 1
    assert (await store.get("u")).offset == len(data)


async def test_spool_failure_stores_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    info = await store.create(new_info("u", 0, size_is_deferred=True))
    inner = await store.open_writer(info, staged=False)
    # A real failure of the temporary file: its directory does not exist.
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/tusd-trio-test")
    spool = SpooledWriter(lambda: inner, sdk(), file_prefix="tusd-trio-test-", memory=10)
    with pytest.raises(StoreError, match="spooling the chunk"):
        await spool.write(b"x" * 20)
    with pytest.raises(StoreError, match="spooling the chunk"):
        await spool.commit()
    assert spool.written == 0
    assert (await store.get("u")).offset == 0
