"""In-process locking behaviour, the same for MemoryLocker and FileLocker."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tusd_trio.lockers.file import FileLocker
from tusd_trio.lockers.memory import MemoryLocker
from tusd_trio.protocol.errors import LockTimeoutError

AnyLocker = MemoryLocker | FileLocker


async def test_lock_is_exclusive(locker: AnyLocker, autojump_clock: trio.abc.Clock) -> None:
    active = 0
    most = 0
    done = 0

    async def user() -> None:
        nonlocal active, most, done
        async with locker.lock("up", max_wait=60):
            active += 1
            most = max(most, active)
            await trio.sleep(0.01)
            await trio.sleep(0)
            active -= 1
            done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(user)
    assert most == 1
    assert done == 10
    assert locker.statistics().held == 0


async def test_different_uploads_do_not_block_each_other(locker: AnyLocker) -> None:
    await locker.acquire("a", max_wait=0)
    await locker.acquire("b", max_wait=0)
    assert locker.statistics().held == 2
    locker.release("a")
    locker.release("b")
    assert locker.statistics().held == 0


async def test_release_of_unknown_lock_is_not_an_error(locker: AnyLocker) -> None:
    locker.release("never-locked")
    await locker.acquire("never-locked", max_wait=0)
    locker.release("never-locked")
    await locker.aclose()


async def test_handoff_is_fifo(locker: AnyLocker) -> None:
    order: list[int] = []
    await locker.acquire("up", max_wait=0)

    async def waiter(index: int) -> None:
        async with locker.lock("up", max_wait=60):
            order.append(index)
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        for index in range(6):
            nursery.start_soon(waiter, index)
            await trio.testing.wait_all_tasks_blocked()  # queued in this order
        assert locker.statistics().waiting == 6
        assert order == []
        locker.release("up")
    assert order == [0, 1, 2, 3, 4, 5]


async def test_holder_is_asked_to_release_when_someone_waits(locker: AnyLocker) -> None:
    asked: list[str] = []
    await locker.acquire("up", max_wait=0, on_release_requested=lambda: asked.append("holder"))
    assert asked == []  # nobody waits yet

    got: list[str] = []

    async def waiter(name: str) -> None:
        await locker.acquire("up", max_wait=60, on_release_requested=lambda: asked.append(name))
        got.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "w1")
        await trio.testing.wait_all_tasks_blocked()
        assert asked == ["holder"]
        nursery.start_soon(waiter, "w2")
        await trio.testing.wait_all_tasks_blocked()
        assert asked == ["holder", "holder"]
        locker.release("up")  # to w1; w2 still waits, so w1 is asked at once
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["w1"]
        assert asked == ["holder", "holder", "w1"]
        locker.release("up")  # to w2; nobody waits, nobody is asked
        await trio.testing.wait_all_tasks_blocked()
    assert got == ["w1", "w2"]
    assert asked == ["holder", "holder", "w1"]
    locker.release("up")


async def test_timeout_after_max_wait(locker: AnyLocker, autojump_clock: trio.abc.Clock) -> None:
    await locker.acquire("up", max_wait=0)
    start = trio.current_time()
    with pytest.raises(LockTimeoutError) as caught:
        await locker.acquire("up", max_wait=2.5)
    assert 2.5 <= trio.current_time() - start < 2.6
    assert caught.value.status == 500
    assert caught.value.code == "ERR_LOCK_TIMEOUT"
    stats = locker.statistics()
    assert (stats.held, stats.waiting) == (1, 0)
    assert stats.max_wait >= 2.5
    # The holder still holds; after release the lock is free at once.
    with pytest.raises(LockTimeoutError):
        await locker.acquire("up", max_wait=0)
    locker.release("up")
    await locker.acquire("up", max_wait=0)
    locker.release("up")


async def test_cancelled_waiter_leaves_the_queue(locker: AnyLocker) -> None:
    order: list[int] = []
    scopes: dict[int, trio.CancelScope] = {}
    await locker.acquire("up", max_wait=0)

    async def waiter(index: int) -> None:
        with trio.CancelScope() as scope:
            scopes[index] = scope
            async with locker.lock("up", max_wait=60):
                order.append(index)
                await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        for index in range(4):
            nursery.start_soon(waiter, index)
            await trio.testing.wait_all_tasks_blocked()
        scopes[1].cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert locker.statistics().waiting == 3
        locker.release("up")
    assert order == [0, 2, 3]
    assert locker.statistics().held == 0
    await locker.acquire("up", max_wait=0)  # nothing left dangling
    locker.release("up")


async def test_release_request_callback_that_raises_does_not_wedge_the_lock(
    locker: AnyLocker,
) -> None:
    def broken() -> None:
        raise RuntimeError("holder's callback failed")

    await locker.acquire("up", max_wait=0, on_release_requested=broken)
    with pytest.raises(RuntimeError):
        await locker.acquire("up", max_wait=5)
    assert locker.statistics().waiting == 0
    locker.release("up")
    # The failed waiter must not have been handed the lock.
    await locker.acquire("up", max_wait=0)
    locker.release("up")


async def test_statistics(locker: AnyLocker, autojump_clock: trio.abc.Clock) -> None:
    stats = locker.statistics()
    assert (stats.held, stats.waiting, stats.max_wait) == (0, 0, 0.0)
    await locker.acquire("a", max_wait=0)
    await locker.acquire("b", max_wait=0)

    async def wait_for_a() -> None:
        async with locker.lock("a", max_wait=60):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_a)
        nursery.start_soon(wait_for_a)
        await trio.testing.wait_all_tasks_blocked()
        stats = locker.statistics()
        assert (stats.held, stats.waiting) == (2, 2)
        await trio.sleep(3)
        locker.release("a")
    stats = locker.statistics()
    assert (stats.held, stats.waiting) == (1, 0)
    assert 3 <= stats.max_wait < 3.1  # the longest wait seen
    locker.release("b")
    assert locker.statistics().held == 0


async def test_memory_locker_is_locked() -> None:
    locker = MemoryLocker()
    assert not locker.is_locked("x")
    async with locker.lock("x", max_wait=0):
        assert locker.is_locked("x")
    assert not locker.is_locked("x")


async def test_callback_that_releases_then_raises_passes_the_lock_on(locker: AnyLocker) -> None:
    def release_then_fail() -> None:
        locker.release("up")
        raise RuntimeError("after releasing")

    await locker.acquire("up", max_wait=0, on_release_requested=release_then_fail)
    with pytest.raises(RuntimeError):
        await locker.acquire("up", max_wait=5)
    # The lock had been handed to the failed waiter; it must be free again.
    assert locker.statistics().held == 0
    await locker.acquire("up", max_wait=0)
    locker.release("up")
