"""RedisLocker against real Redis servers.

The shared server on 127.0.0.1:6379 serves most tests (each test uses its own
key prefix and never flushes anything); the restart, Sentinel and Cluster tests
start their own ``redis-server`` processes on free ports in a temp directory.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import coredis
import pytest
import trio
import trio.testing

from tests._support.redis import RedisServers, free_cluster_port
from tests._support.services import free_port
from tests.lockers import test_locker_behaviour as shared
from tusd_trio.lockers.redis import RedisLocker
from tusd_trio.lockers.redis_url import parse_redis_url
from tusd_trio.protocol.errors import LockerUnavailableError, LockTimeoutError

# The shared behaviour suite, run on RedisLocker through the `locker` fixture below.
# (Its autojump-clock tests are mirrored on real time further down: a mock clock
# that jumps while Redis answers would fire timeouts at random.)
test_different_uploads_do_not_block_each_other = (
    shared.test_different_uploads_do_not_block_each_other
)
test_release_of_unknown_lock_is_not_an_error = shared.test_release_of_unknown_lock_is_not_an_error
test_handoff_is_fifo = shared.test_handoff_is_fifo
test_holder_is_asked_to_release_when_someone_waits = (
    shared.test_holder_is_asked_to_release_when_someone_waits
)
test_cancelled_waiter_leaves_the_queue = shared.test_cancelled_waiter_leaves_the_queue
test_release_request_callback_that_raises_does_not_wedge_the_lock = (
    shared.test_release_request_callback_that_raises_does_not_wedge_the_lock
)
test_callback_that_releases_then_raises_passes_the_lock_on = (
    shared.test_callback_that_releases_then_raises_passes_the_lock_on
)

SHARED_URL = "redis://127.0.0.1:6379/0"


# --- helpers ----------------------------------------------------------------------------------


def new_prefix() -> str:
    return f"tusd-trio-test:{uuid.uuid4().hex}:"


@asynccontextmanager
async def running(*lockers: RedisLocker) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for locker in lockers:
            await nursery.start(locker.run)
        try:
            yield
        finally:
            for locker in lockers:
                await locker.aclose()


@asynccontextmanager
async def raw_client(url: str = SHARED_URL) -> AsyncIterator[coredis.Redis[bytes]]:
    client = coredis.Redis.from_url(url, connect_timeout=2, stream_timeout=2)
    async with client:
        yield client


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def wait_for_key(client: coredis.Redis[bytes], key: str, present: bool) -> None:
    with trio.fail_after(10):
        while (await client.exists([key]) == 1) != present:
            await trio.sleep(0.01)


async def cleanup(prefix: str) -> None:
    async with raw_client() as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = new_prefix()
    yield value
    await cleanup(value)


@pytest.fixture
async def locker(prefix: str) -> AsyncIterator[RedisLocker]:
    """Overrides the shared suite's fixture: the imported tests run on Redis."""
    redis_locker = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    async with running(redis_locker):
        yield redis_locker


# --- the shared behaviour, on real time ---------------------------------------------------


async def test_lock_is_exclusive_real_time(locker: RedisLocker) -> None:
    active = 0
    most = 0
    done = 0

    async def user() -> None:
        nonlocal active, most, done
        async with locker.lock("up", max_wait=60):
            active += 1
            most = max(most, active)
            await trio.sleep(0.005)
            active -= 1
            done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(user)
    assert (most, done) == (1, 10)
    assert locker.statistics().held == 0


async def test_timeout_after_max_wait_real_time(locker: RedisLocker) -> None:
    await locker.acquire("up", max_wait=0)
    start = trio.current_time()
    with pytest.raises(LockTimeoutError) as caught:
        await locker.acquire("up", max_wait=0.3)
    assert trio.current_time() - start >= 0.3
    assert (caught.value.status, caught.value.code) == (500, "ERR_LOCK_TIMEOUT")
    stats = locker.statistics()
    assert (stats.held, stats.waiting) == (1, 0)
    locker.release("up")
    await locker.acquire("up", max_wait=0)  # free at once after release
    locker.release("up")


