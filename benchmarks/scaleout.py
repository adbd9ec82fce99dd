#!/usr/bin/env python3
"""Scale-out benchmark: one tusd-trio instance against several (Redis locker) and `-workers`.

    .venv/bin/python benchmarks/scaleout.py            # full run, 3 runs per measurement
    .venv/bin/python benchmarks/scaleout.py --smoke    # quick check, well under a minute
    .venv/bin/python benchmarks/scaleout.py --md benchmarks/SCALEOUT-RESULTS.md

Set-ups (file store; every daemon bound to 127.0.0.1, port 0, a fresh process per measurement):

  1x-file     one instance, -locker file (the default)
  workers-2   one instance with -workers 2 (only if tusd_trio/_workers.py exists)
  2x-redis    two instances sharing one upload dir, -locker redis; the load generator
              alternates instances: the POST goes to one, the PATCH to the other
  1x-redis    one instance, -locker redis: with 1x-file, the cost of the Redis lock

Scenarios: `post-patch-4k` (POST, then one 4 KiB PATCH per upload, 32 connections; uploads/s
and the latency of the pair), `head` (HEAD on 32 uploads, 32 connections; every HEAD takes the
upload's lock) and `parallel-8` (8 uploads of 64 MiB at once, one PATCH each; aggregate MiB/s).
Redis is a redis-server of the benchmark's own (free port, temp dir, no persistence). The load
generator is this script in `--client` mode, in its own process; it reuses loadgen.py's HTTP
helpers, and the process bookkeeping, CPU and RSS sampling come from run.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

import run
from loadgen import (
    OCTET,
    TUS,
    Conn,
    header,
    location_path,
    make_source,
    parse_response,
    self_cpu,
    send_body,
    split_url,
)
from run import BENCH, REPO, MiB, RssSampler, Server, fmt_num, med_min_max

KiB = 1024
WORKERS_MODULE = REPO / "tusd_trio" / "_workers.py"
BASE = "{python} -m tusd_trio -host 127.0.0.1 -port 0 -verbose=false"
SETUPS = {
    # name: (instances, extra flags; {redis} and {shared} are filled in per measurement)
    "1x-file": (1, "-upload-dir {upload_dir} -locker file"),
    "workers-2": (1, "-upload-dir {upload_dir} -locker file -workers 2"),
    "2x-redis": (
        2,
        "-upload-dir {shared} -locker redis -redis-url {redis} -redis-key-prefix {prefix}",
    ),
    "1x-redis": (
        1,
        "-upload-dir {upload_dir} -locker redis -redis-url {redis} -redis-key-prefix {prefix}",
    ),
}
LABELS = {
    "1x-file": "1 instance, file locker",
    "workers-2": "-workers 2, file locker",
    "2x-redis": "2 instances, Redis locker, round robin",
    "1x-redis": "1 instance, Redis locker",
}


# -- the load generator (--client mode, its own process) -------------------------------------


def _connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s


def client_rate(p: dict) -> dict:
    """C logical connections, one request in flight each; every logical connection has a
    keep-alive socket to every instance and sends each request to the next instance."""
    urls = p["urls"]
    targets = [split_url(u) for u in urls]
    n = len(targets)
    kind, body_len = p["kind"], int(p.get("body", 4096))
    body = (bytes(range(256)) * (body_len // 256 + 1))[:body_len]
    duration, warmup = float(p["duration"]), float(p.get("warmup", 0.5))
    hosthdr = [f"Host: {h}:{port}\r\n".encode() for h, port, _ in targets]
    sel = selectors.DefaultSelector()
    states = []
    for cid in range(int(p["connections"])):
        st = {"cid": cid, "turn": cid, "socks": [], "bufs": [], "stage": 0, "t": 0.0, "t0": 0.0}
        for i, (h, port, _) in enumerate(targets):
            s = _connect(h, port)
            st["socks"].append(s)
            st["bufs"].append(bytearray())
            sel.register(s, selectors.EVENT_READ, (st, i))
        if kind == "head":
            st["path"] = p["paths"][cid % len(p["paths"])]
        states.append(st)

    lat = array("d")
    statuses: dict[str, int] = {}
    errors: list[str] = []
    done = requests = 0
    perf = time.perf_counter

    def send(st: dict) -> None:
        i = st["turn"] % n
        st["cur"] = i
        if kind == "head":
            req = f"HEAD {st['path']} HTTP/1.1\r\n".encode() + hosthdr[i] + TUS + b"\r\n"
        elif st["stage"] == 0:
            req = (
                f"POST {targets[i][2]} HTTP/1.1\r\n".encode()
                + hosthdr[i]
                + TUS
                + b"Upload-Length: %d\r\nContent-Length: 0\r\n\r\n" % body_len
            )
            st["t0"] = perf()
        else:
            req = (
                f"PATCH {st['loc']} HTTP/1.1\r\n".encode()
                + hosthdr[i]
                + TUS
                + OCTET
                + b"Upload-Offset: 0\r\nContent-Length: %d\r\n\r\n" % body_len
                + body
            )
        st["t"] = perf()
        s = st["socks"][i]
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(req)
        s.setblocking(False)

    t_count = perf() + warmup
    t_end = t_count + duration
    cpu0 = None
    epoch0 = None
    for st in states:
        send(st)
    while True:
        now = perf()
        if now >= t_end:
            break
        for key, _ev in sel.select(t_end - now):
            st, i = key.data
            try:
                data = st["socks"][i].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise ConnectionError(f"instance {i} closed a connection")
            buf = st["bufs"][i]
            buf += data
            r = parse_response(buf, kind == "head")
            if r is None:
                continue
            status, low, raw, consumed = r
            del buf[:consumed]
            t = perf()
            counting = t >= t_count
            if counting and cpu0 is None:
                cpu0, epoch0 = self_cpu(), time.time()
            if counting:
                requests += 1
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            st["turn"] += 1
            if kind == "head":
                ok = status == 200
                start = st["t"]
            elif st["stage"] == 0:
                loc = header(raw, low, b"location")
                if status == 201 and loc:
                    st["stage"], st["loc"] = 1, location_path(loc)
                    send(st)
                    continue
                ok, start = False, st["t0"]
            else:
                got = header(raw, low, b"upload-offset")
                ok = status == 204 and got == str(body_len)
                start, st["stage"] = st["t0"], 0
            if counting:
                if ok:
                    done += 1
                    lat.append(t - start)
                elif len(errors) < 5:
                    errors.append(f"{raw[:60]!r}")
            send(st)
    elapsed = perf() - t_count
    window_cpu = self_cpu() - (cpu0 if cpu0 is not None else self_cpu())
    for st in states:
        for s in st["socks"]:
            s.close()
    srt = sorted(lat)

    def pct(q: float) -> float | None:
        return srt[min(len(srt) - 1, int(q * len(srt)))] * 1000 if srt else None

    bad = requests - sum(v for k, v in statuses.items() if k in ("200", "201", "204"))
    return {
        "value": done / elapsed,
        "done": done,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "statuses": statuses,
        "n_errors": bad,
        "errors": errors,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "window_s": elapsed,
        "window_cpu_s": window_cpu,
        "window_epoch": [epoch0 or time.time() - elapsed, time.time()],
    }


def client_bulk(p: dict) -> dict:
    """N uploads at once, one PATCH each; upload i is created on instance i and PATCHed on
    the next one (the same one when there is only one)."""
    urls = p["urls"]
    size, parallel = int(p["size"]), int(p["parallel"])
    source = make_source(min(size, 64 * MiB), "sendall")
    marks: dict = {}
    barrier = threading.Barrier(parallel, action=lambda: marks.setdefault("cpu0", self_cpu()))
    results: list[dict] = [{"ok": False} for _ in range(parallel)]

    def worker(i: int) -> None:
        r = results[i]
        a, b = split_url(urls[i % len(urls)]), split_url(urls[(i + 1) % len(urls)])
        conns: list[Conn] = []
        try:
            ca = Conn(a[0], a[1], 120)
            conns.append(ca)
            status, path = ca.create(a[2], size)
            if status != 201 or not path:
                r["error"] = f"POST -> {status}"
                barrier.abort()
                return
            cb = ca if b == a else Conn(b[0], b[1], 120)
            conns.append(cb)
            barrier.wait(60)
            r["t0"], r["e0"] = time.perf_counter(), time.time()
            cb.sock.sendall(cb.patch_head(path, 0, size))
            send_body(cb.sock, source, size)
            status, low, raw = cb.read_response()
            got = header(raw, low, b"upload-offset")
            if status != 204 or got != str(size):
                r["error"] = f"PATCH -> {status}, Upload-Offset {got}"
                return
            r.update(ok=True, t1=time.perf_counter(), e1=time.time())
        except threading.BrokenBarrierError:
            r.setdefault("error", "another upload failed to start")
        except Exception as e:
            r["error"] = f"{type(e).__name__}: {e}"
        finally:
            for c in conns:
                c.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    cpu1 = self_cpu()
    ok = [r for r in results if r.get("ok")]
    errors = [r.get("error", "timeout") for r in results if not r.get("ok")]
    out: dict = {"ok": len(ok), "n_errors": len(errors), "errors": errors[:5]}
    if ok and not errors:
        start, end = min(r["t0"] for r in ok), max(r["t1"] for r in ok)
        out.update(value=size * len(ok) / MiB / (end - start), seconds=end - start)
        out.update(window_s=end - start, window_cpu_s=cpu1 - marks.get("cpu0", cpu1))
        out["window_epoch"] = [min(r["e0"] for r in ok), max(r["e1"] for r in ok)]
    return out


def client_prepare(p: dict) -> dict:
    url = p["urls"][0]
    host, port, base = split_url(url)
    c = Conn(host, port, 30)
    paths = []
    try:
        for _ in range(int(p["count"])):
            status, path = c.create(base, 4096, b"x" * 4096)
            if status != 201 or not path:
                raise RuntimeError(f"POST -> {status}")
            paths.append(path)
    finally:
        c.close()
    return {"paths": paths}


def client_main(p: dict) -> dict:
    mode = p["mode"]
    if mode == "rate":
        return client_rate(p)
    if mode == "bulk":
        return client_bulk(p)
    return client_prepare(p)


def client(p: dict, timeout: float) -> dict:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--client", json.dumps(p)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    with run.LIVE_LOCK:
        run.LIVE[proc.pid] = proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill_group(proc, grace=0.5)
        raise RuntimeError(f"load generator timed out after {timeout:.0f} s") from None
    finally:
        with run.LIVE_LOCK:
            run.LIVE.pop(proc.pid, None)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode(errors='replace')[-1500:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


# -- Redis ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resp_command(port: int, *args: str) -> bytes:
    req = f"*{len(args)}\r\n".encode()
    for a in args:
        req += b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
            first, sep, rest = data.partition(b"\r\n")
            if not sep:
                continue
            if not first.startswith(b"$") or len(rest) >= int(first[1:]) + 2:
                return data


def redis_info(port: int) -> dict[str, str]:
    text = resp_command(port, "INFO").decode(errors="replace")
    return dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )


class Redis:
    """A redis-server of the benchmark's own."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=work))
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed")
        self.log = open(self.dir / "redis.log", "wb")  # noqa: SIM115 - closed in stop()
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.dir)]
        self.proc = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with run.LIVE_LOCK:
            run.LIVE[self.proc.pid] = self.proc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if resp_command(self.port, "PING").startswith(b"+PONG"):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not answer")
        info = redis_info(self.port)
        self.version = info.get("redis_version", "?").strip()
        self.pid = int(info["process_id"])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def commands(self) -> int:
        return int(redis_info(self.port)["total_commands_processed"])

    def stop(self) -> None:
        run.kill_group(self.proc, grace=2)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- one measurement ------------------------------------------------------------------------


