# ruff: noqa: E501 - the expected log lines are kept whole, one per line
"""tusd's log lines, line by line, for a scripted session against a daemon subprocess.

The expected lines are tusd v2's (fields, order, levels, which requests are logged,
start-up lines), written from tusd's observed answers, plus our documented additions
after tusd's fields: ``duration_ms`` on ``ResponseOutgoing`` and ``generatedRequestId``
when the client sent no ``X-Request-ID`` (README, "Differences from tusd").  The same
session is checked in ``-log-format text`` and ``-log-format json``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.daemon import Daemon
from tests._support.tus import OCTET, TUS

# The session, as tusd logs it (after the time stamp).  <id>: the upload ID, <gen>: a
# generated request ID, <ms>: a duration, <port>/<hook>: the daemon's and the hook
# server's ports, <dir>: the upload directory.
EXPECTED_TEXT = r"""
Using '<dir>' as directory storage.
Using 0.00MB as maximum size.
Using 'http://127.0.0.1:<hook>/hook' as the endpoint for hooks
Enabled hook events: pre-create
Supported tus extensions: creation,creation-with-upload,termination,concatenation,concatenation-unfinished,creation-defer-length,checksum,checksum-trailer
Using 127.0.0.1:0 as address to listen.
Using /files/ as the base path.
Using /metrics as the metrics path.
You can now upload files to: http://127.0.0.1:<port>/files/
level=INFO event=RequestIncoming method=POST path="" requestId="" generatedRequestId=<gen>
level=DEBUG event=HookInvocationStart type=pre-create id=""
level=DEBUG event=HookInvocationFinish type=pre-create id=""
level=INFO event=UploadCreated method=POST path="" requestId="" id=<id> size=10 url=http://127.0.0.1:<port>/files/<id> generatedRequestId=<gen>
level=INFO event=ResponseOutgoing method=POST path="" requestId="" id=<id> status=201 body="" duration_ms=<ms> generatedRequestId=<gen>
level=INFO event=RequestIncoming method=PATCH path=<id> requestId="" generatedRequestId=<gen>
level=INFO event=ChunkWriteStart method=PATCH path=<id> requestId="" id=<id> maxSize=5 offset=0 generatedRequestId=<gen>
level=INFO event=ChunkWriteComplete method=PATCH path=<id> requestId="" id=<id> bytesWritten=5 generatedRequestId=<gen>
level=INFO event=ResponseOutgoing method=PATCH path=<id> requestId="" id=<id> status=204 body="" duration_ms=<ms> generatedRequestId=<gen>
level=INFO event=RequestIncoming method=PATCH path=<id> requestId="" generatedRequestId=<gen>
level=INFO event=ResponseOutgoing method=PATCH path=<id> requestId="" id=<id> status=409 body="ERR_MISMATCHED_OFFSET: mismatched offset: the upload is at 5, the request says 0\n" duration_ms=<ms> generatedRequestId=<gen>
level=INFO event=RequestIncoming method=PUT path=<id> requestId="" generatedRequestId=<gen>
level=INFO event=RequestIncoming method=POST path=<id> requestId="" generatedRequestId=<gen>
level=INFO event=ResponseOutgoing method=POST path=<id> requestId="" id=<id> status=200 body="" duration_ms=<ms> generatedRequestId=<gen>
level=INFO event=RequestIncoming method=PATCH path=<id> requestId=client-42
level=INFO event=ChunkWriteStart method=PATCH path=<id> requestId=client-42 id=<id> maxSize=5 offset=5
level=INFO event=ChunkWriteComplete method=PATCH path=<id> requestId=client-42 id=<id> bytesWritten=5
level=INFO event=UploadFinished method=PATCH path=<id> requestId=client-42 id=<id> size=10
level=INFO event=ResponseOutgoing method=PATCH path=<id> requestId=client-42 id=<id> status=204 body="" duration_ms=<ms>
Received interrupt signal. Shutting down tusd-trio...
Shutdown completed. Goodbye!
""".strip().splitlines()

STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} ")
JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HookHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run_session(
    tmp_path: Path, hook_port: int, log_format: str
) -> tuple[list[str], dict[str, str]]:
    daemon = Daemon(
        tmp_path / "uploads",
        (
            "-log-format",
            log_format,
            "-hooks-http",
            f"http://127.0.0.1:{hook_port}/hook",
            "-hooks-enabled-events",
            "pre-create",
        ),
        log_dir=tmp_path,
    )
    daemon.start()
    try:
        base = f"http://127.0.0.1:{daemon.port}"
        with httpx.Client(timeout=10) as client:
            r = client.post(f"{base}/files/", headers={**TUS, "Upload-Length": "10"})
            assert r.status_code == 201
            location = r.headers["location"]
            r = client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"hello")
            assert r.status_code == 204
            r = client.patch(location, headers={**OCTET, "Upload-Offset": "0"}, content=b"hello")
            assert r.status_code == 409  # an offset mismatch
            assert client.put(location, headers=TUS).status_code == 405
            assert client.get(f"{base}/").status_code == 200  # the greeting
            assert client.get(f"{base}/metrics").status_code == 200
            r = client.post(location, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})
            assert (r.status_code, r.headers["upload-offset"]) == (200, "5")
            r = client.patch(
                location,
                headers={**OCTET, "Upload-Offset": "5", "X-Request-ID": "client-42"},
                content=b"world",
            )
            assert r.status_code == 204  # the upload is finished
        os.kill(daemon.pid, signal.SIGTERM)
        assert daemon.proc is not None
        daemon.proc.wait(20)
        deadline = time.monotonic() + 10
        while not any("Goodbye" in line for line in daemon.stdout_lines):
            assert time.monotonic() < deadline, daemon.stdout_lines
            time.sleep(0.05)
    finally:
        daemon.kill()
    names = {
        "<id>": location.rsplit("/", 1)[1],
        "127.0.0.1:<port>": f"127.0.0.1:{daemon.port}",
        "127.0.0.1:<hook>": f"127.0.0.1:{hook_port}",
        "<dir>": str(daemon.upload_dir),
    }
    return list(daemon.stdout_lines), names


def _normalize(text: str, names: dict[str, str]) -> str:
    for placeholder, value in names.items():
        text = text.replace(value, placeholder)
    return text


def test_text_session_line_by_line(tmp_path: Path, hook_port: int) -> None:
    lines, names = _run_session(tmp_path, hook_port, "text")
    got = []
    for line in lines:
        assert STAMP.match(line), line  # Go's log prefix, microseconds
        line = re.sub(r"generatedRequestId=[0-9a-f]{16}$", "generatedRequestId=<gen>", line)
        line = re.sub(r"duration_ms=[0-9.]+", "duration_ms=<ms>", STAMP.sub("", line))
        got.append(_normalize(line, names))
    assert got == EXPECTED_TEXT


def _expected_json(line: str) -> dict[str, Any]:
    """An expected text line as slog's JSON handler writes it."""
    if not line.startswith("level="):
        return {"level": "INFO", "msg": line}
    data: dict[str, Any] = {}
    for key, raw in LOGFMT.findall(line):
        value: Any = json.loads(raw) if raw.startswith('"') else raw
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        data["msg" if key == "event" else key] = value
    return data


def test_json_session_line_by_line(tmp_path: Path, hook_port: int) -> None:
    lines, names = _run_session(tmp_path, hook_port, "json")
    got = []
    for line in lines:
        assert line.startswith('{"time":"'), line  # compact, time first, as slog
        data = json.loads(line)
        assert list(data)[:3] == ["time", "level", "msg"], line
        assert JSON_TIME.match(data.pop("time")), line
        normalized: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str):
                value = _normalize(value, names)
            if key == "generatedRequestId":
                assert re.fullmatch(r"[0-9a-f]{16}", value), line
                value = "<gen>"
            if key == "duration_ms":
                assert isinstance(value, float | int) and value >= 0, line
                value = "<ms>"
            normalized[key] = value
        got.append(normalized)
    expected = [_expected_json(line) for line in EXPECTED_TEXT]
    assert [list(entry) for entry in got] == [list(entry) for entry in expected]  # key order
    assert got == expected
