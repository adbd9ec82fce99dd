"""Behind a proxy that serves the base path under another path (X-Forwarded-Prefix).

With ``location /api/uploads/ { proxy_pass http://backend/files/; proxy_set_header
X-Forwarded-Prefix /api/uploads; }`` tusd (and tusd-trio before) answered with
``Location: http://proxy/files/<id>``, which the proxy does not serve, and refused a
final upload naming the partials by their public URLs with 404.  With -behind-proxy
the prefix is honoured; the last test runs a real nginx with exactly that location.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import trio

from tests._support.server import Running
from tests._support.tus import OCTET, TUS

PREFIXED = {"X-Forwarded-Prefix": "/api/uploads", "X-Forwarded-Host": "proxy.example"}


async def test_location_carries_the_prefix(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"behind_proxy": True})
    r = await srv.client.post(srv.url, headers={**TUS, **PREFIXED, "Upload-Length": "3"})
    assert r.status_code == 201
    location = r.headers["location"]
    assert location.startswith("http://proxy.example/api/uploads/")
    upload_id = location.rsplit("/", 1)[1]
    # The daemon itself still serves the upload at its base path.
    assert (await srv.patch(srv.url + upload_id, 0, b"abc")).status_code == 204


async def test_relative_location_carries_the_prefix(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"behind_proxy": True, "relative_location": True})
    r = await srv.client.post(srv.url, headers={**TUS, **PREFIXED, "Upload-Length": "3"})
    assert r.status_code == 201
    assert r.headers["location"].startswith("/api/uploads/")
    # Creation with upload: the same Location.
    r = await srv.client.post(
        srv.url, headers={**OCTET, **PREFIXED, "Upload-Length": "3"}, content=b"abc"
    )
    assert (r.status_code, r.headers["upload-offset"]) == (201, "3")
    assert r.headers["location"].startswith("/api/uploads/")


async def test_prefix_is_ignored_without_behind_proxy(make_server: Any) -> None:
    srv: Running = await make_server()
    r = await srv.client.post(srv.url, headers={**TUS, **PREFIXED, "Upload-Length": "3"})
    assert r.headers["location"].startswith(f"http://127.0.0.1:{srv.port}/files/")


async def test_unusable_prefix_is_ignored(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"behind_proxy": True, "relative_location": True})
    for prefix in ("//evil.example", "/a/../b", "api", "/a b"):
        headers = {**TUS, "X-Forwarded-Prefix": prefix, "Upload-Length": "1"}
        r = await srv.client.post(srv.url, headers=headers)
        assert r.status_code == 201
        assert r.headers["location"].startswith("/files/"), prefix


async def test_final_upload_from_public_urls(make_server: Any) -> None:
    srv: Running = await make_server(protocol={"behind_proxy": True})
    public = []
    for part in (b"ab", b"cd"):
        headers = {**TUS, **PREFIXED, "Upload-Length": "2", "Upload-Concat": "partial"}
        r = await srv.client.post(srv.url, headers=headers)
        public.append(r.headers["location"])
        upload_id = r.headers["location"].rsplit("/", 1)[1]
        assert (await srv.patch(srv.url + upload_id, 0, part)).status_code == 204
    # An absolute public URL and a public path.
    concat = f"final;{public[0]} /api/uploads/{public[1].rsplit('/', 1)[1]}"
    r = await srv.client.post(srv.url, headers={**TUS, **PREFIXED, "Upload-Concat": concat})
    assert r.status_code == 201, r.text
    final_id = r.headers["location"].rsplit("/", 1)[1]
    head = await srv.client.head(srv.url + final_id, headers={**TUS, **PREFIXED})
    assert head.headers["upload-concat"] == f"final;{public[0]} {public[1]}"
    assert (await srv.client.get(srv.url + final_id)).content == b"abcd"


NGINX_CONF = """
worker_processes 1;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location /api/uploads/ {{
            proxy_pass http://127.0.0.1:{backend}/files/;
            proxy_set_header X-Forwarded-Prefix /api/uploads;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


async def _free_port() -> int:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_through_nginx_with_a_path_prefix(make_server: Any, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is missing: scripts/install-test-services installs it"
    srv: Running = await make_server(protocol={"behind_proxy": True})
    port = await _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port, backend=srv.port))
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                except OSError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    await trio.sleep(0.05)
                else:
                    await stream.aclose()
                    break
        endpoint = f"http://127.0.0.1:{port}/api/uploads/"
        async with httpx.AsyncClient(timeout=10) as client:
            # Through the proxy, a client only ever uses the URLs it is given.
            public = []
            for part in (b"hello ", b"world"):
                headers = {**TUS, "Upload-Length": str(len(part)), "Upload-Concat": "partial"}
                r = await client.post(endpoint, headers=headers)
                assert r.status_code == 201
                location = r.headers["location"]
                assert location.startswith(endpoint)
                r = await client.patch(
                    location, headers={**OCTET, "Upload-Offset": "0"}, content=part
                )
                assert (r.status_code, r.headers["upload-offset"]) == (204, str(len(part)))
                public.append(location)
            r = await client.post(
                endpoint, headers={**TUS, "Upload-Concat": "final;" + " ".join(public)}
            )
            assert r.status_code == 201, r.text
            final = r.headers["location"]
            assert final.startswith(endpoint)
            r = await client.head(final, headers=TUS)
            assert r.headers["upload-concat"] == "final;" + " ".join(public)
            assert (await client.get(final)).content == b"hello world"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
