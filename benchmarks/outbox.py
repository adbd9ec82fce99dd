"""The hook outbox's cost: 4 KiB uploads created with their data in one POST
(creation-with-upload), post-create and post-finish sent to a local HTTP receiver.

Four set-ups, each a fresh daemon on a fresh upload directory: outbox off and on,
each without and with ``-fsync`` (``-fsync`` also flushes the upload's data and info,
so compare "on" with "off" at the same ``-fsync``).  Every round runs each set-up once,
in turn, so drift of a noisy machine touches them alike; the medians are reported.
The run also waits until the receiver has every post-finish (the outbox's background
sending is part of the cost), and that time is counted.

    .venv/bin/python benchmarks/outbox.py --uploads 300 --rounds 3 --clients 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._support.daemon import Daemon

BODY = os.urandom(4096)
SETUPS = {
    "outbox off": ["-hooks-outbox=false"],
    "outbox on": [],
    "outbox off, -fsync": ["-hooks-outbox=false", "-fsync"],
    "outbox on, -fsync": ["-fsync"],
}


class Receiver:
    def __init__(self) -> None:
        self.finished = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if json.loads(body)["Type"] == "post-finish":
                    with outer.lock:
                        outer.finished += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a killed daemon's keep-alive connections reset: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def one_run(
    receiver: Receiver, extra: list[str], uploads: int, clients: int
) -> tuple[float, float, float]:
    """(uploads/s until the last response, uploads/s until the last post-finish arrived,
    median milliseconds of one creation)."""
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        args = [
            "-hooks-http",
            receiver.url,
            "-hooks-enabled-events",
            "post-create,post-finish",
            *extra,
        ]
        daemon = Daemon(Path(tmp) / "uploads", args, log_dir=Path(tmp))
        daemon.start()
        try:
            with receiver.lock:
                receiver.finished = 0
            headers = {
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(BODY)),
                "Content-Type": "application/offset+octet-stream",
            }

            latencies: list[float] = []

            def work(count: int) -> None:
                with httpx.Client(timeout=30) as http:
                    for _ in range(count):
                        sent = time.perf_counter()
                        r = http.post(daemon.base_url, content=BODY, headers=headers)
                        latencies.append(time.perf_counter() - sent)
                        assert r.status_code == 201, (r.request.url, r.text)

            per_client = [uploads // clients] * clients
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(work, per_client))
            answered = time.perf_counter() - started
            total = sum(per_client)
            while receiver.finished < total:
                time.sleep(0.005)
            delivered = time.perf_counter() - started
            return total / answered, total / delivered, statistics.median(latencies) * 1000
        finally:
            daemon.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    opts = parser.parse_args()
    receiver = Receiver()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETUPS}
    for _ in range(opts.rounds):
        for name, extra in SETUPS.items():
            results[name].append(one_run(receiver, extra, opts.uploads, opts.clients))
    print(
        f"{opts.uploads} uploads of 4 KiB, {opts.clients} clients, median of {opts.rounds} rounds"
    )
    print(f"{'set-up':<22} {'answered/s':>11} {'delivered/s':>12} {'POST p50 ms':>12}")
    for name, runs in results.items():
        answered = statistics.median(r[0] for r in runs)
        delivered = statistics.median(r[1] for r in runs)
        latency = statistics.median(r[2] for r in runs)
        print(f"{name:<22} {answered:>11.0f} {delivered:>12.0f} {latency:>12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
