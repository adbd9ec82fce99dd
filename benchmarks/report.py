"""Tables of the benchmark harnesses: medians over runs, per-run ratios, CPU and memory.

A measurement record (one server, one scenario, one run) carries ``value`` (None when it failed
or does not apply: ``skipped`` says why), and optionally latency percentiles, CPU cores of the
client, the server and everything else during the measured window, and peak memory.
"""

from __future__ import annotations

import statistics
from typing import Any

#: Column labels of the servers (harnesses may add their own).
LABELS = {
    "tusd-trio": "tusd-trio",
    "tusd-trio-w2": "tusd-trio -workers 2",
    "tusd": "tusd",
    "tus-node": "@tus/server",
    "raw": "raw receiver",
}


def label(name: str) -> str:
    return LABELS.get(name, name)


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


def _f2(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _median_of(rs: list[dict], key: str) -> float | None:
    stat = med_min_max([r.get(key) for r in rs])
    return stat[0] if stat else None


def _max_of(rs: list[dict], key: str) -> float | None:
    return max((r[key] for r in rs if r.get(key) is not None), default=None)


def summarize(
    results: list[dict],
    scs: list,
    servers: list[str],
    runs: int,
    pairs: list[tuple[str, str]] | None = None,
) -> dict:
    """Per scenario and server: median/min/max of the values over runs, and the per-run
    ratios ``a/b`` for every pair (default: tusd-trio over each other server)."""
    if pairs is None:
        pairs = (
            [("tusd-trio", s) for s in servers if s != "tusd-trio"]
            if ("tusd-trio" in servers)
            else []
        )
    summary: dict = {}
    for sc in scs:
        row: dict = {
            "unit": sc.unit,
            "title": sc.title,
            "kind": sc.kind,
            "higher_is_better": sc.higher_is_better,
            "servers": {},
            "ratios": {},
        }
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
                "p50_ms": _median_of(rs, "p50_ms"),
                "p99_ms": _median_of(rs, "p99_ms"),
                "server_cpu_us_per_op": _median_of(rs, "server_cpu_us_per_op"),
                "server_sys_share": _median_of(rs, "server_sys_share"),
                "client_cpu_cores_max": _max_of(rs, "client_cpu_cores"),
                "server_cpu_cores_median": _median_of(rs, "server_cpu_cores"),
                "other_cpu_cores_max": _max_of(rs, "other_cpu_cores"),
                "vmhwm_mib_max": _max_of(rs, "vmhwm_mib"),
                "vmhwm_group_mib_max": _max_of(rs, "vmhwm_group_mib"),
                "rss_sampled_peak_mib_max": _max_of(rs, "rss_sampled_peak_mib"),
                "rss_proc_peak_mib_max": _max_of(rs, "rss_proc_peak_mib"),
                "processes_max": _max_of(rs, "processes"),
                "errors": sum(int(r.get("n_errors") or 0) for r in rs),
                "failures": [r["failure"] for r in rs if r.get("failure")][:3],
                "skipped": next((r["skipped"] for r in rs if r.get("skipped")), None),
            }
        for a, b in pairs:
            if a not in per or b not in per:
                continue
            ratios = [x / y for x, y in zip(per[a], per[b], strict=True) if x is not None and y]
            stat = med_min_max(ratios)
            ma, mb = row["servers"][a]["median"], row["servers"][b]["median"]
            row["ratios"][f"{a}/{b}"] = {
                "ratio_of_medians": ma / mb if ma is not None and mb else None,
                "per_run_median": stat[0] if stat else None,
                "per_run_min": stat[1] if stat else None,
                "per_run_max": stat[2] if stat else None,
            }
        summary[sc.name] = row
    return summary


def _ratio_columns(summary: dict) -> list[str]:
    cols: list[str] = []
    for row in summary.values():
        for c in row["ratios"]:
            if c not in cols:
                cols.append(c)
    return cols


def _ratio_label(col: str) -> str:
    a, _, b = col.partition("/")
    return f"{label(a)} / {label(b)}"


