"""Helpers of the scale-out tests: a cluster of daemons sharing a store and a Redis,
and a ``redis-server`` of a test's own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests._support.daemon import Daemon
from tests._support.services import free_port

MiB = 1024 * 1024


class RedisServer:
    """A ``redis-server`` of the test's own (no persistence) that can be stopped
    and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, "redis-server exited at start"
            time.sleep(0.05)
        pytest.fail("redis-server did not answer PING", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Cluster:
    """Daemons sharing one store and one Redis; all killed at teardown."""

    def __init__(self, root: Path, redis_url: str, store_args: tuple[str, ...]) -> None:
        self.root = root
        self.redis_url = redis_url
        self.prefix = f"tusd-trio-scaleout:{uuid.uuid4().hex}:"
        self.store_args = store_args
        self.upload_dir = root / "uploads"  # shared by every daemon (ignored with S3)
        self.daemons: list[Daemon] = []

    def start(self, count: int, *extra: str) -> list[Daemon]:
        started = []
        for _ in range(count):
            args = (
                "-locker",
                "redis",
                "-redis-url",
                self.redis_url,
                "-redis-key-prefix",
                self.prefix,
                "-verbose=false",
                *self.store_args,
                *extra,
            )
            daemon = Daemon(self.upload_dir, args, log_dir=self.root)
            self.daemons.append(daemon)
            started.append(daemon.start())
        return started

    def kill_all(self) -> None:
        for daemon in self.daemons:
            daemon.kill()

    def diagnostics(self) -> str:
        return "\n".join(
            f"=== daemon {i} (pid {d.proc.pid if d.proc else '-'})\n{d.diagnostics()}"
            for i, d in enumerate(self.daemons)
        )
