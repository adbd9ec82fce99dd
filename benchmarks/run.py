#!/usr/bin/env python3
"""Benchmark tusd-trio against tusd, @tus/server (+ @tus/file-store) and a raw receiver.

    bash benchmarks/setup-node.sh          # once: installs @tus/server into benchmarks/node/
    .venv/bin/python benchmarks/run.py --tusd /path/to/tusd    # the full comparison
    .venv/bin/python benchmarks/run.py --smoke   # quick check, about two minutes

Every server is started fresh (in its own process group, bound to 127.0.0.1, port 0) for each
measurement and killed afterwards, also on Ctrl-C or error. The load generator (loadgen.py),
curl and nginx run as separate processes; the client's CPU use is reported next to each
number. See benchmarks/README.md.
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
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from clients import NginxProxy, Sources, create_uploads, curl_bulk, make_cert, offsets
from procs import (
    LIVE,
    LIVE_LOCK,
    kill_all,
    kill_group,
    machine_busy_s,
    on_sigterm,
    proc_cpu_s,
    proc_status_kib,
    run_client,
    server_pids,
)
from report import (  # noqa: F401 - re-exported for h2.py, s3.py and scaleout.py
    LABELS,
    _f2,
    fmt_num,
    fmt_ratio,
    fmt_stat,
    markdown,
    med_min_max,
    record_line,
    summarize,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen.py"
URL_RE = re.compile(r"You can now upload files to: (https?://\S+)")
MiB = 1 << 20
GiB = 1 << 30
#: An upload dir with more entries than this is deleted at the end of the run, not at once:
#: on ext4 without a journal (these machines) the inode allocator skips every inode freed in
#: the last 5 s (5 min while its inode table block is dirty), one buffer lookup each, so a
#: deleted tree slows down every file creation near it for minutes (see README.md).
DEFER_DELETE_ENTRIES = 64


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


TUSD_TRIO = "{python} -m tusd_trio -host 127.0.0.1 -port 0 -upload-dir {upload_dir}"
DEFAULT_SERVERS = {
    "tusd-trio": TUSD_TRIO,
    "tusd-trio-w2": TUSD_TRIO + " -workers 2",
    "tusd": "{tusd} -host 127.0.0.1 -port 0 -upload-dir {upload_dir}",
    "tus-node": "node {bench}/node/server.mjs -host 127.0.0.1 -port 0 -upload-dir {upload_dir}",
    "raw": "{python} {bench}/raw_receiver.py -host 127.0.0.1 -port 0 -upload-dir {upload_dir}",
}
#: Appended to the command of a server that serves TLS (tusd's flags; tusd-trio has the same).
TLS_FLAGS = " -tls-certificate {cert} -tls-key {key}"
TLS_SERVERS = "tusd-trio,tusd-trio-w2,tusd"


@dataclass
class Scenario:
    name: str
    title: str
    kind: str  # bulk | rate | slow | stream | derived
    unit: str
    higher_is_better: bool = True
    params: dict = field(default_factory=dict)
    default: bool = True


def scenarios(
    scale: float, duration: float, slow_seconds: float, connections: int, proxy_connections: int
) -> list[Scenario]:
    def sz(n: int) -> int:  # scaled, rounded to 64 KiB, at least 64 KiB
        return max(64 * 1024, int(n * scale) // (64 * 1024) * (64 * 1024))

    big = sz(GiB)
    par = sz(64 * MiB)

    def rate(name: str, title: str, unit: str, default: bool = True, **params) -> Scenario:
        params.setdefault("connections", connections)
        params.setdefault("duration", duration)
        return Scenario(name, title, "rate", unit, default=default, params=params)

    def stream(name: str, how: str, default: bool = True, **params) -> Scenario:
        return Scenario(
            name,
            f"one {big / MiB:.4g} MiB upload, single PATCH, curl {how}",
            "stream",
            "MiB/s",
            default=default,
            params={"size": big, **params},
        )

    c, pc = connections, proxy_connections
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
        stream("stream-1g", "(64 KiB writes), HTTP/1.1", http="1.1"),
        stream("stream-1g-tls", "over TLS, HTTP/1.1", http="1.1", tls=True),
        stream("stream-1g-h2", "over TLS, HTTP/2", http="2", tls=True),
        stream("stream-1g-nginx", "through nginx, HTTP/1.1", default=False, http="1.1", proxy=True),
        rate("create-4k", f"4 KiB creation-with-upload, {c} conns", "uploads/s", kind="create"),
        rate("post-patch-4k", f"4 KiB POST then PATCH, {c} conns", "uploads/s", kind="post-patch"),
        rate("head-one", f"HEAD, {c} conns on one upload", "req/s", kind="head", uploads=1),
        rate("head", f"HEAD, {c} conns on {c} uploads", "req/s", kind="head", uploads=c),
        rate(
            "create-4k-nginx",
            f"4 KiB creation-with-upload through nginx, {pc} conns",
            "uploads/s",
            kind="create",
            connections=pc,
            proxy=True,
        ),
        Scenario(
            "slow-200",
            f"peak RSS, 200 slow uploads ({slow_seconds:g} s, 4 KiB / 100 ms)",
            "slow",
            "MiB VmHWM",
            higher_is_better=False,
            params={"uploads": 200, "chunk": 4096, "interval": 0.1, "seconds": slow_seconds},
        ),
    ]


#: Summary-only row: the largest RSS seen during the request-rate scenarios of a run.
RSS_SMALL = Scenario(
    "rss-small",
    "peak RSS under small-request load (all processes; max over the rate scenarios)",
    "derived",
    "MiB",
    higher_is_better=False,
)


# -- measuring --------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples VmRSS of the server's processes (its process group and every descendant)
    every `interval` seconds: the sum over them, and the largest single process."""

    def __init__(self, pgid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pgid, self.interval = pgid, interval
        self.peak_kib = 0
        self.peak_proc_kib = 0
        self.max_procs = 0
        # (epoch, CPU seconds of the server's processes, busy CPU seconds of the whole machine)
        self.cpu_samples: list[tuple[float, float, float]] = []
        self.stop_evt = threading.Event()

    def sample(self, pids: list[int]) -> None:
        rss = [proc_status_kib(p, "VmRSS") for p in pids]
        self.cpu_samples.append((time.time(), sum(proc_cpu_s(p) for p in pids), machine_busy_s()))
        self.peak_kib = max(self.peak_kib, sum(rss))
        self.peak_proc_kib = max(self.peak_proc_kib, max(rss, default=0))
        self.max_procs = max(self.max_procs, len(pids))

    def run(self) -> None:
        pids = server_pids(self.pgid)
        last_scan = time.monotonic()
        while not self.stop_evt.is_set():
            if time.monotonic() - last_scan > 0.5:
                pids = server_pids(self.pgid)
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
        self,
        name: str,
        template: str,
        work: Path,
        logdir: Path,
        python: str,
        start_timeout: float,
        *,
        tls: tuple[Path, Path] | None = None,
        graveyard: list[Path] | None = None,
        pollute: int = 0,
    ) -> None:
        self.name = name
        self.upload_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
        self.graveyard = graveyard
        if pollute:
            freed_inodes_nearby(self.upload_dir, pollute)
        if tls is not None:
            template += TLS_FLAGS.format(
                cert=shlex.quote(str(tls[0])), key=shlex.quote(str(tls[1]))
            )
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
        if self.url and tls is not None and self.url.startswith("http://"):
            # tusd-trio -workers N prints http:// in its banner even when it serves TLS
            self.url = "https://" + self.url[len("http://") :]
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
        return sum(proc_cpu_s(p) for p in server_pids(self.pid))

    def sys_cpu_s(self) -> float:
        """Kernel CPU time of the server's processes (system calls, page faults)."""
        return sum(proc_cpu_s(p, user=False) for p in server_pids(self.pid))

    def vmhwm_kib(self) -> tuple[int, int]:
        """VmHWM of the main process, and the sum of VmHWM over all the server's processes."""
        main = proc_status_kib(self.pid, "VmHWM")
        return main, sum(proc_status_kib(p, "VmHWM") for p in server_pids(self.pid))

    def stop(self) -> None:
        kill_group(self.proc)
        self.log.close()
        try:
            many = sum(1 for _ in os.scandir(self.upload_dir)) > DEFER_DELETE_ENTRIES
        except OSError:
            many = False
        if many and self.graveyard is not None:
            self.graveyard.append(self.upload_dir)
        else:
            shutil.rmtree(self.upload_dir, ignore_errors=True)