async def test_lease_key_holds_a_token_with_a_ttl(locker: RedisLocker, prefix: str) -> None:
    async with raw_client() as client:
        await locker.acquire("up", max_wait=0)
        key = f"{prefix}lock:up"
        assert locker.key("up") == key
        token = await client.get(key)
        assert token is not None and token.startswith(socket.gethostname().encode())
        assert 0 < await client.pttl(key) <= 5000
        locker.release("up")
        await wait_for_key(client, key, present=False)


async def test_local_handover_keeps_the_lease(locker: RedisLocker, prefix: str) -> None:
    async with raw_client() as client:
        await locker.acquire("up", max_wait=0)
        token = await client.get(f"{prefix}lock:up")
        got = trio.Event()

        async def waiter() -> None:
            await locker.acquire("up", max_wait=10)
            got.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            locker.release("up")
            await got.wait()
        assert await client.get(f"{prefix}lock:up") == token  # no round trip needed
        locker.release("up")
        await wait_for_key(client, f"{prefix}lock:up", present=False)


async def test_acquire_needs_run() -> None:
    locker = RedisLocker(SHARED_URL, key_prefix=new_prefix())
    with pytest.raises(RuntimeError):
        await locker.acquire("x", max_wait=0)
    async with running(locker):
        with pytest.raises(RuntimeError):
            await locker.run()
    with pytest.raises(RuntimeError):
        await locker.acquire("x", max_wait=0)
    await locker.aclose()


# --- across instances ---------------------------------------------------------------------


async def test_cross_instance_release_request_and_handover(prefix: str) -> None:
    a = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    b = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    async with running(a, b):
        asked: list[str] = []
        asked_event = trio.Event()

        def on_request() -> None:
            asked.append("a")
            asked_event.set()

        await a.acquire("up", max_wait=0, on_release_requested=on_request)
        got = trio.Event()

        async def other_instance() -> None:
            await b.acquire("up", max_wait=30, access="read")
            got.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_instance)
            await asked_event.wait()
            assert not got.is_set()  # a read on B still waits for A's write lock
            a.release("up")
            await got.wait()
        assert asked == ["a"]  # asked once, although B polled several times
        b.release("up")


async def test_cross_instance_timeout_when_holder_does_not_let_go(prefix: str) -> None:
    a = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    b = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    async with running(a, b):
        asked: list[int] = []
        await a.acquire("up", max_wait=0, on_release_requested=lambda: asked.append(1))
        start = trio.current_time()
        with pytest.raises(LockTimeoutError):
            await b.acquire("up", max_wait=0.5)
        assert trio.current_time() - start >= 0.5
        assert asked == [1]
        assert b.statistics().held == 0
        a.release("up")
        await b.acquire("up", max_wait=10)
        b.release("up")


async def test_remote_waiter_is_not_starved_by_local_handover(prefix: str) -> None:
    a = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    b = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    async with running(a, b):
        remote_asked = trio.Event()
        await a.acquire("up", max_wait=0, on_release_requested=remote_asked.set)
        order: list[str] = []

        async def local() -> None:
            async with a.lock("up", max_wait=30):
                order.append("local")

        async def remote() -> None:
            async with b.lock("up", max_wait=30):
                order.append("remote")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(remote)
            await remote_asked.wait()
            nursery.start_soon(local)
            await wait_until(lambda: a.statistics().waiting == 1)
            a.release("up")  # a remote waiter asked: the lease goes back to Redis
        assert sorted(order) == ["local", "remote"]


