#!/usr/bin/env python3
"""S3 benchmark: tusd-trio's S3 store against @tus/server + @tus/s3-store and plain boto3.

    bash benchmarks/setup-node.sh          # once: installs @tus/server + @tus/s3-store
    .venv/bin/python benchmarks/s3.py      # full run, 3 runs per measurement
    .venv/bin/python benchmarks/s3.py --smoke   # quick check, well under a minute

One moto server (`moto_server`, 127.0.0.1, dummy credentials) serves the whole run; every
measurement gets a fresh bucket, and moto is reset after it. The three contestants upload the
same bytes with the same part size:

  tusd-trio   python -m tusd_trio -s3-bucket B -s3-endpoint MOTO (a fresh process per measurement)
  tus-node    node node/s3-server.mjs (@tus/server + @tus/s3-store, forcePathStyle)
  boto3       a plain boto3 multipart upload in its own process: what moto itself takes

The tus uploads come from loadgen.py (as in run.py). Every scenario's first run is verified:
the bucket must hold the expected number of objects of the right size and sha256. Servers, moto
and the boto3 worker are killed at the end, also on Ctrl-C, SIGTERM or an error. See
benchmarks/README.md ("S3 benchmark").
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import run
from loadgen import make_source, self_cpu
from run import BENCH, REPO, MiB, RssSampler, Scenario, Server

LABELS = {"tusd-trio": "tusd-trio", "tus-node": "@tus/server", "boto3": "boto3 (limit)"}
DEFAULT_SERVERS = {
    "tusd-trio": "{python} -m tusd_trio -host 127.0.0.1 -port 0 -s3-bucket {bucket} "
    "-s3-endpoint {endpoint} -s3-part-size {part_size} -s3-min-part-size {min_part_size} "
    "-s3-max-buffered-parts {buffered_parts} -s3-concurrent-part-uploads {concurrency}",
    "tus-node": "node {bench}/node/s3-server.mjs -host 127.0.0.1 -port 0 -s3-bucket {bucket} "
    "-s3-endpoint {endpoint} -s3-part-size {part_size} -s3-min-part-size {min_part_size} "
    "-s3-concurrent-part-uploads {store_concurrency} -tmp-dir {upload_dir}",
}
# Dummy credentials: moto accepts any. Forced, so that real ones never leave this machine.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
MIN_PART = 5 * MiB


def scenarios(big: int, par_size: int, parallel: int, patch: int) -> list[Scenario]:
    return [
        Scenario(
            "single-patch",
            f"one {big / MiB:g} MiB upload, single PATCH",
            "bulk",
            "MiB/s",
            params={"size": big, "patch": big, "parallel": 1},
        ),
        Scenario(
            f"patch-{patch // MiB}m",
            f"one {big / MiB:g} MiB upload in {patch / MiB:g} MiB PATCHes",
            "bulk",
            "MiB/s",
            params={"size": big, "patch": min(patch, big), "parallel": 1},
        ),
        Scenario(
            f"parallel-{parallel}",
            f"{parallel} parallel {par_size / MiB:g} MiB uploads (aggregate)",
            "bulk",
            "MiB/s",
            params={"size": par_size, "patch": par_size, "parallel": parallel},
        ),
    ]


# -- moto -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """One moto_server for the whole run, in its own process group (registered in run.LIVE)."""

    def __init__(self, python: str, work: Path, logdir: Path, timeout: float = 30.0) -> None:
        exe = Path(python).parent / "moto_server"
        if not exe.exists():
            found = shutil.which("moto_server")
            if not found:
                raise RuntimeError("moto_server not found (pip install 'moto[server]')")
            exe = Path(found)
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        tmp = work / "moto-tmp"  # moto spools large parts to temp files
        tmp.mkdir()
        self.log_path = logdir / "moto.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.cmd = [str(exe), "-H", "127.0.0.1", "-p", str(port)]
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(tmp)},
            start_new_session=True,
        )
        with run.LIVE_LOCK:
            run.LIVE[self.proc.pid] = self.proc
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"moto_server exited with {code}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer in {timeout:g} s")
            time.sleep(0.1)

    def reset(self) -> None:
        """Drop every bucket and object (frees moto's memory between measurements)."""
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()

    def rss_mib(self) -> float:
        return run.proc_status_kib(self.pid, "VmRSS") / 1024

    def stop(self) -> None:
        run.kill_group(self.proc)
        self.log.close()


def s3_client(endpoint: str, pool: int = 10):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=AWS_ENV["AWS_REGION"],
        config=Config(
            max_pool_connections=pool,
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 5},
            read_timeout=300,
        ),
    )


