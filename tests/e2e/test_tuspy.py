"""End-to-end tests driving the daemon with the tuspy client (sync uploader)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from tusclient import client as tus_client

from tests._support.daemon import Daemon
from tests._support.raw_http import RawPatch
from tests._support.sync_http import (
    assert_same_bytes,
    download,
    head_offset,
    make_random_file,
    uploader_url,
)

MiB = 1024 * 1024


def _content_disposition_filename(value: str) -> str | None:
    m = re.search(r'filename\*?=(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', value)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def test_tuspy_chunked_upload_with_metadata_roundtrips_bytes_and_filename(
    tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    size = 5 * MiB + 12345  # last chunk is a short one
    chunk = 512 * 1024
    src = tmp_path / "payload.bin"
    data = make_random_file(src, size)
    filename = "e2e report-2024.bin"

    uploader = tus_client.TusClient(tusd.base_url).uploader(
        file_path=str(src), chunk_size=chunk, metadata={"filename": filename}
    )
    offsets = []
    while uploader.offset < size:
        uploader.upload_chunk()
        offsets.append(uploader.offset)
    assert offsets == [min(size, chunk * (i + 1)) for i in range(len(offsets))], (
        "every PATCH should advance the offset by exactly one chunk"
    )
    assert len(offsets) == -(-size // chunk)

    head = http.head(uploader_url(uploader))
    assert head.status_code in (200, 204)
    assert int(head.headers["upload-offset"]) == size
    assert int(head.headers["upload-length"]) == size

    resp = download(http, uploader_url(uploader))
    assert_same_bytes(resp.content, data)
    cd = resp.headers.get("content-disposition")
    assert cd is not None, "GET of an upload with filename metadata has no Content-Disposition"
    assert _content_disposition_filename(cd) == filename, f"Content-Disposition was {cd!r}"


def test_tuspy_resume_with_new_uploader_after_stopping_midway(
    tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    size = 4 * MiB + 777
    chunk = 256 * 1024
    stop_at = 6 * chunk + 1000  # not chunk aligned: the last PATCH before stopping is short
    src = tmp_path / "payload.bin"
    data = make_random_file(src, size)

    first = tus_client.TusClient(tusd.base_url).uploader(
        file_path=str(src), chunk_size=chunk, metadata={"filename": "resume.bin"}
    )
    first.upload(stop_at=stop_at)
    assert first.offset == stop_at
    url = uploader_url(first)
    del first  # the first client is gone; only the URL survives

    assert head_offset(http, url) == stop_at

    second = tus_client.TusClient(tusd.base_url).uploader(
        file_path=str(src), chunk_size=chunk, url=url
    )
    assert second.offset == stop_at, "tuspy should pick up the server's offset via HEAD"
    second.upload()
    assert second.offset == size
    assert uploader_url(second) == url

    assert_same_bytes(download(http, url).content, data)


def _start_and_drop_patch(
    tusd: Daemon, tmp_path: Path, size: int, chunk: int, partial: int, *, wait_for_answer: bool
) -> tuple[Path, bytes, str, bytes]:
    """tuspy uploads one chunk; then a raw client announces the whole rest of
    the file in one PATCH, sends ``partial`` bytes of it and ends the
    connection without finishing the body."""
    src = tmp_path / "payload.bin"
    data = make_random_file(src, size)
    uploader = tus_client.TusClient(tusd.base_url).uploader(
        file_path=str(src), chunk_size=chunk, metadata={"filename": "dropped.bin"}
    )
    uploader.upload(stop_at=chunk)
    assert uploader.offset == chunk
    raw = RawPatch(uploader_url(uploader), offset=chunk, content_length=size - chunk)
    raw.send(data[chunk : chunk + partial])
    if wait_for_answer:
        answer = raw.end_early()
    else:
        raw.close()
        answer = b""
    return src, data, uploader_url(uploader), answer


def test_tuspy_resume_after_client_connection_dropped_mid_patch(
    tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    size, chunk, partial = 3 * MiB + 99, 512 * 1024, 700 * 1024 + 3
    src, data, url, _ = _start_and_drop_patch(
        tusd, tmp_path, size, chunk, partial, wait_for_answer=False
    )

    # The server may still be busy with the dropped request. A real client
    # just goes on: it reads the offset (HEAD) and retries on conflict, as
    # tuspy does here. (tusd may cut the stalled request short when another
    # request asks for the upload's lock, dropping bytes not yet read.)
    offset = head_offset(http, url)
    assert chunk <= offset <= chunk + partial
    resumed = tus_client.TusClient(tusd.base_url).uploader(
        file_path=str(src), chunk_size=chunk, url=url, retries=10, retry_delay=0.5
    )
    assert chunk <= resumed.offset <= chunk + partial
    resumed.upload()
    assert resumed.offset == size

    assert_same_bytes(download(http, url).content, data)


def test_server_keeps_every_byte_received_before_client_disconnect(
    tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    # tus 1.0.0: "The Server SHOULD always attempt to store as much of the
    # received data as possible"; tusd stores all of it. The client half-closes
    # and waits for the server's answer, so every byte sent has been read.
    size, chunk, partial = 3 * MiB + 99, 512 * 1024, 700 * 1024 + 3
    src, data, url, answer = _start_and_drop_patch(
        tusd, tmp_path, size, chunk, partial, wait_for_answer=True
    )
    status_line = answer.split(b"\r\n", 1)[0]
    assert not status_line.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")), (
        f"an incomplete body must not be answered with success: {status_line!r}"
    )

    expected = chunk + partial
    assert head_offset(http, url) == expected

    resumed = tus_client.TusClient(tusd.base_url).uploader(
        file_path=str(src), chunk_size=chunk, url=url
    )
    assert resumed.offset == expected
    resumed.upload()
    assert_same_bytes(download(http, url).content, data)


def test_tuspy_upload_without_metadata_is_accepted(
    tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    # tuspy always sends an Upload-Metadata header, empty when there is no
    # metadata; tusd accepts that, so a drop-in replacement must too.
    src = tmp_path / "payload.bin"
    data = make_random_file(src, 64 * 1024 + 1)
    uploader = tus_client.TusClient(tusd.base_url).uploader(file_path=str(src))
    uploader.upload()
    assert uploader.offset == len(data)
    assert_same_bytes(download(http, uploader_url(uploader)).content, data)
