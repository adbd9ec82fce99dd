"""Blocking HTTP helpers for the tests against a daemon subprocess (httpx.Client)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from pathlib import Path

import httpx
from tusclient.uploader.baseuploader import BaseUploader

#: Generous: the machines running the tests are shared and slow at times.
HTTP_TIMEOUT = httpx.Timeout(60.0)


def http_client() -> httpx.Client:
    """A client that sends ``Tus-Resumable: 1.0.0`` with every request."""
    return httpx.Client(timeout=HTTP_TIMEOUT, headers={"Tus-Resumable": "1.0.0"})


def make_random_file(path: Path, size: int, seed: int | None = None) -> bytes:
    data = os.urandom(size) if seed is None else random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(client: httpx.Client, url: str) -> httpx.Response:
    resp = client.get(url)
    assert resp.status_code == 200, f"GET {url} -> {resp.status_code}: {resp.text[:500]}"
    return resp


def assert_same_bytes(got: bytes, expected: bytes) -> None:
    # Compare digests so a mismatch does not dump megabytes into the report.
    assert len(got) == len(expected), f"length differs: got {len(got)}, expected {len(expected)}"
    assert sha256(got) == sha256(expected), "content differs (sha256 mismatch)"


def head_offset(client: httpx.Client, url: str) -> int:
    resp = client.head(url)
    assert resp.status_code in (200, 204), f"HEAD {url} -> {resp.status_code}"
    assert "upload-offset" in resp.headers, f"HEAD {url} has no Upload-Offset: {dict(resp.headers)}"
    return int(resp.headers["upload-offset"])


def create_upload(
    client: httpx.Client, base_url: str, length: int, metadata: dict[str, str] | None = None
) -> str:
    """POST a new upload of ``length`` bytes; return its absolute URL."""
    headers = {"Upload-Length": str(length)}
    if metadata:
        headers["Upload-Metadata"] = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items()
        )
    resp = client.post(base_url, headers=headers)
    assert resp.status_code == 201, f"POST {base_url} -> {resp.status_code}: {resp.text[:500]}"
    location = resp.headers.get("location")
    assert location, f"POST {base_url} returned no Location header"
    return str(httpx.URL(base_url).join(location))


def uploader_url(uploader: BaseUploader) -> str:
    """The URL of the upload a tuspy uploader created (tuspy declares the attribute as
    None until then, so it is checked here)."""
    url: object = uploader.url
    assert isinstance(url, str), f"the uploader has no upload URL: {url!r}"
    return url
