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

import httpx
import pytest
import trio
import trio.testing

from tests._support.daemon import Daemon
from tusd_trio.lockers.file import FileLocker
from tusd_trio.protocol.errors import LockTimeoutError, UploadNotFoundError

ForeignHolder = Callable[[Path], "subprocess.Popen[str]"]
REPO = Path(__file__).resolve().parents[2]


def fast_locker(directory: Path) -> FileLocker:
    return FileLocker(directory, holder_poll_interval=0.01, acquirer_poll_interval=0.02)


def owner_files(directory: Path) -> list[str]:
    """The locker's owner files (every lock file is a hard link to one of them)."""
    return sorted(name for name in os.listdir(directory) if name.startswith(".owner.lock."))


def lock_side_files(directory: Path) -> list[str]:
    """What is in ``directory`` besides the owner files."""
    owners = set(owner_files(directory))
    return sorted(name for name in os.listdir(directory) if name not in owners)


async def test_lock_file_holds_the_pid(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    await locker.acquire("abc", max_wait=1)
    assert (tmp_path / "abc.lock").read_text() == f"{os.getpid()}\n"
    assert owner_files(tmp_path) == [f".owner.lock.{os.getpid()}.1.tmp"]
    assert lock_side_files(tmp_path) == ["abc.lock"]  # no temporary file left
    locker.release("abc")
    assert lock_side_files(tmp_path) == []
    await locker.aclose()
    assert os.listdir(tmp_path) == []  # the owner file goes at close


async def test_every_lock_file_is_a_link_to_one_owner_file(tmp_path: Path) -> None:
    # No inode is created or freed per lock: each lock file is the owner file's inode.
    locker = fast_locker(tmp_path)
    await locker.acquire("a", max_wait=1)
    (owner,) = owner_files(tmp_path)
    owner_inode = os.stat(tmp_path / owner).st_ino
    await locker.acquire("b", max_wait=1)
    assert os.stat(tmp_path / "a.lock").st_ino == owner_inode
    assert os.stat(tmp_path / "b.lock").st_ino == owner_inode
    assert os.stat(tmp_path / owner).st_nlink == 3
    locker.release("a")
    locker.release("b")
    await locker.acquire("a", max_wait=1)
    assert os.stat(tmp_path / "a.lock").st_ino == owner_inode
    assert owner_files(tmp_path) == [owner]
    locker.release("a")
    assert os.stat(tmp_path / owner).st_nlink == 1
    await locker.aclose()
    assert os.listdir(tmp_path) == []


async def test_a_second_locker_of_the_process_never_empties_the_first_ones_locks(
    tmp_path: Path,
) -> None:
    # Both would name their first owner file alike; truncating it would empty a.lock,
    # which another process would then take for the lock of nobody.
    first, second = fast_locker(tmp_path), fast_locker(tmp_path)
    await first.acquire("a", max_wait=1)
    await second.acquire("b", max_wait=1)
    assert (tmp_path / "a.lock").read_text() == f"{os.getpid()}\n"
    assert (tmp_path / "b.lock").read_text() == f"{os.getpid()}\n"
    assert len(owner_files(tmp_path)) == 2
    first.release("a")
    second.release("b")
    await first.aclose()
    await second.aclose()
    assert os.listdir(tmp_path) == []


async def test_owner_file_removed_under_the_locker_is_made_again(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    await locker.acquire("a", max_wait=1)
    (owner,) = owner_files(tmp_path)
    os.unlink(tmp_path / owner)  # a clean-up job, or the start-up repair of an old run
    await locker.acquire("b", max_wait=1)
    assert (tmp_path / "b.lock").read_text() == f"{os.getpid()}\n"
    assert len(owner_files(tmp_path)) == 1
    locker.release("a")
    locker.release("b")
    await locker.aclose()
    assert os.listdir(tmp_path) == []


async def test_lock_held_at_close_stays_readable_and_is_stale_after_exit(tmp_path: Path) -> None:
    # A lock still held when the locker closes keeps its content (the link keeps the
    # inode): another process sees our PID, and once we are gone, a stale lock.
    locker = fast_locker(tmp_path)
    await locker.acquire("a", max_wait=1)
    await locker.aclose()
    assert os.listdir(tmp_path) == ["a.lock"]
    assert (tmp_path / "a.lock").read_text() == f"{os.getpid()}\n"


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
    assert lock_side_files(tmp_path) == []


async def test_release_removes_lock_and_stop_files(tmp_path: Path) -> None:
    locker = fast_locker(tmp_path)
    await locker.acquire("up", max_wait=1)
    (tmp_path / "up.stop").touch()
    locker.release("up")
    assert lock_side_files(tmp_path) == []
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
    assert lock_side_files(tmp_path) == []


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
    assert lock_side_files(tmp_path) == ["up.lock", "up.stop"]  # no .tmp left
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
    assert lock_side_files(tmp_path) == []


CHILD = textwrap.dedent(
    """
    import sys, trio
    from tusd_trio.lockers.file import FileLocker

    async def main():
        locker = FileLocker(sys.argv[1], holder_poll_interval=0.01, acquirer_poll_interval=0.02)
        await locker.acquire("up", max_wait=20)
        print("acquired", flush=True)
        locker.release("up")
        await locker.aclose()

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
    assert lock_side_files(tmp_path) == []
    await locker.aclose()
    assert os.listdir(tmp_path) == []  # the child removed its owner file too


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
    from tusd_trio.lockers.file import FileLocker
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


HOLD_AND_WAIT = textwrap.dedent(
    """
    import sys, trio
    from tusd_trio.lockers.file import FileLocker

    async def main():
        locker = FileLocker(sys.argv[1])
        await locker.acquire("up", max_wait=5)
        print("acquired", flush=True)
        await trio.sleep_forever()

    trio.run(main)
    """
)


async def test_lock_of_a_killed_process_is_taken_over_and_its_owner_file_repaired(
    tmp_path: Path,
) -> None:
    # A crash leaves the lock file (a link to the dead process's owner file) and the
    # owner file: the lock is stale, and the store's start-up repair removes the rest.
    from tusd_trio.stores._file_repair import repair_leftovers

    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "acquired\n"
        assert owner_files(tmp_path) == [f".owner.lock.{child.pid}.1.tmp"]
    finally:
        child.kill()
        child.wait()
    locker = fast_locker(tmp_path)
    with trio.fail_after(5):
        await locker.acquire("up", max_wait=1)
    assert (tmp_path / "up.lock").read_text() == f"{os.getpid()}\n"
    locker.release("up")
    await locker.aclose()
    assert owner_files(tmp_path) == [f".owner.lock.{child.pid}.1.tmp"]
    actions = repair_leftovers(str(tmp_path), 0.0, lambda _path: None)
    assert actions == [f"Removed staging leftover {tmp_path}/.owner.lock.{child.pid}.1.tmp"]
    assert os.listdir(tmp_path) == []


def test_daemon_removes_its_owner_file_on_shutdown(tmp_path: Path) -> None:
    # The server closes its locker when it stops: the owner file goes with it.
    daemon = Daemon(tmp_path / "uploads", ("-verbose=false",), log_dir=tmp_path)
    daemon.start()
    try:
        with httpx.Client(timeout=10) as http:
            created = http.post(
                daemon.base_url,
                headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"},
            )
            assert created.status_code == 201, created.text
            patched = http.patch(
                daemon.url_for(created.headers["Location"]),
                content=b"abc",
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            assert patched.status_code == 204, patched.text
        assert owner_files(daemon.upload_dir) == [f".owner.lock.{daemon.pid}.1.tmp"]
        assert daemon.stop() == 0, daemon.output()[-2000:]
    finally:
        daemon.kill()
    assert owner_files(daemon.upload_dir) == []