def empty_bucket(client, bucket: str) -> None:
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for u in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


# -- correctness ----------------------------------------------------------------------------

_DIGESTS: dict[int, str] = {}


def expected_sha256(size: int) -> str:
    """sha256 of what loadgen.py (and the boto3 worker) upload: its 1 MiB pattern, repeated."""
    if size not in _DIGESTS:
        src = make_source(min(size, 64 * MiB), "sendall")
        h, left = hashlib.sha256(), size
        while left > 0:
            n = min(left, len(src))
            h.update(src[:n])
            left -= n
        _DIGESTS[size] = h.hexdigest()
    return _DIGESTS[size]


def verify(client, bucket: str, size: int, count: int) -> str:
    """Check that the bucket holds `count` objects of `size` bytes with the right sha256."""
    objs = [
        o
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    hits = [o for o in objs if o["Size"] == size]
    if len(hits) != count:
        sizes = sorted({o["Size"] for o in objs})[:10]
        raise RuntimeError(
            f"verify: expected {count} object(s) of {size} bytes in the bucket, found "
            f"{len(hits)} ({len(objs)} objects, sizes {sizes})"
        )
    want = expected_sha256(size)
    for o in hits:
        h = hashlib.sha256()
        body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"]
        for chunk in body.iter_chunks(8 * MiB):
            h.update(chunk)
        if h.hexdigest() != want:
            raise RuntimeError(f"verify: sha256 of {o['Key']!r} differs from what was sent")
    return f"{count} x {size} B, sha256 ok"


# -- the boto3 leg (runs in its own process: s3.py --boto3-worker JSON) ----------------------


def boto3_worker(p: dict) -> dict:
    size, parallel, part, conc = (int(p[k]) for k in ("size", "parallel", "part", "concurrency"))
    patch = int(p.get("patch") or size)
    bucket = p["bucket"]
    client = s3_client(p["endpoint"], pool=parallel * conc + parallel + 2)
    body = bytes(make_source(min(part, size), "sendall"))  # same bytes as loadgen.py sends

    def upload(key: str, nbytes: int, barrier: threading.Barrier | None = None) -> dict:
        up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        if barrier is not None:
            barrier.wait(120)
        r: dict = {"t0": time.perf_counter(), "e0": time.time()}

        def put(i: int) -> dict:
            n = min(part, nbytes - i * part)
            data = body if n == len(body) else body[:n]
            res = client.upload_part(
                Bucket=bucket, Key=key, UploadId=up, PartNumber=i + 1, Body=data
            )
            return {"ETag": res["ETag"], "PartNumber": i + 1}

        # Parts in flight never span a PATCH boundary: a tus server cannot answer a PATCH
        # before its bytes are in S3, so this is the limit for that request shape too.
        step = max(part, patch // part * part)
        parts: list[dict] = []
        with ThreadPoolExecutor(conc) as ex:
            for g in range(0, nbytes, step):
                first, end = g // part, -(-min(nbytes, g + step) // part)
                parts.extend(ex.map(put, range(first, end)))
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts}
        )
        r.update(t1=time.perf_counter(), e1=time.time())
        return r

    # warm-up (not measured), as loadgen's tus uploads get one
    if p.get("warmup", 0):
        upload("warmup", min(size, int(p["warmup"])))
        client.delete_object(Bucket=bucket, Key="warmup")
    marks: dict = {}
    barrier = threading.Barrier(parallel, action=lambda: marks.setdefault("cpu0", self_cpu()))
    with ThreadPoolExecutor(parallel) as ex:
        rs = list(ex.map(lambda i: upload(f"upload-{i}", size, barrier), range(parallel)))
    cpu1 = self_cpu()
    t0, t1 = min(r["t0"] for r in rs), max(r["t1"] for r in rs)
    total = size * parallel
    return {
        "ok": parallel,
        "uploads": parallel,
        "n_errors": 0,
        "errors": [],
        "bytes": total,
        "seconds": t1 - t0,
        "value": total / MiB / (t1 - t0),
        "window_s": t1 - t0,
        "window_epoch": [min(r["e0"] for r in rs), max(r["e1"] for r in rs)],
        "window_cpu_s": cpu1 - marks["cpu0"],
        "vmhwm_kib": run.proc_status_kib(os.getpid(), "VmHWM"),
    }


