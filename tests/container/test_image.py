"""The image run as a user runs it: ``podman run -p …:1080 -v VOLUME:/data IMAGE [FLAGS]``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time

import httpx
from tusclient import client as tus_client

from tests._support.podman import MEASUREMENTS, Container, Podman
from tests._support.sync_http import uploader_url

TUS = {"Tus-Resumable": "1.0.0"}
MIB = 1024 * 1024


def _head_offset(container: Container, upload_url: str) -> int:
    response = httpx.head(upload_url, headers=TUS, timeout=30)
    assert response.status_code == 200, response
    return int(response.headers["Upload-Offset"])


def _send_partial_patch(
    container: Container, upload_url: str, offset: int, body: bytes, total: int
) -> socket.socket:
    """A PATCH that promises ``total`` bytes and sends only ``body``; the socket stays open."""
    path = upload_url.removeprefix(container.url)
    sock = socket.create_connection(("127.0.0.1", container.port), timeout=30)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{container.port}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    sock.sendall(head.encode("ascii") + body)
    return sock


def _read_response(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


def test_image_metadata(podman: Podman, image: str) -> None:
    inspected = json.loads(podman.run("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "1000:1000"
    assert "1080/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"][:1] == ["tusd-trio"]
    healthcheck = inspected.get("Healthcheck") or {}
    assert healthcheck.get("Test", [])[:2] == ["CMD", "python"], "HEALTHCHECK lost (OCI format?)"


def test_starts_as_uid_1000_on_port_1080_and_answers_health(container: Container) -> None:
    took = container.run()
    MEASUREMENTS.add(f"start-up (podman run to the first /health 200): {took:.2f} s")
    response = httpx.get(container.url + "/health", timeout=10)
    assert response.status_code == 200
    status = container.exec("cat", "/proc/1/status").stdout
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == ["1000"] * 4, status
    assert "tusd-trio" in container.exec("cat", "/proc/1/cmdline").stdout
    logs = container.logs()
    assert "Using 0.0.0.0:1080 as address to listen." in logs, logs
    assert "Using '/data' as directory storage." in logs, logs
    assert os.stat(container.volume_dir()).st_uid == 1000  # the volume takes /data's owner


def test_healthcheck_command(container: Container) -> None:
    container.run()
    healthy = container.podman.run("healthcheck", "run", container.name, check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    # The check can fail: with the daemon frozen it times out and says so.
    container.podman.run("kill", "--signal", "STOP", container.name)
    try:
        frozen = container.podman.run("healthcheck", "run", container.name, check=False)
    finally:
        container.podman.run("kill", "--signal", "CONT", container.name)
    assert frozen.returncode != 0
    assert "unhealthy" in frozen.stdout


def test_upload_interrupted_resumed_and_kept_across_restarts(container: Container) -> None:
    container.run()
    data = os.urandom(5 * MIB + 12345)
    files = container.url + "/files/"
    uploader = tus_client.TusClient(files).uploader(
        file_stream=io.BytesIO(data), chunk_size=MIB, metadata={"filename": "payload.bin"}
    )
    uploader.upload_chunk()
    uploader.upload_chunk()
    upload_url = uploader_url(uploader)
    assert upload_url.startswith(files)
    assert _head_offset(container, upload_url) == 2 * MIB

    # Interrupted: the connection closes 300 000 bytes into a 1 MiB PATCH.
    cut = _send_partial_patch(
        container, upload_url, 2 * MIB, data[2 * MIB : 2 * MIB + 300_000], MIB
    )
    cut.close()
    kept = 2 * MIB + 300_000
    deadline = time.monotonic() + 30
    while (offset := _head_offset(container, upload_url)) != kept and time.monotonic() < deadline:
        time.sleep(0.1)
    assert offset == kept

    # The container restarts mid-upload; the offset survives in the volume.
    container.stop()
    took = container.start()
    MEASUREMENTS.add(f"restart (podman start to the first /health 200): {took:.2f} s")
    assert _head_offset(container, upload_url) == kept

    # tuspy resumes from the server's offset and finishes.
    resumed = tus_client.TusClient(files).uploader(
        file_stream=io.BytesIO(data), chunk_size=MIB, url=upload_url
    )
    assert resumed.offset == kept
    resumed.upload()
    assert resumed.offset == len(data)

    upload_id = upload_url.rsplit("/", 1)[1]
    stored = container.volume_dir() / upload_id
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert os.stat(stored).st_uid == 1000
    info = json.loads((container.volume_dir() / f"{upload_id}.info").read_text())
    assert info["ID"] == upload_id and info["Size"] == len(data)  # tusd's .info layout

    container.stop()
    container.start()
    assert _head_offset(container, upload_url) == len(data)
    got = httpx.get(upload_url, timeout=60).content
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_sigterm_drains_within_shutdown_timeout(container: Container) -> None:
    container.run("-shutdown-timeout", "5s")
    data = os.urandom(4 * MIB)
    created = httpx.post(
        container.url + "/files/", headers={**TUS, "Upload-Length": str(len(data))}, timeout=30
    )
    assert created.status_code == 201, created.text
    upload_url = created.headers["Location"]
    if upload_url.startswith("/"):
        upload_url = container.url + upload_url
    sent = 256 * 1024
    running = _send_partial_patch(container, upload_url, 0, data[:sent], len(data))
    time.sleep(0.5)  # the PATCH is under way

    took = container.stop(timeout=60)  # SIGTERM; SIGKILL only after 60 s
    MEASUREMENTS.add(f"podman stop with a PATCH in flight (-shutdown-timeout 5s): {took:.2f} s")
    answer = _read_response(running)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"ERR_SERVER_SHUTDOWN" in answer, answer[:300]
    assert container.inspect("{{.State.ExitCode}}") == "0"  # not 137 (SIGKILL), not 143
    logs = container.logs()
    assert "Received interrupt signal. Shutting down tusd-trio..." in logs, logs
    assert "Shutdown completed. Goodbye!" in logs, logs
    assert "Shutdown timeout exceeded" not in logs, logs

    # What arrived before the stop was saved: it is a prefix of what was sent.
    container.start()
    offset = _head_offset(container, upload_url)
    assert 0 < offset <= sent
    partial = httpx.get(upload_url, timeout=30).content
    assert partial == data[:offset]


def test_flags_after_the_image_name_reach_the_daemon(container: Container) -> None:
    container.run("-max-size", "1000", "-base-path", "/uploads/")
    options = httpx.options(container.url + "/uploads/", headers=TUS, timeout=10)
    assert options.headers.get("Tus-Max-Size") == "1000", options.headers
    too_big = httpx.post(
        container.url + "/uploads/", headers={**TUS, "Upload-Length": "2000"}, timeout=10
    )
    assert too_big.status_code == 413, too_big.text
    assert "ERR_MAX_SIZE_EXCEEDED" in too_big.text
    fits = httpx.post(
        container.url + "/uploads/", headers={**TUS, "Upload-Length": "1000"}, timeout=10
    )
    assert fits.status_code == 201, fits.text
    assert (
        httpx.post(container.url + "/files/", headers={**TUS, "Upload-Length": "10"}).status_code
        == 404
    )
    assert "Using /uploads/ as the base path." in container.logs()
