"""``-workers N``: real daemon processes sharing one port (file and Redis lockers)."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.daemon import BANNER, STOP_TIMEOUT, Daemon, child_pids, proc_stat
from tests._support.tls import write_self_signed_cert
from tests._support.tus import TUS

CHUNK = 64 * 1024


def _wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class WorkerDaemon(Daemon):
    """``python -m tusd_trio -workers N ...``: stdout and stderr in one output, the worker
    processes seen so far in ``seen_workers``, signals to the parent only (it must
    forward them itself)."""

    def __init__(self, upload_dir: Path, args: list[str], *, tcp: bool) -> None:
        super().__init__(
            upload_dir,
            args,
            log_dir=upload_dir.parent,
            host="127.0.0.1" if tcp else None,
            port=0 if tcp else None,
            merge_stderr=True,
        )
        self.seen_workers: set[int] = set()

    def workers(self) -> set[int]:
        pids = self.children()
        self.seen_workers |= pids
        return pids

    def stop(
        self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT, *, group: bool = False
    ) -> int:
        self.workers()
        return super().stop(sig, timeout, group=group)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., WorkerDaemon]]:
    started: list[WorkerDaemon] = []

    def start(*extra: str, workers: int = 2, tcp: bool = True) -> WorkerDaemon:
        daemon = WorkerDaemon(tmp_path / "uploads", ["-workers", str(workers), *extra], tcp=tcp)
        started.append(daemon)
        return daemon.start(wait_for_banner=False)

    yield start
    for daemon in started:
        daemon.kill()


def _metrics(base_url: str, client: httpx.Client | None = None) -> dict[str, float]:
    root = base_url.split("/files/")[0]
    if client is None:
        response = httpx.get(f"{root}/metrics", timeout=10)
    else:
        response = client.get("http://tusd/metrics")
    assert response.status_code == 200, response.text
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _per_worker(metrics: dict[str, float]) -> dict[int, float]:
    found = {}
    for name, value in metrics.items():
        match = re.fullmatch(r'tusd_trio_worker_requests_total\{pid="([0-9]+)"\}', name)
        if match:
            found[int(match.group(1))] = value
    return found


class _Retry(Exception):
    pass


def _upload(
    base_url: str,
    data: bytes,
    *,
    retry: bool = False,
    transport: httpx.HTTPTransport | None = None,
    attempts: list[int] | None = None,
) -> str:
    """Create, PATCH in chunks and read back; a fresh connection per attempt.

    With ``retry``, failures (a worker killed under the request) are retried,
    resuming from the offset the server reports.
    """
    location = ""
    for _attempt in range(40):
        try:
            with httpx.Client(timeout=15, transport=transport) as client:
                if not location:
                    if attempts is not None:
                        attempts.append(1)
                    response = client.post(
                        base_url, headers={**TUS, "Upload-Length": str(len(data))}
                    )
                    if response.status_code != 201:
                        raise _Retry(f"POST {response.status_code}")
                    location = response.headers["location"]
                    if transport is not None:
                        location = "http://tusd" + httpx.URL(location).path
                    offset = 0
                else:
                    response = client.head(location, headers=TUS)
                    if response.status_code != 200:
                        raise _Retry(f"HEAD {response.status_code}")
                    offset = int(response.headers["upload-offset"])
                while offset < len(data):
                    response = client.patch(
                        location,
                        content=data[offset : offset + CHUNK],
                        headers={
                            **TUS,
                            "Upload-Offset": str(offset),
                            "Content-Type": "application/offset+octet-stream",
                        },
                    )
                    if response.status_code != 204:
                        raise _Retry(f"PATCH {response.status_code}: {response.text}")
                    offset = int(response.headers["upload-offset"])
                response = client.get(location)
                assert response.status_code == 200
                assert response.content == data, "the upload's bytes differ"
                return location
        except (httpx.TransportError, _Retry):
            if not retry:
                raise
            time.sleep(0.1)
    raise AssertionError(f"upload {location or '(not created)'} never completed")


def _payloads(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(1, 3 * CHUNK)) for _ in range(count)]


def _upload_all(base_url: str, payloads: list[bytes], **options: Any) -> list[str]:
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda data: _upload(base_url, data, **options), payloads))


def _requests_of(payloads: list[bytes]) -> dict[str, int]:
    """POST, PATCH and GET requests _upload makes (without failures)."""
    patches = sum(-(-len(data) // CHUNK) for data in payloads)
    return {"POST": len(payloads), "PATCH": patches, "GET": len(payloads)}


def _settled(base_url: str) -> dict[str, float]:
    """Metrics once no snapshot changes any more (snapshots are written twice a second)."""
    keys = ("tusd_uploads_created", 'tusd_requests_total{method="PATCH"}', "tusd_bytes_received")
    previous = _metrics(base_url)
    while True:
        time.sleep(1.2)
        current = _metrics(base_url)
        if all(current[key] == previous[key] for key in keys):
            return current
        previous = current


def test_workers_share_port_restart_and_metrics(
    start_daemon: Callable[..., WorkerDaemon],
) -> None:
    daemon = start_daemon()
    url = daemon.wait_for_banner()
    assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+/files/", url)
    workers = _wait_for(lambda: len(daemon.workers()) == 2 and daemon.workers(), "2 workers")
    metrics_dirs = {
        Path(f"/proc/{pid}/environ")
        .read_bytes()
        .split(b"TUSD_TRIO_METRICS_DIR=")[1]
        .split(b"\0")[0]
        for pid in workers
    }
    assert len(metrics_dirs) == 1

    # Many concurrent uploads, each on fresh connections: both workers serve.
    first = _payloads(40, seed=1)
    _upload_all(url, first)
    expected = _requests_of(first)
    counts = _wait_for(
        lambda: (
            (m := _metrics(url))["tusd_uploads_created"] == 40
            and m['tusd_requests_total{method="PATCH"}'] >= expected["PATCH"]
            and m["tusd_uploads_finished"] >= 40
            and m
        ),
        "the uploads of both workers in /metrics",
    )
    assert counts['tusd_requests_total{method="POST"}'] == expected["POST"]
    assert counts['tusd_requests_total{method="PATCH"}'] == expected["PATCH"]
    assert counts["tusd_bytes_received"] == sum(map(len, first))
    assert counts["tusd_uploads_finished"] == 40
    per_worker = _per_worker(counts)
    assert set(per_worker) == workers, (per_worker, workers)
    assert all(count > 0 for count in per_worker.values()), per_worker
    assert 'tusd_trio_request_duration_seconds_count{method="POST",status="201"}' in counts
    assert counts['tusd_trio_request_duration_seconds_count{method="POST",status="201"}'] == 40

    # SIGKILL one worker while uploads run: the parent restarts it and every upload
    # completes (requests that hit the dead worker are retried).
    before_kill = _metrics(url)
    victim = min(workers)
    second = _payloads(30, seed=2)
    attempts: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_upload_all, url, second, retry=True, attempts=attempts)
        _wait_for(lambda: len(attempts) >= 10 or running.done(), "uploads under way")
        os.kill(victim, signal.SIGKILL)
        seen = [before_kill["tusd_uploads_created"]]
        while not running.done():
            seen.append(_metrics(url)["tusd_uploads_created"])
            time.sleep(0.05)
        running.result()
    assert seen == sorted(seen), f"uploads_created went backwards: {seen}"
    daemon.wait_line("restarted (pid")
    workers_after = _wait_for(
        lambda: len(w := daemon.workers()) == 2 and victim not in w and w, "the restarted worker"
    )
    assert proc_stat(victim) is None

    # The dead worker's counts stay in the totals; new requests add exactly.
    settled = _settled(url)
    assert settled["tusd_uploads_created"] >= before_kill["tusd_uploads_created"]
    assert settled["tusd_uploads_created"] <= 40 + len(attempts)
    third = _payloads(20, seed=3)
    _upload_all(url, third)
    target = settled["tusd_uploads_created"] + 20
    patches = settled['tusd_requests_total{method="PATCH"}'] + _requests_of(third)["PATCH"]
    # Each worker publishes its counts every 0.5 s: wait until every count has arrived
    # (a POST and the PATCHes of one upload may be served by different workers).
    final = _wait_for(
        lambda: (
            (m := _metrics(url))["tusd_uploads_created"] == target
            and m['tusd_requests_total{method="PATCH"}'] >= patches
            and m
        ),
        f"tusd_uploads_created == {target} and {patches} PATCHes",
    )
    assert final['tusd_requests_total{method="PATCH"}'] == patches
    assert set(_per_worker(final)) == workers_after

    # One banner, printed by the parent; workers announce themselves differently.
    output = daemon.output()
    assert output.count(BANNER) == 1
    assert output.count("is serving.") == 3  # two workers and the restarted one
    assert output.count("Supported tus extensions:") == 1

    # SIGTERM to the parent: graceful, exit 0, nothing left behind.
    assert daemon.stop() == 0, daemon.output()[-3000:]
    assert daemon.output().count("Shutdown completed. Goodbye!") == 3
    for pid in daemon.seen_workers:
        assert proc_stat(pid) is None, f"worker {pid} outlived the parent"
    assert not child_pids(daemon.pid)
    assert not os.path.exists(os.fsdecode(metrics_dirs.pop()))
    # Each worker closed its file locker on the way out, which removes the owner file
    # its lock files were linked to; only the SIGKILLed one's can be left behind (and
    # the restarted worker's start-up repair removes that one).
    owners = {
        int(name.split(".")[3])
        for name in os.listdir(daemon.upload_dir)
        if name.startswith(".owner.lock.")
    }
    assert owners <= {victim}, owners


def test_workers_refuse_the_memory_locker(start_daemon: Callable[..., WorkerDaemon]) -> None:
    daemon = start_daemon("-locker", "memory")
    assert daemon.wait(STOP_TIMEOUT) == 2
    assert "-workers above 1 needs a lock shared by the worker processes" in daemon.output()
    assert BANNER not in daemon.output()


def test_workers_with_the_redis_locker(start_daemon: Callable[..., WorkerDaemon]) -> None:
    prefix = f"tusd-trio-test-workers-{uuid.uuid4().hex[:8]}:"
    daemon = start_daemon(
        "-locker",
        "redis",
        "-redis-url",
        "redis://127.0.0.1:6379/0",
        "-redis-key-prefix",
        prefix,
    )
    url = daemon.wait_for_banner()
    workers = _wait_for(lambda: len(daemon.workers()) == 2 and daemon.workers(), "2 workers")
    payloads = _payloads(30, seed=4)
    _upload_all(url, payloads)
    total = sum(map(len, payloads))
    counts = _wait_for(
        lambda: (
            (m := _metrics(url))["tusd_uploads_created"] == 30
            and m["tusd_bytes_received"] >= total
            and m
        ),
        "30 uploads and their bytes in /metrics",
    )
    assert counts["tusd_bytes_received"] == total
    per_worker = _per_worker(counts)
    assert set(per_worker) == workers and all(per_worker.values()), per_worker
    assert daemon.stop(signal.SIGINT) == 0, daemon.output()[-3000:]
    for pid in daemon.seen_workers:
        assert proc_stat(pid) is None


def test_workers_on_a_unix_socket(
    start_daemon: Callable[..., WorkerDaemon], tmp_path: Path
) -> None:
    path = str(tmp_path / "tusd.sock")
    daemon = start_daemon("-unix-sock", path, tcp=False)
    daemon.wait_line("Started 2 worker processes")
    transport = httpx.HTTPTransport(uds=path)
    workers = daemon.workers()
    for data in _payloads(4, seed=5):
        _upload("http://tusd/files/", data, transport=transport)
    # A worker stopped on its own (exit 0) is replaced; the socket file stays.
    os.kill(min(workers), signal.SIGTERM)
    daemon.wait_line("restarted (pid")
    assert os.path.exists(path)
    for data in _payloads(4, seed=6):
        _upload("http://tusd/files/", data, transport=transport, retry=True)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        counts = _wait_for(
            lambda: (
                (m := _metrics("http://tusd/files/", client))["tusd_uploads_created"] >= 8 and m
            ),
            "8 uploads in /metrics",
        )
    assert counts["tusd_uploads_finished"] >= 8
    assert BANNER not in daemon.output()
    assert daemon.stop() == 0, daemon.output()[-3000:]
    assert not os.path.exists(path)


def test_workers_crash_loop_gives_up(start_daemon: Callable[..., WorkerDaemon]) -> None:
    daemon = start_daemon()
    daemon.wait_for_banner()
    _wait_for(lambda: len(daemon.workers()) == 2, "2 workers")
    first = daemon.workers()
    survivor = max(first)
    victim = min(first)
    for crash in range(5):
        os.kill(victim, signal.SIGKILL)
        if crash == 4:
            break
        known = frozenset((survivor, victim))

        def restarted(known: frozenset[int] = known) -> int | None:
            new = daemon.workers() - known
            return new.pop() if new else None

        victim = _wait_for(restarted, "a restart")
    assert daemon.wait(STOP_TIMEOUT) == 1
    assert "crashed 5 times within 60s; giving up (crash loop)" in daemon.output()
    for pid in daemon.seen_workers:
        assert proc_stat(pid) is None


def test_second_signal_kills_the_workers_at_once(
    start_daemon: Callable[..., WorkerDaemon],
) -> None:
    import socket

    daemon = start_daemon("-shutdown-timeout", "300s")
    url = daemon.wait_for_banner()
    _wait_for(lambda: len(daemon.workers()) == 2, "2 workers")
    size = 48 * 1024 * 1024
    with httpx.Client(timeout=30) as client:
        response = client.post(
            url,
            content=b"\0" * size,
            headers={
                **TUS,
                "Upload-Length": str(size),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert response.status_code == 201
        assert response.headers["upload-offset"] == str(size)
        location = httpx.URL(response.headers["location"])
    # A download nobody reads: its worker cannot finish draining on its own.
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((location.host, location.port or 80))
    reader.sendall(f"GET {location.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        _wait_for(
            lambda: (m := _metrics(url))["tusd_connections_open"] >= 2 and m,
            "the stalled download",
        )
        daemon.send_signal(signal.SIGTERM)
        daemon.wait_line("Received interrupt signal. Stopping the worker processes")
        daemon.wait_line("Shutdown completed. Goodbye!")  # the other worker
        assert daemon.running()  # still draining the download
        assert daemon.stop() == 1  # the second signal
    finally:
        reader.close()
    assert "Second signal received: killing the worker processes at once." in daemon.output()
    for pid in daemon.seen_workers:
        assert proc_stat(pid) is None


def test_workers_share_the_metrics_listener(start_daemon: Callable[..., WorkerDaemon]) -> None:
    """-metrics-listen with -workers: every worker binds the address (SO_REUSEPORT), and
    whichever answers a scrape reports the totals of all of them."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = start_daemon("-metrics-listen", f"127.0.0.1:{port}")
    url = daemon.wait_for_banner()
    assert f"Serving metrics and health at http://127.0.0.1:{port}" in daemon.output()
    _wait_for(lambda: len(daemon.workers()) == 2, "2 workers")
    payloads = _payloads(10, seed=7)
    _upload_all(url, payloads)
    listener = f"http://127.0.0.1:{port}/files/"
    for _ in range(6):  # several connections: the kernel spreads them over the workers
        counts = _wait_for(
            lambda: (m := _metrics(listener))["tusd_uploads_created"] == 10 and m,
            "10 uploads on the metrics listener",
        )
        assert counts["tusd_bytes_received"] == sum(map(len, payloads))
    # The upload port serves no metrics then.
    assert "tusd_uploads_created" not in httpx.get(url.replace("/files/", "/metrics")).text
    assert daemon.stop() == 0, daemon.output()[-3000:]


def test_workers_banner_says_https_when_serving_tls(
    start_daemon: Callable[..., WorkerDaemon], tmp_path: Path
) -> None:
    cert, key = write_self_signed_cert(tmp_path)
    daemon = start_daemon("-tls-certificate", str(cert), "-tls-key", str(key))
    url = daemon.wait_for_banner()
    assert re.fullmatch(r"https://127\.0\.0\.1:[0-9]+/files/", url), url
    trusted = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trusted, timeout=15) as client:
        response = client.post(url, headers={**TUS, "Upload-Length": "0"})
    assert response.status_code == 201, response.text
    assert daemon.stop() == 0, daemon.output()[-3000:]
