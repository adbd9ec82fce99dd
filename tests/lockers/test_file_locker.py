"""FileLocker across processes: tusd's lock files, stale locks, .stop requests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tusd_trio.lockers import FileLocker
from tusd_trio.protocol.errors import LockTimeoutError, UploadNotFoundError

ForeignHolder = Callable[[Path], "subprocess.Popen[str]"]
REPO = Path(__file__).resolve().parents[2]


def fast_locker(directory: Path) -> FileLocker:
    return FileLocker(directory, holder_poll_interval=0.01, acquirer_poll_interval=0.02)


async def test_lock_file_holds_the_pid(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    await locker.acquire("abc", max_wait=1)
    assert (tmp_path / "abc.lock").read_text() == f"{os.getpid()}\n"
    assert sorted(os.listdir(tmp_path)) == ["abc.lock"]  # no temporary file left
    locker.release("abc")
    assert os.listdir(tmp_path) == []


async def test_nested_id_lock_file(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    locker = fast_locker(tmp_path)
    async with locker.lock("a/b/c", max_wait=1):
        assert (tmp_path / "a" / "b" / "c.lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "a" / "b" / "c.lock").exists()


async def test_missing_nested_directory_is_not_found(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    with pytest.raises(UploadNotFoundError):
        await locker.acquire("missing/dir/id", max_wait=1)
    assert locker.statistics().held == 0
    assert os.listdir(tmp_path) == []


async def test_release_removes_lock_and_stop_files(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    await locker.acquire("up", max_wait=1)
    (tmp_path / "up.stop").touch()
    locker.release("up")
    assert os.listdir(tmp_path) == []
    locker.release("up")  # twice: nothing left to remove, no error


async def test_stale_lock_of_dead_process_is_taken_over(tmp_path: Path, dead_pid: int) -> None:
    (tmp_path / "up.lock").write_text(f"{dead_pid}\n")
    locker = fast_locker(tmp_path)
    with trio.fail_after(5):
        await locker.acquire("up", max_wait=1)
    assert (tmp_path / "up.lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "up.stop").exists()  # no need to ask a dead process
    locker.release("up")


@pytest.mark.parametrize("content", ["0\n", "-7\n", "", "garbage\n"])
async def test_lock_without_a_live_owner_is_taken_over(tmp_path: Path, content: str) -> None:
    # tusd's lockfile treats an invalid PID like a dead owner (ErrInvalidPid).
    (tmp_path / "up.lock").write_text(content)
    locker = fast_locker(tmp_path)
    with trio.fail_after(5):
        await locker.acquire("up", max_wait=0.5)
    assert (tmp_path / "up.lock").read_text() == f"{os.getpid()}\n"
    locker.release("up")


async def test_lock_left_by_this_process_is_taken_over(tmp_path: Path) -> None:
    # Left behind by an earlier run with the same PID (e.g. in a container).
    (tmp_path / "up.lock").write_text(f"{os.getpid()}\n")
    locker = fast_locker(tmp_path)
    await locker.acquire("up", max_wait=0.5)
    locker.release("up")
    assert os.listdir(tmp_path) == []


async def test_lock_of_another_live_process_times_out_and_asks_it_to_stop(
    tmp_path: Path, foreign_holder: ForeignHolder
) -> None:
    proc = foreign_holder(tmp_path / "up.lock")
    locker = fast_locker(tmp_path)
    start = trio.current_time()
    with pytest.raises(LockTimeoutError):
        await locker.acquire("up", max_wait=0.3)
    assert trio.current_time() - start >= 0.3
    assert (tmp_path / "up.stop").exists()
    assert (tmp_path / "up.lock").read_text() == f"{proc.pid}\n"  # untouched
    assert locker.statistics().held == 0
    assert sorted(os.listdir(tmp_path)) == ["up.lock", "up.stop"]  # no .tmp left
    # Once that process is gone its lock is stale and ours for the taking.
    proc.kill()
    proc.wait()
    await locker.acquire("up", max_wait=1)
    assert (tmp_path / "up.lock").read_text() == f"{os.getpid()}\n"
    locker.release("up")


async def test_cancelled_while_polling_releases_the_local_lock(
    tmp_path: Path, foreign_holder: ForeignHolder
) -> None:
    foreign_holder(tmp_path / "up.lock")
    locker = fast_locker(tmp_path)
    with trio.move_on_after(0.1) as scope:
        await locker.acquire("up", max_wait=30)
    assert scope.cancelled_caught
    assert locker.statistics().held == 0


async def test_watch_stop_requests_calls_the_holder(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    asked = trio.Event()
    calls = 0

    def on_release_requested() -> None:
        nonlocal calls
        calls += 1
        asked.set()

    await locker.acquire("up", max_wait=1, on_release_requested=on_release_requested)
    await locker.acquire("quiet", max_wait=1)  # no callback: its .stop is left alone
    async with trio.open_nursery() as nursery:
        nursery.start_soon(locker.watch_stop_requests)
        await trio.sleep(0.05)
        assert calls == 0  # no .stop, no call
        (tmp_path / "quiet.stop").touch()
        (tmp_path / "up.stop").touch()
        with trio.fail_after(5):
            await asked.wait()
        await trio.sleep(0.05)
        assert calls == 1  # once per request: the .stop file is consumed
        assert not (tmp_path / "up.stop").exists()
        assert (tmp_path / "quiet.stop").exists()
        nursery.cancel_scope.cancel()
    locker.release("up")
    locker.release("quiet")
    assert os.listdir(tmp_path) == []


CHILD = textwrap.dedent(
    """
    import sys, trio
    from tusd_trio.lockers import FileLocker

    async def main():
        locker = FileLocker(sys.argv[1], holder_poll_interval=0.01, acquirer_poll_interval=0.02)
        await locker.acquire("up", max_wait=20)
        print("acquired", flush=True)
        locker.release("up")

    trio.run(main)
    """
)


async def test_other_process_gets_the_lock_after_asking_for_it(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    asked = trio.Event()
    await locker.acquire("up", max_wait=1, on_release_requested=asked.set)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(locker.watch_stop_requests)
        result: list[subprocess.CompletedProcess[bytes]] = []

        async def run_child() -> None:
            result.append(
                await trio.run_process(
                    [sys.executable, "-c", CHILD, str(tmp_path)],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    cwd=REPO,
                )
            )

        nursery.start_soon(run_child)
        with trio.fail_after(20):
            await asked.wait()  # the child wrote up.stop, our watcher saw it
        assert not result  # the child still waits: we hold the lock
        locker.release("up")
        with trio.fail_after(20):
            while not result:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert result[0].returncode == 0, result[0].stderr
    assert result[0].stdout == b"acquired\n"
    assert os.listdir(tmp_path) == []


async def test_statistics_come_from_the_local_queue(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    await locker.acquire("x", max_wait=1)
    stats = locker.statistics()
    assert (stats.held, stats.waiting, stats.max_wait) == (1, 0, 0.0)
    locker.release("x")
    await locker.aclose()


async def test_stop_request_that_cannot_be_written_still_times_out(
    tmp_path: Path, foreign_holder: ForeignHolder
) -> None:
    foreign_holder(tmp_path / "up.lock")
    (tmp_path / "up.stop").mkdir()  # a real obstacle: .stop cannot be created as a file
    locker = fast_locker(tmp_path)
    with pytest.raises(LockTimeoutError):
        await locker.acquire("up", max_wait=0.1)


UNPRIVILEGED_CHILD = textwrap.dedent(
    """
    import os, sys, trio
    from tusd_trio.lockers import FileLocker
    from tusd_trio.protocol.errors import LockTimeoutError

    import encodings.ascii  # imported lazily otherwise, and nobody cannot read /work

    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)  # nobody, from here on

    async def main():
        locker = FileLocker(sys.argv[1], acquirer_poll_interval=0.02)
        try:
            await locker.acquire("up", max_wait=0.2)
        except LockTimeoutError:
            print("timeout", flush=True)
        else:
            print("acquired", flush=True)

    trio.run(main)
    """
)


@pytest.fixture
def world_writable_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tusd-trio-locker-"))
    os.chmod(directory, 0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
async def test_lock_of_a_process_we_may_not_signal_counts_as_alive(
    world_writable_dir: Path,
) -> None:
    # PID 1 is alive and owned by root: an unprivileged locker gets EPERM from
    # kill(1, 0) and must treat the lock as held, not as stale.
    shared = world_writable_dir
    (shared / "up.lock").write_text("1\n")
    result = await trio.run_process(
        [sys.executable, "-c", UNPRIVILEGED_CHILD, str(shared)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"timeout\n"
    assert (shared / "up.lock").read_text() == "1\n"
    assert (shared / "up.stop").exists()