def freed_inodes_nearby(directory: Path, count: int) -> None:
    """Create and delete ``count`` empty files in ``directory``, then sync: the state a block
    group is in after a tree was deleted near it (see "File creation on these machines")."""
    names = [directory / f".freed-{i}" for i in range(count)]
    for name in names:
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    for name in names:
        os.unlink(name)
    os.sync()


def loadgen(params: dict, timeout: float) -> dict:
    """Run loadgen.py once (its own process group) and return the JSON it prints last."""
    try:
        out, *_ = run_client([sys.executable, str(LOADGEN), json.dumps(params)], timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"load generator: {exc}") from None
    return json.loads(out.strip().splitlines()[-1])


# -- one measurement ------------------------------------------------------------------------


def _stream(sc: Scenario, url: str, sources: Sources) -> dict:
    """One upload sent by curl, after an unmeasured 64 MiB one; the offset is checked."""
    size, version = sc.params["size"], sc.params["http"]

    def upload(each: int) -> dict:
        urls = create_uploads(url, each, 1)
        r = curl_bulk(
            urls, sources.get(each), version, 60 + each / (10 * MiB), expect_continue=False
        )
        got = offsets(urls)
        if got != [each]:
            r["errors"].append(f"upload not complete after the run: offset {got[0]}")
        return r

    upload(min(size, 64 * MiB))
    return upload(size)