# -- one measurement ------------------------------------------------------------------------


class Ctx:
    def __init__(self, args, moto: Moto, work: Path, logdir: Path, templates: dict) -> None:
        self.args, self.moto, self.work, self.logdir = args, moto, work, logdir
        self.templates = templates
        self.client = s3_client(moto.endpoint)
        self.seq = 0
        self.verified: set[tuple[str, str]] = set()  # (scenario, server) checked once


def fill(template: str, values: dict) -> str:
    """Fill this harness's placeholders; run.Server fills {python} {upload_dir} {bench} {repo}."""
    for k, v in values.items():
        template = template.replace("{" + k + "}", str(v))
    return template


def measure(sc: Scenario, name: str, ctx: Ctx) -> dict:
    args = ctx.args
    size, parallel, patch = (sc.params[k] for k in ("size", "parallel", "patch"))
    total = size * parallel
    timeout = 120 + total / (2 * MiB)  # bounded: fail below ~2 MiB/s
    ctx.seq += 1
    bucket = f"bench-{ctx.seq}-{sc.name}-{name}".lower()[:63]
    ctx.client.create_bucket(Bucket=bucket)
    res: dict = {"bucket": bucket}
    srv = None
    try:
        if name == "boto3":
            moto_s = RssSampler(ctx.moto.pid)
            res["moto_rss_before_mib"] = ctx.moto.rss_mib()
            p = {
                "endpoint": ctx.moto.endpoint,
                "bucket": bucket,
                "size": size,
                "parallel": parallel,
                "patch": patch,
                "part": args.part_size,
                "concurrency": args.concurrency,
                "warmup": args.warmup,
            }
            proc = subprocess.Popen(
                [args.python, str(Path(__file__).resolve()), "--boto3-worker", json.dumps(p)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO,
            )
            with run.LIVE_LOCK:
                run.LIVE[proc.pid] = proc
            srv_s = RssSampler(proc.pid)
            moto_s.start()
            srv_s.start()
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                run.kill_group(proc, grace=0.5)
                raise RuntimeError(f"boto3 worker timed out after {timeout:.0f} s") from None
            finally:
                srv_s.stop()
                moto_s.stop()
                with run.LIVE_LOCK:
                    run.LIVE.pop(proc.pid, None)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"boto3 worker failed ({proc.returncode}): "
                    f"{err.decode(errors='replace')[-1500:]}"
                )
            res.update(json.loads(out.decode().strip().splitlines()[-1]))
            res["vmhwm_mib"] = res.pop("vmhwm_kib") / 1024
            res["vmhwm_group_mib"] = res["vmhwm_mib"]
            res["server_cpu_cores"] = res["window_cpu_s"] / res["window_s"]
            client_cores = 0.0  # no separate client: the worker is the client
        else:
            tmpl = fill(
                ctx.templates[name],
                {
                    "bucket": bucket,
                    "endpoint": ctx.moto.endpoint,
                    "part_size": args.part_size,
                    "min_part_size": MIN_PART,
                    "concurrency": args.concurrency,
                    "buffered_parts": args.buffered_parts,
                    # @tus/s3-store's semaphore is per store: give it C per upload in flight
                    "store_concurrency": args.concurrency * parallel,
                },
            )
            log_path = ctx.logdir / f"{name}.log"
            log_start = log_path.stat().st_size if log_path.exists() else 0
            srv = Server(name, tmpl, ctx.work, ctx.logdir, args.python, args.start_timeout)
            res["cmd"] = srv.cmd
            base = {"url": srv.url, "mode": "bulk", "send_mode": "sendall", "timeout": timeout}
            if args.warmup:
                w = min(size, args.warmup)
                run.loadgen(dict(base, size=w, patch=min(patch, w), parallel=1), timeout)
                empty_bucket(ctx.client, bucket)
            res["moto_rss_before_mib"] = ctx.moto.rss_mib()
            srv_s, moto_s = RssSampler(srv.pid), RssSampler(ctx.moto.pid)
            srv_s.start()
            moto_s.start()
            try:
                res.update(
                    run.loadgen(dict(base, size=size, patch=patch, parallel=parallel), timeout)
                )
            finally:
                srv_s.stop()
                moto_s.stop()
            hwm_main, hwm_group = srv.vmhwm_kib()
            res["vmhwm_mib"], res["vmhwm_group_mib"] = hwm_main / 1024, hwm_group / 1024
            client_cores = res["window_cpu_s"] / res["window_s"] if res.get("window_s") else None
            res["client_cpu_cores"] = client_cores
        res["rss_sampled_peak_mib"] = srv_s.peak_kib / 1024
        res["moto_rss_peak_mib"] = moto_s.peak_kib / 1024
        win = res.get("window_epoch")
        srv_cores = srv_s.cpu_cores(*win) if win else None
        moto_cores = moto_s.cpu_cores(*win) if win else None
        if srv_cores and name != "boto3":
            res["server_cpu_cores"] = srv_cores[0]
        if moto_cores:
            res["moto_cpu_cores"] = moto_cores[0]
            busy = moto_cores[1]
            res["machine_busy_cores"] = busy
            res["other_cpu_cores"] = max(
                0.0,
                busy - moto_cores[0] - (res.get("server_cpu_cores") or 0) - (client_cores or 0),
            )
        if res.get("value") is not None and (
            args.verify_all or (sc.name, name) not in ctx.verified
        ):
            res["verified"] = verify(ctx.client, bucket, size, parallel)
            ctx.verified.add((sc.name, name))
        res.setdefault("value", None)
        if res["value"] is None and res.get("errors"):
            res["failure"] = "; ".join(map(str, res["errors"]))
            if srv is not None:  # the server's own words for a 5xx (tusd-trio logs them)
                with open(srv.log_path, "rb") as f:
                    f.seek(log_start)
                    log = f.read().decode(errors="replace")
                why = [ln for ln in log.splitlines() if " answered 5" in ln]
                if why:
                    res["failure"] += " [server log: " + why[-1].split(" answered ", 1)[1] + "]"
        return res
    except Exception as e:
        if srv is not None and srv.proc.poll() is not None:
            raise RuntimeError(f"{e}\nserver exited; log tail:\n{srv.log_tail()}") from e
        raise
    finally:
        if srv is not None:
            srv.stop()
        ctx.moto.reset()


