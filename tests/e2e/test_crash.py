"""Restart and crash tests: the upload store must survive the daemon going away."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from tusclient import client as tus_client

from tests._support.daemon import DaemonFactory, upload_id_of, wait_for
from tests._support.raw_http import RawPatch
from tests._support.sync_http import (
    assert_same_bytes,
    create_upload,
    download,
    head_offset,
    make_random_file,
    sha256,
    uploader_url,
)

MiB = 1024 * 1024


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_upload_resumes_after_graceful_restart_on_same_upload_dir(
    sig: signal.Signals, daemon_factory: DaemonFactory, http: httpx.Client, tmp_path: Path
) -> None:
    daemon = daemon_factory.new("restart").start()
    size = 3 * MiB + 17
    chunk = 512 * 1024
    stop_at = 3 * chunk
    src = tmp_path / "payload.bin"
    data = make_random_file(src, size)

    first = tus_client.TusClient(daemon.base_url).uploader(
        file_path=str(src), chunk_size=chunk, metadata={"filename": "restart.bin"}
    )
    first.upload(stop_at=stop_at)
    assert first.offset == stop_at
    old_url = uploader_url(first)
    upload_id = upload_id_of(old_url)

    rc = daemon.stop(sig)
    assert rc == 0, f"daemon exited with {rc} after {sig.name}\n{daemon.diagnostics()}"
    assert (daemon.upload_dir / upload_id).stat().st_size == stop_at

    daemon.start()
    url = daemon.url_for(old_url)
    assert head_offset(http, url) == stop_at

    second = tus_client.TusClient(daemon.base_url).uploader(
        file_path=str(src), chunk_size=chunk, url=url
    )
    assert second.offset == stop_at
    second.upload()
    assert second.offset == size

    resp = download(http, url)
    assert_same_bytes(resp.content, data)
    assert "restart.bin" in resp.headers.get("content-disposition", ""), (
        "metadata lost across restart"
    )


def test_sigkill_during_large_patch_leaves_consistent_resumable_upload(
    daemon_factory: DaemonFactory, http: httpx.Client, tmp_path: Path
) -> None:
    daemon = daemon_factory.new("crash").start()
    size = 50 * MiB
    piece = 256 * 1024
    src = tmp_path / "big.bin"
    data = make_random_file(src, size)

    url = create_upload(http, daemon.base_url, size, {"filename": "crash.bin"})
    upload_id = upload_id_of(url)
    data_file = daemon.upload_dir / upload_id

    # One PATCH announcing all 50 MiB; send the first part only, keep the
    # connection open so the request is still in flight when the daemon dies.
    raw = RawPatch(url, offset=0, content_length=size)
    try:
        while raw.sent < 16 * MiB:
            raw.send(data[raw.sent : raw.sent + piece])
        # Give the daemon a chance to persist some of it (not required: a
        # daemon that has written nothing yet must still recover correctly).
        wait_for(
            lambda: data_file.exists() and data_file.stat().st_size > 0, timeout=10, required=False
        )
        rc = daemon.stop(signal.SIGKILL)
        assert rc == -signal.SIGKILL
    finally:
        raw.close()
    sent = raw.sent

    daemon.start()
    new_url = daemon.url_for(url)
    offset = head_offset(http, new_url)
    print(f"crash: sent={sent} offset_after_restart={offset}")
    assert offset <= sent, f"server claims {offset} bytes but only {sent} were sent"
    on_disk = data_file.read_bytes()
    assert offset == len(on_disk), f"HEAD offset {offset} != data file size {len(on_disk)}"
    assert sha256(on_disk) == sha256(data[:offset]), "data file does not hold the bytes sent"

    info_file = daemon.upload_dir / f"{upload_id}.info"
    if info_file.exists():  # tusd layout; the info file must not be torn by the crash
        info = json.loads(info_file.read_text())
        assert info["ID"] == upload_id
        assert info["Size"] == size

    uploader = tus_client.TusClient(daemon.base_url).uploader(
        file_path=str(src), chunk_size=8 * MiB, url=new_url
    )
    assert uploader.offset == offset
    uploader.upload()
    assert uploader.offset == size

    resp = download(http, new_url)
    assert_same_bytes(resp.content, data)
    assert "crash.bin" in resp.headers.get("content-disposition", "")