def measure(setup: str, scenario: dict, ctx: dict, run_no: int) -> dict:
    count, flags = SETUPS[setup]
    shared = Path(tempfile.mkdtemp(prefix="shared-", dir=ctx["work"]))
    prefix = f"bench-{os.getpid()}-{run_no}-{setup}-{scenario['name']}:"
    template = (BASE + " " + flags).replace("{shared}", str(shared))
    template = template.replace("{redis}", ctx["redis"].url).replace("{prefix}", prefix)
    servers: list[Server] = []
    samplers: list[RssSampler] = []
    try:
        for i in range(count):
            servers.append(
                Server(f"{setup}-{i}", template, ctx["work"], ctx["logdir"], ctx["python"], 30)
            )
        if setup == "workers-2":
            time.sleep(1.0)  # let every worker come up before the load
        urls = [s.url for s in servers]
        params = dict(scenario["params"], urls=urls)
        if scenario["mode"] == "bulk":
            # unmeasured warm-up: one small upload through every instance pair
            warm = dict(params, size=min(params["size"], 8 * MiB), parallel=len(urls))
            client(warm, 120)
            timeout = 120 + params["size"] * params["parallel"] / (10 * MiB)
        else:
            timeout = 120 + params["duration"] * 2
            if scenario["params"]["kind"] == "head":
                paths = client({"mode": "prepare", "urls": urls, "count": 32}, 60)["paths"]
                params["paths"] = paths
        for s in servers:
            samplers.append(RssSampler(s.pid))
            samplers[-1].start()
        redis = ctx["redis"]
        redis_cmd0, redis_cpu0, t0 = redis.commands(), run.proc_cpu_s(redis.pid), time.time()
        res = client(params, timeout)
        redis_cpu = (run.proc_cpu_s(redis.pid) - redis_cpu0) / (time.time() - t0)
        redis_cmds = redis.commands() - redis_cmd0 - 1  # less our own INFO
    finally:
        for sm in samplers:
            sm.stop()
    try:
        win = res.get("window_epoch")
        server_cores: float | None = None
        machine = None
        for sm in samplers:
            cores = sm.cpu_cores(*win) if win else None
            if cores:
                server_cores = (server_cores or 0.0) + cores[0]
                machine = cores[1]
        res["server_cpu_cores"] = server_cores
        window = res.get("window_s")
        res["client_cpu_cores"] = res["window_cpu_s"] / window if window else None
        if machine is not None and server_cores is not None and res["client_cpu_cores"]:
            other = machine - server_cores - res["client_cpu_cores"]
            res["other_cpu_cores"] = max(0.0, other)
        res["rss_peak_mib"] = sum(sm.peak_kib for sm in samplers) / 1024
        res["vmhwm_group_mib"] = sum(s.vmhwm_kib()[1] for s in servers) / 1024
        res["processes"] = sum(sm.max_procs for sm in samplers)
        if "redis" in flags:
            res["redis_cpu_cores"] = redis_cpu  # over the client's whole run
            if res.get("requests_per_s"):
                # Redis counted the warm-up too: divide by the requests of warm-up + window
                # (commands run inside the lock's Lua scripts count as commands).
                sent = res["requests_per_s"] * (params["duration"] + params["warmup"])
                res["redis_commands_per_request"] = redis_cmds / sent
        if res.get("n_errors") and scenario["mode"] == "bulk":
            res["value"] = None
            res["failure"] = "; ".join(map(str, res.get("errors", [])))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(shared, ignore_errors=True)
        os.sync()
        time.sleep(ctx["settle"])
    return res


