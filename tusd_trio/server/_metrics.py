"""Prometheus metrics in the text exposition format, with tusd's metric names.

tusd's counters keep their exact names (``tusd_bytes_received``, without the
``_total`` suffix prometheus-client would add), so existing dashboards keep
working; the values are read from the supervisor's plain counters at scrape
time, so requests pay nothing for them.  When prometheus-client is installed,
its process and Python collectors are appended.

Worker processes (``-workers N``) share their metrics through a directory
(``Config.metrics_dir``): every worker writes a snapshot of its counters,
gauges and histograms to ``<dir>/<pid>.json`` every half second and when it
stops (:func:`share_metrics`), replacing the file atomically.  Whichever worker
answers a scrape adds its own live values, the other workers' snapshots and
``<dir>/retired.json``: the parent folds the last snapshot of every worker that
exited into it (:func:`retire_snapshot`), counters and histograms only, so totals
never go backwards when a worker dies or is restarted.  The process and Python
collectors describe one process and are left out in that mode.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import trio

from .._snapshots import (
    Family,
    merge_families,
    read_shared,
    snapshot_path,
    write_json_atomically,
)
from ..hooks.model import HOOK_TYPES
from ..hooks.outbox import HookOutbox
from ._events import EventStream
from ._histograms import histograms
from ._state import ServerState

log = logging.getLogger("tusd_trio")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")
#: How often a worker process publishes its snapshot (seconds).
SNAPSHOT_INTERVAL = 0.5


@dataclass
class Metrics:
    """tusd's counters, kept in plain integers (read at scrape time)."""

    requests_total: Counter[str] = field(default_factory=Counter)
    errors_total: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes_received: int = 0
    uploads_created: int = 0
    uploads_finished: int = 0
    uploads_terminated: int = 0
    uploads_expired: int = 0
    connections_open: int = 0
    hook_invocations_total: Counter[str] = field(default_factory=Counter)
    hook_errors_total: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class MetricsSource:
    """Where a scrape reads its values: the counters, the live gauges, and (with
    -workers) the directory the worker processes share."""

    metrics: Metrics
    state: ServerState
    events: EventStream
    metrics_dir: str = ""
    #: The hook outbox, when on.
    outbox: HookOutbox | None = None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """Integers exactly (``{:g}`` would print 1.23457e+07 for byte counts)."""
    if float(value).is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(float(value))


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if labels:
            inner = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            lines.append(f"{name} {_number(value)}")
    return lines


def _tusd_families(source: MetricsSource) -> list[Family]:
    m = source.metrics
    families: list[Family] = []

    def family(name: str, kind: str, help_text: str) -> Family:
        families.append(Family(name, kind, help_text))
        return families[-1]

    requests = family(
        "tusd_requests_total", "counter", "Total number of requests served by tusd per method."
    )
    for method in _METHODS:
        requests.add({"method": method}, m.requests_total.get(method, 0))
    errors = family("tusd_errors_total", "counter", "Total number of errors per status.")
    for (status, code), count in sorted(m.errors_total.items()):
        errors.add({"status": status, "code": code}, count)
    family("tusd_bytes_received", "counter", "Number of bytes received for uploads.").add(
        {}, m.bytes_received
    )
    family("tusd_uploads_created", "counter", "Number of created uploads.").add(
        {}, m.uploads_created
    )
    family("tusd_uploads_finished", "counter", "Number of finished uploads.").add(
        {}, m.uploads_finished
    )
    family("tusd_uploads_terminated", "counter", "Number of terminated uploads.").add(
        {}, m.uploads_terminated
    )
    family("tusd_connections_open", "gauge", "Current number of open connections.").add(
        {}, m.connections_open
    )
    invocations = family(
        "tusd_hook_invocations_total", "counter", "Total number of invocations per hook type."
    )
    for hook in HOOK_TYPES:
        invocations.add({"hooktype": hook}, m.hook_invocations_total.get(hook, 0))
    hook_errors = family(
        "tusd_hook_errors_total", "counter", "Total number of execution errors per hook type."
    )
    for hook in HOOK_TYPES:
        hook_errors.add({"hooktype": hook}, m.hook_errors_total.get(hook, 0))
    family(
        "tusd_trio_uploads_expired_total",
        "counter",
        "Unfinished uploads removed by the expiry janitor.",
    ).add({}, m.uploads_expired)
    family("tusd_trio_active_uploads", "gauge", "Requests writing upload data right now.").add(
        {}, source.state.active_uploads
    )
    family(
        "tusd_trio_bytes_in_flight",
        "gauge",
        "Body bytes received by requests that are still writing them.",
    ).add({}, source.state.bytes_in_flight)
    family(
        "tusd_trio_event_subscribers", "gauge", "Current subscribers of the live event stream."
    ).add({}, len(source.events.subscribers))
    family(
        "tusd_trio_event_subscribers_dropped_total",
        "counter",
        "Event-stream subscribers dropped for falling behind.",
    ).add({}, source.events.dropped)
    if source.outbox is not None:
        families.extend(_outbox_families(source.outbox))
    return families


