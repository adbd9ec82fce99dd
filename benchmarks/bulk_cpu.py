"""Server CPU seconds per uploaded GiB, A/B between tusd-trio checkouts, with curl.

Starts one daemon per checkout (``name=path``, each on its own port and upload
directory), then, round after round in alternating order, uploads to each: 16 parallel
PATCHes and one single PATCH, by ``curl -T`` (64 KiB writes) or by run.py's load
generator (``--client loadgen``: ``sendall`` of whole buffers).  The figure is the daemon's
user + system CPU time (``/proc/<pid>/stat``, its worker processes included) over the
upload, per GiB: on a machine shared with other work it is far steadier than MiB/s, and
alternating within seconds cancels most of the drift.  Files are deleted after each
upload so that page-cache writeback never starts.  Prints every sample and the medians.

    .venv/bin/python benchmarks/bulk_cpu.py --rounds 10 before=/path/to/main after=.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children (the ``-workers`` processes)."""
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    total = 0.0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _create(port: int, length: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/files/",
        method="POST",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(length)},
    )
    with urllib.request.urlopen(request) as response:
        return str(response.headers["Location"])


def _upload_loadgen(port: int, count: int, size: int) -> None:
    params = {"mode": "bulk", "url": f"http://127.0.0.1:{port}/files/", "size": size}
    params.update(patch=size, parallel=count, send_mode="sendall")
    loadgen = Path(__file__).with_name("loadgen.py")
    subprocess.run(
        [sys.executable, str(loadgen), json.dumps(params)], check=True, stdout=subprocess.DEVNULL
    )


def _upload(port: int, count: int, source: Path, size: int) -> None:
    urls = [_create(port, size) for _ in range(count)]
    cmd = ["curl", "-sS", "-o", "/dev/null", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0"]
    cmd += ["-H", "Upload-Offset: 0", "-H", "Content-Type: application/offset+octet-stream"]
    if count > 1:
        cmd += ["-Z", "--parallel-max", str(count)]
    for url in urls:
        cmd += ["-T", str(source), url]
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", help="name=path of a tusd-trio checkout")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--parallel-mib", type=int, default=16, help="size of each of 16")
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument(
        "--client",
        choices=["curl", "loadgen"],
        default="curl",
        help="curl -T (64 KiB writes), or loadgen.py (sendall of 64 MiB buffers, as run.py)",
    )
    parser.add_argument("--flags", default="", help="extra daemon flags, e.g. '-workers 2'")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bulk-cpu-"))
    sources = {}
    for mib in {args.parallel_mib, args.stream_mib}:
        sources[mib] = work / f"src-{mib}"
        sources[mib].write_bytes(os.urandom(mib * MiB))
    scenarios = [
        (f"parallel-16 x {args.parallel_mib} MiB", 16, args.parallel_mib),
        (f"stream {args.stream_mib} MiB", 1, args.stream_mib),
    ]
    servers = []
    for spec in args.checkouts:
        name, path = spec.split("=", 1)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        upload_dir = work / f"up-{name}"
        upload_dir.mkdir()
        checkout = Path(path).resolve()
        # Workers (-workers) are started as `python -m tusd_trio`, which puts the working
        # directory first on sys.path: run each daemon in its own checkout.
        env = dict(os.environ, PYTHONPATH=str(checkout))
        cmd = [sys.executable, "-P", "-m", "tusd_trio", "-host", "127.0.0.1", "-port", str(port)]
        cmd += ["-upload-dir", str(upload_dir), "-verbose=false", *args.flags.split()]
        proc = subprocess.Popen(
            cmd, env=env, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        servers.append((name, port, proc, upload_dir))
    samples: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for _name, port, _proc, _dir in servers:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    time.sleep(0.1)
        for round_number in range(args.rounds):
            order = servers if round_number % 2 == 0 else servers[::-1]
            for label, count, mib in scenarios:
                for name, port, proc, upload_dir in order:
                    before = _cpu_seconds(proc.pid)
                    started = time.perf_counter()
                    if args.client == "loadgen":
                        _upload_loadgen(port, count, mib * MiB)
                    else:
                        _upload(port, count, sources[mib], mib * MiB)
                    rate = count * mib / (time.perf_counter() - started)
                    per_gib = (_cpu_seconds(proc.pid) - before) / (count * mib / 1024)
                    samples.setdefault((label, name), []).append(per_gib)
                    rates.setdefault((label, name), []).append(rate)
                    print(
                        f"{round_number} {label:24} {name:10}",
                        f"{per_gib:.3f} s/GiB {rate:6.0f} MiB/s",
                        flush=True,
                    )
                    for entry in upload_dir.iterdir():
                        entry.unlink()
    finally:
        for _name, _port, proc, _dir in servers:
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print("medians: server CPU seconds per GiB, MiB/s (wall clock, whole upload)")
    for (label, name), values in samples.items():
        rate = statistics.median(rates[label, name])
        print(
            f"  {label:24} {name:10} {statistics.median(values):.3f}  {rate:6.0f}  ({len(values)})"
        )


if __name__ == "__main__":
    main()