# -- reporting ------------------------------------------------------------------------------


def moto_table(summary: dict, results: list[dict], servers: list[str]) -> str:
    out = [
        "moto during the measured window (max over runs): CPU cores of the moto process / "
        "peak sampled RSS MiB. moto is one Python process (GIL): near 1.0 core means it is "
        "the bottleneck.\n"
    ]
    hdr = ["scenario"] + [f"{LABELS.get(s, s)}: moto CPU / RSS" for s in servers]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name in summary:
        cells = [name]
        for s in servers:
            rs = [r for r in results if r["scenario"] == name and r["server"] == s]
            cpu = [r["moto_cpu_cores"] for r in rs if r.get("moto_cpu_cores") is not None]
            rss = [r["moto_rss_peak_mib"] for r in rs if r.get("moto_rss_peak_mib")]
            cells.append(
                f"{max(cpu):.2f} / {run.fmt_num(max(rss))}" if cpu and rss else "not measured"
            )
        out.append("| " + " | ".join(cells) + " |")
    checks = sorted(
        {f"{r['server']} {r['scenario']}: {r['verified']}" for r in results if r.get("verified")}
    )
    if checks:
        out.append(
            "\nVerified (bucket listing + sha256 of every uploaded object, first successful "
            "run of each):\n"
        )
        out.extend(f"- {c}" for c in checks)
    return "\n".join(out) + "\n"


