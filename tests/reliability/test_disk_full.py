"""A full disk: 507 ERR_INSUFFICIENT_STORAGE, no lost or invented bytes, and recovery once
space is freed.  The upload directory lives on a 2 MiB tmpfs (or a loop-mounted ext2
image), so these tests need root (CAP_SYS_ADMIN); without it they fail with the reason.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import httpx

from tests._support.daemon import Daemon, upload_id_of
from tests._support.sync_http import http_client, sha256

from ._crash_support import (
    KiB,
    MiB,
    data_files_without_info,
    fill_disk,
    leftover_side_files,
    resume_with_tuspy,
    small_filesystem,
)

FS_KIB = 2048
CHUNK = 256 * KiB
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def _create(http: httpx.Client, base_url: str, length: int, name: str) -> str:
    resp = http.post(
        base_url,
        headers={
            "Upload-Length": str(length),
            "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode(),
        },
    )
    assert resp.status_code == 201, f"POST -> {resp.status_code} {resp.text[:200]}"
    return base_url + upload_id_of(resp.headers["location"])


def _upload_all(http: httpx.Client, url: str, payload: bytes) -> None:
    resp = http.patch(url, content=payload, headers={**OCTETS, "Upload-Offset": "0"})
    assert resp.status_code == 204, f"PATCH -> {resp.status_code} {resp.text[:200]}"


def _assert_insufficient_storage(resp: httpx.Response, what: str) -> None:
    assert resp.status_code == 507, f"{what} -> {resp.status_code} {resp.text[:300]}"
    assert resp.text.startswith("ERR_INSUFFICIENT_STORAGE"), f"{what} body: {resp.text[:300]!r}"


def test_patch_on_full_disk_gets_507_keeps_acknowledged_bytes_and_resumes_after_delete(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    # Together they do not fit on the 2 MiB file system; the big one alone does.
    filler_payload = rng.randbytes(1 * MiB + 5)
    big_payload = rng.randbytes(3 * MiB // 2 + 11)

    with small_filesystem(tmp_path, FS_KIB) as fs:
        upload_dir = fs.mountpoint / "uploads"
        daemon = Daemon(upload_dir, ("-verbose=false",), log_dir=tmp_path)
        try:
            daemon.start()
            with http_client() as http:
                filler_url = _create(http, daemon.base_url, len(filler_payload), "filler.bin")
                _upload_all(http, filler_url, filler_payload)

                big_url = _create(http, daemon.base_url, len(big_payload), "big.bin")
                big_file = upload_dir / upload_id_of(big_url)
                acked = 0
                failed: httpx.Response | None = None
                while acked < len(big_payload):
                    chunk = big_payload[acked : acked + CHUNK]
                    resp = http.patch(
                        big_url, content=chunk, headers={**OCTETS, "Upload-Offset": str(acked)}
                    )
                    if resp.status_code != 204:
                        failed = resp
                        break
                    assert int(resp.headers["upload-offset"]) == acked + len(chunk)
                    acked += len(chunk)
                assert failed is not None, (
                    f"{len(big_payload)} bytes fit on a {FS_KIB} KiB {fs.kind}: no ENOSPC"
                )
                print(f"{fs.kind}: 507 after {acked} acknowledged bytes")
                _assert_insufficient_storage(failed, f"PATCH at offset {acked} on a full disk")

                resp = http.head(big_url)
                assert resp.status_code == 200, f"HEAD -> {resp.status_code}"
                offset = int(resp.headers["upload-offset"])
                on_disk = big_file.read_bytes()
                assert offset == len(on_disk), (
                    f"HEAD offset {offset} != data file size {len(on_disk)}"
                )
                assert acked <= offset <= acked + CHUNK, (
                    f"offset {offset} after 507; acknowledged {acked}, last chunk {CHUNK}"
                )
                assert on_disk == big_payload[:offset], "the data file is not the bytes sent"

                resp = http.get(filler_url)
                assert resp.status_code == 200
                assert sha256(resp.content) == sha256(filler_payload), "the other upload changed"

                # Creation on a completely full disk: 507, and no half-created upload.
                before = sorted(p.name for p in upload_dir.iterdir())
                fill_disk(fs.mountpoint / "filler")
                resp = http.post(daemon.base_url, headers={"Upload-Length": "1000"})
                _assert_insufficient_storage(resp, "POST on a full disk")
                after = sorted(p.name for p in upload_dir.iterdir())
                assert after == before, (
                    f"a failed creation left files: {sorted(set(after) - set(before))}"
                )
                assert not data_files_without_info(upload_dir)
                (fs.mountpoint / "filler").unlink()

                # Free space by terminating the other upload, then finish the big one.
                resp = http.delete(filler_url)
                assert resp.status_code == 204, f"DELETE -> {resp.status_code} {resp.text[:200]}"
                assert not (upload_dir / upload_id_of(filler_url)).exists()
                assert not (upload_dir / f"{upload_id_of(filler_url)}.info").exists()

                start = resume_with_tuspy(big_url, big_payload, chunk_size=CHUNK)
                assert start == offset, f"tuspy resumed at {start}, HEAD said {offset}"
                resp = http.get(big_url)
                assert resp.status_code == 200
                assert sha256(resp.content) == sha256(big_payload), "resumed upload differs"
                assert sha256(big_file.read_bytes()) == sha256(big_payload)

            assert daemon.stop() == 0, daemon.diagnostics()
            assert not leftover_side_files(upload_dir), leftover_side_files(upload_dir)
            assert not data_files_without_info(upload_dir), data_files_without_info(upload_dir)
        finally:
            daemon.kill()  # before the unmount: the daemon must not keep the mount busy


def test_delete_and_head_work_on_a_completely_full_disk(tmp_path: Path) -> None:
    """The way out of a full disk is deleting uploads: that must not need free space
    (for example for a lock file)."""
    rng = random.Random(8)
    payload = rng.randbytes(512 * KiB + 3)
    with small_filesystem(tmp_path, FS_KIB) as fs:
        upload_dir = fs.mountpoint / "uploads"
        daemon = Daemon(upload_dir, ("-verbose=false",), log_dir=tmp_path)
        try:
            daemon.start()
            with http_client() as http:
                url = _create(http, daemon.base_url, len(payload), "victim.bin")
                _upload_all(http, url, payload)
                upload_id = upload_id_of(url)

                fill_disk(fs.mountpoint / "filler")
                resp = http.head(url)
                assert resp.status_code == 200, (
                    f"HEAD on a full disk -> {resp.status_code} {resp.text[:300]}"
                )
                assert int(resp.headers["upload-offset"]) == len(payload)
                resp = http.delete(url)
                assert resp.status_code == 204, (
                    f"DELETE on a full disk -> {resp.status_code} {resp.text[:300]}"
                )
                assert not (upload_dir / upload_id).exists()
                assert not (upload_dir / f"{upload_id}.info").exists()
                assert not leftover_side_files(upload_dir), leftover_side_files(upload_dir)
            assert daemon.stop() == 0, daemon.diagnostics()
        finally:
            daemon.kill()


def test_patch_on_a_completely_full_disk_gets_507_and_resumes_once_space_is_freed(
    tmp_path: Path,
) -> None:
    """No free block at all (not even for a lock file): still 507, not 500, and nothing
    left behind."""
    rng = random.Random(9)
    payload = rng.randbytes(300 * KiB + 1)
    kept = 100 * KiB
    with small_filesystem(tmp_path, FS_KIB) as fs:
        upload_dir = fs.mountpoint / "uploads"
        daemon = Daemon(upload_dir, ("-verbose=false",), log_dir=tmp_path)
        try:
            daemon.start()
            with http_client() as http:
                url = _create(http, daemon.base_url, len(payload), "stuck.bin")
                resp = http.patch(
                    url, content=payload[:kept], headers={**OCTETS, "Upload-Offset": "0"}
                )
                assert resp.status_code == 204

                fill_disk(fs.mountpoint / "filler")
                resp = http.patch(
                    url,
                    content=payload[kept : kept + CHUNK],
                    headers={**OCTETS, "Upload-Offset": str(kept)},
                )
                _assert_insufficient_storage(resp, "PATCH on a completely full disk")
                resp = http.head(url)
                assert resp.status_code == 200, f"HEAD -> {resp.status_code} {resp.text[:300]}"
                offset = int(resp.headers["upload-offset"])
                on_disk = (upload_dir / upload_id_of(url)).read_bytes()
                assert offset == len(on_disk) == kept, (offset, len(on_disk), kept)
                assert on_disk == payload[:kept]
                assert not leftover_side_files(upload_dir), leftover_side_files(upload_dir)

                (fs.mountpoint / "filler").unlink()
                assert resume_with_tuspy(url, payload, chunk_size=CHUNK) == kept
                resp = http.get(url)
                assert sha256(resp.content) == sha256(payload)
            assert daemon.stop() == 0, daemon.diagnostics()
        finally:
            daemon.kill()