# -- reporting ------------------------------------------------------------------------------


def summarize(results: list[dict], setups: list[str], scenarios: list[dict], runs: int) -> dict:
    summary: dict = {}
    for sc in scenarios:
        row: dict = {}
        for setup in setups:
            rs = [r for r in results if r["setup"] == setup and r["scenario"] == sc["name"]]
            row[setup] = {
                "value": med_min_max([r.get("value") for r in rs]),
                "p50_ms": med_min_max([r.get("p50_ms") for r in rs]),
                "p99_ms": med_min_max([r.get("p99_ms") for r in rs]),
                "server_cpu": med_min_max([r.get("server_cpu_cores") for r in rs]),
                "client_cpu": med_min_max([r.get("client_cpu_cores") for r in rs]),
                "other_cpu_max": max(
                    (r["other_cpu_cores"] for r in rs if r.get("other_cpu_cores") is not None),
                    default=None,
                ),
                "rss_peak_mib": max((r.get("rss_peak_mib") or 0 for r in rs), default=0),
                "vmhwm_group_mib": max((r.get("vmhwm_group_mib") or 0 for r in rs), default=0),
                "processes": max((r.get("processes") or 0 for r in rs), default=0),
                "redis_cmds": med_min_max([r.get("redis_commands_per_request") for r in rs]),
                "errors": sum(int(r.get("n_errors") or 0) for r in rs),
                "failures": [r["failure"] for r in rs if r.get("failure")][:2],
                "per_run": [r.get("value") for r in sorted(rs, key=lambda r: r["run"])],
            }
        ratios = {}
        for a, b in (("2x-redis", "1x-file"), ("workers-2", "1x-file"), ("1x-redis", "1x-file")):
            if a in setups and b in setups:
                pa, pb = row[a]["per_run"], row[b]["per_run"]
                vals = [x / y for x, y in zip(pa, pb, strict=False) if x and y]
                ratios[f"{a}/{b}"] = med_min_max(vals)
        summary[sc["name"]] = {"title": sc["title"], "unit": sc["unit"], "setups": row}
        summary[sc["name"]]["ratios"] = ratios
    return summary


