#!/usr/bin/env python3
"""Benchmark tusd-trio against @tus/server (+ @tus/file-store) and a raw socket-to-file receiver.

    bash benchmarks/setup-node.sh          # once: installs @tus/server into benchmarks/node/
    .venv/bin/python benchmarks/run.py     # full run, 3 runs per measurement
    .venv/bin/python benchmarks/run.py --smoke   # quick check, well under a minute

Every server is started fresh (in its own process group, bound to 127.0.0.1, port 0) for each
measurement and killed afterwards, also on Ctrl-C or error. The load generator (loadgen.py) runs
in a separate process; its CPU use is reported next to each number. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen.py"
URL_RE = re.compile(r"You can now upload files to: (https?://\S+)")
MiB = 1 << 20
GiB = 1 << 30


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


DEFAULT_SERVERS = {
    "tusd-trio": "{python} -m tusd_trio -host 127.0.0.1 -port 0 -upload-dir {upload_dir}",
    "tus-node": "node {bench}/node/server.mjs -host 127.0.0.1 -port 0 -upload-dir {upload_dir}",
    "raw": "{python} {bench}/raw_receiver.py -host 127.0.0.1 -port 0 -upload-dir {upload_dir}",
}
LABELS = {"tusd-trio": "tusd-trio", "tus-node": "@tus/server", "raw": "raw receiver"}


@dataclass
class Scenario:
    name: str
    title: str
    kind: str  # bulk | rate | slow
    unit: str
    higher_is_better: bool = True
    params: dict = field(default_factory=dict)
    default: bool = True


def scenarios(
    scale: float, duration: float, slow_seconds: float, connections: int
) -> list[Scenario]:
    def sz(n: int) -> int:  # scaled, rounded to 64 KiB, at least 64 KiB
        return max(64 * 1024, int(n * scale) // (64 * 1024) * (64 * 1024))

    big = sz(GiB)
    par = sz(64 * MiB)
    return [
        Scenario(
            "patch-1g",
            f"one {big / MiB:.4g} MiB upload, single PATCH",
            "bulk",
            "MiB/s",
            params={"size": big, "patch": big, "parallel": 1},
        ),
        Scenario(
            "patch-8m",
            f"one {big / MiB:.4g} MiB upload in 8 MiB PATCHes",
            "bulk",
            "MiB/s",
            params={"size": big, "patch": min(8 * MiB, big), "parallel": 1},
        ),
        Scenario(
            "parallel-16",
            f"16 parallel {par / MiB:.4g} MiB uploads (aggregate)",
            "bulk",
            "MiB/s",
            params={"size": par, "patch": par, "parallel": 16},
        ),
        Scenario(
            "create-4k",
            f"4 KiB creation-with-upload, {connections} conns",
            "rate",
            "uploads/s",
            params={
                "kind": "create",
                "body": 4096,
                "connections": connections,
                "duration": duration,
            },
        ),
        Scenario(
            "head",
            f"HEAD, {connections} conns on {connections} uploads",
            "rate",
            "req/s",
            params={
                "kind": "head",
                "connections": connections,
                "duration": duration,
                "uploads": connections,
            },
        ),
        Scenario(
            "slow-200",
            f"peak RSS, 200 slow uploads ({slow_seconds:g} s, 4 KiB / 100 ms)",
            "slow",
            "MiB VmHWM",
            higher_is_better=False,
            params={"uploads": 200, "chunk": 4096, "interval": 0.1, "seconds": slow_seconds},
        ),
        # Extra scenarios, not run unless named with --only:
        Scenario(
            "post-patch-4k",
            f"4 KiB POST then PATCH, {connections} conns",
            "rate",
            "uploads/s",
            default=False,
            params={
                "kind": "post-patch",
                "body": 4096,
                "connections": connections,
                "duration": duration,
            },
        ),
        Scenario(
            "head-one",
            f"HEAD, {connections} conns on one upload",
            "rate",
            "req/s",
            default=False,
            params={"kind": "head", "connections": connections, "duration": duration, "uploads": 1},
        ),
    ]


# -- process bookkeeping --------------------------------------------------------------------

LIVE: dict[int, subprocess.Popen] = {}  # pgid -> process (servers and clients we started)
LIVE_LOCK = threading.Lock()


def kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    pgid = proc.pid  # started with start_new_session=True: pid == pgid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            # the leader is gone; make sure no child of it lingers in the group
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue
    with LIVE_LOCK:
        LIVE.pop(pgid, None)


def kill_all() -> None:
    with LIVE_LOCK:
        procs = list(LIVE.values())
    for p in procs:
        kill_group(p, grace=1.0)


def on_sigterm(_sig, _frm):
    raise KeyboardInterrupt


def group_pids(pgid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(d))
    return pids


def proc_status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime (children that were waited for count too)
    return sum(int(x) for x in fields[11:15]) / ticks


class RssSampler(threading.Thread):
    """Samples VmRSS summed over the server's process group every `interval` seconds."""

    def __init__(self, pgid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pgid, self.interval = pgid, interval
        self.peak_kib = 0
        self.max_procs = 0
        # (epoch, CPU seconds of the server's group, busy CPU seconds of the whole machine)
        self.cpu_samples: list[tuple[float, float, float]] = []
        self.stop_evt = threading.Event()

    def sample(self, pids: list[int]) -> None:
        total = sum(proc_status_kib(p, "VmRSS") for p in pids)
        self.cpu_samples.append((time.time(), sum(proc_cpu_s(p) for p in pids), machine_busy_s()))
        self.peak_kib = max(self.peak_kib, total)
        self.max_procs = max(self.max_procs, len(pids))

    def run(self) -> None:
        pids = group_pids(self.pgid)
        last_scan = time.monotonic()
        while not self.stop_evt.is_set():
            if time.monotonic() - last_scan > 0.5:
                pids = group_pids(self.pgid)
                last_scan = time.monotonic()
            self.sample(pids)
            self.stop_evt.wait(self.interval)
        self.sample(pids)  # one after the client has finished, to bracket its window

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(2)

    def cpu_cores(self, t0: float, t1: float) -> tuple[float, float] | None:
        """(server cores, whole-machine busy cores) between the samples bracketing [t0, t1]."""
        before = [s for s in self.cpu_samples if s[0] <= t0]
        after = [s for s in self.cpu_samples if s[0] >= t1]
        if not before or not after or t1 - t0 < 0.1:
            return None
        a, b = before[-1], after[0]
        dt_ = b[0] - a[0]
        return (b[1] - a[1]) / dt_, (b[2] - a[2]) / dt_


class Server:
    def __init__(
        self, name: str, template: str, work: Path, logdir: Path, python: str, start_timeout: float
    ) -> None:
        self.name = name
        self.upload_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        cmd = template.format(
            python=shlex.quote(python),
            upload_dir=shlex.quote(str(self.upload_dir)),
            bench=shlex.quote(str(BENCH)),
            repo=shlex.quote(str(REPO)),
        )
        self.cmd = cmd
        self.log_path = logdir / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log.write(f"\n=== {dt.datetime.now().isoformat()} {cmd}\n".encode())
        self.log.flush()
        start = self.log.tell()
        self.proc = subprocess.Popen(
            shlex.split(cmd),
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with LIVE_LOCK:
            LIVE[self.proc.pid] = self.proc
        self.pid = self.proc.pid
        deadline = time.monotonic() + start_timeout
        self.url = None
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                m = URL_RE.search(f.read().decode(errors="replace"))
            if m:
                self.url = m.group(1)
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if not self.url:
            code = self.proc.poll()
            why = (
                f"exited with {code}" if code is not None else f"no URL line in {start_timeout:g} s"
            )
            self.stop()
            raise RuntimeError(f"{name} did not start ({why}; {cmd}); log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p) for p in group_pids(self.pid))

    def vmhwm_kib(self) -> tuple[int, int]:
        """VmHWM of the main process, and the sum of VmHWM over its process group."""
        main = proc_status_kib(self.pid, "VmHWM")
        return main, sum(proc_status_kib(p, "VmHWM") for p in group_pids(self.pid))

    def stop(self) -> None:
        kill_group(self.proc)
        self.log.close()
        shutil.rmtree(self.upload_dir, ignore_errors=True)


def loadgen(params: dict, timeout: float) -> dict:
    proc = subprocess.Popen(
        [sys.executable, str(LOADGEN), json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    with LIVE_LOCK:
        LIVE[proc.pid] = proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc, grace=0.5)
        raise RuntimeError(f"load generator timed out after {timeout:.0f} s") from None
    finally:
        with LIVE_LOCK:
            LIVE.pop(proc.pid, None)
    if proc.returncode != 0:
        raise RuntimeError(
            f"load generator failed ({proc.returncode}): {err.decode(errors='replace')[-1500:]}"
        )
    return json.loads(out.decode().strip().splitlines()[-1])


# -- one measurement ------------------------------------------------------------------------


def measure(sc: Scenario, srv: Server, args) -> dict:
    base = {"url": srv.url, **sc.params}
    if sc.kind == "bulk":
        base.update(mode="bulk", send_mode=args.send_mode)
        size = sc.params["size"] * sc.params["parallel"]
        timeout = 60 + size / (20 * MiB)  # bounded: fail below 20 MiB/s
        # Warm-up upload (not measured): JIT, page allocator, first-connection costs.
        warm = dict(
            base, size=min(sc.params["size"], 64 * MiB), patch=min(sc.params["patch"], 64 * MiB)
        )
        loadgen(warm, timeout)
    elif sc.kind == "rate":
        base.update(mode="rate", procs=args.client_procs, warmup=args.warmup)
        if sc.params["kind"] == "head":
            n = sc.params["uploads"]
            paths = loadgen({"mode": "prepare", "url": srv.url, "count": n}, 60)["paths"]
            base["paths"] = (paths * (sc.params["connections"] // n + 1))[
                : sc.params["connections"]
            ]
        timeout = 60 + sc.params["duration"] * 2
    else:
        base.update(mode="slow")
        timeout = 90 + sc.params["seconds"] * 4
    sampler = RssSampler(srv.pid)
    cpu0 = srv.cpu_s()
    sampler.start()
    t0 = time.perf_counter()
    try:
        res = loadgen(base, timeout)
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    cpu1 = srv.cpu_s()
    hwm_main, hwm_group = srv.vmhwm_kib()
    win = res.get("window_epoch")
    cores = sampler.cpu_cores(*win) if win else None
    if cores:
        res["server_cpu_cores"], res["machine_busy_cores"] = cores
        # everything else that ran meanwhile (other processes, kernel threads): noise indicator
        res["other_cpu_cores"] = max(
            0.0, cores[1] - cores[0] - (res["window_cpu_s"] / res["window_s"])
        )
    elif wall:  # window too short to bracket: whole client run
        res["server_cpu_cores"] = (cpu1 - cpu0) / wall
    res["client_cpu_cores"] = res["window_cpu_s"] / res["window_s"] if res.get("window_s") else None
    res["vmhwm_mib"] = hwm_main / 1024
    res["vmhwm_group_mib"] = hwm_group / 1024
    res["rss_sampled_peak_mib"] = sampler.peak_kib / 1024
    res["processes"] = sampler.max_procs
    if sc.kind == "slow":
        # memory is reported even if some slow uploads failed (flagged by the error count)
        res["value"] = res["vmhwm_mib"] if res.get("ok") else None
    # a rate with errors is still reported, but flagged; a bulk run with errors has no value
    res.setdefault("value", None)
    if res["value"] is None and res.get("errors"):
        res["failure"] = "; ".join(map(str, res["errors"]))
    return res


# -- reporting ------------------------------------------------------------------------------


def med_min_max(values: list[float]) -> tuple[float, float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt_num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_stat(s) -> str:
    if s is None:
        return "n/a"
    m, lo, hi = s
    return f"{fmt_num(m)} ({fmt_num(lo)}-{fmt_num(hi)})"


def fmt_ratio(s) -> str:
    if s is None:
        return "n/a"
    m, lo, hi = s
    return f"{m:.2f}x ({lo:.2f}-{hi:.2f})"


def summarize(results: list[dict], scs: list[Scenario], servers: list[str], runs: int) -> dict:
    summary: dict = {}
    for sc in scs:
        row: dict = {"unit": sc.unit, "title": sc.title, "servers": {}, "ratios": {}}
        per: dict[str, list] = {s: [None] * runs for s in servers}
        for r in results:
            if r["scenario"] == sc.name and r["server"] in per:
                per[r["server"]][r["run"]] = r.get("value")
        for s in servers:
            stat = med_min_max(per[s])
            rs = [r for r in results if r["scenario"] == sc.name and r["server"] == s]
            row["servers"][s] = {
                "values": per[s],
                "median": stat[0] if stat else None,
                "min": stat[1] if stat else None,
                "max": stat[2] if stat else None,
                "client_cpu_cores_max": max(
                    (r["client_cpu_cores"] for r in rs if r.get("client_cpu_cores") is not None),
                    default=None,
                ),
                "server_cpu_cores_median": med_min_max([r.get("server_cpu_cores") for r in rs])[0]
                if any(r.get("server_cpu_cores") is not None for r in rs)
                else None,
                "other_cpu_cores_max": max(
                    (r["other_cpu_cores"] for r in rs if r.get("other_cpu_cores") is not None),
                    default=None,
                ),
                "vmhwm_mib_max": max((r.get("vmhwm_mib", 0) for r in rs), default=None),
                "rss_sampled_peak_mib_max": max(
                    (r.get("rss_sampled_peak_mib", 0) for r in rs), default=None
                ),
                "errors": sum(int(r.get("n_errors") or 0) for r in rs),
                "failures": [r["failure"] for r in rs if r.get("failure")][:3],
            }
        if "tusd-trio" in servers:
            for other in servers:
                if other == "tusd-trio":
                    continue
                ratios = [
                    a / b
                    for a, b in zip(per["tusd-trio"], per[other], strict=True)
                    if a is not None and b
                ]
                stat = med_min_max(ratios)
                ma, mb = row["servers"]["tusd-trio"]["median"], row["servers"][other]["median"]
                row["ratios"][f"tusd-trio/{other}"] = {
                    "ratio_of_medians": ma / mb if ma is not None and mb else None,
                    "per_run_median": stat[0] if stat else None,
                    "per_run_min": stat[1] if stat else None,
                    "per_run_max": stat[2] if stat else None,
                }
        summary[sc.name] = row
    return summary


def markdown(summary: dict, servers: list[str], meta: dict) -> str:
    out = []
    out.append(
        f"### Results ({meta['date']}, {meta['runs']} run(s), size scale "
        f"{meta['size_scale']:g}, {meta['cpus']} CPUs, client: {meta['client']})\n"
    )
    out.append("Median (min-max) over runs. Higher is better except for RSS.\n")
    ratio_cols = (
        [f"tusd-trio/{s}" for s in servers if s != "tusd-trio"] if "tusd-trio" in servers else []
    )
    hdr = (
        ["scenario", "unit"]
        + [LABELS.get(s, s) for s in servers]
        + [c.replace("tus-node", "@tus/server") for c in ratio_cols]
    )
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name, row in summary.items():
        cells = [f"{name}: {row['title']}", row["unit"]]
        for s in servers:
            d = row["servers"][s]
            stat = (d["median"], d["min"], d["max"]) if d["median"] is not None else None
            cell = fmt_stat(stat)
            if d["errors"]:
                cell += f" ⚠{d['errors']} err"
            cells.append(cell)
        for c in ratio_cols:
            r = row["ratios"].get(c, {})
            stat = (
                (r["per_run_median"], r["per_run_min"], r["per_run_max"])
                if r.get("per_run_median") is not None
                else None
            )
            cells.append(fmt_ratio(stat))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(
        "CPU in cores busy during the measured window (the machine has "
        f"{meta['cpus']}): load generator (max over runs), server (median), everything else "
        "on the machine (max; should be ~0 on a quiet machine); peak memory (max over runs):\n"
    )
    hdr = ["scenario"] + [
        f"{LABELS.get(s, s)}: CPU client / server / other; VmHWM / sampled RSS MiB" for s in servers
    ]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name, row in summary.items():
        cells = [name]
        for s in servers:
            d = row["servers"][s]
            if d["median"] is None and not d["vmhwm_mib_max"]:
                cells.append("not measured")
                continue
            cc, sc_, oc = (
                d["client_cpu_cores_max"],
                d["server_cpu_cores_median"],
                d["other_cpu_cores_max"],
            )
            cells.append(
                f"{'n/a' if cc is None else f'{cc:.2f}'} / {'n/a' if sc_ is None else f'{sc_:.2f}'}"
                f" / {'n/a' if oc is None else f'{oc:.2f}'}; "
                f"{fmt_num(d['vmhwm_mib_max'] or 0)} / "
                f"{fmt_num(d['rss_sampled_peak_mib_max'] or 0)}"
            )
        out.append("| " + " | ".join(cells) + " |")
    fails: dict[str, list[str]] = {}
    for n, row in summary.items():
        for s in servers:
            for f in row["servers"][s]["failures"]:
                fails.setdefault(f"{s}: {f.splitlines()[0][:300]}", []).append(n)
    if fails:
        out.append("\nFailures:\n")
        for msg, names in fails.items():
            out.append(f"- {msg} ({', '.join(dict.fromkeys(names))})")
    return "\n".join(out) + "\n"


# -- main -----------------------------------------------------------------------------------


def select_scenarios(ap: argparse.ArgumentParser, all_scs: list, only: str | None) -> list:
    """The scenarios named by ``--only`` (comma-separated), else the default ones."""
    if not only:
        return [sc for sc in all_scs if getattr(sc, "default", True)]
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = set(names) - {sc.name for sc in all_scs}
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return [sc for sc in all_scs if sc.name in names]


def background_cores(warn_above: float = 0.15) -> float:
    """CPU cores other processes use right now (sampled for 0.5 s); warns when busy."""
    b0, t0 = machine_busy_s(), time.monotonic()
    time.sleep(0.5)
    busy = round((machine_busy_s() - b0) / (time.monotonic() - t0), 2)
    if busy > warn_above:
        print(
            f"warning: the machine is already busy ({busy} cores used by other processes); "
            "numbers will be noisy",
            file=sys.stderr,
        )
    return busy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median of these)")
    ap.add_argument(
        "--only", default="", help="comma-separated scenarios (default: all default ones)"
    )
    ap.add_argument(
        "--servers",
        default="tusd-trio,tus-node,raw",
        help="comma-separated servers to run (default: %(default)s)",
    )
    ap.add_argument(
        "--server-cmd",
        action="append",
        default=[],
        metavar="NAME=TEMPLATE",
        help="override or add a server command; placeholders {python} {upload_dir} "
        "{bench} {repo}; e.g. --server-cmd "
        "'tusd-trio={python} -m tusd_trio -host 127.0.0.1 -port 0 "
        "-upload-dir {upload_dir} -workers 2'",
    )
    ap.add_argument(
        "--size-scale",
        type=float,
        default=1.0,
        help="multiply upload sizes (1 GiB, 64 MiB) by this; below 0.5 it also "
        "shortens the default durations to 1 s (rates) and 2 s (slow uploads)",
    )
    ap.add_argument("--duration", type=float, default=None, help="seconds per rate measurement (5)")
    ap.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="unmeasured seconds before a rate measurement (0.5)",
    )
    ap.add_argument(
        "--slow-seconds", type=float, default=None, help="duration of the 200 slow uploads (10)"
    )
    ap.add_argument("--connections", type=int, default=32, help="connections for rate tests")
    ap.add_argument(
        "--client-procs",
        type=int,
        default=1,
        help="processes of the rate client (1 reaches >100k HEAD/s against raw)",
    )
    ap.add_argument(
        "--send-mode",
        choices=["sendall", "sendfile"],
        default="sendall",
        help="bulk body source: preallocated memoryview or page-cached file",
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: --size-scale 0.01 --runs 1 (durations 1 s / 2 s)",
    )
    ap.add_argument(
        "--json",
        default=None,
        help="write results JSON here (default benchmarks/results/bench-<time>.json)",
    )
    ap.add_argument("--work-dir", default=None, help="where upload dirs go (default: a temp dir)")
    ap.add_argument("--python", default=default_python(), help="interpreter for {python}")
    ap.add_argument("--start-timeout", type=float, default=20.0)
    ap.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds to pause after each measurement's cleanup + sync (1, smoke 0.1)",
    )
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = ap.parse_args(argv)

    if args.smoke:
        args.size_scale = min(args.size_scale, 0.01)
        args.runs = 1
    short = args.size_scale < 0.5
    duration = args.duration if args.duration is not None else (1.0 if short else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if short else 0.5)
    args.settle = args.settle if args.settle is not None else (0.1 if short else 1.0)
    slow_seconds = args.slow_seconds if args.slow_seconds is not None else (2.0 if short else 10.0)
    all_scs = scenarios(args.size_scale, duration, slow_seconds, args.connections)
    if args.list:
        for sc in all_scs:
            print(f"{sc.name:16} {'' if sc.default else '(extra) '}{sc.title}")
        return 0
    scs = select_scenarios(ap, all_scs, args.only)

    templates = dict(DEFAULT_SERVERS)
    for spec in args.server_cmd:
        name, _, tmpl = spec.partition("=")
        if not tmpl:
            ap.error(f"--server-cmd needs NAME=TEMPLATE, got {spec!r}")
        templates[name.strip()] = tmpl
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in templates:
            ap.error(f"unknown server {s!r}; add it with --server-cmd {s}=TEMPLATE")
    if "tus-node" in servers and not (BENCH / "node" / "node_modules" / "@tus" / "server").exists():
        print(
            "note: @tus/server is not installed; run `bash benchmarks/setup-node.sh` "
            "(skipping tus-node)",
            file=sys.stderr,
        )
        servers.remove("tus-node")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else BENCH / "results" / f"bench-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    logdir = json_path.parent / f"logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusd-trio-bench-", dir=args.work_dir))

    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "runs": args.runs,
        "size_scale": args.size_scale,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "node": _version(["node", "--version"]),
        "tus_server": _npm_version("@tus/server"),
        "tus_file_store": _npm_version("@tus/file-store"),
        "client": f"loadgen.py (Python selectors, {args.client_procs} proc; "
        f"bulk: {args.send_mode})",
        "servers": {s: templates[s] for s in servers},
        "args": vars(args),
    }
    meta["background_cpu_cores_at_start"] = background_cores()
    signal.signal(signal.SIGTERM, on_sigterm)
    results: list[dict] = []
    unavailable: dict[str, str] = {}
    t_start = time.monotonic()
    try:
        for run in range(args.runs):
            for sc in scs:
                # rotate the server order every run so that drift hits everyone alike
                order = servers[run % len(servers) :] + servers[: run % len(servers)]
                for name in order:
                    rec = {"run": run, "scenario": sc.name, "server": name, "unit": sc.unit}
                    if name in unavailable:
                        rec["failure"] = unavailable[name]
                        results.append(rec)
                        continue
                    srv = None
                    try:
                        srv = Server(
                            name, templates[name], work, logdir, args.python, args.start_timeout
                        )
                        rec.update(measure(sc, srv, args))
                    except Exception as e:
                        rec["failure"] = (
                            f"{type(e).__name__}: {e}"
                            if not isinstance(e, RuntimeError)
                            else str(e)
                        )
                        if srv is None:
                            unavailable[name] = str(e)
                        elif srv.proc.poll() is not None:
                            rec["failure"] += "\nserver exited; log tail:\n" + srv.log_tail()
                    finally:
                        if srv is not None:
                            srv.stop()
                            os.sync()  # don't let this run's writeback bleed into the next
                            time.sleep(args.settle)
                    results.append(rec)
                    v = rec.get("value")
                    status = (
                        f"{v:,.1f} {sc.unit}"
                        if v is not None
                        else "FAILED: "
                        + (rec.get("failure") or str(rec.get("errors"))).splitlines()[0][:160]
                    )
                    cc = rec.get("client_cpu_cores")
                    print(
                        f"[run {run + 1}/{args.runs}] {sc.name:14} {name:10} {status}"
                        + (
                            f"  (CPU cores: client {cc:.2f}, server "
                            f"{_f2(rec.get('server_cpu_cores'))}, other "
                            f"{_f2(rec.get('other_cpu_cores'))})"
                            if cc is not None
                            else ""
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: stopping servers", file=sys.stderr)
        kill_all()
        return 130
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    summary = summarize(results, scs, servers, args.runs)
    md = markdown(summary, servers, meta)
    print(md)
    json_path.write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1, default=str)
    )
    print(f"JSON: {json_path}\nserver logs: {logdir}", file=sys.stderr)
    return 0


def _f2(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _version(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _npm_version(pkg: str) -> str | None:
    p = BENCH / "node" / "node_modules" / pkg / "package.json"
    try:
        return json.loads(p.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


if __name__ == "__main__":
    sys.exit(main())
