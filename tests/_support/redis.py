"""The Redis every test may share (127.0.0.1:6379, started by CI), and redis-cli against it.

Tests keep apart on it by key prefix or stream name; tests that stop or restart Redis
start servers of their own (:class:`RedisServers`, the ``redis_servers`` fixture).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests._support.services import free_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def redis_cli(*args: str) -> str:
    """Run one redis-cli command against the shared Redis; its output, stripped."""
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and below 65536:
    redis-server refuses to start in cluster mode otherwise."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisServers:
    """Own redis-server processes (never the shared 6379 one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, port: int, *extra: str, config: str | None = None) -> subprocess.Popen[bytes]:
        workdir = self.directory / f"redis-{port}"
        workdir.mkdir(exist_ok=True)
        args = ["redis-server"]
        if config is not None:
            conf = workdir / "redis.conf"
            conf.write_text(config)
            args.append(str(conf))
        args += [
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *extra,
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-")):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.02)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
