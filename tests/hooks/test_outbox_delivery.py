"""The hook outbox against real processes: a daemon SIGKILLed while its hook receiver
is down, restarted (or survived by a second instance sharing Redis), then the receiver
comes up.  Every post-finish must arrive, with the IdempotencyKey it was stored with;
duplicates only with the same key; post-create before post-finish per upload."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.daemon import Daemon, DaemonFactory, upload_id_of, wait_for
from tests._support.services import free_port
from tests._support.sync_http import create_upload, http_client

UPLOADS = 4


class Receiver:
    """An HTTP hook endpoint on a fixed port, started (and stopped) when a test says."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                doc = json.loads(body)
                with receiver._lock:
                    receiver.received.append(
                        {
                            "type": doc["Type"],
                            "upload": doc["Event"]["Upload"]["ID"],
                            "key": doc["IdempotencyKey"],
                            "header_key": self.headers.get("Idempotency-Key"),
                        }
                    )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of_type(self, hook_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.received if r["type"] == hook_type]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    try:
        yield r
    finally:
        r.stop()


def _finish_uploads(http: httpx.Client, base_url: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        url = create_upload(http, base_url, 4)
        resp = http.patch(
            url,
            content=f"ab{n:02d}".encode(),
            headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )
        assert resp.status_code == 204, resp.text
        ids.append(upload_id_of(url))
    return ids


def _check_delivery(receiver: Receiver, ids: list[str], stored: dict[tuple[str, str], str]) -> None:
    """Every event arrived; each (upload, type) under one key (the stored one when known);
    post-create before post-finish for every upload."""
    got = receiver.snapshot()
    for record in got:
        assert record["key"] == record["header_key"]
    for upload_id in ids:
        mine = [r for r in got if r["upload"] == upload_id]
        for hook_type in ("post-create", "post-finish"):
            keys = {r["key"] for r in mine if r["type"] == hook_type}
            assert len(keys) == 1, (upload_id, hook_type, keys)
            if (upload_id, hook_type) in stored:
                assert keys == {stored[(upload_id, hook_type)]}
        types = [r["type"] for r in mine]
        assert types.index("post-create") < types.index("post-finish"), types


def _stored_file_events(outbox_dir: Path) -> dict[tuple[str, str], str]:
    stored = {}
    for path in outbox_dir.glob("*.json"):
        doc = json.loads(path.read_bytes())
        stored[(doc["upload"], doc["type"])] = doc["request"]["IdempotencyKey"]
    return stored


HOOK_ARGS = ["-hooks-enabled-events", "post-create,post-finish", "-hooks-http-retry", "1"]


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_file_outbox_survives_sigkill_and_delivers_after_restart(
    fsync: bool, daemon_factory: DaemonFactory, receiver: Receiver
) -> None:
    args = ["-hooks-http", receiver.url, *HOOK_ARGS] + (["-fsync"] if fsync else [])
    daemon = daemon_factory.new("outbox", args).start()
    with http_client() as http:
        ids = _finish_uploads(http, daemon.base_url, UPLOADS)
    outbox_dir = daemon.upload_dir / ".hooks-outbox"
    stored = _stored_file_events(outbox_dir)
    # Every event was on disk when its response came (the receiver is down).
    assert {(i, t) for i in ids for t in ("post-create", "post-finish")} <= set(stored)
    daemon.kill()
    assert set(_stored_file_events(outbox_dir)) == set(stored)

    daemon.start()
    receiver.start()
    wait_for(
        lambda: {r["upload"] for r in receiver.of_type("post-finish")} >= set(ids),
        timeout=30,
        what="every post-finish delivered after the restart",
    )
    _check_delivery(receiver, ids, stored)
    wait_for(lambda: not list(outbox_dir.glob("*.json")), timeout=10, what="an empty outbox")


def test_outbox_off_sends_from_memory(daemon_factory: DaemonFactory, receiver: Receiver) -> None:
    receiver.start()
    daemon = daemon_factory.new(
        "no-outbox", ["-hooks-http", receiver.url, *HOOK_ARGS, "-hooks-outbox=false"]
    ).start()
    with http_client() as http:
        ids = _finish_uploads(http, daemon.base_url, 1)
    wait_for(lambda: receiver.of_type("post-finish"), timeout=10, what="post-finish")
    assert not (daemon.upload_dir / ".hooks-outbox").exists()
    _check_delivery(receiver, ids, {})


def test_dead_event_after_max_age_metrics_and_readiness(
    daemon_factory: DaemonFactory, receiver: Receiver
) -> None:
    args = [
        "-hooks-http",
        receiver.url,
        *HOOK_ARGS,
        "-hooks-outbox-max-age",
        "8s",
        "-hooks-outbox-max-backoff",
        "500ms",
        "-hooks-outbox-ready-max-age",
        "1s",
    ]
    daemon = daemon_factory.new("dead", args).start()
    with http_client() as http:
        ids = _finish_uploads(http, daemon.base_url, 1)
        ready_url = daemon.base_url.rsplit("/files", 1)[0] + "/health/ready"

        def outbox_check() -> str:
            return str(http.get(ready_url).json()["checks"]["hooks_outbox"])

        wait_for(
            lambda: outbox_check().startswith("failing: an event has waited"),
            timeout=10,
            what="/health/ready failing on the backlog",
        )
        assert http.get(ready_url).status_code == 503
        metrics_url = daemon.base_url.rsplit("/files", 1)[0] + "/metrics"
        # Both events pending (they die only after 8 s), attempts failing.
        text = http.get(metrics_url).text
        assert "tusd_trio_hook_outbox_pending 2\n" in text
        assert 'tusd_trio_hook_outbox_failures_total{backend="http"}' in text

        dead_dir = daemon.upload_dir / ".hooks-outbox" / "dead"
        wait_for(lambda: len(list(dead_dir.glob("*.json"))) == 2, timeout=30, what="2 dead")
        assert not list((daemon.upload_dir / ".hooks-outbox").glob("*.json"))
        reasons = [p.read_text() for p in dead_dir.glob("*.reason")]
        assert len(reasons) == 2 and all(r.startswith("http: ") for r in reasons)
        wait_for(
            lambda: "tusd_trio_hook_outbox_dead_total 2" in http.get(metrics_url).text,
            timeout=5,
            what="dead_total 2",
        )
        assert outbox_check() == "ok"  # nothing pending any more
    assert daemon.stop(signal.SIGTERM) == 0
    assert "HookOutboxEventDead" in daemon.output() + daemon.stderr_text()
    assert ids[0] in daemon.output() + daemon.stderr_text()

    # Delivered events are counted per backend once the receiver is up.
    receiver.start()
    daemon.start()
    with http_client() as http:
        ids = _finish_uploads(http, daemon.base_url, 1)
        wait_for(lambda: receiver.of_type("post-finish"), timeout=10, what="post-finish")
        text = http.get(daemon.base_url.rsplit("/files", 1)[0] + "/metrics").text
    assert 'tusd_trio_hook_outbox_deliveries_total{backend="http"}' in text


def _redis_keys_of(prefix: str) -> dict[tuple[str, str], str]:
    raw = subprocess.run(
        ["redis-cli", "-p", "6379", "--raw", "HVALS", f"{prefix}{{outbox}}:events"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    stored = {}
    for line in raw.splitlines():
        if line.strip():
            doc = json.loads(line)
            stored[(doc["upload"], doc["type"])] = doc["request"]["IdempotencyKey"]
    return stored


def _redis_cleanup(prefix: str) -> None:
    keys = subprocess.run(
        ["redis-cli", "-p", "6379", "--raw", "KEYS", f"{prefix}*"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "-p", "6379", "DEL", *keys], capture_output=True)


def test_redis_outbox_survivor_delivers_a_killed_instances_events(
    tmp_path: Path, receiver: Receiver
) -> None:
    prefix = f"tusd-trio-test-outbox-{uuid.uuid4().hex[:8]}:"
    args = [
        "-hooks-http",
        receiver.url,
        *HOOK_ARGS,
        "-locker",
        "redis",
        "-redis-url",
        "redis://127.0.0.1:6379/0",
        "-redis-key-prefix",
        prefix,
        "-redis-lock-ttl",
        "2s",
    ]
    shared = tmp_path / "uploads"
    first = Daemon(shared, args, log_dir=tmp_path)
    second = Daemon(shared, args, log_dir=tmp_path)
    try:
        first.start()
        second.start()
        with http_client() as http:
            ids = _finish_uploads(http, first.base_url, UPLOADS)
        stored = _redis_keys_of(prefix)
        assert {(i, t) for i in ids for t in ("post-create", "post-finish")} <= set(stored)

        def reporting() -> list[str]:
            # The outbox's gauges come from one process of all that share it.
            with http_client() as http:
                texts = [
                    http.get(d.base_url.rsplit("/files", 1)[0] + "/metrics").text
                    for d in (first, second)
                ]
            return [t for t in texts if "tusd_trio_hook_outbox_pending " in t]

        pending = f"tusd_trio_hook_outbox_pending {2 * UPLOADS}\n"
        wait_for(
            lambda: [pending in text for text in reporting()] == [True],
            timeout=10,
            what="one process reporting every pending event",
        )
        first.kill()
        time.sleep(0.5)
        receiver.start()
        wait_for(
            lambda: {r["upload"] for r in receiver.of_type("post-finish")} >= set(ids),
            timeout=30,
            what="the survivor delivering every post-finish",
        )
        _check_delivery(receiver, ids, stored)
        wait_for(lambda: not _redis_keys_of(prefix), timeout=10, what="an empty Redis outbox")
    finally:
        first.kill()
        second.kill()
        _redis_cleanup(prefix)


def test_file_outbox_with_workers_one_sender_delivers_every_workers_events(
    daemon_factory: DaemonFactory, receiver: Receiver
) -> None:
    daemon = daemon_factory.new(
        "workers", ["-hooks-http", receiver.url, *HOOK_ARGS, "-workers", "2"]
    ).start()
    with http_client() as http:
        ids = _finish_uploads(http, daemon.base_url, 2 * UPLOADS)
    outbox_dir = daemon.upload_dir / ".hooks-outbox"
    stored = _stored_file_events(outbox_dir)
    receiver.start()
    wait_for(
        lambda: {r["upload"] for r in receiver.of_type("post-finish")} >= set(ids),
        timeout=30,
        what="every post-finish delivered",
    )
    _check_delivery(receiver, ids, stored)
    wait_for(lambda: not list(outbox_dir.glob("*.json")), timeout=10, what="an empty outbox")
