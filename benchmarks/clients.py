"""Outside programs the benchmarks drive: curl as a streaming sender, nginx as a reverse
proxy, a self-signed certificate for TLS, body files, and tus over ``http.client`` for the
set-up and verification steps that are never measured.

curl sends a file the way most real senders do: it reads 64 KiB at a time and writes each
piece to the socket as it goes, so a server's reads find a little data at a time, where the
load generator (loadgen.py) hands the kernel whole buffers and every read finds plenty.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import os
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from procs import kill_group, run_client, start

MiB = 1 << 20
TUS_HEADERS = ["Tus-Resumable: 1.0.0"]
PATCH_HEADERS = [
    "Tus-Resumable: 1.0.0",
    "Upload-Offset: 0",
    "Content-Type: application/offset+octet-stream",
]


# -- certificate and body files -------------------------------------------------------------


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 / localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tusd-trio benchmark")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Sources:
    """Body files of a given size in the work dir (read once, so they are in the page cache)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.files: dict[int, Path] = {}
        self.block = os.urandom(MiB)

    def get(self, size: int) -> Path:
        if size not in self.files:
            p = self.work / f"src-{size}"
            with open(p, "wb") as f:
                left = size
                while left > 0:
                    n = min(left, len(self.block))
                    f.write(self.block[:n])
                    left -= n
            with open(p, "rb") as f:
                while f.read(8 * MiB):
                    pass
            self.files[size] = p
        return self.files[size]


# -- tus over http.client (set-up and verification only, never measured) --------------------


def http_conn(url: str) -> http.client.HTTPConnection:
    u = urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(u.hostname, u.port, timeout=60, context=ctx)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def create_uploads(base_url: str, size: int, count: int) -> list[str]:
    conn = http_conn(base_url)
    u = urlsplit(base_url)
    urls = []
    try:
        for _ in range(count):
            conn.request(
                "POST",
                u.path,
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Length": str(size),
                    "Content-Length": "0",
                },
            )
            r = conn.getresponse()
            r.read()
            loc = r.getheader("Location")
            if r.status != 201 or not loc:
                raise RuntimeError(f"POST {base_url} -> {r.status}")
            path = urlsplit(loc).path if "://" in loc else loc
            urls.append(f"{u.scheme}://{u.netloc}{path}")
    finally:
        conn.close()
    return urls


def offsets(urls: list[str]) -> list[int | None]:
    conn = http_conn(urls[0])
    out: list[int | None] = []
    try:
        for url in urls:
            conn.request("HEAD", urlsplit(url).path, headers={"Tus-Resumable": "1.0.0"})
            r = conn.getresponse()
            r.read()
            v = r.getheader("Upload-Offset")
            out.append(int(v) if r.status == 200 and v is not None else None)
    finally:
        conn.close()
    return out


# -- curl -----------------------------------------------------------------------------------


def hdr_args(flag: str, headers: list[str]) -> list[str]:
    return [a for h in headers for a in (flag, h)]


CURL_W = (
    "%{http_code} %{http_version} %{num_connects} %{time_pretransfer} %{time_total} "
    "%header{upload-offset}\\n"
)


def curl_bulk(
    urls: list[str], src: Path, version: str, timeout: float, *, expect_continue: bool = True
) -> dict:
    """PATCH `src` to every URL with one curl process (`-Z`: all at once).

    ``expect_continue=False`` sends an empty ``Expect:`` header: curl then sends the body at
    once instead of asking for ``100 Continue`` first (which a server that does not answer
    it, like the raw receiver, would make curl wait a second for).
    """
    tls = urls[0].startswith("https:")
    proto = (
        ["--http1.1"] if version == "1.1" else (["--http2"] if tls else ["--http2-prior-knowledge"])
    )
    headers = PATCH_HEADERS + ([] if expect_continue else ["Expect:"])
    cmd = ["curl", "-sS", "-X", "PATCH", *proto, *hdr_args("-H", headers), "-w", CURL_W]
    if tls:
        cmd.append("-k")
    if len(urls) > 1:
        cmd += ["-Z", "--parallel-max", str(len(urls))]
    for url in urls:
        cmd += ["-T", str(src), url]
    out, _err, e0, wall, cpu = run_client(cmd, timeout)
    rows = [ln.split() for ln in out.splitlines() if ln.strip()]
    errors = [f"PATCH -> {r[0]} (HTTP/{r[1]})" for r in rows if r[0] != "204" or r[1] != version]
    if len(rows) != len(urls):
        errors.append(f"curl reported {len(rows)} transfers, expected {len(urls)}")
    want_conns = len(urls) if version == "1.1" else 1
    if rows and sum(int(r[2]) for r in rows) != want_conns:
        errors.append(f"curl used {sum(int(r[2]) for r in rows)} connections, not {want_conns}")
    res = {"client": "curl", "client_cpu_s": cpu, "client_wall_s": wall, "epoch0": e0}
    if rows:
        res["connections"] = sum(int(r[2]) for r in rows)
        # every transfer is started at once: from the first one ready to send to the last answer
        first, last = min(float(r[3]) for r in rows), max(float(r[4]) for r in rows)
        res["window_s"] = last - first
        res["window_epoch"] = [e0 + first, e0 + last]
        res["http_version"] = ",".join(sorted({r[1] for r in rows}))
    res["errors"] = errors
    return res


# -- nginx ----------------------------------------------------------------------------------

NGINX_CONF = """\
{user}worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream tus {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://tus;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxProxy:
    """nginx in front of a server: upstream keep-alive, bodies streamed (no request
    buffering), one worker process unless told otherwise. Plain HTTP/1.1 both ways."""

    def __init__(self, upstream_url: str, work: Path, log_path: Path, workers: int = 1) -> None:
        u = urlsplit(upstream_url)
        if u.scheme != "http":
            raise RuntimeError("the nginx proxy is only set up for an http:// upstream")
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-", dir=work))
        self.port = free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                user="user root;\n" if os.geteuid() == 0 else "",
                workers=workers,
                dir=self.dir,
                upstream=u.netloc,
                port=self.port,
            )
        )
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = start(
            ["nginx", "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{self.port}{u.path}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = (self.dir / "error.log").read_text(errors="replace")[-600:]
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        kill_group(self.proc, grace=2.0)
        self.log.close()