async def test_handover_latency(prefix: str) -> None:
    """Measure hand-over latency (printed; run with -s to see it)."""
    a = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    b = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    rounds = 30
    same: list[float] = []
    cross: list[float] = []
    async with running(a, b):
        for index in range(rounds):
            for waiter_locker, results in ((a, same), (b, cross)):
                upload = f"lat-{index}-{len(results)}-{waiter_locker is b}"
                asked = trio.Event()
                await a.acquire(upload, max_wait=0, on_release_requested=asked.set)
                released_at = 0.0

                async def holder(upload: str = upload, asked: trio.Event = asked) -> None:
                    nonlocal released_at
                    await asked.wait()
                    released_at = time.perf_counter()
                    a.release(upload)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(holder)
                    await waiter_locker.acquire(upload, max_wait=30)
                    results.append(time.perf_counter() - released_at)
                waiter_locker.release(upload)
    assert len(same) == len(cross) == rounds
    print(
        f"\nhand-over latency over {rounds} rounds: same instance median "
        f"{statistics.median(same) * 1000:.3f} ms, cross-instance median "
        f"{statistics.median(cross) * 1000:.3f} ms"
    )


async def test_invariant_no_overlap_across_instances(prefix: str) -> None:
    lockers = [RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5) for _ in range(3)]
    records: list[tuple[str, float, float]] = []
    counter = 0
    per_task = 4
    tasks_per_locker = 6
    async with running(*lockers):

        async def worker(locker: RedisLocker, name: str) -> None:
            nonlocal counter
            for _ in range(per_task):
                async with locker.lock("shared", max_wait=60):
                    start = trio.current_time()
                    value = counter
                    await trio.sleep(0.001)
                    counter = value + 1
                    records.append((name, start, trio.current_time()))

        async with trio.open_nursery() as nursery:
            for li, locker in enumerate(lockers):
                for ti in range(tasks_per_locker):
                    nursery.start_soon(worker, locker, f"{li}-{ti}")
    total = len(lockers) * tasks_per_locker * per_task
    assert counter == total
    records.sort(key=lambda r: r[1])
    for (_, _, end), (_, start, _) in itertools.pairwise(records):
        assert end <= start


# --- leases -------------------------------------------------------------------------------