def _pkg_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tusd_trio_version(python: str) -> str | None:
    v = run._version([python, "-m", "tusd_trio", "-version"])
    commit = run._version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = run._version(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return f"{v} (commit {commit}{' + working changes' if dirty else ''})"


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--boto3-worker"]:
        print(json.dumps(boto3_worker(json.loads(argv[1]))), flush=True)
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median of these)")
    ap.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    ap.add_argument(
        "--servers",
        default="tusd-trio,tus-node,boto3",
        help="comma-separated contestants (default: %(default)s)",
    )
    ap.add_argument(
        "--server-cmd",
        action="append",
        default=[],
        metavar="NAME=TEMPLATE",
        help="override or add a tus server command; placeholders {python} {bench} {repo} "
        "{upload_dir} {bucket} {endpoint} {part_size} {min_part_size} {concurrency} "
        "{buffered_parts} {store_concurrency}",
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="single upload size (1024)")
    ap.add_argument("--patch-mib", type=int, default=8, help="PATCH size of scenario 2 (8)")
    ap.add_argument("--parallel", type=int, default=8, help="parallel uploads (8)")
    ap.add_argument("--parallel-mib", type=int, default=64, help="size of each one (64)")
    ap.add_argument("--part-size-mib", type=int, default=8, help="S3 part size for all (8)")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="parts uploaded at once per upload, for all three (4)",
    )
    ap.add_argument(
        "--buffered-parts",
        type=int,
        default=None,
        help="tusd-trio -s3-max-buffered-parts (default: concurrency + 1)",
    )
    ap.add_argument(
        "--warmup-mib",
        type=int,
        default=None,
        help="unmeasured warm-up upload per measurement (64, --smoke 0)",
    )
    ap.add_argument("--verify-all", action="store_true", help="verify every run, not the first")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: 256 MiB, 8 x 16 MiB, 1 run, no warm-up",
    )
    ap.add_argument("--json", default=None, help="results JSON (default results/s3-<time>.json)")
    ap.add_argument("--md", default=None, help="also write the Markdown report to this file")
    ap.add_argument("--work-dir", default=None, help="where temp dirs go (default: a temp dir)")
    ap.add_argument("--python", default=run.default_python(), help="interpreter for {python}")
    ap.add_argument("--start-timeout", type=float, default=30.0)
    args = ap.parse_args(argv)

    if args.smoke:
        args.size_mib = min(args.size_mib, 256)
        args.parallel_mib = min(args.parallel_mib, 16)
        args.runs = 1
        if args.warmup_mib is None:
            args.warmup_mib = 0
    args.warmup = (64 if args.warmup_mib is None else args.warmup_mib) * MiB
    args.part_size = args.part_size_mib * MiB
    if args.part_size < MIN_PART:
        ap.error("--part-size-mib must be at least 5 (S3's smallest part)")
    if args.buffered_parts is None:
        args.buffered_parts = args.concurrency + 1
    all_scs = scenarios(
        args.size_mib * MiB, args.parallel_mib * MiB, args.parallel, args.patch_mib * MiB
    )
    scs = run.select_scenarios(ap, all_scs, args.only)

    templates = dict(DEFAULT_SERVERS)
    for spec in args.server_cmd:
        name, _, tmpl = spec.partition("=")
        if not tmpl:
            ap.error(f"--server-cmd needs NAME=TEMPLATE, got {spec!r}")
        templates[name.strip()] = tmpl
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s != "boto3" and s not in templates:
            ap.error(f"unknown server {s!r}; add it with --server-cmd {s}=TEMPLATE")
    node_ok = (BENCH / "node" / "node_modules" / "@tus" / "s3-store").exists()
    if "tus-node" in servers and not node_ok:
        print(
            "note: @tus/s3-store is not installed; run `bash benchmarks/setup-node.sh` "
            "(skipping tus-node)",
            file=sys.stderr,
        )
        servers.remove("tus-node")

    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(k, None)
    os.environ.update(AWS_ENV)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else BENCH / "results" / f"s3-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    logdir = json_path.parent / f"s3-logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusd-trio-s3-bench-", dir=args.work_dir))

    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "runs": args.runs,
        "size_scale": args.size_mib / 1024,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "node": run._version(["node", "--version"]),
        "tusd_trio": _tusd_trio_version(args.python),
        "tus_server": run._npm_version("@tus/server"),
        "tus_s3_store": run._npm_version("@tus/s3-store"),
        "aws_sdk_client_s3": run._npm_version("@aws-sdk/client-s3"),
        "moto": _pkg_version("moto"),
        "boto3": _pkg_version("boto3"),
        "botocore": _pkg_version("botocore"),
        "part_size": args.part_size,
        "concurrency": args.concurrency,
        "buffered_parts": args.buffered_parts,
        "warmup": args.warmup,
        "client": "loadgen.py bulk (sendall) for the tus servers; the boto3 worker is its own "
        "client",
        "servers": {s: templates.get(s, "boto3 worker") for s in servers},
        "args": vars(args),
    }
    meta["background_cpu_cores_at_start"] = run.background_cores()
    signal.signal(signal.SIGTERM, run.on_sigterm)
    results: list[dict] = []
    moto = None
    t_start = time.monotonic()
    try:
        moto = Moto(args.python, work, logdir)
        meta["moto_cmd"] = shlex.join(moto.cmd)
        ctx = Ctx(args, moto, work, logdir, templates)
        unavailable: dict[str, str] = {}
        for run_idx in range(args.runs):
            for sc in scs:
                order = servers[run_idx % len(servers) :] + servers[: run_idx % len(servers)]
                for name in order:
                    rec = {"run": run_idx, "scenario": sc.name, "server": name, "unit": sc.unit}
                    if name in unavailable:
                        rec["failure"] = unavailable[name]
                        results.append(rec)
                        continue
                    try:
                        rec.update(measure(sc, name, ctx))
                    except Exception as e:
                        msg = str(e) if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}"
                        rec["failure"] = msg
                        if "did not start" in msg:
                            unavailable[name] = msg
                    results.append(rec)
                    v = rec.get("value")
                    status = (
                        f"{v:,.1f} {sc.unit}"
                        if v is not None
                        else "FAILED: " + (rec.get("failure") or "?").splitlines()[0][:200]
                    )
                    print(
                        f"[run {run_idx + 1}/{args.runs}] {sc.name:12} {name:10} {status}"
                        + (
                            f"  (cores: server {run._f2(rec.get('server_cpu_cores'))}, moto "
                            f"{run._f2(rec.get('moto_cpu_cores'))}; moto peak RSS "
                            f"{rec.get('moto_rss_peak_mib', 0):,.0f} MiB)"
                            if v is not None
                            else ""
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: stopping servers and moto", file=sys.stderr)
        run.kill_all()
        return 130
    finally:
        if moto is not None:
            meta["moto_vmhwm_mib"] = run.proc_status_kib(moto.pid, "VmHWM") / 1024
            moto.stop()
        run.kill_all()
        shutil.rmtree(work, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    summary = run.summarize(results, scs, servers, args.runs)
    saved = dict(run.LABELS)
    run.LABELS.update(LABELS)
    try:
        md = run.markdown(summary, servers, meta)
    finally:
        run.LABELS.clear()
        run.LABELS.update(saved)
    md += "\n" + moto_table(summary, results, servers)
    md += (
        f"\nPart size {args.part_size / MiB:g} MiB for all; {args.concurrency} parts in flight "
        f"per upload (tusd-trio -s3-concurrent-part-uploads {args.concurrency} "
        f"-s3-max-buffered-parts {args.buffered_parts}; @tus/s3-store maxConcurrentPartUploads "
        f"{args.concurrency} x parallel uploads, one semaphore per store; boto3 "
        f"{args.concurrency} threads per upload, never across a PATCH boundary); "
        f"warm-up {args.warmup / MiB:g} MiB; whole run "
        f"{meta['seconds']:g} s; moto VmHWM over the run {meta.get('moto_vmhwm_mib', 0):,.0f} "
        "MiB.\n"
    )
    print(md)
    json_path.write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1, default=str)
    )
    if args.md:
        Path(args.md).write_text(md)
    print(f"JSON: {json_path}\nlogs: {logdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