def _outbox_families(outbox: HookOutbox) -> list[Family]:
    """The hook outbox's counters, and its gauges from the process that sends (with
    -workers every process sees the same store: one reports it, so sums stay true)."""
    deliveries = Family(
        "tusd_trio_hook_outbox_deliveries_total",
        "counter",
        "Outbox events a hook backend took, per backend.",
    )
    failures = Family(
        "tusd_trio_hook_outbox_failures_total",
        "counter",
        "Failed delivery attempts of outbox events, per backend.",
    )
    for backend in outbox.backends:
        deliveries.add({"backend": backend.name}, outbox.deliveries.get(backend.name, 0))
        failures.add({"backend": backend.name}, outbox.failures.get(backend.name, 0))
    dead_total = Family(
        "tusd_trio_hook_outbox_dead_total",
        "counter",
        "Outbox events moved aside as dead after -hooks-outbox-max-age.",
    )
    dead_total.add({}, outbox.dead_total)
    write_errors = Family(
        "tusd_trio_hook_outbox_write_errors_total",
        "counter",
        "Events the outbox could not store (they were sent from memory).",
    )
    write_errors.add({}, outbox.write_errors)
    families = [deliveries, failures, dead_total, write_errors]
    if outbox.store.reports_gauges():
        for name, help_text, value in (
            ("tusd_trio_hook_outbox_pending", "Events waiting in the outbox.", outbox.depth),
            (
                "tusd_trio_hook_outbox_oldest_pending_seconds",
                "Age of the oldest event waiting in the outbox.",
                outbox.pending_age(),
            ),
            ("tusd_trio_hook_outbox_dead", "Dead events kept by the outbox.", outbox.dead_stored),
        ):
            gauge = Family(name, "gauge", help_text)
            gauge.add({}, value)
            families.append(gauge)
    return families


def _render_text(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for fam in families:
        samples = [(dict(labels), value) for (_name, labels), value in fam.samples.items()]
        lines += _family(fam.name, fam.kind, fam.help, samples)
    return "\n".join(lines) + "\n"


def render_metrics(source: MetricsSource) -> str:
    if source.metrics_dir:
        return _render_shared(source)
    text = _render_text(_tusd_families(source))
    try:
        from prometheus_client import REGISTRY, generate_latest
    except ImportError:  # pragma: no cover - prometheus-client is optional
        return text
    return text + generate_latest(REGISTRY).decode("utf-8")


# --- worker processes (-workers N): shared snapshots ---------------------------------

_worker_id = uuid.uuid4().hex


def _histogram_families() -> list[Family]:
    families: list[Family] = []
    for metric in (histograms.request, histograms.hook, histograms.lock_wait, histograms.store):
        if metric is None:
            continue
        for collected in metric.collect():
            fam = Family(collected.name, collected.type, collected.documentation, prom=True)
            for sample in collected.samples:
                fam.add(dict(sample.labels), sample.value, sample.name)
            families.append(fam)
    return families


def local_families(source: MetricsSource) -> list[Family]:
    """This process's counters, gauges and histograms."""
    return _tusd_families(source) + _histogram_families()


def _snapshot(source: MetricsSource, families: list[Family] | None = None) -> dict[str, Any]:
    if families is None:
        families = local_families(source)
    return {
        "pid": os.getpid(),
        "id": _worker_id,
        "families": [fam.to_json() for fam in families],
    }


async def share_metrics(source: MetricsSource, interval: float = SNAPSHOT_INTERVAL) -> None:
    """Publish this worker's metrics now, every ``interval`` seconds and when cancelled.

    The first snapshot also tells the parent process that this worker serves.
    """
    path = snapshot_path(source.metrics_dir, os.getpid())
    try:
        while True:
            # Collected here, on the event loop thread; written by a worker thread.
            try:
                await trio.to_thread.run_sync(write_json_atomically, path, _snapshot(source))
            except OSError as exc:  # e.g. a full disk: serving matters more than metrics
                log.warning("cannot write the metrics snapshot %s: %s", path, exc)
            await trio.sleep(interval)
    finally:
        # At shutdown (cancelled): the final values, synchronously (a few KiB).
        try:
            write_json_atomically(path, _snapshot(source))
        except OSError as exc:
            log.warning("cannot write the final metrics snapshot %s: %s", path, exc)


def _requests_served(families: Iterable[Family]) -> float:
    return sum(sum(fam.samples.values()) for fam in families if fam.name == "tusd_requests_total")


def _render_shared(source: MetricsSource) -> str:
    own_pid = os.getpid()
    own = local_families(source)
    # What a scrape reports is published first: a worker killed right after answering
    # (SIGKILL, OOM) would otherwise take back counts its last periodic snapshot did not
    # have yet, and the next scrape, answered by another worker, would see a counter go
    # down.  A few KiB, once per scrape, like the final snapshot at shutdown.
    try:
        write_json_atomically(snapshot_path(source.metrics_dir, own_pid), _snapshot(source, own))
    except OSError as exc:
        log.warning("cannot write the metrics snapshot before a scrape: %s", exc)
    live, retired = read_shared(source.metrics_dir, own_pid)
    merged: dict[str, Family] = {}
    merge_families(merged, own)
    for _pid, families in live:
        merge_families(merged, families)
    merge_families(merged, retired, gauges=False)
    per_worker = Family(
        "tusd_trio_worker_requests_total",
        "counter",
        "Requests served by each running worker process (-workers), by pid.",
    )
    for pid, families in [(own_pid, own), *live]:
        per_worker.add({"pid": str(pid)}, _requests_served(families))
    text = _render_text([*(f for f in merged.values() if not f.prom), per_worker])
    return text + _render_prom([f for f in merged.values() if f.prom])


class _Collected:
    """A registry stand-in for ``generate_latest``: fixed, already merged families."""

    def __init__(self, metrics: list[Any]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return iter(self._metrics)


def _render_prom(families: list[Family]) -> str:
    if not families:
        return ""
    try:
        from prometheus_client import generate_latest
        from prometheus_client.metrics_core import Metric
    except ImportError:  # pragma: no cover - prometheus-client is optional
        return ""
    metrics: list[Any] = []
    for fam in families:
        metric = Metric(fam.name, fam.help, fam.kind)
        for (name, labels), value in fam.samples.items():
            metric.add_sample(name, dict(labels), value)
        metrics.append(metric)
    registry: Any = _Collected(metrics)
    return generate_latest(registry).decode("utf-8")