def _value_cell(d: dict, kind: str) -> str:
    if d["median"] is None and d.get("skipped"):
        return "n/a"
    stat = (d["median"], d["min"], d["max"]) if d["median"] is not None else None
    cell = fmt_stat(stat)
    if kind == "rate" and d.get("p50_ms") is not None:
        cell += f"; {fmt_num(d['p50_ms'])} / {fmt_num(d['p99_ms'])} ms"
    if d["errors"]:
        cell += f" ⚠{d['errors']} err"
    return cell


def markdown(summary: dict, servers: list[str], meta: dict) -> str:
    out = []
    out.append(
        f"### Results ({meta['date']}, {meta['runs']} run(s), size scale "
        f"{meta['size_scale']:g}, {meta['cpus']} CPUs, client: {meta['client']})\n"
    )
    out.append(
        "Median (min-max) over runs; for request rates also the median p50 / p99 latency of a "
        "request (POST + PATCH: of the pair). Higher is better except for RSS. Ratios are "
        "computed per run (both servers of a run ran within minutes of each other): median "
        "(min-max) of those.\n"
    )
    ratio_cols = _ratio_columns(summary)
    hdr = ["scenario", "unit"] + [label(s) for s in servers] + [_ratio_label(c) for c in ratio_cols]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name, row in summary.items():
        cells = [f"{name}: {row['title']}", row["unit"]]
        cells += [_value_cell(row["servers"][s], row.get("kind", "")) for s in servers]
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
        f"{meta['cpus']}): client (max over runs), server (median; all its processes), "
        "everything else on the machine (max; should be ~0 on a quiet machine); for request "
        "rates the server's CPU time per upload or request (µs, median) and the share of it "
        "spent in the kernel (sys); peak memory (max over runs): VmHWM summed over the "
        "server's processes / sampled RSS of all its processes "
        "together / of its largest process, MiB:\n"
    )
    hdr = ["scenario"] + [f"{label(s)}" for s in servers]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    for name, row in summary.items():
        if row.get("kind") == "derived":
            continue
        cells = [name]
        for s in servers:
            d = row["servers"][s]
            if d["median"] is None and not d["vmhwm_mib_max"]:
                cells.append("n/a" if d.get("skipped") else "not measured")
                continue
            cpu = (
                f"{_f2(d['client_cpu_cores_max'])} / {_f2(d['server_cpu_cores_median'])}"
                f" / {_f2(d['other_cpu_cores_max'])}"
            )
            if d.get("server_cpu_us_per_op") is not None:
                cpu += f"; {d['server_cpu_us_per_op']:,.0f} µs"
            if d.get("server_sys_share") is not None:
                cpu += f" ({100 * d['server_sys_share']:.0f} % sys)"
            mem = (
                f"{fmt_num(d.get('vmhwm_group_mib_max') or d['vmhwm_mib_max'] or 0)} / "
                f"{fmt_num(d['rss_sampled_peak_mib_max'] or 0)}"
            )
            if d.get("rss_proc_peak_mib_max") is not None:
                mem += f" / {fmt_num(d['rss_proc_peak_mib_max'])}"
            cells.append(f"{cpu}; {mem}")
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


def record_line(rec: dict, runs: int, unit: str) -> str:
    """One progress line for stderr."""
    v = rec.get("value")
    if v is not None:
        status = f"{v:,.1f} {unit}"
        if rec.get("p50_ms") is not None:
            status += f" (p50 {rec['p50_ms']:.1f} / p99 {rec['p99_ms']:.1f} ms)"
    elif rec.get("skipped"):
        status = f"n/a ({rec['skipped']})"
    else:
        status = "FAILED: " + (rec.get("failure") or str(rec.get("errors"))).splitlines()[0][:160]
    cc = rec.get("client_cpu_cores")
    extra: Any = ""
    if cc is not None:
        extra = (
            f"  (CPU cores: client {cc:.2f}, server {_f2(rec.get('server_cpu_cores'))}, "
            f"other {_f2(rec.get('other_cpu_cores'))})"
        )
    return f"[run {rec['run'] + 1}/{runs}] {rec['scenario']:16} {rec['server']:12} {status}{extra}"
