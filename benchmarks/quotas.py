#!/usr/bin/env python3
"""What per-principal quotas cost: 4 KiB creations-with-upload with quotas off and on.

    .venv/bin/python benchmarks/quotas.py              # 3 runs of 5 s per set-up
    .venv/bin/python benchmarks/quotas.py --runs 1 --seconds 3

Set-ups (file store, one daemon on 127.0.0.1, a fresh process and upload directory per run,
every request with the same HS256 bearer token):

  auth            access control (JWT) without quotas: the baseline
  quota-memory    -auth-quota-bytes/-uploads with the file locker: the in-process ledger
  auth-redis      -locker redis without quotas: the baseline of the next one
  quota-redis     -locker redis with quotas: one Lua script per creation, in Redis

Each run is loadgen.py's `rate` mode, kind `create` (POST with Upload-Length 4096 and the
4 KiB body), 16 keep-alive connections.  The limits are far above what a run creates, so
nothing is refused (the table shows any non-201).  Redis is the one on 127.0.0.1:6379, with
a key prefix of the run's own, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jwt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from procs import kill_group, proc_cpu_s, run_client, start  # noqa: E402

SECRET = "b" * 40
BANNER = re.compile(rb"You can now upload files to: (\S+)")
QUOTA = ["-auth-quota-bytes", str(10**15), "-auth-quota-uploads", str(10**9)]
SETUPS: dict[str, list[str]] = {
    "auth": [],
    "quota-memory": QUOTA,
    "auth-redis": ["-locker", "redis"],
    "quota-redis": ["-locker", "redis", *QUOTA],
}


def start_daemon(args: list[str], upload_dir: Path, prefix: str) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "tusd_trio",
        "-host",
        "127.0.0.1",
        "-port",
        "0",
        "-upload-dir",
        str(upload_dir),
        "-verbose=false",
        "-auth-jwt-secret",
        SECRET,
        "-redis-url",
        "redis://127.0.0.1:6379/0",
        "-redis-key-prefix",
        prefix,
        *args,
    ]
    # Its log goes to a file: a pipe nobody reads would stop the daemon once full.
    log_path = upload_dir.parent / "daemon.log"
    with open(log_path, "wb") as log:
        proc = start(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        found = BANNER.search(log_path.read_bytes())
        if found:
            return proc, found.group(1).decode()
        time.sleep(0.05)
    kill_group(proc)
    raise RuntimeError(f"the daemon did not start: {cmd}")


def one_run(setup: str, seconds: float, connections: int) -> dict:
    prefix = f"bq-{uuid.uuid4().hex[:8]}:"
    token = jwt.encode({"sub": "bench", "exp": int(time.time()) + 3600}, SECRET, "HS256")
    with tempfile.TemporaryDirectory(prefix="tusd-trio-quota-bench-") as tmp:
        proc, url = start_daemon(SETUPS[setup], Path(tmp) / "uploads", prefix)
        try:
            cpu_before = proc_cpu_s(proc.pid)
            scenario = {
                "mode": "rate",
                "kind": "create",
                "url": url,
                "connections": connections,
                "duration": seconds,
                "body": 4096,
                "headers": {"Authorization": f"Bearer {token}"},
            }
            out, _, _, _, _ = run_client(
                [sys.executable, str(HERE / "loadgen.py"), json.dumps(scenario)],
                timeout=seconds + 120,
            )
            cpu = proc_cpu_s(proc.pid) - cpu_before
        finally:
            kill_group(proc)
            for key in _redis("--scan", "--pattern", f"{prefix}*").split():
                _redis("DEL", key)
    result: dict = json.loads(out)
    # The daemon's CPU per creation (warm-up included): steadier than the rate on a
    # machine that others share.
    result["server_cpu_us"] = cpu / max(1, result["done_all"]) * 1e6
    return result


def _redis(*args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args], capture_output=True, text=True
    )
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in SETUPS}
    for run in range(options.runs):  # set-ups interleaved: load drifts hit each alike
        for name in SETUPS:
            result = one_run(name, options.seconds, options.connections)
            results[name].append(result)
            print(
                f"run {run + 1} {name}: {result['value']:.0f}/s p50 {result['p50_ms']:.2f} ms "
                f"{result['server_cpu_us']:.0f} us CPU/creation",
                file=sys.stderr,
            )
    print(
        "| set-up | creations/s (median, min-max) | p50 ms | p99 ms "
        "| server CPU µs/creation (median, min-max) | non-201 |"
    )
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        rates = [r["value"] for r in runs]
        cpus = [r["server_cpu_us"] for r in runs]
        bad = sum(v for r in runs for k, v in r["statuses"].items() if k != "201")
        print(
            f"| {name} | {statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f}) "
            f"| {statistics.median(r['p50_ms'] for r in runs):.2f} "
            f"| {statistics.median(r['p99_ms'] for r in runs):.2f} "
            f"| {statistics.median(cpus):.0f} ({min(cpus):.0f}-{max(cpus):.0f}) | {bad} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
