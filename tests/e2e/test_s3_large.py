"""One upload of more than 1 GiB through the S3 store (moto server), interrupted
twice (a client that stops, then a connection dropped mid-PATCH and the daemon
SIGKILLed) and resumed with tuspy; the object in the bucket and the GET
download must match the source byte for byte."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from tusclient import client as tus_client

from tests._support.daemon import DaemonFactory
from tests._support.raw_http import RawPatch
from tests._support.services import S3_ENV, Service, create_s3_bucket
from tests._support.sync_http import head_offset, uploader_url

MiB = 1024 * 1024
SIZE = 1024 * MiB + 4321  # a little over 1 GiB, not part-aligned


def _write_source(path: Path) -> str:
    """Write SIZE random bytes (in 8 MiB pieces, bounded memory); return sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        written = 0
        while written < SIZE:
            piece = os.urandom(min(8 * MiB, SIZE - written))
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
    return digest.hexdigest()


def test_1gib_upload_through_s3_interrupted_and_resumed(
    s3_server: Service,
    bucket_name: str,
    daemon_factory: DaemonFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    create_s3_bucket(s3_server.endpoint, bucket_name)
    source = tmp_path / "big.bin"
    expected = _write_source(source)
    args = (
        "-s3-bucket",
        bucket_name,
        "-s3-endpoint",
        s3_server.endpoint,
        "-s3-part-size",
        str(16 * MiB),
        "-s3-max-buffered-parts",
        "4",
    )
    daemon = daemon_factory.new("s3", extra_args=args).start()
    http = httpx.Client(timeout=120)

    # 1. tuspy uploads part of the file and stops (the client goes away).
    chunk = 48 * MiB
    first = tus_client.TusClient(daemon.base_url).uploader(
        file_path=str(source), chunk_size=chunk, metadata={"filename": "big.bin"}
    )
    first.upload(stop_at=5 * chunk)
    url = uploader_url(first)
    assert head_offset(http, url) == 5 * chunk

    # 2. A raw PATCH sends 100 MiB of the rest and drops the connection; then the
    #    daemon is killed outright (no graceful shutdown).
    with open(source, "rb") as handle:
        handle.seek(5 * chunk)
        sent = handle.read(100 * MiB + 17)
    raw = RawPatch(url, offset=5 * chunk, content_length=SIZE - 5 * chunk)
    raw.send(sent)
    raw.close()
    offset_after_drop = head_offset(http, url)  # the daemon settles what it received
    assert 5 * chunk <= offset_after_drop <= 5 * chunk + len(sent)
    daemon.stop(signal.SIGKILL)

    # 3. A new daemon (same bucket) and a new tuspy client resume from the server's offset.
    daemon.start()
    url = daemon.url_for(url)
    resumed_at = head_offset(http, url)
    assert 5 * chunk <= resumed_at <= 5 * chunk + len(sent)
    second = tus_client.TusClient(daemon.base_url).uploader(
        file_path=str(source), chunk_size=chunk, url=url, retries=5, retry_delay=1
    )
    assert second.offset == resumed_at
    second.upload()
    assert second.offset == SIZE
    assert head_offset(http, url) == SIZE

    # 4. The finished object in the bucket, and the GET download, equal the source.
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    object_id = url.rstrip("/").rsplit("/", 1)[1].split("+", 1)[0]
    body = s3.get_object(Bucket=bucket_name, Key=object_id)["Body"]
    digest = hashlib.sha256()
    for piece in iter(lambda: body.read(8 * MiB), b""):
        digest.update(piece)
    assert digest.hexdigest() == expected
    digest = hashlib.sha256()
    length = 0
    with http.stream("GET", url) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes(8 * MiB):
            digest.update(piece)
            length += len(piece)
    assert length == SIZE
    assert digest.hexdigest() == expected
    http.close()
    daemon.stop()