def measure(sc: Scenario, srv: Server, args, sources: Sources, proxy_url: str | None) -> dict:
    url = proxy_url or srv.url
    base = {"url": url, **sc.params}
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
            paths = loadgen({"mode": "prepare", "url": url, "count": n}, 60)["paths"]
            base["paths"] = (paths * (sc.params["connections"] // n + 1))[
                : sc.params["connections"]
            ]
        timeout = 60 + sc.params["duration"] * 2
    elif sc.kind == "slow":
        base.update(mode="slow")
        timeout = 90 + sc.params["seconds"] * 4
    sampler = RssSampler(srv.pid)
    cpu0, sys0 = srv.cpu_s(), srv.sys_cpu_s()
    sampler.start()
    t0 = time.perf_counter()
    try:
        if sc.kind == "stream":
            res = _stream(sc, url, sources)
            res["n_errors"] = len(res["errors"])
            if res.get("window_s") and not res["errors"]:
                res["value"] = sc.params["size"] / MiB / res["window_s"]
            res["window_cpu_s"] = (
                res["client_cpu_s"] * res.get("window_s", 0) / res["client_wall_s"]
            )
        else:
            res = loadgen(base, timeout)
    finally:
        sampler.stop()
    wall = time.perf_counter() - t0
    cpu1, sys1 = srv.cpu_s(), srv.sys_cpu_s()
    if cpu1 > cpu0:  # over the whole client run, warm-up included
        res["server_sys_share"] = (sys1 - sys0) / (cpu1 - cpu0)
    hwm_main, hwm_group = srv.vmhwm_kib()
    win = res.get("window_epoch")
    cores = sampler.cpu_cores(*win) if win else None
    if cores:
        res["server_cpu_cores"], res["machine_busy_cores"] = cores
        # everything else that ran meanwhile (other processes, kernel threads, a proxy): noise
        res["other_cpu_cores"] = max(
            0.0, cores[1] - cores[0] - (res["window_cpu_s"] / res["window_s"])
        )
    elif wall:  # window too short to bracket: whole client run
        res["server_cpu_cores"] = (cpu1 - cpu0) / wall
    res["client_cpu_cores"] = res["window_cpu_s"] / res["window_s"] if res.get("window_s") else None
    res["vmhwm_mib"] = hwm_main / 1024
    res["vmhwm_group_mib"] = hwm_group / 1024
    res["rss_sampled_peak_mib"] = sampler.peak_kib / 1024
    res["rss_proc_peak_mib"] = sampler.peak_proc_kib / 1024
    res["processes"] = sampler.max_procs
    if sc.kind == "slow":
        # memory is reported even if some slow uploads failed (flagged by the error count);
        # summed over the server's processes (the parent of -workers N serves nothing)
        res["value"] = res["vmhwm_group_mib"] if res.get("ok") else None
    if sc.kind == "rate" and res.get("value") and res.get("server_cpu_cores") is not None:
        # CPU time per upload (create, post-patch) or request (HEAD), the noise-proof figure
        res["server_cpu_us_per_op"] = res["server_cpu_cores"] * 1e6 / res["value"]
    # a rate with errors is still reported, but flagged; a bulk run with errors has no value
    res.setdefault("value", None)
    if res["value"] is None and res.get("errors"):
        res["failure"] = "; ".join(map(str, res["errors"]))
    return res


def rss_small_records(results: list[dict], scs: list[Scenario], servers: list[str]) -> list[dict]:
    """Per run and server, the largest RSS any request-rate scenario of that run reached."""
    rate_names = {sc.name for sc in scs if sc.kind == "rate"}
    out = []
    for run_no in sorted({r["run"] for r in results}):
        for s in servers:
            rs = [
                r
                for r in results
                if r["run"] == run_no and r["server"] == s and r["scenario"] in rate_names
            ]
            peaks = [r["rss_sampled_peak_mib"] for r in rs if r.get("rss_sampled_peak_mib")]
            if not peaks:
                continue
            out.append(
                {
                    "run": run_no,
                    "scenario": RSS_SMALL.name,
                    "server": s,
                    "value": max(peaks),
                    "rss_proc_peak_mib": max(r.get("rss_proc_peak_mib") or 0 for r in rs),
                }
            )
    return out


def applicable(sc: Scenario, name: str, tls_servers: set[str], nginx: bool) -> str | None:
    """Why scenario ``sc`` does not apply to server ``name`` (None: it does)."""
    if sc.params.get("tls") and name not in tls_servers:
        return "no TLS set-up for this server"
    if sc.params.get("proxy") and not nginx:
        return "nginx is not installed"
    return None


def default_pairs(servers: list[str], ref: str) -> list[tuple[str, str]] | None:
    """Ratio columns: every tusd-trio variant over ``ref``, and -workers 2 over one process."""
    if ref not in servers:
        return None
    pairs = [(s, ref) for s in servers if s != ref and s.startswith("tusd-trio")]
    if "tusd-trio" in servers and "tusd-trio-w2" in servers:
        pairs.append(("tusd-trio-w2", "tusd-trio"))
    return pairs


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


def find_tusd(option: str | None) -> str | None:
    path = option or os.environ.get("TUSD_BIN") or shutil.which("tusd")
    return path if path and os.access(path, os.X_OK) else None


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
        default="tusd-trio,tusd-trio-w2,tusd,tus-node,raw",
        help="comma-separated servers to run (default: %(default)s); tusd needs --tusd, "
        "tus-node needs setup-node.sh; missing ones are skipped with a note",
    )
    ap.add_argument(
        "--server-cmd",
        action="append",
        default=[],
        metavar="NAME=TEMPLATE",
        help="override or add a server command; placeholders {python} {upload_dir} "
        "{bench} {repo}; e.g. --server-cmd "
        "'tusd-trio-quiet={python} -m tusd_trio -host 127.0.0.1 -port 0 "
        "-upload-dir {upload_dir} -verbose=false'",
    )
    ap.add_argument(
        "--tusd",
        default=None,
        metavar="PATH",
        help="tusd binary for the 'tusd' server (default: $TUSD_BIN, else tusd on PATH)",
    )
    ap.add_argument(
        "--tls-servers",
        default=TLS_SERVERS,
        help="servers that take tusd's -tls-certificate/-tls-key flags, for the TLS "
        "scenarios (default: %(default)s); the others show n/a there",
    )
    ap.add_argument(
        "--ratio-to",
        default="tusd",
        help="ratio columns: every tusd-trio variant over this server, and -workers 2 over "
        "one process (default: %(default)s; if it does not run: tusd-trio over each other)",
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
        "--proxy-connections",
        type=int,
        default=16,
        help="client connections to nginx in create-4k-nginx (default: %(default)s)",
    )
    ap.add_argument(
        "--nginx-workers", type=int, default=1, help="nginx worker processes (default: 1)"
    )
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
    ap.add_argument("--md", default=None, help="also write the Markdown report to this file")
    ap.add_argument("--work-dir", default=None, help="where upload dirs go (default: a temp dir)")
    ap.add_argument("--python", default=default_python(), help="interpreter for {python}")
    ap.add_argument("--start-timeout", type=float, default=20.0)
    ap.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds to pause after each measurement's cleanup + sync (1, smoke 0.1)",
    )
    ap.add_argument(
        "--pollute",
        type=int,
        default=0,
        metavar="N",
        help="before each measurement, create and delete N empty files in the fresh upload "
        "dir (recently freed inodes next to it, as after deleting a tree; see README.md)",
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
    all_scs = scenarios(
        args.size_scale, duration, slow_seconds, args.connections, args.proxy_connections
    )
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
    tusd = find_tusd(args.tusd)
    if "{tusd}" in templates.get("tusd", "") and "tusd" in servers:
        if tusd is None:
            print(
                "note: no tusd binary (--tusd PATH, $TUSD_BIN or tusd on PATH); skipping tusd",
                file=sys.stderr,
            )
            servers.remove("tusd")
        else:
            templates["tusd"] = templates["tusd"].replace("{tusd}", shlex.quote(tusd))
    if "tus-node" in servers and not (BENCH / "node" / "node_modules" / "@tus" / "server").exists():
        print(
            "note: @tus/server is not installed; run `bash benchmarks/setup-node.sh` "
            "(skipping tus-node)",
            file=sys.stderr,
        )
        servers.remove("tus-node")
    nginx = shutil.which("nginx") is not None
    if not nginx and any(sc.params.get("proxy") for sc in scs):
        print("note: nginx is not installed; the nginx scenarios show n/a", file=sys.stderr)
    if any(sc.kind == "stream" for sc in scs) and shutil.which("curl") is None:
        ap.error("the stream-* scenarios need curl (or leave them out with --only)")
    tls_servers = {s.strip() for s in args.tls_servers.split(",") if s.strip()}
    pairs = default_pairs(servers, args.ratio_to)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = Path(args.json) if args.json else BENCH / "results" / f"bench-{stamp}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    logdir = json_path.parent / f"logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tusd-trio-bench-", dir=args.work_dir))
    tls = make_cert(work) if any(sc.params.get("tls") for sc in scs) else None
    sources = Sources(work)
    graveyard: list[Path] = []

    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "runs": args.runs,
        "size_scale": args.size_scale,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tusd_trio_commit": f"{commit}{' + working changes' if dirty else ''}",
        "tusd": tusd,
        "tusd_version": _first_line([tusd, "-version"]) if tusd else None,
        "node": _version(["node", "--version"]),
        "tus_server": _npm_version("@tus/server"),
        "tus_file_store": _npm_version("@tus/file-store"),
        "curl": _first_line(["curl", "--version"]),
        "nginx": _first_line(["nginx", "-v"], stderr=True) if nginx else None,
        "client": f"loadgen.py (Python selectors, {args.client_procs} proc; "
        f"bulk: {args.send_mode}); curl for stream-*",
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
                    why_not = applicable(sc, name, tls_servers, nginx)
                    if why_not:
                        rec["skipped"] = why_not
                        results.append(rec)
                        continue
                    if name in unavailable:
                        rec["failure"] = unavailable[name]
                        results.append(rec)
                        continue
                    srv = proxy = None
                    try:
                        srv = Server(
                            name,
                            templates[name],
                            work,
                            logdir,
                            args.python,
                            args.start_timeout,
                            tls=tls if sc.params.get("tls") else None,
                            graveyard=graveyard,
                            pollute=args.pollute,
                        )
                        if sc.params.get("proxy"):
                            proxy = NginxProxy(
                                srv.url, work, logdir / "nginx.log", args.nginx_workers
                            )
                        rec.update(measure(sc, srv, args, sources, proxy.url if proxy else None))
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
                        if proxy is not None:
                            proxy.stop()
                        if srv is not None:
                            srv.stop()
                            os.sync()  # don't let this run's writeback bleed into the next
                            time.sleep(args.settle)
                    results.append(rec)
                    print(record_line(rec, args.runs, sc.unit), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping servers", file=sys.stderr)
        kill_all()
        return 130
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    summary_scs = list(scs)
    if any(sc.kind == "rate" for sc in scs):
        results += rss_small_records(results, scs, servers)
        summary_scs.append(RSS_SMALL)
    summary = summarize(results, summary_scs, servers, args.runs, pairs)
    md = markdown(summary, servers, meta)
    md += (
        f"\nWhole run {meta['seconds']:g} s; background load at start "
        f"{meta['background_cpu_cores_at_start']} cores; tusd-trio at {meta['tusd_trio_commit']}"
        + (f"; tusd: {meta['tusd_version'] or meta['tusd']}" if meta["tusd"] else "")
        + ".\n"
    )
    print(md)
    if args.md:
        Path(args.md).write_text(md)
    json_path.write_text(
        json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1, default=str)
    )
    print(f"JSON: {json_path}\nserver logs: {logdir}", file=sys.stderr)
    return 0


def _version(cmd: list[str], *, stderr: bool = False) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stderr if stderr else done.stdout).strip() or None


def _first_line(cmd: list[str], *, stderr: bool = False) -> str | None:
    v = _version(cmd, stderr=stderr)
    return v.splitlines()[0] if v else None


def _npm_version(pkg: str) -> str | None:
    p = BENCH / "node" / "node_modules" / pkg / "package.json"
    try:
        return json.loads(p.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


if __name__ == "__main__":
    sys.exit(main())
