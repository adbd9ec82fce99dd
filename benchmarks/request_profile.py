#!/usr/bin/env python3
"""Where a small request's time goes: CPU per request, a sampling profile by category,
system calls per request and the kernel's share, for tusd-trio (and the calls for tusd).

    .venv/bin/pip install py-spy                        # once (strace and perf from apt)
    .venv/bin/python benchmarks/request_profile.py --tusd /path/to/tusd --md benchmarks/PROFILE.md

For each request kind (create: 4 KiB creation-with-upload; post-patch: POST then a 4 KiB
PATCH; head: HEAD on 32 uploads) and each server, the load generator drives 32 keep-alive
connections as in run.py, against a fresh server each time, in separate passes (a tracer
slows the server down, so every figure comes from its own pass):

1. **CPU per operation**: the server's CPU time over the measured window divided by the
   uploads (or HEADs) answered, with no tool attached; also the rate and p50/p99.
2. **py-spy** (tusd-trio only): ``py-spy record --nonblocking --format raw`` for the measured
   window; every sample is put in one category by its innermost frame that matches a rule
   (``CATEGORIES``), so that a JSON encode called from the store counts as JSON, and the
   share of each category times the CPU per operation gives microseconds per operation.
3. **strace -c -f**: system calls of all the server's threads from just before the first
   request to just after the last, divided by the operations answered in between (warm-up
   included). The Go runtime's scheduling calls (futex, nanosleep, epoll_pwait, ...) are
   listed but are not work a request asks for.
4. **perf record -g** (when perf works here): the share of the server's CPU samples spent in
   the kernel, by system call, and inside ext4's inode allocator.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import run
from procs import LIVE, LIVE_LOCK, kill_all, on_sigterm, server_pids
from report import _f2, label
from run import BENCH, Scenario, Server

KINDS = {
    "create": ("4 KiB creation-with-upload", "upload", {"kind": "create"}),
    "post-patch": ("4 KiB POST then PATCH", "upload (2 requests)", {"kind": "post-patch"}),
    "head": ("HEAD, 32 connections on 32 uploads", "request", {"kind": "head", "uploads": 32}),
}

# (category, path or function fragments): a frame matches when its "function (file:line)"
# text contains one of the fragments. Checked from the innermost frame outwards.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("request ID (secrets.token_hex)", ("secrets.py", "token_hex")),
    ("upload ID (new_upload_id)", ("new_upload_id",)),
    ("JSON encode/decode (.info)", ("json/", "to_json", "from_json")),
    ("logging (request log lines)", ("_logging.py", "logging/__init__.py")),
    ("metrics (counters, histograms)", ("_metrics.py",)),
    ("hook and event checks", ("hook_enabled", "run_blocking_hook", "notify (", "_events.py")),
    ("lock files (lockers/file.py: open/link/unlink/read)", ("lockers/file.py",)),
    ("in-process lock bookkeeping", ("lockers/memory.py", "lockers/base.py", "contextlib.py")),
    ("store: data and .info files (stores/file.py: open/stat/read/write)", ("stores/file.py",)),
    ("dataclasses.replace and copies", ("dataclasses.py", "__create_fn__", "<string>")),
    ("h11 (request parsing, state machine, response framing)", ("h11/",)),
    (
        "HTTP/1.1 glue (server/_h11*.py, _framing.py, _exchange.py, _streams.py)",
        ("server/_h11", "server/_framing.py", "server/_exchange.py", "server/_streams.py"),
    ),
    (
        "tus protocol core (parse headers, plan, build response)",
        ("tusd_trio/protocol/",),
    ),
    ("request handler (server/_handler.py)", ("server/_handler.py",)),
    (
        "connection handling (server/_app.py, _connections.py)",
        ("server/_app.py", "server/_connections.py"),
    ),
    ("socket send/recv (trio sockets)", ("trio/_socket.py", "trio/_highlevel_socket.py")),
    ("trio scheduler, cancel scopes, checkpoints", ("trio/", "outcome/", "sniffio/")),
]
GO_RUNTIME_CALLS = {
    "futex",
    "nanosleep",
    "epoll_pwait",
    "epoll_wait",
    "epoll_ctl",
    "sched_yield",
    "tgkill",
    "rt_sigreturn",
    "getpid",
    "restart_syscall",
    "madvise",
    "mmap",
    "munmap",
    "clone3",
    "rt_sigprocmask",
    "sigaltstack",
    "gettid",
}
PERF_SYSCALLS = re.compile(r"(?:__x64_sys|__do_sys|__se_sys)_(\w+)")


def categorize(raw: str) -> tuple[collections.Counter, int]:
    """Samples per category from py-spy's raw (collapsed) output."""
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        for frame in reversed(frames):
            cat = next((c for c, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if cat:
                counts[cat] += int(n)
                break
        else:
            counts["other (interpreter start-up frames, unattributed)"] += int(n)
    return counts, total


def parse_strace(text: str) -> dict[str, tuple[int, int]]:
    """``strace -c`` table: syscall -> (calls, errors)."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0].replace(".", "").isdigit() or parts[-1] == "total":
            continue
        name = parts[-1]
        nums = parts[1:-1]
        calls = int(nums[2])
        errors = int(nums[3]) if len(nums) > 3 else 0
        out[name] = (calls, errors)
    return out


def perf_summary(data: Path, pids: set[int]) -> dict | None:
    """Shares of the server's perf samples: kernel, per syscall, ext4 inode allocation."""
    try:
        out = subprocess.run(
            ["perf", "script", "-i", str(data), "-F", "pid,ip,sym"],
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    stacks: list[list[str]] = []
    cur: list[str] | None = None
    for line in out.splitlines():
        if not line.strip():
            if cur:
                stacks.append(cur)
            cur = None
        elif cur is None:
            cur = [line.split()[0]]
        else:
            parts = line.split(None, 1)
            cur.append(parts[1] if len(parts) > 1 else "?")
    if cur:
        stacks.append(cur)
    mine = [s[1:] for s in stacks if s[0].isdigit() and int(s[0]) in pids]
    if not mine:
        return None
    n = len(mine)
    by_call: collections.Counter = collections.Counter()
    for s in mine:
        call = next((m.group(1) for f in s if (m := PERF_SYSCALLS.search(f))), None)
        by_call[call or "(user space or no syscall)"] += 1

    def share(*keys: str) -> float:
        return 100 * sum(1 for s in mine if any(k in f for f in s for k in keys)) / n

    return {
        "samples": n,
        "by_syscall_pct": {k: 100 * v / n for k, v in by_call.most_common(12)},
        "ext4_new_inode_pct": share("__ext4_new_inode"),
        "recently_deleted_pct": share("recently_deleted"),
        "dir_lock_wait_pct": share("rwsem_down_write_slowpath", "rwsem_spin_on_owner"),
    }


# -- passes -----------------------------------------------------------------------------------


class Load(threading.Thread):
    """The load generator in the background; ``window`` is when its measured part runs."""

    def __init__(self, url: str, params: dict, warmup: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.params = {
            "mode": "rate",
            "url": url,
            "connections": 32,
            "duration": seconds,
            "warmup": warmup,
            "body": 4096,
            **params,
        }
        if params["kind"] == "head":
            paths = run.loadgen({"mode": "prepare", "url": url, "count": 32}, 60)["paths"]
            self.params["paths"] = paths
        self.result: dict | None = None
        self.error: Exception | None = None
        # loadgen starts its clock 0.3 s + 0.05 s per connection after it starts
        self.starts_in = 0.3 + 0.05 * 32 + 0.5

    def run(self) -> None:
        try:
            self.result = run.loadgen(self.params, 120 + 2 * self.params["duration"])
        except Exception as exc:
            self.error = exc


def start_server(args, name: str, template: str, graveyard: list[Path]) -> Server:
    return Server(name, template, args.work, args.logdir, args.python, 30.0, graveyard=graveyard)


def stop_server(srv: Server) -> None:
    srv.stop()
    os.sync()
    time.sleep(1.0)


def cpu_pass(args, name: str, template: str, kind: str, graveyard: list[Path]) -> dict:
    sc = Scenario(kind, kind, "rate", "ops/s", params={**KINDS[kind][2], "connections": 32})
    sc.params["duration"] = args.seconds
    srv = start_server(args, name, template, graveyard)
    try:
        res = run.measure(sc, srv, argparse.Namespace(client_procs=1, warmup=0.5), None, None)
    finally:
        stop_server(srv)
    keys = ("value", "p50_ms", "p99_ms", "server_cpu_cores", "other_cpu_cores", "server_sys_share")
    return {k: res.get(k) for k in (*keys, "server_cpu_us_per_op", "statuses")}


def pyspy_pass(args, template: str, kind: str, graveyard: list[Path]) -> dict:
    srv = start_server(args, "tusd-trio", template, graveyard)
    out = args.work / f"pyspy-{kind}.txt"
    try:
        load = Load(srv.url, KINDS[kind][2], 0.5, args.seconds)
        load.start()
        time.sleep(load.starts_in)
        cmd = [args.py_spy, "record", "--nonblocking", "--format", "raw", "-r", str(args.rate)]
        cmd += ["-d", str(max(1, int(args.seconds) - 1)), "-p", str(srv.pid), "-o", str(out)]
        subprocess.run(cmd, capture_output=True, timeout=args.seconds + 60, check=True)
        load.join()
    finally:
        stop_server(srv)
    counts, total = categorize(out.read_text())
    shutil.copy(out, args.logdir / out.name)
    return {"samples": total, "categories": dict(counts.most_common())}


def strace_pass(args, name: str, template: str, kind: str, graveyard: list[Path]) -> dict:
    srv = start_server(args, name, template, graveyard)
    out = args.work / f"strace-{name}-{kind}.txt"
    try:
        load = Load(srv.url, KINDS[kind][2], 0.5, args.seconds)  # uploads for HEAD made here
        targets = [a for p in server_pids(srv.pid) for a in ("-p", str(p))]
        tracer = subprocess.Popen(
            ["strace", "-f", "-c", "-o", str(out), *targets],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with LIVE_LOCK:
            LIVE[tracer.pid] = tracer
        time.sleep(1.0)  # attached to every thread before the first request
        load.start()
        load.join()
        time.sleep(0.5)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        with LIVE_LOCK:
            LIVE.pop(tracer.pid, None)
    finally:
        stop_server(srv)
    if load.error or not load.result:
        raise RuntimeError(f"load generator failed under strace: {load.error}")
    ops = load.result["done_all"]
    calls = parse_strace(out.read_text())
    shutil.copy(out, args.logdir / out.name)
    return {
        "ops": ops,
        "per_op": {k: (c / ops, e / ops) for k, (c, e) in calls.items()},
    }


def perf_pass(args, name: str, template: str, kind: str, graveyard: list[Path]) -> dict | None:
    srv = start_server(args, name, template, graveyard)
    data = args.work / f"perf-{name}-{kind}.data"
    try:
        load = Load(srv.url, KINDS[kind][2], 0.5, args.seconds)
        load.start()
        time.sleep(load.starts_in)
        pids = set(server_pids(srv.pid))
        cmd = ["perf", "record", "-g", "-o", str(data), "-p", ",".join(map(str, pids))]
        cmd += ["--", "sleep", str(max(1.0, args.seconds - 1))]
        subprocess.run(cmd, capture_output=True, timeout=args.seconds + 60)
        load.join()
    finally:
        stop_server(srv)
    return perf_summary(data, pids)


# -- report -----------------------------------------------------------------------------------


def markdown(report: dict, servers: list[str]) -> str:
    out = [
        f"### Profile ({report['date']}, tusd-trio at {report['commit']}, "
        f"{report['seconds']:g} s per pass, 32 connections)\n"
    ]
    for kind, data in report["kinds"].items():
        title, op, _ = KINDS[kind]
        out.append(f"#### {kind}: {title}\n")
        cells = []
        for s in servers:
            c = data["cpu"].get(s)
            if c and c.get("server_cpu_us_per_op"):
                cells.append(
                    f"{label(s)}: {c['value']:,.0f}/s, {c['server_cpu_us_per_op']:,.0f} µs "
                    f"CPU per {op}, {100 * (c.get('server_sys_share') or 0):.0f} % of it in the "
                    f"kernel ({c['server_cpu_cores']:.2f} cores busy; p50 "
                    f"{c['p50_ms']:.1f} / p99 {c['p99_ms']:.1f} ms; other load "
                    f"{_f2(c['other_cpu_cores'])} cores)"
                )
        out.append("- " + "\n- ".join(cells) + "\n")
        spy = data.get("pyspy")
        us = (data["cpu"].get("tusd-trio") or {}).get("server_cpu_us_per_op")
        if spy and spy["samples"]:
            out.append(
                f"tusd-trio, py-spy ({spy['samples']} samples); µs = share times the CPU per {op} "
                "above:\n"
            )
            out.append("| where (innermost matching frame) | share | µs per " + op + " |")
            out.append("|---|---|---|")
            for cat, n in spy["categories"].items():
                share = n / spy["samples"]
                cell = f"{share * us:,.0f}" if us else "n/a"
                out.append(f"| {cat} | {100 * share:.1f} % | {cell} |")
            out.append("")
        st = data.get("strace", {})
        if st:
            names = sorted(
                {k for s in st.values() for k in s["per_op"]},
                key=lambda k: -max(s["per_op"].get(k, (0, 0))[0] for s in st.values()),
            )
            out.append(f"System calls per {op} (strace -c -f; errors in brackets):\n")
            out.append("| syscall | " + " | ".join(label(s) for s in st) + " |")
            out.append("|---|" + "---|" * len(st))
            totals = dict.fromkeys(st, 0.0)
            for k in names:
                row = []
                for s, d in st.items():
                    c, e = d["per_op"].get(k, (0.0, 0.0))
                    if k not in GO_RUNTIME_CALLS:
                        totals[s] += c
                    row.append(f"{c:.2f}" + (f" ({e:.2f})" if e >= 0.005 else "") if c else "")
                if any(row):
                    mark = " (runtime)" if k in GO_RUNTIME_CALLS else ""
                    out.append(f"| {k}{mark} | " + " | ".join(row) + " |")
            out.append(
                "| **total without runtime calls** | "
                + " | ".join(f"**{t:.1f}**" for t in totals.values())
                + " |"
            )
            out.append("")
        pf = data.get("perf", {})
        for s, p in pf.items():
            if not p:
                continue
            calls = ", ".join(f"{k} {v:.1f} %" for k, v in p["by_syscall_pct"].items())
            out.append(
                f"perf, {label(s)} ({p['samples']} samples): {calls}. Inside ext4's inode "
                f"allocator: {p['ext4_new_inode_pct']:.1f} % (of which skipping recently "
                f"deleted inodes {p['recently_deleted_pct']:.1f} %); waiting for a directory "
                f"lock: {p['dir_lock_wait_pct']:.1f} %.\n"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kinds", default="create,post-patch,head")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per pass (6)")
    ap.add_argument("--server-cmd", default=run.TUSD_TRIO, help="tusd-trio's command template")
    ap.add_argument("--tusd", default=None, help="tusd binary: also its CPU, calls and perf")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second (250)")
    ap.add_argument("--tools", default="cpu,pyspy,strace,perf", help="passes to run")
    ap.add_argument("--python", default=run.default_python())
    ap.add_argument("--py-spy", default=str(Path(run.default_python()).parent / "py-spy"))
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--md", default=None, help="also write the Markdown here")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    tools = {t.strip() for t in args.tools.split(",")}
    servers = {"tusd-trio": args.server_cmd}
    tusd = run.find_tusd(args.tusd)
    if args.tusd is not None and tusd is None:
        ap.error(f"no executable tusd at {args.tusd}")
    if tusd:
        servers["tusd"] = run.DEFAULT_SERVERS["tusd"].replace("{tusd}", tusd)
    for tool, exe in (("pyspy", args.py_spy), ("strace", "strace"), ("perf", "perf")):
        if tool in tools and not shutil.which(exe):
            print(f"note: {exe} not found; no {tool} pass", file=sys.stderr)
            tools.discard(tool)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.logdir = BENCH / "results" / f"profile-{stamp}"
    args.logdir.mkdir(parents=True, exist_ok=True)
    args.work = Path(tempfile.mkdtemp(prefix="tusd-trio-profile-", dir=args.work_dir))
    graveyard: list[Path] = []
    report: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": run._version(["git", "-C", str(run.REPO), "rev-parse", "--short", "HEAD"]),
        "seconds": args.seconds,
        "tusd": run._first_line([tusd, "-version"]) if tusd else None,
        "background_cpu_cores_at_start": run.background_cores(),
        "kinds": {},
    }
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for kind in kinds:
            data: dict = {"cpu": {}, "strace": {}, "perf": {}}
            report["kinds"][kind] = data
            for name, template in servers.items():
                if "cpu" in tools:
                    data["cpu"][name] = cpu_pass(args, name, template, kind, graveyard)
                    print(f"{kind} {name} cpu: {data['cpu'][name]}", file=sys.stderr, flush=True)
                if "strace" in tools:
                    data["strace"][name] = strace_pass(args, name, template, kind, graveyard)
                    print(f"{kind} {name} strace done", file=sys.stderr, flush=True)
                if "perf" in tools:
                    data["perf"][name] = perf_pass(args, name, template, kind, graveyard)
                    print(f"{kind} {name} perf done", file=sys.stderr, flush=True)
            if "pyspy" in tools:
                data["pyspy"] = pyspy_pass(args, servers["tusd-trio"], kind, graveyard)
                print(f"{kind} py-spy done", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        kill_all()
        return 130
    finally:
        kill_all()
        for d in graveyard:
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(args.work, ignore_errors=True)
    md = markdown(report, list(servers))
    print(md)
    if args.md:
        Path(args.md).write_text(md)
    Path(args.json or args.logdir / "profile.json").write_text(
        json.dumps(report, indent=1, default=str)
    )
    print(f"raw profiles and traces: {args.logdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