HOLD_SCRIPT = """
import sys, trio
from tusd_trio.lockers.redis import RedisLocker

async def main():
    locker = RedisLocker(sys.argv[1], key_prefix=sys.argv[2], ttl=float(sys.argv[3]))
    async with trio.open_nursery() as nursery:
        await nursery.start(locker.run)
        await locker.acquire("up", max_wait=5)
        print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def test_dead_holder_blocks_only_until_its_lease_expires(prefix: str) -> None:
    ttl = 0.6
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, SHARED_URL, prefix, str(ttl)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        assert proc.stdout is not None
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == "ready"
        locker = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
        async with running(locker):
            # Alive, it keeps renewing: waiting several TTLs is not enough.
            with pytest.raises(LockTimeoutError):
                await locker.acquire("up", max_wait=3 * ttl)
            os.kill(proc.pid, signal.SIGKILL)
            await trio.to_thread.run_sync(proc.wait)
            await locker.acquire("up", max_wait=30)
            locker.release("up")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("tamper", ["delete", "overwrite"])
async def test_on_lost_when_the_key_is_changed_behind_its_back(prefix: str, tamper: str) -> None:
    locker = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=0.6)
    key = f"{prefix}lock:up"
    async with running(locker), raw_client() as client:
        lost = trio.Event()
        await locker.acquire("up", max_wait=0, on_lost=lost.set)
        # Renewals keep it alive well past its TTL.
        await trio.sleep(1.5)
        assert not lost.is_set()
        assert await client.exists([key]) == 1
        if tamper == "delete":
            await client.delete([key])
        else:
            await client.set(key, "somebody-else", px=60_000)
        with trio.fail_after(10):
            await lost.wait()
        locker.release("up")
        await trio.sleep(0.2)
        # Compare-and-delete: someone else's lease survives the release.
        if tamper == "overwrite":
            assert await client.get(key) == b"somebody-else"
        # And the upload can be locked again once it is free.
        await client.delete([key])
        await locker.acquire("up", max_wait=5)
        locker.release("up")


async def test_release_never_deletes_a_lease_taken_over_after_expiry(prefix: str) -> None:
    a = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    b = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=5)
    key = f"{prefix}lock:up"
    async with running(a, b), raw_client() as client:
        await a.acquire("up", max_wait=0)
        await client.delete([key])  # as if A's lease had expired
        await b.acquire("up", max_wait=0)
        b_token = await client.get(key)
        a.release("up")
        await trio.sleep(0.2)
        assert await client.get(key) == b_token
        b.release("up")
        await wait_for_key(client, key, present=False)


async def test_aclose_gives_back_held_leases(prefix: str) -> None:
    locker = RedisLocker(SHARED_URL, key_prefix=prefix, ttl=30)
    async with raw_client() as client:
        lost = trio.Event()
        async with running(locker):
            await locker.acquire("up", max_wait=0, on_lost=lost.set)
            await locker.acquire("other", max_wait=0)
            assert await client.exists([f"{prefix}lock:up", f"{prefix}lock:other"]) == 2
        assert lost.is_set()
        assert await client.exists([f"{prefix}lock:up", f"{prefix}lock:other"]) == 0


# --- Redis down, restarted ----------------------------------------------------------------


async def test_unreachable_redis_fails_fast() -> None:
    port = free_port()
    locker = RedisLocker(f"redis://127.0.0.1:{port}/0", key_prefix=new_prefix(), timeout=0.5)
    async with running(locker):
        with trio.fail_after(30):  # far below max_wait
            with pytest.raises(LockerUnavailableError) as caught:
                await locker.acquire("up", max_wait=600)
            with pytest.raises(LockerUnavailableError):
                await locker.check()
        assert caught.value.status == 503
        assert caught.value.code == "ERR_LOCKER_UNAVAILABLE"
        assert "Redis is unreachable" in caught.value.message
        assert locker.statistics().held == 0
        assert not locker.subscribed


async def test_redis_restart(redis_servers: RedisServers) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = redis_servers.start(port)
    a = RedisLocker(url, key_prefix="t:", ttl=1.0, timeout=0.5)
    b = RedisLocker(url, key_prefix="t:", ttl=1.0, timeout=0.5)
    async with running(a, b):
        await a.check()
        lost = trio.Event()
        await a.acquire("held", max_wait=0, on_lost=lost.set)

        redis_servers.stop(proc)
        with trio.fail_after(10):
            await lost.wait()  # the holder learns it can no longer count on its lease
        with pytest.raises(LockerUnavailableError):
            await b.acquire("other", max_wait=60)
        with pytest.raises(LockerUnavailableError):
            await a.check()
        a.release("held")

        redis_servers.start(port)
        with trio.fail_after(20):
            while True:
                try:
                    await a.check()
                    await b.check()
                    break
                except LockerUnavailableError:
                    await trio.sleep(0.05)
        await wait_until(lambda: a.subscribed and b.subscribed, timeout=20)
        # Everything works again, release requests across instances too.
        asked = trio.Event()
        await a.acquire("again", max_wait=5, on_release_requested=asked.set)

        async def let_go() -> None:
            await asked.wait()
            a.release("again")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(let_go)
            await b.acquire("again", max_wait=10)
        b.release("again")


# --- URLs, Sentinel, Cluster --------------------------------------------------------------


def test_parse_plain_urls() -> None:
    target = parse_redis_url("redis://127.0.0.1:6380/3")
    assert (target.kind, target.hosts, target.db, target.tls) == (
        "standalone",
        (("127.0.0.1", 6380),),
        3,
        False,
    )
    target = parse_redis_url("rediss://user:p%40ss@redis.example/0")
    assert (target.hosts, target.username, target.password, target.tls) == (
        (("redis.example", 6379),),
        "user",
        "p@ss",
        True,
    )
    assert parse_redis_url("redis://:secret@h").password == "secret"
    assert parse_redis_url("redis://h?db=5").db == 5
    assert parse_redis_url("unix:///run/redis.sock?db=2").db == 2
    assert "secret" not in repr(parse_redis_url("redis://:secret@h"))


def test_parse_sentinel_urls() -> None:
    target = parse_redis_url(
        "redis+sentinel://:pw@s1:26380,s2,[::1]:26381/mymaster/2?sentinel_password=sp"
    )
    assert target.kind == "sentinel"
    assert target.hosts == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (target.service_name, target.db, target.password) == ("mymaster", 2, "pw")
    assert target.sentinel_password == "sp"
    assert parse_redis_url("rediss+sentinel://s1/svc").tls
    assert parse_redis_url("redis+sentinel://s1/svc").db == 0
    assert target.describe() == "redis+sentinel://s1:26380,s2:26379,::1:26381/mymaster/2"


def test_parse_cluster_urls() -> None:
    target = parse_redis_url("redis+cluster://u:p@n1:7000,n2:7001")
    assert target.kind == "cluster"
    assert target.hosts == (("n1", 7000), ("n2", 7001))
    assert (target.username, target.password) == ("u", "p")
    assert parse_redis_url("rediss+cluster://n1").hosts == (("n1", 6379),)


@pytest.mark.parametrize(
    "url",
    [
        "http://h",
        "redis://",
        "redis://h:notaport",
        "redis://h:70000",
        "redis://h/x",
        "redis://h1,h2",
        "redis+sentinel://s1",
        "redis+sentinel://s1/a/b/c",
        "redis+sentinel://s1/svc/-1",
        "redis+cluster://n1/3",
        "unix://",
    ],
)
def test_parse_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="Redis URL"):
        parse_redis_url(url)
    with pytest.raises(ValueError):
        RedisLocker(url)


async def test_sentinel(redis_servers: RedisServers) -> None:
    primary_port = free_port()
    sentinel_port = free_port()
    redis_servers.start(primary_port)
    redis_servers.start(
        sentinel_port,
        "--sentinel",
        config=f"sentinel monitor tusmaster 127.0.0.1 {primary_port} 1\n",
    )
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/tusmaster/1"
    a = RedisLocker(url, key_prefix="s:", ttl=5)
    b = RedisLocker(url, key_prefix="s:", ttl=5)
    async with running(a, b), raw_client(f"redis://127.0.0.1:{primary_port}/1") as primary:
        await a.check()
        asked = trio.Event()
        await a.acquire("up", max_wait=5, on_release_requested=asked.set)
        assert await primary.exists(["s:lock:up"]) == 1  # on the primary, database 1

        async def let_go() -> None:
            await asked.wait()
            a.release("up")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(let_go)
            await b.acquire("up", max_wait=10)
        b.release("up")
        await wait_for_key(primary, "s:lock:up", present=False)


async def test_cluster(redis_servers: RedisServers) -> None:
    port = free_cluster_port()
    redis_servers.start(
        port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"
    )
    cli = ["redis-cli", "-p", str(port)]
    subprocess.run(
        [*cli, "cluster", "addslotsrange", "0", "16383"], check=True, capture_output=True
    )
    with trio.fail_after(20):
        while (
            "cluster_state:ok"
            not in subprocess.run(
                [*cli, "cluster", "info"], check=True, capture_output=True, text=True
            ).stdout
        ):
            await trio.sleep(0.05)
    url = f"redis+cluster://127.0.0.1:{port}"
    a = RedisLocker(url, key_prefix="c:", ttl=5)
    b = RedisLocker(url, key_prefix="c:", ttl=5)
    async with running(a, b):
        await a.check()
        asked = trio.Event()
        await a.acquire("up", max_wait=5, on_release_requested=asked.set)

        async def let_go() -> None:
            await asked.wait()
            a.release("up")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(let_go)
            await b.acquire("up", max_wait=10)
        b.release("up")
