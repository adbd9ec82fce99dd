"""Helpers for the tusd-trio end-to-end tests (daemon process control, HTTP checks)."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
JS_DIR = E2E_DIR / "js"

BANNER_RE = re.compile(r"You can now upload files to: (https?://\S+)")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
HTTP_TIMEOUT = httpx.Timeout(60.0)


def server_command() -> list[str]:
    override = os.environ.get("TUSD_TRIO_E2E_CMD")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "tusd_trio"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT)]
    if (REPO_ROOT / "src").is_dir():
        paths.insert(0, str(REPO_ROOT / "src"))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class Daemon:
    """One daemon subprocess. Use via the fixtures below."""

    def __init__(
        self, upload_dir: Path, extra_args: tuple[str, ...] = (), log_dir: Path | None = None
    ):
        self.upload_dir = Path(upload_dir)
        self.extra_args = tuple(extra_args)
        self.log_dir = Path(log_dir) if log_dir else self.upload_dir.parent
        self.proc: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None
        self.stdout_lines: list[str] = []
        self._banner = threading.Event()
        self._reader: threading.Thread | None = None
        self._stderr_path: Path | None = None
        self._starts = 0

    # -- lifecycle -------------------------------------------------------
    def start(self) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        self._stderr_path = self.log_dir / f"daemon-stderr-{id(self)}-{self._starts}.log"
        cmd = [
            *server_command(),
            "-host",
            "127.0.0.1",
            "-port",
            "0",
            "-upload-dir",
            str(self.upload_dir),
            *self.extra_args,
        ]
        self.stdout_lines = []
        self._banner = threading.Event()
        self._base_url = None
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=str(REPO_ROOT),
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # own session => own process group
            )
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._banner.wait(START_TIMEOUT) or self._base_url is None:
            rc = self.proc.poll()
            self.kill()
            pytest.fail(
                f"daemon did not print its banner (waited up to {START_TIMEOUT}s) "
                f"(exit code {rc}; is stdout flushed when it is a pipe?)\n"
                f"command: {shlex.join(cmd)}\n{self.diagnostics()}",
                pytrace=False,
            )
        return self

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:  # keep draining so the daemon never blocks on stdout
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            if self._base_url is None:
                m = BANNER_RE.search(line)
                if m:
                    self._base_url = m.group(1)
                    self._banner.set()
        self._banner.set()  # EOF: unblock start(); base_url stays None

    @property
    def base_url(self) -> str:
        """The creation endpoint printed in the banner, e.g. http://127.0.0.1:PORT/files/."""
        assert self._base_url is not None, "daemon not started"
        return self._base_url

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` to the daemon's process group, wait for exit, return the exit code.

        Fails the test (after SIGKILLing it) if it does not exit in time.
        """
        assert self.proc is not None
        self.signal_group(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"daemon did not exit within {timeout}s of signal {signal.Signals(sig).name}\n"
                + self.diagnostics(),
                pytrace=False,
            )
        self._join_reader()
        return rc

    def kill(self) -> None:
        """SIGKILL the whole process group (idempotent)."""
        if self.proc is None:
            return
        self.signal_group(signal.SIGKILL)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    # -- helpers ---------------------------------------------------------
    def diagnostics(self) -> str:
        err = ""
        if self._stderr_path and self._stderr_path.exists():
            err = self._stderr_path.read_text("utf-8", "replace")[-4000:]
        out = "\n".join(self.stdout_lines[-40:])
        return f"--- daemon stdout (tail) ---\n{out}\n--- daemon stderr (tail) ---\n{err}"

    def url_for(self, upload_url: str) -> str:
        """Map an upload URL (possibly from an earlier run on another port) onto this run."""
        upload_id = upload_id_of(upload_url)
        return self.base_url.rstrip("/") + "/" + upload_id


def upload_id_of(upload_url: str) -> str:
    return urlsplit(upload_url).path.rstrip("/").rsplit("/", 1)[-1]


class DaemonFactory:
    """Creates daemons and guarantees they are all killed at teardown."""

    def __init__(self, root: Path):
        self.root = root
        self.daemons: list[Daemon] = []

    def new(self, name: str = "store", extra_args: tuple[str, ...] = ()) -> Daemon:
        upload_dir = self.root / f"{name}-{len(self.daemons)}"
        d = Daemon(upload_dir, extra_args, log_dir=self.root)
        self.daemons.append(d)
        return d

    def kill_all(self) -> None:
        for d in self.daemons:
            d.kill()


def make_random_file(path: Path, size: int, seed: int | None = None) -> bytes:
    data = os.urandom(size) if seed is None else _seeded_bytes(size, seed)
    path.write_bytes(data)
    return data


def _seeded_bytes(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(client: httpx.Client, url: str) -> httpx.Response:
    resp = client.get(url)
    assert resp.status_code == 200, f"GET {url} -> {resp.status_code}: {resp.text[:500]}"
    return resp


def assert_same_bytes(got: bytes, expected: bytes) -> None:
    # Compare digests so a mismatch does not dump megabytes into the report.
    assert len(got) == len(expected), f"length differs: got {len(got)}, expected {len(expected)}"
    assert sha256(got) == sha256(expected), "content differs (sha256 mismatch)"


def head_offset(client: httpx.Client, url: str) -> int:
    resp = client.head(url)
    assert resp.status_code in (200, 204), f"HEAD {url} -> {resp.status_code}"
    assert "upload-offset" in resp.headers, f"HEAD {url} has no Upload-Offset: {dict(resp.headers)}"
    return int(resp.headers["upload-offset"])


def wait_for(
    predicate, timeout: float, interval: float = 0.05, what="condition", required: bool = True
):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds
    (or, with ``required=False``, just return None).

    ``what`` describes the condition; it may be a callable, evaluated on failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            if not required:
                return None
            desc = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout}s waiting for {desc}", pytrace=False)
        time.sleep(interval)


def create_upload(
    client: httpx.Client, base_url: str, length: int, metadata: dict[str, str] | None = None
) -> str:
    """POST a new upload of ``length`` bytes; return its absolute URL."""
    import base64

    headers = {"Upload-Length": str(length)}
    if metadata:
        headers["Upload-Metadata"] = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items()
        )
    resp = client.post(base_url, headers=headers)
    assert resp.status_code == 201, f"POST {base_url} -> {resp.status_code}: {resp.text[:500]}"
    location = resp.headers.get("location")
    assert location, f"POST {base_url} returned no Location header"
    return str(httpx.URL(base_url).join(location))


class RawPatch:
    """A PATCH request written by hand on a plain socket, so a test can stop
    sending in the middle of the body (and then close or simply abandon it)."""

    def __init__(self, upload_url: str, offset: int, content_length: int, timeout: float = 60.0):
        import socket

        parts = urlsplit(upload_url)
        assert parts.scheme == "http", "RawPatch only speaks plain HTTP"
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        self.sent = 0
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = (
            f"PATCH {path} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Tus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {content_length}\r\n"
            "\r\n"
        )
        self.sock.sendall(head.encode("ascii"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def end_early(self, timeout: float = 30.0) -> bytes:
        """Half-close (FIN) before the announced body is complete, then read
        whatever the server answers until it closes the connection.

        Once this returns, the server has finished with the request, so the
        bytes it kept are settled (no racing HEAD needed)."""
        import socket

        self.sock.shutdown(socket.SHUT_WR)
        self.sock.settimeout(timeout)
        response = b""
        try:
            while chunk := self.sock.recv(65536):
                response += chunk
        except ConnectionResetError:
            pass
        self.close()
        return response

    def close(self) -> None:
        """Close (FIN): everything sent so far reaches the server, then EOF."""
        try:
            self.sock.close()
        except OSError:
            pass
