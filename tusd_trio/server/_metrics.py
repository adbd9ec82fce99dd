"""Prometheus metrics in the text exposition format, with tusd's metric names.

tusd's counters keep their exact names (``tusd_bytes_received``, without the
``_total`` suffix prometheus-client would add), so existing dashboards keep
working; the values are read from the supervisor's plain counters at scrape
time, so requests pay nothing for them.  When prometheus-client is installed,
its process and Python collectors are appended.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..hooks.model import HOOK_TYPES

if TYPE_CHECKING:
    from ._app import Server

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if labels:
            inner = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            lines.append(f"{name}{{{inner}}} {value:g}")
        else:
            lines.append(f"{name} {value:g}")
    return lines


def render_metrics(server: Server) -> str:
    m = server.supervisor.metrics
    lines: list[str] = []
    lines += _family(
        "tusd_requests_total",
        "counter",
        "Total number of requests served by tusd per method.",
        [({"method": method}, m.requests_total.get(method, 0)) for method in _METHODS],
    )
    lines += _family(
        "tusd_errors_total",
        "counter",
        "Total number of errors per status.",
        [
            ({"status": status, "code": code}, count)
            for (status, code), count in sorted(m.errors_total.items())
        ],
    )
    lines += _family(
        "tusd_bytes_received",
        "counter",
        "Number of bytes received for uploads.",
        [({}, m.bytes_received)],
    )
    lines += _family(
        "tusd_uploads_created", "counter", "Number of created uploads.", [({}, m.uploads_created)]
    )
    lines += _family(
        "tusd_uploads_finished",
        "counter",
        "Number of finished uploads.",
        [({}, m.uploads_finished)],
    )
    lines += _family(
        "tusd_uploads_terminated",
        "counter",
        "Number of terminated uploads.",
        [({}, m.uploads_terminated)],
    )
    lines += _family(
        "tusd_connections_open",
        "gauge",
        "Current number of open connections.",
        [({}, m.connections_open)],
    )
    lines += _family(
        "tusd_hook_invocations_total",
        "counter",
        "Total number of invocations per hook type.",
        [({"hooktype": hook}, m.hook_invocations_total.get(hook, 0)) for hook in HOOK_TYPES],
    )
    lines += _family(
        "tusd_hook_errors_total",
        "counter",
        "Total number of execution errors per hook type.",
        [({"hooktype": hook}, m.hook_errors_total.get(hook, 0)) for hook in HOOK_TYPES],
    )
    lines += _family(
        "tusd_trio_uploads_expired_total",
        "counter",
        "Unfinished uploads removed by the expiry janitor.",
        [({}, m.uploads_expired)],
    )
    lines += _family(
        "tusd_trio_active_uploads",
        "gauge",
        "Requests writing upload data right now.",
        [({}, len(server.active_interrupters))],
    )
    lines += _family(
        "tusd_trio_event_subscribers",
        "gauge",
        "Current subscribers of the live event stream.",
        [({}, len(server.events.subscribers))],
    )
    lines += _family(
        "tusd_trio_event_subscribers_dropped_total",
        "counter",
        "Event-stream subscribers dropped for falling behind.",
        [({}, server.events.dropped)],
    )
    text = "\n".join(lines) + "\n"
    try:
        from prometheus_client import REGISTRY, generate_latest
    except ImportError:  # pragma: no cover - prometheus-client is optional
        return text
    return text + generate_latest(REGISTRY).decode("utf-8")


class _Histograms:
    """Latency histograms (prometheus-client), created once per process."""

    def __init__(self) -> None:
        self.request: Any = None
        self.hook: Any = None
        try:
            from prometheus_client import Histogram
        except ImportError:  # pragma: no cover - prometheus-client is optional
            return
        self.request = Histogram(
            "tusd_trio_request_duration_seconds",
            "Time from a request's head to the end of its answer, by method and status.",
            ["method", "status"],
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
                300,
            ),
        )
        self.hook = Histogram(
            "tusd_trio_hook_duration_seconds",
            "Time a hook call took, by hook type.",
            ["hooktype"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def observe_request(self, method: str, status: int, seconds: float) -> None:
        if self.request is not None:
            self.request.labels(method, str(status)).observe(seconds)

    def observe_hook(self, hook_type: str, seconds: float) -> None:
        if self.hook is not None:
            self.hook.labels(hook_type).observe(seconds)


histograms = _Histograms()
