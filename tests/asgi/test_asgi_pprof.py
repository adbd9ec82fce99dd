"""The profiling endpoints (-expose-pprof) served by the ASGI app, under a mount prefix."""

from __future__ import annotations

import httpx

from tests._support.server import AsgiHostFactory

PPROF = "/debug/pprof/"


async def test_task_dump_from_the_asgi_app_under_a_prefix(host: AsgiHostFactory) -> None:
    hosted = await host(protocol={"pprof_path": PPROF}, root_path="/tus")
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(hosted.url("/tus/debug/pprof/tasks"))
        assert r.status_code == 200
        assert "(this request)" in r.text
        index = await client.get(hosted.url("/tus/debug/pprof/"))
        assert 'href="/tus/debug/pprof/tasks"' in index.text
