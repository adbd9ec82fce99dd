"""Metrics, request IDs and readiness."""

from __future__ import annotations

import os
import re
from typing import Any

import trio

from tests._support.server import Running
from tests._support.tus import OCTET, TUS
from tusd_trio.server._request import _RequestIds, new_request_id


async def test_metrics_use_tusd_names(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"metrics_path": "/metrics"})
    loc = await srv.create(3)
    await srv.patch(loc, 0, b"abc")
    await srv.patch(loc, 1, b"x")  # 409
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'tusd_requests_total{method="POST"} 1' in text
    assert 'tusd_requests_total{method="PATCH"} 2' in text
    assert "tusd_bytes_received 3\n" in text
    assert "tusd_uploads_created 1\n" in text
    assert "tusd_uploads_finished 1\n" in text
    assert 'tusd_errors_total{status="409",code="ERR_MISMATCHED_OFFSET"} 1' in text
    assert 'tusd_hook_invocations_total{hooktype="pre-access"} 0' in text
    assert "# TYPE tusd_connections_open gauge" in text
    assert "process_" in text or "python_" in text  # prometheus-client's collectors


async def test_metrics_can_be_turned_off(srv: Running) -> None:
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")
    assert "tusd_requests_total" not in r.text


async def test_request_id_is_echoed_or_made(srv: Running) -> None:
    r = await srv.client.post(
        srv.url, headers={**TUS, "Upload-Length": "1", "X-Request-ID": "abc-123"}
    )
    assert r.headers["x-request-id"] == "abc-123"
    made = set()
    for _ in range(3):
        r = await srv.client.head(srv.url + "0" * 32, headers=TUS)
        made.add(r.headers["x-request-id"])
    assert len(made) == 3
    assert all(re.fullmatch("[0-9a-f]{16}", made_id) for made_id in made)


def test_made_request_ids_change_prefix_when_the_counter_runs_out() -> None:
    ids = _RequestIds()
    first = ids.next()
    ids._counter = iter(range((1 << 24) - 1, 1 << 24))  # the last one left
    last = ids.next()
    assert last[:10] == first[:10] and last[10:] == "ffffff"
    after = ids.next()
    assert after[10:] == "000000" and after[:10] != first[:10]


def test_a_forked_process_makes_request_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ID and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child[:10] != new_request_id()[:10]


async def test_readiness(make_server: Any) -> None:
    srv: Running = await make_server()
    close = {"Connection": "close"}  # the shutdown flag below closes kept-alive connections
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready", headers=close)
    assert r.status_code == 200
    body = r.json()
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["hooks"] == "none"
    srv.server.state.begin_shutdown()
    try:
        # While shutting down no new request is read, so ask the handler directly.
        response = await srv.server.runtime.operator.health(ready=True)
        assert response.status == 503
    finally:
        srv.server.state.accept_requests()


async def test_latency_histograms_and_gauges(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"metrics_path": "/metrics"})
    loc = await srv.create(1)
    await srv.patch(loc, 0, b"a")
    text = (await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")).text
    assert (
        'tusd_trio_request_duration_seconds_bucket{le="0.001",method="POST",status="201"}' in (text)
        or 'tusd_trio_request_duration_seconds_count{method="POST",status="201"}' in text
    )
    assert 'tusd_trio_request_duration_seconds_count{method="PATCH",status="204"}' in text
    assert "tusd_trio_active_uploads 0\n" in text


async def test_grafana_dashboard_only_uses_exposed_metrics(make_server: Any) -> None:
    import json
    import re
    from pathlib import Path

    srv: Running = await make_server(protocol={"metrics_path": "/metrics"})
    await srv.create(1)
    text = (await srv.client.get(f"http://127.0.0.1:{srv.port}/metrics")).text
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "charts" / "grafana-dashboard.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_bucket$", "", name)
        for e in exprs
        for name in re.findall(r"\b(?:tusd|process)_[a-z_]+", e)
    }
    missing = {
        name
        for name in used
        if name not in families and name.removesuffix("_total") not in families
    }
    assert not missing, missing


