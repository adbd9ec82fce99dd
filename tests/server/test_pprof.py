"""tusd's profiling flags (-expose-pprof, -pprof-path, the two Go rate flags) and what is
served under the path: an index, the Trio task stacks, CPU profiles taken by a real
py-spy attached to a real daemon process.  The access rule is the one of /metrics."""

from __future__ import annotations

import os
import re
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._support.daemon import Daemon, DaemonFactory, daemon_env
from tusd_trio.auth.apikeys import hash_api_key
from tusd_trio.server._pprof import _without_empty_stacks

PPROF = "/debug/pprof/"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
USER_KEY = "user-key-0123456789abcdef"


def _get(daemon: Daemon, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{daemon.port}{path}", timeout=60, **kwargs)


def test_a_tusd_command_line_with_the_profiling_flags_starts(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory.start(
        "-expose-pprof",
        "-pprof-path",
        "/debug/pprof/",
        "-pprof-block-profile-rate=1",
        "--pprof-mutex-profile-rate",
        "-1",
    )
    line = daemon.wait_line("as the profiling path")
    assert line.endswith(" Using /debug/pprof/ as the profiling path.")
    assert "Ignoring -pprof-block-profile-rate and -pprof-mutex-profile-rate" in daemon.output()
    index = _get(daemon, PPROF)
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert f"process {daemon.pid}" in index.text
    for link in ('href="/debug/pprof/tasks"', 'href="/debug/pprof/profile?seconds=10"'):
        assert link in index.text
    # Without the trailing slash: the index too.
    assert _get(daemon, "/debug/pprof").text == index.text
    unknown = _get(daemon, PPROF + "heap")
    assert (unknown.status_code, unknown.text) == (404, "ERR_UPLOAD_NOT_FOUND: not found\n")


def test_a_custom_pprof_path_moves_the_endpoints(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory.start(
        "-expose-pprof", "-pprof-path", "/ops/prof", "-show-greeting=false"
    )
    assert _get(daemon, "/ops/prof/tasks").status_code == 200
    assert _get(daemon, "/debug/pprof/tasks").status_code == 404


def test_profiling_is_off_by_default(daemon_factory: DaemonFactory) -> None:
    for args in ((), ("-show-greeting=false",)):
        daemon = daemon_factory.start(*args)
        unknown = _get(daemon, "/not/a/known/path")
        for path in (PPROF, PPROF + "tasks", PPROF + "profile?seconds=1"):
            r = _get(daemon, path)
            # As any other unknown path: the greeting, or 404 without it.
            assert (r.status_code, r.text) == (unknown.status_code, unknown.text), path
        assert unknown.status_code == (404 if args else 200)
        daemon.stop()


def _open_patch_blocked_mid_body(daemon: Daemon) -> socket.socket:
    created = httpx.post(
        daemon.base_url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1000"}
    )
    assert created.status_code == 201
    path = httpx.URL(created.headers["location"]).path
    sock = socket.create_connection(("127.0.0.1", daemon.port))
    sock.sendall(
        (
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            "Content-Length: 1000\r\n\r\n"
        ).encode()
        + b"x" * 10
    )
    return sock


def test_the_task_dump_shows_a_patch_waiting_for_its_body(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory.start("-expose-pprof")
    sock = _open_patch_blocked_mid_body(daemon)
    try:
        deadline = time.monotonic() + 20
        while True:
            r = _get(daemon, PPROF + "tasks")
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
            if re.search(r"tusd_trio/server/_write\.py:\d+ in patch\b", r.text):
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
    finally:
        sock.close()
    text = r.text
    assert text.startswith("tusd-trio ") and f"process {daemon.pid}:" in text.splitlines()[0]
    # The request asking is in the tree too, marked, and so is the loop's thread.
    assert "(this request)" in text
    assert "(runs the Trio loop" in text
    # Frames come with their source lines.
    patch_line = re.search(r"_write\.py:\d+ in patch\n\s+(\S.*)", text)
    assert patch_line is not None and patch_line.group(1).strip()


def _busy_uploads(daemon: Daemon, stop: threading.Event, working: threading.Event) -> None:
    """Work for the profiler to see: creations and HEADs until ``stop``; ``working`` is set
    once the first round was answered (so a profile never starts before the load)."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            r = client.post(
                daemon.base_url,
                headers={"Tus-Resumable": "1.0.0", "Upload-Length": "0"},
            )
            client.head(r.headers["location"], headers={"Tus-Resumable": "1.0.0"})
            working.set()


@pytest.fixture
def busy_daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    daemon = daemon_factory.start("-expose-pprof", "-verbose=false")
    stop, working = threading.Event(), threading.Event()
    worker = threading.Thread(target=_busy_uploads, args=(daemon, stop, working), daemon=True)
    worker.start()
    try:
        assert working.wait(60), "the load for the profiler never got an answer"
        yield daemon
    finally:
        stop.set()
        worker.join(30)


def test_a_cpu_profile_as_speedscope_json(busy_daemon: Daemon) -> None:
    r = _get(busy_daemon, PPROF + "profile?seconds=2")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-disposition"] == (
        f'attachment; filename="tusd-trio-{busy_daemon.pid}.speedscope.json"'
    )
    profile = r.json()
    assert profile["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    names = {frame["name"] for frame in profile["shared"]["frames"]}
    files = {frame.get("file", "") for frame in profile["shared"]["frames"]}
    assert profile["profiles"] and any(p["samples"] for p in profile["profiles"])
    # The daemon's own code was sampled.
    assert any("tusd_trio" in name for name in files), sorted(files)[:20]
    assert names


def test_a_cpu_profile_as_collapsed_stacks(busy_daemon: Daemon) -> None:
    r = _get(busy_daemon, PPROF + "profile?seconds=2&format=collapsed&rate=200")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    lines = r.text.splitlines()
    assert lines
    for line in lines:
        stack, _, count = line.rpartition(" ")
        assert stack and count.isdigit(), line
    assert any("tusd_trio" in line for line in lines)


def test_collapsed_stacks_drop_samples_that_caught_no_frame() -> None:
    # What py-spy writes when a non-blocking sample read a thread between frames.
    raw = b"main (a.py:1);serve (b.py:2) 5\n 2\nmain (a.py:1) 1\n"
    assert _without_empty_stacks(raw) == b"main (a.py:1);serve (b.py:2) 5\nmain (a.py:1) 1\n"


def test_only_one_profile_runs_at_a_time(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory.start("-expose-pprof")
    first: list[httpx.Response] = []
    runner = threading.Thread(
        target=lambda: first.append(_get(daemon, PPROF + "profile?seconds=3&format=collapsed"))
    )
    runner.start()
    try:
        # The profiler is a child of the daemon while it runs.
        deadline = time.monotonic() + 20
        while not daemon.children():
            assert time.monotonic() < deadline, "the profiler never started"
            time.sleep(0.02)
        second = _get(daemon, PPROF + "profile?seconds=1")
        assert second.status_code == 409
        assert second.text.startswith("ERR_PROFILE_IN_PROGRESS: ")
        # Other profiling endpoints still answer meanwhile.
        assert _get(daemon, PPROF + "tasks").status_code == 200
    finally:
        runner.join(60)
    assert first and first[0].status_code == 200, first
    # The slot is free again.
    again = _get(daemon, PPROF + "profile?seconds=1&format=collapsed")
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    "query",
    ["seconds=0", "seconds=121", "seconds=1.5", "seconds=abc", "rate=0", "rate=5000", "format=pb"],
)
async def test_bad_profile_parameters_are_refused(make_server: Any, query: str) -> None:
    srv = await make_server(protocol={"pprof_path": PPROF})
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}{PPROF}profile?{query}")
    assert r.status_code == 400
    assert r.text.startswith("ERR_INVALID_PROFILE_REQUEST: "), r.text


def test_without_py_spy_a_profile_is_501(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    # The interpreter the venv was made from, with the venv's packages but not its
    # scripts: py-spy's executable is nowhere to be found, as when it is not installed.
    base_python = os.path.join(sys.base_prefix, "bin", "python3")
    assert not os.path.exists(os.path.join(sys.base_prefix, "bin", "py-spy"))
    env = daemon_env()
    env["PYTHONPATH"] += os.pathsep + sysconfig.get_path("purelib")
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    daemon = Daemon(
        tmp_path / "data", ["-expose-pprof"], command=[base_python, "-m", "tusd_trio"], env=env
    )
    daemon_factory.daemons.append(daemon)
    daemon.start()
    r = _get(daemon, PPROF + "profile?seconds=1")
    assert r.status_code == 501
    assert r.text == (
        "ERR_PROFILER_UNAVAILABLE: the CPU profiler py-spy is not installed "
        "(pip install 'tusd-trio[pprof]')\n"
    )
    assert "not available: py-spy is not installed" in _get(daemon, PPROF).text
    assert _get(daemon, PPROF + "tasks").status_code == 200


def _write_keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.write_text(
        hash_api_key(ADMIN_KEY, "root", admin=True) + "\n" + hash_api_key(USER_KEY, "user") + "\n"
    )
    return keys


def test_the_access_rule_is_the_metrics_one(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text(METRICS_TOKEN)
    daemon = daemon_factory.start(
        "-expose-pprof",
        "-auth-api-keys",
        str(_write_keys(tmp_path)),
        "-metrics-token-file",
        str(token_file),
    )
    credentials: dict[str, dict[str, str]] = {
        "none": {},
        "user key": {"X-API-Key": USER_KEY},
        "admin key": {"X-API-Key": ADMIN_KEY},
        "metrics token": {"Authorization": f"Bearer {METRICS_TOKEN}"},
        "wrong token": {"Authorization": "Bearer wrong-token-0123456789abcdef"},
    }
    seen = {}
    for name, headers in credentials.items():
        metrics = _get(daemon, "/metrics", headers=headers)
        for path in (PPROF, PPROF + "tasks"):
            r = _get(daemon, path, headers=headers)
            assert r.status_code == metrics.status_code, (name, path, r.text)
            if r.status_code != 200:
                assert r.text == metrics.text, (name, path)
        seen[name] = metrics.status_code
    assert seen == {
        "none": 401,
        "user key": 403,
        "admin key": 200,
        "metrics token": 200,
        "wrong token": 401,
    }


def test_with_a_metrics_listener_profiling_moves_there(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    operator_port = _free_port()
    daemon = daemon_factory.start(
        "-expose-pprof",
        "-auth-api-keys",
        str(_write_keys(tmp_path)),
        "-metrics-listen",
        f"127.0.0.1:{operator_port}",
    )
    operator = f"http://127.0.0.1:{operator_port}"
    r = httpx.get(f"{operator}{PPROF}tasks", timeout=30)
    assert r.status_code == 200 and "(this request)" in r.text
    # The upload port serves it no more, even to an admin: as an unknown path.
    unknown = _get(daemon, "/not/a/known/path", headers={"X-API-Key": ADMIN_KEY})
    moved = _get(daemon, PPROF + "tasks", headers={"X-API-Key": ADMIN_KEY})
    assert (moved.status_code, moved.text) == (unknown.status_code, unknown.text)
    assert (
        httpx.get(f"{operator}{PPROF}profile?seconds=0", timeout=30).text.split(":")[0]
        == "ERR_INVALID_PROFILE_REQUEST"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_task_dump_over_http2(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory.start("-expose-pprof", "-enable-h2c")
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.get(f"http://127.0.0.1:{daemon.port}{PPROF}tasks")
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200 and "(this request)" in r.text


NOT_DUMPABLE_PLUGIN = """
import ctypes

# PR_SET_DUMPABLE 0: only a reader with CAP_SYS_PTRACE may read this process's memory.
ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)


class plugin:
    pass
"""


def test_a_profiler_that_cannot_read_the_daemon_gets_a_clear_500(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    # A real refusal by the kernel: the daemon made itself not dumpable (as a hardened
    # service may) and runs without CAP_SYS_PTRACE, so py-spy (its child, same user) may
    # not read its memory.
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "not_dumpable.py").write_text(NOT_DUMPABLE_PLUGIN)
    env = daemon_env()
    env["PYTHONPATH"] += os.pathsep + str(plugin_dir)
    command = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"]
    daemon = Daemon(
        tmp_path / "data",
        ["-expose-pprof", "-hooks-plugin", "not_dumpable:plugin"],
        command=[*command, sys.executable, "-m", "tusd_trio"],
        env=env,
    )
    daemon_factory.daemons.append(daemon)
    daemon.start()
    r = _get(daemon, PPROF + "profile?seconds=1")
    assert r.status_code == 500
    first_line, *rest = r.text.splitlines()
    assert not rest  # one line: py-spy's explanation, no traceback
    assert first_line.startswith("ERR_PROFILER_FAILED: py-spy could not profile this process: "), (
        first_line
    )
    assert "Permission denied" in first_line
    # The slot is free again, and the daemon serves on.
    assert _get(daemon, PPROF + "profile?seconds=1").status_code == 500
    assert _get(daemon, PPROF + "tasks").status_code == 200


def test_with_workers_the_worker_that_received_the_request_answers(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory.start("-expose-pprof", "-workers", "2")
    workers = daemon.children()
    assert len(workers) == 2
    for _ in range(4):  # a new connection each time: any worker may take it
        first_line = _get(daemon, PPROF + "tasks").text.splitlines()[0]
        match = re.search(r"process (\d+):", first_line)
        assert match is not None, first_line
        assert int(match.group(1)) in workers
    profile = _get(daemon, PPROF + "profile?seconds=1&format=collapsed")
    assert profile.status_code == 200
    filename = re.search(r"tusd-trio-(\d+)\.", profile.headers["content-disposition"])
    assert filename is not None and int(filename.group(1)) in workers