def _stat(s, unit: str = "") -> str:
    if s is None:
        return "n/a"
    m, lo, hi = s
    return f"{fmt_num(m)}{unit} ({fmt_num(lo)}-{fmt_num(hi)})"


def _ratio(s) -> str:
    return "n/a" if s is None else f"{s[0]:.2f}x ({s[1]:.2f}-{s[2]:.2f})"


def markdown(summary: dict, setups: list[str], meta: dict, skipped: dict) -> str:
    out = [f"### Scale-out results ({meta['date']}, {meta['runs']} run(s))\n"]
    out.append(
        f"Machine: {meta['cpu_model']}, {meta['cpus']} CPUs, {meta['mem_gib']:.0f} GiB RAM, "
        f"{meta['platform']}; Python {meta['python']}; Redis {meta['redis']}; "
        f"tusd-trio {meta['tusd_trio']}. Background load at start: "
        f"{meta['background_cpu_cores_at_start']} cores.\n"
    )
    out.append("Median (min-max) over runs; higher is better except latency and memory.\n")
    hdr = ["scenario", *[LABELS[s] for s in setups]]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name, row in summary.items():
        cells = [f"{name}: {row['title']} ({row['unit']})"]
        for s in setups:
            d = row["setups"][s]
            cell = _stat(d["value"])
            if d["errors"]:
                cell += f" ⚠{d['errors']} err"
            cells.append(cell)
        out.append("| " + " | ".join(cells) + " |")
        if row["setups"][setups[0]]["p50_ms"] is not None:
            cells = [f"{name}: p50 / p99 latency (ms)"]
            for s in setups:
                d = row["setups"][s]
                p50, p99 = d["p50_ms"], d["p99_ms"]
                cells.append("n/a" if p50 is None else f"{fmt_num(p50[0])} / {fmt_num(p99[0])}")
            out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Ratios, computed per run (median and min-max of the per-run ratios):\n")
    out.append("| scenario | " + " | ".join(next(iter(summary.values()))["ratios"]) + " |")
    out.append("|---|" + "---|" * len(next(iter(summary.values()))["ratios"]))
    for name, row in summary.items():
        out.append(f"| {name} | " + " | ".join(_ratio(v) for v in row["ratios"].values()) + " |")
    out.append("")
    out.append(
        "CPU (cores busy during the measured window: load generator / all tusd-trio processes "
        "/ everything else, incl. Redis) and memory (peak of the RSS summed over every "
        "tusd-trio process, sampled every 50 ms; max over runs), Redis commands per HTTP "
        "request:\n"
    )
    hdr = ["scenario", *[LABELS[s] for s in setups]]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name, row in summary.items():
        cells = [name]
        for s in setups:
            d = row["setups"][s]
            if d["value"] is None:
                cells.append("not measured")
                continue
            cc, sc_ = d["client_cpu"], d["server_cpu"]
            oc = d["other_cpu_max"]
            cell = (
                f"CPU {'n/a' if cc is None else f'{cc[0]:.2f}'} / "
                f"{'n/a' if sc_ is None else f'{sc_[0]:.2f}'} / "
                f"{'n/a' if oc is None else f'{oc:.2f}'}; "
                f"RSS {fmt_num(d['rss_peak_mib'])} MiB ({d['processes']} proc)"
            )
            if d["redis_cmds"] is not None:
                cell += f"; {d['redis_cmds'][0]:.1f} Redis cmd/req"
            cells.append(cell)
        out.append("| " + " | ".join(cells) + " |")
    fails = {
        f"{s}/{n}: {f.splitlines()[0][:300]}"
        for n, row in summary.items()
        for s in setups
        for f in row["setups"][s]["failures"]
    }
    if fails or skipped:
        out.append("\nNot measured / failures:\n")
        out.extend(f"- {s}: {why}" for s, why in skipped.items())
        out.extend(f"- {f}" for f in sorted(fails))
    return "\n".join(out) + "\n"


