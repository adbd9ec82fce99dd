"""File hooks with real executables written to tmp_path."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests._support.hook_events import UPLOAD_ID, make_event
from tusd_trio.hooks.file import FileHookBackend
from tusd_trio.hooks.model import HookError, HookResponse, HTTPResponse, build_request

RECORDER = f"""#!{sys.executable}
import json, os, sys
data = sys.stdin.read()
with open(os.path.join(os.getcwd(), "record.json"), "w") as f:
    json.dump({{
        "stdin": data,
        "cwd": os.getcwd(),
        "env": {{k: os.environ.get(k) for k in ("TUS_ID", "TUS_SIZE", "TUS_OFFSET", "PARENT_VAR")}},
    }}, f)
print("hello from the hook", file=sys.stderr)
print(json.dumps({{"HTTPResponse": {{"StatusCode": 201, "Header": {{"X-Hook": "yes"}}}}}}))
"""


def write_hook(directory: Path, name: str, text: str, mode: int = 0o755) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_runs_script_with_stdin_env_and_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARENT_VAR", "inherited")
    write_hook(tmp_path, "post-finish", RECORDER)
    backend = FileHookBackend(tmp_path)
    payload = build_request(make_event("post-finish"), idempotency_key="k1")
    resp = await backend.invoke("post-finish", payload)
    assert resp == HookResponse(http_response=HTTPResponse(201, None, {"X-Hook": "yes"}))
    record = json.loads((tmp_path / "record.json").read_text())
    assert json.loads(record["stdin"]) == payload
    assert os.path.realpath(record["cwd"]) == os.path.realpath(tmp_path)
    assert record["env"] == {
        "TUS_ID": UPLOAD_ID,
        "TUS_SIZE": "11",
        "TUS_OFFSET": "11",
        "PARENT_VAR": "inherited",
    }
    # stderr is passed through to ours.
    assert "hello from the hook" in capfd.readouterr().err


async def test_pre_create_env_has_empty_id(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-create", RECORDER)
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    await FileHookBackend(tmp_path).invoke("pre-create", payload)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["env"]["TUS_ID"] == ""


async def test_bash_hook_rejects(tmp_path: Path) -> None:
    write_hook(
        tmp_path,
        "pre-create",
        '#!/bin/bash\ncat > /dev/null\necho \'{"RejectUpload": true, '
        '"HTTPResponse": {"StatusCode": 403, "Body": "no"}}\'\n',
    )
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    resp = await FileHookBackend(tmp_path).invoke("pre-create", payload)
    assert resp.reject_upload is True
    assert resp.http_response == HTTPResponse(403, "no", {})


async def test_missing_hook_is_skipped(tmp_path: Path) -> None:
    payload = build_request(make_event("post-create"), idempotency_key="k")
    assert await FileHookBackend(tmp_path).invoke("post-create", payload) == HookResponse()


async def test_not_executable_fails_the_hook(tmp_path: Path) -> None:
    # As tusd ("permission denied"): an access check that lost its +x bit must
    # not be bypassed silently.
    write_hook(tmp_path, "post-create", "#!/bin/sh\nexit 3\n", mode=0o644)
    payload = build_request(make_event("post-create"), idempotency_key="k")
    with pytest.raises(HookError, match="not an executable file"):
        await FileHookBackend(tmp_path).invoke("post-create", payload)


async def test_directory_named_like_a_hook_fails_the_hook(tmp_path: Path) -> None:
    (tmp_path / "post-create").mkdir()
    payload = build_request(make_event("post-create"), idempotency_key="k")
    with pytest.raises(HookError):
        await FileHookBackend(tmp_path).invoke("post-create", payload)


async def test_empty_stdout_is_empty_response(tmp_path: Path) -> None:
    # The script does not even read its stdin.
    write_hook(tmp_path, "post-receive", "#!/bin/sh\nexit 0\n")
    big = make_event("post-receive")
    big.upload.metadata["filler"] = "x" * 1_000_000
    payload = build_request(big, idempotency_key="k")
    assert await FileHookBackend(tmp_path).invoke("post-receive", payload) == HookResponse()


async def test_nonzero_exit_is_an_error(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-finish", "#!/bin/sh\ncat >/dev/null\necho 'not allowed'\nexit 7\n")
    payload = build_request(make_event("pre-finish"), idempotency_key="k")
    with pytest.raises(HookError, match="unexpected return code 7 from hook endpoint: not allowed"):
        await FileHookBackend(tmp_path).invoke("pre-finish", payload)


async def test_invalid_stdout_is_an_error(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-finish", "#!/bin/sh\necho '{broken'\n")
    payload = build_request(make_event("pre-finish"), idempotency_key="k")
    with pytest.raises(HookError, match="failed to parse hook response"):
        await FileHookBackend(tmp_path).invoke("pre-finish", payload)


async def test_invalid_change_id_is_an_error(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-create", '#!/bin/sh\necho \'{"ChangeFileInfo": {"ID": "/x"}}\'\n')
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    with pytest.raises(HookError, match="FileInfoChanges"):
        await FileHookBackend(tmp_path).invoke("pre-create", payload)


async def test_bad_interpreter_is_an_error(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-create", "#!/no/such/interpreter\n")
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    with pytest.raises(HookError, match="failed to run hook pre-create"):
        await FileHookBackend(tmp_path).invoke("pre-create", payload)


async def test_timeout_kills_the_hook(tmp_path: Path) -> None:
    write_hook(tmp_path, "pre-create", "#!/bin/sh\nexec sleep 30\n")
    payload = build_request(make_event("pre-create"), idempotency_key="k")
    started = time.monotonic()
    with pytest.raises(HookError, match="timed out"):
        await FileHookBackend(tmp_path, timeout=0.3).invoke("pre-create", payload)
    assert time.monotonic() - started < 5
