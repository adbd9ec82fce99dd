#!/usr/bin/env python3
"""HTTP/2 benchmark: tusd-trio over HTTP/1.1, h2c, HTTP/2 over TLS and HTTP/1.1 over TLS.

    bash benchmarks/setup-node.sh              # once, for the @tus/server column (optional)
    apt-get install nghttp2-client curl        # h2load and curl, the clients
    .venv/bin/python benchmarks/h2.py          # full run, 3 runs per measurement
    .venv/bin/python benchmarks/h2.py --smoke  # quick check, well under a minute

Contestants, all on 127.0.0.1, each a fresh server process per measurement:

  h1        tusd-trio, cleartext HTTP/1.1 (its default flags, as in run.py)
  h2c       tusd-trio -enable-h2c, cleartext HTTP/2 with prior knowledge
  h2-tls    tusd-trio -tls-certificate/-tls-key, HTTP/2 negotiated by ALPN
  h1-tls    the same TLS server, HTTP/1.1 negotiated by ALPN
  tus-node  @tus/server + @tus/file-store on HTTP/1.1 (benchmarks/node/server.mjs), bulk only

The certificate is a self-signed ECDSA P-256 one for 127.0.0.1, made by this script with
`cryptography` for the run. The clients are separate C programs: curl (libcurl) for HTTP/1.1
bulk uploads, h2load (nghttp2) for HTTP/2 bulk uploads and for every request-rate test; their
CPU time (getrusage of the reaped child) is reported next to each number. Servers and clients
run in their own process groups and are killed at the end, also on Ctrl-C, SIGTERM or an error.
See benchmarks/README.md ("HTTP/2 benchmark").
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path

import run
from clients import (
    PATCH_HEADERS,
    TUS_HEADERS,
    Sources,
    create_uploads,
    curl_bulk,
    hdr_args,
    make_cert,
    offsets,
)
from procs import run_client
from run import BENCH, REPO, MiB, RssSampler, Scenario, Server

TUSD = "{python} -m tusd_trio -host 127.0.0.1 -port 0 -upload-dir {upload_dir}"
TLS_FLAGS = " -tls-certificate {cert} -tls-key {key}"
# name -> (server template, HTTP version the client speaks, label)
CONTESTANTS = {
    "h1": (TUSD, "1.1", "tusd-trio HTTP/1.1"),
    "h2c": (TUSD + " -enable-h2c", "2", "tusd-trio h2c"),
    "h2-tls": (TUSD + TLS_FLAGS, "2", "tusd-trio h2 (TLS)"),
    "h1-tls": (TUSD + TLS_FLAGS, "1.1", "tusd-trio HTTP/1.1 (TLS)"),
    "tus-node": (run.DEFAULT_SERVERS["tus-node"], "1.1", "@tus/server HTTP/1.1"),
}
# Per-run ratios shown in the table: (numerator, denominator).
RATIOS = [("h2c", "h1"), ("h2-tls", "h1-tls"), ("h1-tls", "h1"), ("h1", "tus-node")]


def scenarios(big: int, par: int, parallel: int, conns: int, duration: float) -> list[Scenario]:
    bulk = ["h1", "h2c", "h2-tls", "h1-tls"]
    return [
        Scenario(
            "patch-1g",
            f"one {big / MiB:g} MiB upload, single PATCH",
            "bulk",
            "MiB/s",
            params={"size": big, "parallel": 1, "contestants": [*bulk, "tus-node"]},
        ),
        Scenario(
            "parallel-16",
            f"{parallel} parallel {par / MiB:g} MiB uploads: one HTTP/2 connection "
            f"({parallel} streams) vs {parallel} HTTP/1.1 connections",
            "bulk",
            "MiB/s",
            params={"size": par, "parallel": parallel, "contestants": bulk},
        ),
        Scenario(
            "create-4k",
            f"4 KiB creation-with-upload, {conns} in flight: one HTTP/2 connection "
            f"({conns} streams) vs {conns} HTTP/1.1 connections",
            "rate",
            "uploads/s",
            params={"concurrency": conns, "duration": duration, "contestants": bulk},
        ),
        Scenario(
            "create-4k-1",
            "4 KiB creation-with-upload, one connection, one request at a time",
            "rate",
            "uploads/s",
            params={"concurrency": 1, "duration": duration, "contestants": bulk},
        ),
        Scenario(
            "patch-1g-curl",
            f"one {big / MiB:g} MiB upload, single PATCH, curl for every protocol",
            "bulk",
            "MiB/s",
            default=False,
            params={"size": big, "parallel": 1, "contestants": bulk, "client": "curl"},
        ),
    ]


# -- clients --------------------------------------------------------------------------------


_DUR = re.compile(r"([\d.]+)(us|ms|s)")


def _seconds(text: str) -> float:
    m = _DUR.fullmatch(text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


def parse_h2load(out: str) -> dict:
    res: dict = {}
    m = re.search(r"Application protocol: (\S+)", out)
    res["alpn"] = m.group(1) if m else None
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    if not m:
        raise RuntimeError(f"h2load: no request counts in its output: {out[-600:]}")
    res.update(
        zip(
            ("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
            map(int, m.groups()),
            strict=True,
        )
    )
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    res["status"] = dict(zip(("2xx", "3xx", "4xx", "5xx"), map(int, m.groups()), strict=True))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        res["request_time_min_s"], res["request_time_max_s"], res["request_time_mean_s"] = (
            _seconds(x) for x in m.groups()
        )
    return res


def h2load_bulk(urls: list[str], src: Path, timeout: float) -> dict:
    """PATCH `src` to every URL: one HTTP/2 connection, one stream per upload, all at once."""
    n = str(len(urls))
    cmd = [
        "h2load",
        "-n",
        n,
        "-c",
        "1",
        "-m",
        n,
        "-d",
        str(src),
        "-H",
        ":method: PATCH",
        *hdr_args("-H", PATCH_HEADERS),
        *urls,
    ]
    out, _err, e0, wall, cpu = run_client(cmd, timeout)
    p = parse_h2load(out)
    res = {"client": "h2load", "client_cpu_s": cpu, "client_wall_s": wall, "epoch0": e0}
    res["connections"] = 1
    res["http_version"] = p["alpn"]
    res["h2load"] = p
    errors = []
    if p["alpn"] not in ("h2", "h2c"):
        errors.append(f"h2load negotiated {p['alpn']}, not HTTP/2")
    if p["status"]["2xx"] != len(urls) or p["succeeded"] != len(urls):
        errors.append(
            f"h2load: {p['succeeded']}/{len(urls)} succeeded, status {p['status']}, "
            f"{p['errored']} errored"
        )
    if "request_time_max_s" in p:
        res["window_s"] = p["request_time_max_s"]  # all streams start together
    res["errors"] = errors
    return res


def h2load_rate(
    base_url: str, version: str, concurrency: int, duration: float, warmup: float, body: Path
) -> dict:
    """4 KiB creation-with-upload POSTs for `duration` s after `warmup` s.

    HTTP/2: one connection with `concurrency` streams; HTTP/1.1: `concurrency` connections,
    one request in flight on each (no pipelining)."""
    conn = (
        ["-c", "1", "-m", str(concurrency)]
        if version == "2"
        else ["--h1", "-c", str(concurrency), "-m", "1"]
    )
    cmd = [
        "h2load",
        *conn,
        "-D",
        f"{round(duration * 1000)}ms",
        "--warm-up-time",
        f"{round(warmup * 1000)}ms",
        "-d",
        str(body),
        *hdr_args("-H", [*TUS_HEADERS, f"Upload-Length: {body.stat().st_size}"]),
        "-H",
        "Content-Type: application/offset+octet-stream",
        base_url,
    ]
    out, _err, e0, wall, cpu = run_client(cmd, 60 + 3 * (duration + warmup))
    p = parse_h2load(out)
    res = {"client": "h2load", "client_cpu_s": cpu, "client_wall_s": wall, "epoch0": e0}
    res["connections"] = 1 if version == "2" else concurrency
    res["http_version"] = p["alpn"]
    res["h2load"] = p
    errors = []
    want = ("h2", "h2c") if version == "2" else ("http/1.1",)
    if p["alpn"] not in want:
        errors.append(f"h2load negotiated {p['alpn']}, expected {'/'.join(want)}")
    bad = p["status"]["3xx"] + p["status"]["4xx"] + p["status"]["5xx"]
    if bad or p["errored"] or p["timeout"]:
        errors.append(f"h2load: status {p['status']}, {p['errored']} errored")
    res["value"] = p["status"]["2xx"] / duration  # h2load counts the main duration only
    res["window_s"] = duration
    res["errors"] = errors
    return res


# -- one measurement ------------------------------------------------------------------------


def bulk_client(sc: Scenario, version: str, args) -> str:
    forced = sc.params.get("client") or args.bulk_client
    if forced != "auto":
        return forced
    return "curl" if version == "1.1" else "h2load"


def measure(sc: Scenario, name: str, srv: Server, args, sources: Sources) -> dict:
    version = CONTESTANTS[name][1]
    sampler = RssSampler(srv.pid)
    if sc.kind == "bulk":
        size, parallel = sc.params["size"], sc.params["parallel"]
        tool = bulk_client(sc, version, args)
        if tool == "h2load" and version != "2":
            raise RuntimeError("h2load's HTTP/1.1 mode sends every connection to the first URL")

        def upload(n: int, each: int) -> dict:
            urls = create_uploads(srv.url, each, n)
            timeout = 60 + n * each / (10 * MiB)
            src = sources.get(each)
            if tool == "curl":
                r = curl_bulk(urls, src, version, timeout)
            else:
                r = h2load_bulk(urls, src, timeout)
            got = offsets(urls)
            bad = [o for o in got if o != each]
            if bad:
                r["errors"].append(f"{len(bad)} upload(s) not complete after the run: {bad[:3]}")
            return r

        if args.warmup_bytes:
            upload(1, min(args.warmup_bytes, size))  # not measured
        sampler.start()
        try:
            res = upload(parallel, size)
        finally:
            sampler.stop()
        if res.get("window_s") and not res["errors"]:
            res["value"] = size * parallel / MiB / res["window_s"]
    else:
        body = sources.get(4096)
        sampler.start()
        try:
            res = h2load_rate(
                srv.url,
                version,
                sc.params["concurrency"],
                sc.params["duration"],
                args.rate_warmup,
                body,
            )
        finally:
            sampler.stop()
        if res["errors"]:
            res["value"] = None
    end = res["epoch0"] + res["client_wall_s"]
    win = res.get("window_s")
    cores = sampler.cpu_cores(end - win, end) if win else None
    client_cores = res["client_cpu_s"] / res["client_wall_s"]
    res["client_cpu_cores"] = client_cores
    if cores:
        res["server_cpu_cores"], res["machine_busy_cores"] = cores
        res["other_cpu_cores"] = max(0.0, cores[1] - cores[0] - client_cores)
    hwm_main, hwm_group = srv.vmhwm_kib()
    res["vmhwm_mib"], res["vmhwm_group_mib"] = hwm_main / 1024, hwm_group / 1024
    res["rss_sampled_peak_mib"] = sampler.peak_kib / 1024
    res["n_errors"] = len(res["errors"])
    if res["errors"]:
        res["failure"] = "; ".join(res["errors"][:3])
    res.setdefault("value", None)
    return res


# -- reporting ------------------------------------------------------------------------------


def summarize(results: list[dict], scs: list[Scenario], runs: int) -> dict:
    summary: dict = {}
    for sc in scs:
        names = sc.params["contestants"]
        row: dict = {"unit": sc.unit, "title": sc.title, "servers": {}, "ratios": {}}
        per: dict[str, list] = {n: [None] * runs for n in names}
        for r in results:
            if r["scenario"] == sc.name and r["server"] in per:
                per[r["server"]][r["run"]] = r.get("value")
        for n in names:
            rs = [r for r in results if r["scenario"] == sc.name and r["server"] == n]
            stat = run.med_min_max(per[n])
            srv_cpu = run.med_min_max([r.get("server_cpu_cores") for r in rs])
            row["servers"][n] = {
                "values": per[n],
                "median": stat[0] if stat else None,
                "min": stat[1] if stat else None,
                "max": stat[2] if stat else None,
                "client": ",".join(sorted({r["client"] for r in rs if r.get("client")})),
                "connections": max((r.get("connections") or 0 for r in rs), default=0),
                "client_cpu_cores_max": max(
                    (r["client_cpu_cores"] for r in rs if r.get("client_cpu_cores") is not None),
                    default=None,
                ),
                "server_cpu_cores_median": srv_cpu[0] if srv_cpu else None,
                "other_cpu_cores_max": max(
                    (r["other_cpu_cores"] for r in rs if r.get("other_cpu_cores") is not None),
                    default=None,
                ),
                "vmhwm_mib_max": max((r.get("vmhwm_mib") or 0 for r in rs), default=0),
                "rss_sampled_peak_mib_max": max(
                    (r.get("rss_sampled_peak_mib") or 0 for r in rs), default=0
                ),
                "errors": sum(int(r.get("n_errors") or 0) for r in rs),
                "failures": [r["failure"] for r in rs if r.get("failure")][:3],
            }
        for a, b in RATIOS:
            if a in per and b in per:
                ratios = [x / y for x, y in zip(per[a], per[b], strict=True) if x and y]
                stat = run.med_min_max(ratios)
                row["ratios"][f"{a}/{b}"] = stat
        summary[sc.name] = row
    return summary


def markdown(summary: dict, names: list[str], meta: dict) -> str:
    label = {n: CONTESTANTS[n][2] for n in names}
    out = [
        f"### Results ({meta['date']}, {meta['runs']} run(s), {meta['cpus']} CPUs)\n",
        "Median (min-max) over runs; higher is better. Ratios are computed per run and shown "
        "as median (min-max). Bulk client: curl for HTTP/1.1, h2load for HTTP/2 (unless the "
        "scenario says otherwise); rates: h2load for all.\n",
    ]
    ratio_cols = [f"{a}/{b}" for a, b in RATIOS if a in names and b in names]
    hdr = ["scenario", "unit", *(label[n] for n in names), *ratio_cols]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for sname, row in summary.items():
        cells = [f"{sname}: {row['title']}", row["unit"]]
        for n in names:
            d = row["servers"].get(n)
            if d is None:
                cells.append("—")
                continue
            stat = (d["median"], d["min"], d["max"]) if d["median"] is not None else None
            cell = run.fmt_stat(stat)
            if d["errors"]:
                cell += f" ⚠{d['errors']} err"
            cells.append(cell)
        cells.extend(
            run.fmt_ratio(row["ratios"][c]) if c in row["ratios"] else "—" for c in ratio_cols
        )
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        f"Client and connections; CPU in cores during the measured window (the machine has "
        f"{meta['cpus']}): client (max over runs) / server process (median) / everything else "
        "on the machine (max; ~0 on a quiet machine); server peak memory: VmHWM / sampled "
        "RSS MiB (max over runs):\n"
    )
    hdr = ["scenario", *(label[n] for n in names)]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for sname, row in summary.items():
        cells = [sname]
        for n in names:
            d = row["servers"].get(n)
            if d is None:
                cells.append("—")
                continue
            if d["median"] is None and not d["vmhwm_mib_max"]:
                cells.append("not measured")
                continue
            cells.append(
                f"{d['client'] or '?'}, {d['connections']} conn; "
                f"{run._f2(d['client_cpu_cores_max'])} / {run._f2(d['server_cpu_cores_median'])}"
                f" / {run._f2(d['other_cpu_cores_max'])}; "
                f"{run.fmt_num(d['vmhwm_mib_max'])} / {run.fmt_num(d['rss_sampled_peak_mib_max'])}"
            )
        out.append("| " + " | ".join(cells) + " |")
    fails: dict[str, list[str]] = {}
    for sname, row in summary.items():
        for n, d in row["servers"].items():
            for f in d["failures"]:
                fails.setdefault(f"{n}: {f.splitlines()[0][:300]}", []).append(sname)
    if fails:
        out.append("\nFailures:\n")
        out.extend(f"- {msg} ({', '.join(dict.fromkeys(s))})" for msg, s in fails.items())
    return "\n".join(out) + "\n"


def _pkg(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(cmd: list[str]) -> str | None:
    v = run._version(cmd)
    return v.splitlines()[0] if v else None


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(
            int(ln.split()[1])
            for ln in Path("/proc/meminfo").read_text().splitlines()
            if ln.startswith("MemTotal:")
        )
    except (OSError, StopIteration):
        mem = 0
    return f"{os.cpu_count()} CPUs ({model}), {mem / 1024 / 1024:.1f} GiB RAM"


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median of these)")
    ap.add_argument("--only", default="", help="comma-separated scenarios (default: all default)")
    ap.add_argument(
        "--contestants",
        default="h1,h2c,h2-tls,h1-tls,tus-node",
        help="comma-separated (default: %(default)s)",
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="single upload size (1024)")
    ap.add_argument("--parallel", type=int, default=16, help="parallel uploads (16)")
    ap.add_argument("--parallel-mib", type=int, default=64, help="size of each one (64)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight, create-4k")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per rate test (5)")
    ap.add_argument("--rate-warmup", type=float, default=0.5, help="unmeasured s before (0.5)")
    ap.add_argument(
        "--warmup-mib", type=int, default=None, help="unmeasured upload before bulk (64; smoke 0)"
    )
    ap.add_argument(
        "--bulk-client",
        choices=["auto", "curl", "h2load"],
        default="auto",
        help="auto: curl for HTTP/1.1, h2load for HTTP/2 (h2load cannot do parallel HTTP/1.1)",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: 256 MiB, 16 x 4 MiB, 1 s rates, 1 run, no warm-up",
    )
    ap.add_argument("--settle", type=float, default=None, help="pause after each (1; smoke 0.1)")
    ap.add_argument("--json", default=None, help="results JSON (default results/h2-<time>.json)")
    ap.add_argument("--md", default=None, help="also write the Markdown report to this file")
    ap.add_argument("--work-dir", default=None, help="where temp dirs go (default: a temp dir)")
    ap.add_argument("--python", default=run.default_python(), help="interpreter for {python}")
    ap.add_argument("--start-timeout", type=float, default=20.0)
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = ap.parse_args(argv)

    if args.smoke:
        args.size_mib = min(args.size_mib, 256)
        args.parallel_mib = min(args.parallel_mib, 4)
        args.duration = min(args.duration, 1.0)
        args.rate_warmup = min(args.rate_warmup, 0.2)
        args.runs = 1
        if args.warmup_mib is None:
            args.warmup_mib = 0
    args.warmup_bytes = (64 if args.warmup_mib is None else args.warmup_mib) * MiB
    if args.settle is None:
        args.settle = 0.1 if args.smoke else 1.0
    all_scs = scenarios(
        args.size_mib * MiB, args.parallel_mib * MiB, args.parallel, args.concurrency, args.duration
    )
    if args.list:
        for sc in all_scs:
            print(f"{sc.name:14} {'' if sc.default else '(extra) '}{sc.title}")
        return 0
    scs = run.select_scenarios(ap, all_scs, args.only)
    names = [n.strip() for n in args.contestants.split(",") if n.strip()]
    for n in names:
        if n not in CONTESTANTS:
            ap.error(f"unknown contestant {n!r} (known: {', '.join(CONTESTANTS)})")
    if "tus-node" in names and not (BENCH / "node" / "node_modules" / "@tus" / "server").exists():
        print("note: @tus/server is not installed (bash benchmarks/setup-node.sh); skipping it")
        names.remove("tus-node")
    for sc in scs:
        sc.params["contestants"] = [n for n in sc.params["contestants"] if n in names]
    missing = [t for t in ("curl", "h2load") if shutil.which(t) is None]
    if missing:
        ap.error(f"missing client(s): {', '.join(missing)} (apt-get install curl nghttp2-client)")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else BENCH / "results" / f"h2-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    logdir = json_path.parent / f"h2-logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusd-trio-h2-bench-", dir=args.work_dir))
    cert, key = make_cert(work)
    templates = {
        n: t.replace("{cert}", shlex.quote(str(cert))).replace("{key}", shlex.quote(str(key)))
        for n, (t, _v, _l) in CONTESTANTS.items()
    }
    commit = run._version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = run._version(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "machine": machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tusd_trio": f"{run._version([args.python, '-m', 'tusd_trio', '-version'])} "
        f"(commit {commit}{' + working changes' if dirty else ''})",
        "h2": _pkg("h2"),
        "openssl": ssl.OPENSSL_VERSION,
        "cryptography": _pkg("cryptography"),
        "node": run._version(["node", "--version"]),
        "tus_server": run._npm_version("@tus/server"),
        "tus_file_store": run._npm_version("@tus/file-store"),
        "curl": _first_line(["curl", "--version"]),
        "h2load": _first_line(["h2load", "--version"]),
        "servers": {n: templates[n] for n in names},
        "args": dict(vars(args)),
    }
    meta["background_cpu_cores_at_start"] = run.background_cores()
    signal.signal(signal.SIGTERM, run.on_sigterm)
    results: list[dict] = []
    sources = Sources(work)
    t_start = time.monotonic()
    unavailable: dict[str, str] = {}
    try:
        for run_idx in range(args.runs):
            for sc in scs:
                order = sc.params["contestants"]
                k = run_idx % max(1, len(order))
                for name in order[k:] + order[:k]:
                    rec = {"run": run_idx, "scenario": sc.name, "server": name, "unit": sc.unit}
                    if name in unavailable:
                        rec["failure"] = unavailable[name]
                        results.append(rec)
                        continue
                    srv = None
                    try:
                        srv = Server(
                            name, templates[name], work, logdir, args.python, args.start_timeout
                        )
                        rec.update(measure(sc, name, srv, args, sources))
                    except Exception as e:
                        rec["failure"] = (
                            str(e) if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}"
                        )
                        if srv is None:
                            unavailable[name] = rec["failure"]
                        elif srv.proc.poll() is not None:
                            rec["failure"] += "\nserver exited; log tail:\n" + srv.log_tail()
                    finally:
                        if srv is not None:
                            srv.stop()
                            os.sync()
                            time.sleep(args.settle)
                    results.append(rec)
                    v = rec.get("value")
                    status = (
                        f"{v:,.1f} {sc.unit}"
                        if v is not None
                        else "FAILED: " + (rec.get("failure") or "?").splitlines()[0][:200]
                    )
                    print(
                        f"[run {run_idx + 1}/{args.runs}] {sc.name:13} {name:8} {status}"
                        + (
                            f"  ({rec.get('client')}, {rec.get('connections')} conn; cores: "
                            f"client {run._f2(rec.get('client_cpu_cores'))}, server "
                            f"{run._f2(rec.get('server_cpu_cores'))}, other "
                            f"{run._f2(rec.get('other_cpu_cores'))})"
                            if v is not None
                            else ""
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: stopping servers and clients", file=sys.stderr)
        run.kill_all()
        return 130
    finally:
        run.kill_all()
        shutil.rmtree(work, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    summary = summarize(results, scs, args.runs)
    md = markdown(summary, names, meta)
    md += (
        f"\nWhole run {meta['seconds']:g} s; background load at start "
        f"{meta['background_cpu_cores_at_start']} cores; warm-up "
        f"{args.warmup_bytes / MiB:g} MiB per bulk measurement, {args.rate_warmup:g} s per rate "
        f"test ({args.duration:g} s measured).\n"
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
