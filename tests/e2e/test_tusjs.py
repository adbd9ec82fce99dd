"""End-to-end tests driving the daemon with tus-js-client (Node), via js/tus_upload.js.

CI must run `npm ci` in tests/e2e/js first; without node_modules these tests
fail (they are not skipped).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.daemon import Daemon
from tests._support.sync_http import assert_same_bytes, download, head_offset, make_random_file

MiB = 1024 * 1024
JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "tus_upload.js"
NODE_TIMEOUT = 180


@pytest.fixture(scope="session")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail(
            "node is not on PATH; the tus-js-client e2e tests need Node >= 18", pytrace=False
        )
    if not (JS_DIR / "node_modules" / "tus-js-client" / "package.json").is_file():
        pytest.fail(
            f"tus-js-client is not installed in {JS_DIR}/node_modules: "
            f"run `npm ci --no-audit --no-fund` in {JS_DIR} before pytest",
            pytrace=False,
        )
    return exe


def run_tus_js(node: str, **options: object) -> dict[str, Any]:
    proc = subprocess.run(
        [node, str(SCRIPT), json.dumps(options)],
        cwd=str(JS_DIR),
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(
            f"tus_upload.js exited {proc.returncode} without a JSON result\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}",
            pytrace=False,
        )
    if result.get("status") == "error":
        pytest.fail(
            f"tus-js-client upload failed: {result.get('error')}\n"
            f"requests: {json.dumps(result.get('requests', [])[-10:], indent=1)}\n"
            f"stderr: {proc.stderr[-2000:]}",
            pytrace=False,
        )
    assert isinstance(result, dict), result
    return result


def test_tusjs_upload_aborted_at_40_percent_then_resumed_roundtrips_bytes(
    node: str, tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    size = 4 * MiB + 4321
    chunk = 256 * 1024
    src = tmp_path / "payload.bin"
    data = make_random_file(src, size)

    first = run_tus_js(
        node,
        endpoint=tusd.base_url,
        file=str(src),
        chunkSize=chunk,
        metadata={"filename": "js-resume.bin", "filetype": "application/octet-stream"},
        abortAtFraction=0.4,
    )
    assert first["status"] == "aborted", first
    url = first["url"]
    assert url, "tus-js-client did not report an upload URL"
    assert first["bytesAtAbort"] >= 0.4 * size

    # Chunks that completed before the abort are committed; the aborted one may be partially.
    offset = head_offset(http, url)
    assert 0.4 * size - chunk <= offset < size, f"offset after abort: {offset}"

    second = run_tus_js(node, uploadUrl=url, file=str(src), chunkSize=chunk)
    assert second["status"] == "success", second
    assert second["url"] == url
    assert second["firstPatchOffset"] is not None
    assert second["firstPatchOffset"] >= offset, (
        "resumed upload restarted below the server's offset"
    )
    assert not any(r["method"] == "POST" for r in second["requests"]), "resume created a new upload"

    resp = download(http, url)
    assert_same_bytes(resp.content, data)
    assert "js-resume.bin" in resp.headers.get("content-disposition", "")


def test_tusjs_parallel_uploads_concatenate_to_identical_bytes(
    node: str, tusd: Daemon, http: httpx.Client, tmp_path: Path
) -> None:
    size = 3 * MiB + 1001  # not divisible by 3
    src = tmp_path / "payload.bin"
    data = make_random_file(src, size)

    result = run_tus_js(
        node,
        endpoint=tusd.base_url,
        file=str(src),
        chunkSize=256 * 1024,
        parallelUploads=3,
        metadata={"filename": "parallel.bin"},
    )
    assert result["status"] == "success", result
    url = result["url"]

    posts = [r for r in result["requests"] if r["method"] == "POST"]
    partials = [r for r in posts if (r["uploadConcat"] or "") == "partial"]
    finals = [r for r in posts if (r["uploadConcat"] or "").startswith("final;")]
    assert len(partials) == 3 and len(finals) == 1, posts
    assert all(r["status"] == 201 for r in posts), posts

    head = http.head(url)
    assert head.status_code in (200, 204)
    assert head.headers.get("upload-concat", "").startswith("final;"), dict(head.headers)
    assert int(head.headers["upload-length"]) == size
    assert int(head.headers["upload-offset"]) == size

    resp = download(http, url)
    assert_same_bytes(resp.content, data)