def _sample(text: str, line_start: str) -> float:
    """The value of the sample line starting with ``line_start`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_lock_wait_and_store_latency_histograms(make_server: Any) -> None:
    # The histograms are per process (prometheus-client): compare before and after.
    srv: Running = await make_server(protocol={"metrics_path": "/metrics"})
    metrics = f"http://127.0.0.1:{srv.port}/metrics"
    lock = 'tusd_trio_lock_wait_seconds_count{locker="filelocker",outcome="acquired"}'
    ops = {
        operation: (
            f'tusd_trio_store_operation_seconds_count{{operation="{operation}",store="filestore"}}'
        )
        for operation in ("create", "commit", "finish", "terminate")
    }
    before = (await srv.client.get(metrics)).text
    loc = await srv.create(2)
    await srv.patch(loc, 0, b"ab")
    await srv.client.delete(loc, headers=TUS)
    after = (await srv.client.get(metrics)).text
    # The PATCH and the DELETE each took the upload's lock once.
    assert _sample(after, lock) - _sample(before, lock) == 2
    for operation, line in ops.items():
        assert _sample(after, line) - _sample(before, line) == 1, operation


async def test_bytes_in_flight_gauge_counts_a_running_body(make_server: Any) -> None:
    import httpx
    import trio

    srv: Running = await make_server(protocol={"metrics_path": "/metrics"})
    loc = await srv.create(100_000)
    path = httpx.URL(loc).raw_path.decode()
    stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await stream.send_all(
        (
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            "Content-Length: 100000\r\n\r\n"
        ).encode()
        + b"z" * 30_000
    )
    metrics = f"http://127.0.0.1:{srv.port}/metrics"
    with trio.fail_after(10):
        while "tusd_trio_bytes_in_flight 30000\n" not in (await srv.client.get(metrics)).text:
            await trio.sleep(0.02)
    await stream.send_all(b"z" * 70_000)
    with trio.fail_after(10):
        while "tusd_trio_bytes_in_flight 0\n" not in (await srv.client.get(metrics)).text:
            await trio.sleep(0.02)
    await stream.aclose()
    assert (await srv.head(loc)).headers["upload-offset"] == "100000"


async def test_readiness_checks_hook_endpoints(make_server: Any) -> None:
    import trio

    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    srv: Running = await make_server(hooks_http=f"http://127.0.0.1:{dead_port}/hook")
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["hooks_http"].startswith("failing: cannot connect")
    live: Running = await make_server(hooks_http=f"http://127.0.0.1:{srv.port}/hook")
    r = await live.client.get(f"http://127.0.0.1:{live.port}/health/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["hooks_http"] == "ok"


async def test_chunk_write_events_are_logged(make_server: Any, capsys: Any) -> None:
    import json

    from tusd_trio import _logging

    _logging.setup_logging("json", verbose=True)
    try:
        srv: Running = await make_server(verbose=True)
        loc = await srv.create(5)
        await srv.patch(loc, 0, b"hello")
        _logging.flush_logs()
        events = [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")
        ]
    finally:
        _logging.events.handler = None
    upload_id = loc.rsplit("/", 1)[1]
    start = [e for e in events if e.get("msg") == "ChunkWriteStart"]
    done = [e for e in events if e.get("msg") == "ChunkWriteComplete"]
    assert start and start[0]["id"] == upload_id and start[0]["offset"] == 0
    assert done and done[0]["id"] == upload_id and done[0]["bytesWritten"] == 5


async def _logged(capsys: Any, action: Any) -> list[dict[str, Any]]:
    """The JSON log lines (slog's keys) written while ``action`` ran."""
    import json

    from tusd_trio import _logging

    _logging.setup_logging("json", verbose=True)
    try:
        await action()
        _logging.flush_logs()
        return [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")
        ]
    finally:
        _logging.events.handler = None


async def test_max_size_is_what_the_request_may_write(make_server: Any, capsys: Any) -> None:
    # tusd's maxSize: the Content-Length; without one the rest of the upload, for a
    # deferred length -max-size minus the offset, else int64's maximum.
    srv: Running = await make_server()
    known = await srv.create(10)
    deferred = await srv.create(None, Upload_Defer_Length="1")

    async def chunks() -> Any:
        yield b"abc"

    async def session() -> None:
        await srv.patch(known, 0, b"abc")
        await srv.client.patch(known, headers={**OCTET, "Upload-Offset": "3"}, content=chunks())
        await srv.client.patch(deferred, headers={**OCTET, "Upload-Offset": "0"}, content=chunks())

    events = await _logged(capsys, session)
    starts = [(e["maxSize"], e["offset"]) for e in events if e["msg"] == "ChunkWriteStart"]
    assert starts == [(3, 0), (7, 3), (2**63 - 1, 0)]


async def test_interrupted_patch_logs_as_tusd(srv: Running, capsys: Any) -> None:
    loc = await srv.create(1000)
    upload_id = loc.rsplit("/", 1)[1]
    path = loc.split(str(srv.port), 1)[1]
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nX-Request-ID: slow-1\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()

    async def session() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
        async with stream:
            await stream.send_all(head + b"a" * 200)
            await trio.sleep(0.2)
            assert (await srv.head(loc)).headers["upload-offset"] == "200"
            with trio.fail_after(10):
                while await stream.receive_some(4096):
                    pass

    events = await _logged(capsys, session)
    mine = [e for e in events if e.get("requestId") == "slow-1"]
    assert [e["msg"] for e in mine] == [
        "RequestIncoming",
        "ChunkWriteStart",
        "UploadInterrupted",
        "BodyReadError",
        "ChunkWriteComplete",
        "ResponseOutgoing",
    ]
    context = {"method": "PATCH", "path": upload_id, "requestId": "slow-1", "id": upload_id}
    for event in mine[1:]:
        assert {key: event[key] for key in context} == context
    assert mine[3]["level"] == "ERROR"
    assert mine[3]["error"].startswith("ERR_UPLOAD_INTERRUPTED: ")
    assert mine[4]["bytesWritten"] == 200
    assert (mine[5]["status"], mine[5]["body"][:22]) == (400, "ERR_UPLOAD_INTERRUPTED")