# -- main -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--client"]:
        print(json.dumps(client_main(json.loads(argv[1]))), flush=True)
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median of these)")
    ap.add_argument(
        "--setups",
        default="1x-file,workers-2,2x-redis,1x-redis",
        help="comma-separated set-ups (default: %(default)s)",
    )
    ap.add_argument("--only", default="", help="scenarios: post-patch-4k,head,parallel-8")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per rate measurement")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before a rate")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=8, help="uploads in parallel-N")
    ap.add_argument("--parallel-mib", type=int, default=64, help="size of each parallel upload")
    ap.add_argument("--smoke", action="store_true", help="1 run, 1 s rates, 8 x 8 MiB")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--work-dir", default=None, help="where upload dirs go (default: temp dir)")
    ap.add_argument("--python", default=run.default_python())
    ap.add_argument("--json", default=None, help="default benchmarks/results/scaleout-<time>.json")
    ap.add_argument("--md", default=None, help="also write the Markdown report to this file")
    args = ap.parse_args(argv)
    if args.smoke:
        args.runs, args.duration, args.warmup, args.settle = 1, 1.0, 0.2, 0.1
        args.parallel_mib = min(args.parallel_mib, 8)

    scenarios = [
        {
            "name": "post-patch-4k",
            "title": f"POST + 4 KiB PATCH, {args.connections} conns",
            "unit": "uploads/s",
            "mode": "rate",
            "params": {
                "mode": "rate",
                "kind": "post-patch",
                "body": 4096,
                "connections": args.connections,
                "duration": args.duration,
                "warmup": args.warmup,
            },
        },
        {
            "name": "head",
            "title": f"HEAD on 32 uploads, {args.connections} conns",
            "unit": "req/s",
            "mode": "rate",
            "params": {
                "mode": "rate",
                "kind": "head",
                "connections": args.connections,
                "duration": args.duration,
                "warmup": args.warmup,
            },
        },
        {
            "name": "parallel-8",
            "title": f"{args.parallel} x {args.parallel_mib} MiB at once, one PATCH each",
            "unit": "MiB/s",
            "mode": "bulk",
            "params": {
                "mode": "bulk",
                "size": args.parallel_mib * MiB,
                "parallel": args.parallel,
            },
        },
    ]
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        scenarios = [s for s in scenarios if s["name"] in names]
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            ap.error(f"unknown set-up {s!r}")
    skipped: dict[str, str] = {}
    if "workers-2" in setups and not WORKERS_MODULE.exists():
        skipped["workers-2"] = f"not measured: {WORKERS_MODULE.relative_to(REPO)} does not exist"
        setups.remove("workers-2")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else BENCH / "results" / f"scaleout-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    logdir = json_path.parent / f"scaleout-logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusd-trio-scaleout-", dir=args.work_dir))
    background = run.background_cores()
    signal.signal(signal.SIGTERM, run.on_sigterm)
    results: list[dict] = []
    redis = None
    t_start = time.monotonic()
    meta: dict = {}
    try:
        redis = Redis(work)
        commit = run._version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        meta = {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "runs": args.runs,
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "mem_gib": _mem_gib(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "redis": redis.version,
            "tusd_trio": f"{run._version([args.python, '-m', 'tusd_trio', '-version'])} "
            f"(commit {commit} + working changes)",
            "background_cpu_cores_at_start": background,
            "setups": {s: BASE + " " + SETUPS[s][1] for s in setups},
            "args": vars(args),
        }
        ctx = {
            "work": work,
            "logdir": logdir,
            "python": args.python,
            "redis": redis,
            "settle": args.settle,
        }
        for run_no in range(args.runs):
            for sc in scenarios:
                order = setups[run_no % len(setups) :] + setups[: run_no % len(setups)]
                for setup in order:
                    rec: dict = {"run": run_no, "scenario": sc["name"], "setup": setup}
                    try:
                        rec.update(measure(setup, sc, ctx, run_no))
                    except Exception as e:
                        rec["failure"] = f"{type(e).__name__}: {e}"
                    results.append(rec)
                    v = rec.get("value")
                    lat = f", p50 {rec['p50_ms']:.2f} ms" if rec.get("p50_ms") else ""
                    print(
                        f"[run {run_no + 1}/{args.runs}] {sc['name']:14} {setup:10} "
                        + (
                            f"{v:,.1f} {sc['unit']}{lat} (errors {rec.get('n_errors', 0)})"
                            if v is not None
                            else "FAILED: " + str(rec.get("failure", ""))[:300]
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: stopping servers", file=sys.stderr)
        run.kill_all()
        return 130
    finally:
        if redis is not None:
            redis.stop()
        run.kill_all()
        shutil.rmtree(work, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    summary = summarize(results, setups, scenarios, args.runs)
    md = markdown(summary, setups, meta, skipped)
    print(md)
    if args.md:
        Path(args.md).write_text(md)
    json_path.write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1, default=str)
    )
    print(f"JSON: {json_path}\nserver logs: {logdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
