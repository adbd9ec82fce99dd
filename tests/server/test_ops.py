"""Metrics, request IDs and readiness."""

from __future__ import annotations

from typing import Any

from .conftest import TUS, Running


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
    r = await srv.client.head(srv.url + "0" * 32, headers=TUS)
    assert len(r.headers["x-request-id"]) == 16


async def test_readiness(make_server: Any) -> None:
    srv: Running = await make_server()
    close = {"Connection": "close"}  # the shutdown flag below closes kept-alive connections
    r = await srv.client.get(f"http://127.0.0.1:{srv.port}/health/ready", headers=close)
    assert r.status_code == 200
    body = r.json()
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["hooks"] == "none"
    srv.server.shutting_down = True
    try:
        # While shutting down no new request is read, so ask the handler directly.
        response = await srv.server.handler._health(ready=True)
        assert response.status == 503
    finally:
        srv.server.shutting_down = False


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
