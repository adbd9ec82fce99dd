"""A tusd-trio daemon subprocess for the reliability tests, plus a tiny raw HTTP/1.1 client.

The daemon runs as ``python -m tusd_trio -host 127.0.0.1 -port 0 -upload-dir DIR ...`` in its
own process group (own session); the ``daemon_factory`` fixture kills every group it started
at teardown, whatever the test did. ``Daemon.fds()`` and ``Daemon.nofile_limits()`` read the
daemon's ``/proc/PID`` entries.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BANNER_RE = re.compile(r"You can now upload files to: (https?://\S+)")
START_TIMEOUT = 30.0


class Daemon:
    def __init__(
        self, root: Path, extra_args: tuple[str, ...] = (), nofile_soft: int | None = None
    ):
        self.root = root
        self.upload_dir = root / "uploads"
        self.extra_args = tuple(extra_args)
        self.nofile_soft = nofile_soft
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.host = "127.0.0.1"
        self.port = 0
        self.stdout_lines: list[str] = []
        self._banner = threading.Event()

    def start(self) -> Daemon:
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "tusd_trio",
            "-host",
            "127.0.0.1",
            "-port",
            "0",
            "-upload-dir",
            str(self.upload_dir),
            *self.extra_args,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        soft_limit = self.nofile_soft

        def lower_nofile() -> None:  # runs in the child, before exec
            if soft_limit is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft_limit, hard), hard))

        with open(self.root / "daemon-stderr.log", "ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=str(REPO_ROOT),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # own process group, killed as a whole
                preexec_fn=lower_nofile if soft_limit is not None else None,
            )
        threading.Thread(target=self._drain_stdout, args=(self.proc,), daemon=True).start()
        if not self._banner.wait(START_TIMEOUT) or not self.url:
            rc = self.proc.poll()
            self.kill()
            pytest.fail(
                f"daemon did not print its banner within {START_TIMEOUT:g} s (exit code {rc})\n"
                f"command: {' '.join(cmd)}\nstdout: {self.stdout_lines[-10:]}\n"
                f"stderr: {self.stderr_tail()}",
                pytrace=False,
            )
        m = re.match(r"https?://([^/:]+):(\d+)/", self.url)
        assert m, self.url
        self.host, self.port = m.group(1), int(m.group(2))
        return self

    def _drain_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:  # keep reading so the daemon never blocks on a full pipe
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.stdout_lines) < 10000:
                self.stdout_lines.append(line)
            if not self.url:
                m = BANNER_RE.search(line)
                if m:
                    self.url = m.group(1)
                    self._banner.set()
        self._banner.set()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_path(self) -> str:
        return "/" + self.url.split("/", 3)[3]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stable_fds(self, timeout: float = 3.0) -> int:
        """The fd count once it stops changing for 200 ms."""
        deadline = time.monotonic() + timeout
        n = self.fds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            m = self.fds()
            if m == n:
                break
            n = m
        return n

    def fds_back_to(self, target: int, slack: int = 2, timeout: float = 5.0) -> int:
        """Wait (bounded) until the fd count is within `slack` of `target`; return it."""
        deadline = time.monotonic() + timeout
        n = self.fds()
        while abs(n - target) > slack and time.monotonic() < deadline:
            time.sleep(0.05)
            n = self.fds()
        return n

    def nofile_limits(self) -> tuple[int, int]:
        with open(f"/proc/{self.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return _lim(parts[3]), _lim(parts[4])
        raise AssertionError("no 'Max open files' in /proc/PID/limits")

    def stderr_tail(self, n: int = 20) -> str:
        try:
            lines = (self.root / "daemon-stderr.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _lim(v: str) -> int:
    return resource.RLIM_INFINITY if v == "unlimited" else int(v)


class DaemonFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.daemons: list[Daemon] = []

    def __call__(self, *extra_args: str, nofile_soft: int | None = None) -> Daemon:
        d = Daemon(self.root / f"d{len(self.daemons)}", extra_args, nofile_soft)
        d.root.mkdir(parents=True)
        self.daemons.append(d)
        return d.start()

    def kill_all(self) -> None:
        for d in self.daemons:
            d.kill()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    """``daemon_factory("-max-connections", "50")`` starts a daemon; all are killed after."""
    factory = DaemonFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; fail if below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(
            f"this test needs {needed} open files but the hard RLIMIT_NOFILE is {hard}; "
            f"raise it (e.g. `ulimit -Hn {needed * 2}` as root, or LimitNOFILE= in systemd, "
            f"or `docker run --ulimit nofile={needed * 2}`)",
            pytrace=False,
        )
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- raw HTTP/1.1 ---------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes):
        self.status, self.headers, self.body, self.raw_head = status, headers, body, raw_head

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


class Client:
    """One blocking keep-alive connection; requests are bytes built by `request()`."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def request_bytes(
        self, method: str, path: str, headers: dict[str, Any] | None = None, body: bytes = b""
    ) -> bytes:
        hdrs = {"Host": f"{self.host}:{self.port}", "Tus-Resumable": "1.0.0"}
        hdrs.update({k: str(v) for k, v in (headers or {}).items()})
        if body and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        return head.encode("latin-1") + b"\r\n" + body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self, method: str, path: str, headers: dict[str, Any] | None = None, body: bytes = b""
    ) -> Response:
        self.send(self.request_bytes(method, path, headers, body))
        return self.read_response(head=method == "HEAD")

    def read_response(self, head: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:end])
        del self.buf[: end + 4]
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = (
            0
            if head or status in (204, 304) or status < 200
            else int(headers.get("content-length", 0))
        )
        while len(self.buf) < n:
            self._fill()
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return Response(status, headers, body, raw)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def read_until_closed(self) -> tuple[bytes, str]:
        """Everything until the server closes, and how: "eof" (FIN) or "reset" (RST).

        Raises TimeoutError when the server keeps the connection open."""
        out = bytes(self.buf)
        self.buf.clear()
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return out, "reset"
            if not data:
                return out, "eof"
            out += data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def location_path(loc: str) -> str:
    m = re.match(r"https?://[^/]+(/.*)$", loc)
    return m.group(1) if m else loc
