"""Crash consistency: SIGKILL under load never loses acknowledged bytes nor invents any, and
the start-up check clears what a crash leaves behind.

Run with ``TUSD_RELIABILITY_SEED=<n>`` to replay a printed seed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests._support.daemon import Daemon, upload_id_of
from tests._support.sync_http import http_client, sha256

from ._crash_support import (
    KiB,
    MiB,
    TrackedUpload,
    leftover_side_files,
    log_lines_about,
    pick_seed,
    raw_patch,
    read_info,
    resume_with_tuspy,
    url_path,
)

UPLOADS = 50
CHUNK = 256 * KiB
KILLS = 3


def _sender(
    upload: TrackedUpload, host: str, port: int, path: str, start: int, stop: threading.Event
) -> None:
    """PATCH ``upload`` from ``start`` in 256 KiB chunks until done, stopped, or the
    daemon dies.  Never raises (a thread exception would only be a warning)."""
    conn: http.client.HTTPConnection | None = None
    offset = start
    try:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while offset < upload.size and not stop.is_set():
            chunk = upload.payload[offset : offset + CHUNK]
            upload.sent_max = max(upload.sent_max, offset + len(chunk))
            status, headers, body = raw_patch(conn, path, offset, chunk)
            if status != 204:
                upload.problems.append(f"PATCH at {offset} -> {status} {body[:200]!r}")
                return
            new_offset = int(headers.get("upload-offset", "-1"))
            if new_offset != offset + len(chunk):
                upload.problems.append(
                    f"PATCH at {offset} of {len(chunk)} bytes -> Upload-Offset {new_offset}"
                )
                return
            offset = new_offset
            upload.acked = max(upload.acked, offset)
    except (OSError, http.client.HTTPException):
        pass  # the daemon was killed under us: expected
    except Exception as exc:  # pragma: no cover - reported by the test
        upload.problems.append(f"sender crashed: {exc!r}")
    finally:
        if conn is not None:
            conn.close()


def _check_store(daemon: Daemon, uploads: list[TrackedUpload], when: str) -> dict[str, int]:
    """After a restart: for every upload HEAD == data file size, the bytes on disk are the
    payload's prefix, acked <= offset <= bytes sent, and the info parses with the right Size.
    Returns the offsets."""
    offsets: dict[str, int] = {}
    with http_client() as http:
        for up in uploads:
            url = daemon.base_url + up.upload_id
            resp = http.head(url)
            assert resp.status_code == 200, (
                f"{when}: HEAD upload #{up.index} -> {resp.status_code} {resp.text[:200]}"
            )
            offset = int(resp.headers["upload-offset"])
            assert int(resp.headers["upload-length"]) == up.size
            data_file = daemon.upload_dir / up.upload_id
            on_disk = data_file.read_bytes()
            assert len(on_disk) == offset, (
                f"{when}: upload #{up.index}: data file has {len(on_disk)} bytes, "
                f"HEAD says {offset}"
            )
            assert offset >= up.acked, (
                f"{when}: upload #{up.index} lost acknowledged bytes: offset {offset} < {up.acked}"
            )
            assert offset <= up.sent_max, (
                f"{when}: upload #{up.index}: offset {offset} > bytes ever sent {up.sent_max}"
            )
            assert on_disk == up.payload[:offset], (
                f"{when}: upload #{up.index}: data file is not the payload's first {offset} bytes"
            )
            info = read_info(daemon.upload_dir, up.upload_id)
            assert info.get("ID") == up.upload_id, f"{when}: info ID {info.get('ID')!r}"
            assert info.get("Size") == up.size, (
                f"{when}: upload #{up.index}: info Size {info.get('Size')} != {up.size}"
            )
            offsets[up.upload_id] = offset
    return offsets


@pytest.mark.parametrize("fsync", [False, True], ids=["no-fsync", "fsync"])
def test_sigkill_three_times_under_50_concurrent_uploads_keeps_every_upload_consistent(
    fsync: bool, tmp_path: Path
) -> None:
    seed = pick_seed()
    rng = random.Random(seed)
    payloads = [rng.randbytes(rng.randint(2 * MiB, 4 * MiB)) for _ in range(UPLOADS)]
    uploads = [TrackedUpload(i, p) for i, p in enumerate(payloads)]
    total = sum(u.size for u in uploads)
    # Kill when the acknowledged bytes cross these fractions of the total (plus a random
    # delay of up to 50 ms), so every kill lands while uploads are in flight.
    thresholds: list[float] = []
    level = 0.0
    for _ in range(KILLS):
        level += rng.uniform(0.08, 0.22)
        thresholds.append(level)
    jitters = [rng.uniform(0.0, 0.05) for _ in range(KILLS)]
    print(f"fsync={fsync} total={total} kill at fractions {thresholds} (+{jitters} s)")

    # -orphan-age 0s: the start-up check may clear what the kill left at once (a stale
    # .lock of an upload that was complete when the daemon died is taken over by no one).
    args = ("-verbose=false", "-orphan-age", "0s", *(("-fsync",) if fsync else ()))
    daemon = Daemon(tmp_path / "uploads", args, log_dir=tmp_path)
    try:
        daemon.start()
        with http_client() as http:
            for up in uploads:
                resp = http.post(
                    daemon.base_url,
                    headers={
                        "Upload-Length": str(up.size),
                        "Upload-Metadata": "filename "
                        + base64.b64encode(f"crash-{up.index}.bin".encode()).decode(),
                    },
                )
                assert resp.status_code == 201, f"POST -> {resp.status_code} {resp.text[:200]}"
                up.upload_id = upload_id_of(resp.headers["location"])

        offsets = {up.upload_id: 0 for up in uploads}
        for round_no in range(KILLS):
            base = daemon.base_url
            split = urlsplit(base)
            host, port = split.hostname, split.port
            assert host is not None and port is not None
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_sender,
                    args=(
                        up,
                        host,
                        port,
                        url_path(base + up.upload_id),
                        offsets[up.upload_id],
                        stop,
                    ),
                    daemon=True,
                )
                for up in uploads
            ]
            for t in threads:
                t.start()
            target = thresholds[round_no] * total
            deadline = time.monotonic() + 40
            while sum(u.acked for u in uploads) < target:
                assert time.monotonic() < deadline, (
                    f"round {round_no}: only {sum(u.acked for u in uploads)} of {target:.0f} "
                    f"bytes acknowledged in 40 s (seed {seed})\n{daemon.diagnostics()}"
                )
                if not any(t.is_alive() for t in threads):
                    break  # everything finished before the threshold (tiny payloads)
                time.sleep(0.002)
            time.sleep(jitters[round_no])
            in_flight = sum(t.is_alive() for t in threads)
            rc = daemon.stop(signal.SIGKILL)
            assert rc == -signal.SIGKILL
            stop.set()
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads), "a sender thread hangs"
            problems = [f"#{u.index}: {p}" for u in uploads for p in u.problems]
            assert not problems, f"round {round_no} (seed {seed}): " + "; ".join(problems[:10])
            print(
                f"kill {round_no + 1}: acked {sum(u.acked for u in uploads)}/{total}, "
                f"{in_flight} senders in flight"
            )

            daemon.start()
            offsets = _check_store(daemon, uploads, f"after kill {round_no + 1} (seed {seed})")

        # Resume everything with a real tus client (tuspy, from HEAD's offset).
        base = daemon.base_url

        def resume(up: TrackedUpload) -> int:
            return resume_with_tuspy(base + up.upload_id, up.payload)

        with ThreadPoolExecutor(max_workers=8) as pool:
            starts = list(pool.map(resume, uploads))
        for up, start in zip(uploads, starts, strict=True):
            assert start == offsets[up.upload_id], (
                f"tuspy resumed #{up.index} at {start}, HEAD said {offsets[up.upload_id]}"
            )

        with http_client() as http:
            for up in uploads:
                resp = http.get(base + up.upload_id)
                assert resp.status_code == 200, f"GET #{up.index} -> {resp.status_code}"
                assert sha256(resp.content) == sha256(up.payload), (
                    f"upload #{up.index} differs after resuming (seed {seed})"
                )
        for up in uploads:
            on_disk = (daemon.upload_dir / up.upload_id).read_bytes()
            assert sha256(on_disk) == sha256(up.payload), f"data file #{up.index} differs"
            assert read_info(daemon.upload_dir, up.upload_id).get("Size") == up.size

        rc = daemon.stop(signal.SIGTERM)
        assert rc == 0, f"graceful stop exited with {rc}\n{daemon.diagnostics()}"
        leftovers = leftover_side_files(daemon.upload_dir)
        assert not leftovers, f"left after the final graceful stop (seed {seed}): {leftovers}"
    finally:
        daemon.kill()


# --- the start-up consistency check ------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pid = proc.pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    pytest.fail(f"PID {pid} of an exited process is alive again (reused?)", pytrace=False)


def test_startup_check_removes_orphans_and_keeps_valid_uploads(tmp_path: Path) -> None:
    upload_dir = tmp_path / "uploads"
    rng = random.Random(1)
    complete = rng.randbytes(300 * KiB + 7)
    partial = rng.randbytes(200 * KiB + 3)
    partial_kept = 64 * KiB

    # Two real uploads made by the daemon: one complete, one half done.
    maker = Daemon(upload_dir, ("-verbose=false",), log_dir=tmp_path)
    try:
        maker.start()
        with http_client() as http:
            ids = []
            for body, send in ((complete, len(complete)), (partial, partial_kept)):
                resp = http.post(
                    maker.base_url,
                    headers={
                        "Upload-Length": str(len(body)),
                        "Upload-Metadata": "filename " + base64.b64encode(b"keep.bin").decode(),
                    },
                )
                assert resp.status_code == 201
                upload_id = upload_id_of(resp.headers["location"])
                resp = http.patch(
                    maker.base_url + upload_id,
                    content=body[:send],
                    headers={
                        "Upload-Offset": "0",
                        "Content-Type": "application/offset+octet-stream",
                    },
                )
                assert resp.status_code == 204, f"PATCH -> {resp.status_code} {resp.text}"
                ids.append(upload_id)
        assert maker.stop() == 0
    finally:
        maker.kill()
    complete_id, partial_id = ids

    # What a crash (or a crashed tusd) can leave behind.
    orphan_data_id = "0" * 31 + "a"
    orphan_info_id = "0" * 31 + "b"
    orphan_data = upload_dir / orphan_data_id
    orphan_data.write_bytes(b"x" * 1000)
    orphan_info = upload_dir / f"{orphan_info_id}.info"
    template = json.loads((upload_dir / f"{partial_id}.info").read_text())
    template["ID"] = orphan_info_id
    template["Storage"] = {
        "Type": "filestore",
        "Path": str(upload_dir / orphan_info_id),
        "InfoPath": str(orphan_info),
    }
    orphan_info.write_text(json.dumps(template))
    part = upload_dir / f"{partial_id}.part"
    part.write_bytes(b"y" * 5000)
    info_tmp = upload_dir / f"{partial_id}.info.12345.tmp"
    info_tmp.write_text('{"ID": "half-written')
    lock = upload_dir / f"{partial_id}.lock"
    lock.write_text(f"{_dead_pid()}\n")
    stop_file = upload_dir / f"{partial_id}.stop"
    stop_file.write_bytes(b"")
    # The file locker writes <id>.lock.<pid>.<n>.tmp and links it to <id>.lock; a kill in
    # between leaves the temporary file.
    lock_tmp = upload_dir / f"{complete_id}.lock.{_dead_pid()}.140262074847696.tmp"
    lock_tmp.write_text("1\n")
    removed = {
        "orphan data file": orphan_data,
        "info without data": orphan_info,
        ".part": part,
        ".info.<pid>.tmp": info_tmp,
        "stale .lock": lock,
        ".stop next to a stale .lock": stop_file,
        ".lock.<pid>.<n>.tmp": lock_tmp,
    }

    def snapshot(upload_id: str) -> tuple[str, str, int]:
        data = upload_dir / upload_id
        info = upload_dir / f"{upload_id}.info"
        return sha256(data.read_bytes()), sha256(info.read_bytes()), data.stat().st_mtime_ns

    before = {i: snapshot(i) for i in (complete_id, partial_id)}

    daemon = Daemon(upload_dir, ("-verbose=false", "-orphan-age", "0s"), log_dir=tmp_path)
    try:
        daemon.start()
        failures = []
        for what, path in removed.items():
            if path.exists():
                failures.append(f"{what} {path.name} was not removed")
            if not log_lines_about(daemon, path.name):
                failures.append(f"no 'Removed …'/'Repaired …' log line names {what} {path.name}")
        assert not failures, (
            "start-up check with -orphan-age 0s:\n  "
            + "\n  ".join(failures)
            + "\n"
            + daemon.diagnostics()
        )

        after = {i: snapshot(i) for i in (complete_id, partial_id)}
        assert after == before, "the start-up check changed a valid upload"
        with http_client() as http:
            resp = http.get(daemon.base_url + complete_id)
            assert resp.status_code == 200
            assert sha256(resp.content) == sha256(complete)
            assert "keep.bin" in resp.headers.get("content-disposition", "")
            resp = http.head(daemon.base_url + partial_id)
            assert resp.status_code == 200
            assert int(resp.headers["upload-offset"]) == partial_kept
        # The half-done upload whose lock, stop and staging files were cleared resumes.
        assert resume_with_tuspy(daemon.base_url + partial_id, partial) == partial_kept
        with http_client() as http:
            resp = http.get(daemon.base_url + partial_id)
            assert sha256(resp.content) == sha256(partial)
        assert daemon.stop() == 0
    finally:
        daemon.kill()
