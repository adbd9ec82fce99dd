"""Latency histograms (prometheus-client), created once per process, and the tallies
that count their observations on the event loop (see :class:`_Tally`)."""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any


class _Histograms:
    """Latency histograms (prometheus-client), created once per process."""

    def __init__(self) -> None:
        self.request: Any = None
        self.hook: Any = None
        self.lock_wait: Any = None
        self.store: Any = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._tallies: dict[int, list[_Tally]] = {}
        # Per histogram, its tallies by the caller's own values (the status as an int):
        # one flat lookup per observation, the label strings made on a miss only.
        self._by_request: dict[tuple[str, int], Any] = {}
        self._by_hook: dict[str, Any] = {}
        self._by_lock_wait: dict[tuple[str, str], Any] = {}
        self._by_store: dict[tuple[str, str], Any] = {}
        self._hand_over_lock = threading.Lock()
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
        self.lock_wait = Histogram(
            "tusd_trio_lock_wait_seconds",
            "Time a request waited for an upload's lock, by locker and outcome.",
            ["locker", "outcome"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 20, 60),
        )
        self.store = Histogram(
            "tusd_trio_store_operation_seconds",
            "Time the store took, by operation (create, commit, finish, terminate).",
            ["store", "operation"],
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
        )
        for metric in (self.request, self.hook, self.lock_wait, self.store):
            self._collecting(metric)

    def _child(self, metric: Any, *labels: str) -> Any:
        """The tally for these label values.  prometheus-client's ``labels()`` takes
        a lock and checks the values on every call, and its ``observe()`` takes two
        (12.8k instructions in all, five times per creation); the label sets are few
        and never removed, so each gets a :class:`_Tally` here, handed over to its
        prometheus-client child whenever the histogram is collected."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            prom_child = metric.labels(*labels)
            if hasattr(prom_child, "_buckets") and hasattr(prom_child, "_sum"):
                child = _Tally(prom_child)
                self._tallies.setdefault(id(metric), []).append(child)
            else:  # pragma: no cover - a prometheus-client without those: observe() it
                child = prom_child
            self._children[key] = child
        return child

    def _collecting(self, metric: Any) -> None:
        """Make ``metric.collect()`` hand this process's tallies over first, whoever
        collects it (our /metrics, the -workers snapshots, the host application's
        registry in embedded use)."""
        collect = metric.collect
        tallies = self._tallies.setdefault(id(metric), [])
        lock = self._hand_over_lock

        def collect_tallied() -> Any:
            with lock:  # a collection in another thread, at the same time as ours
                for tally in tallies:
                    tally.hand_over()
            return collect()

        metric.collect = collect_tallied

    def observe_lock_wait(self, locker: str, outcome: str, seconds: float) -> None:
        key = (locker, outcome)
        tally = self._by_lock_wait.get(key)
        if tally is None:
            if self.lock_wait is None:
                return
            tally = self._by_lock_wait[key] = self._child(self.lock_wait, locker, outcome)
        tally.observe(seconds)

    def observe_store(self, store: str, operation: str, seconds: float) -> None:
        key = (store, operation)
        tally = self._by_store.get(key)
        if tally is None:
            if self.store is None:
                return
            tally = self._by_store[key] = self._child(self.store, store, operation)
        tally.observe(seconds)

    def observe_request(self, method: str, status: int, seconds: float) -> None:
        key = (method, status)
        tally = self._by_request.get(key)
        if tally is None:
            if self.request is None:
                return
            tally = self._by_request[key] = self._child(self.request, method, str(status))
        tally.observe(seconds)

    def observe_hook(self, hook_type: str, seconds: float) -> None:
        tally = self._by_hook.get(hook_type)
        if tally is None:
            if self.hook is None:
                return
            tally = self._by_hook[hook_type] = self._child(self.hook, hook_type)
        tally.observe(seconds)


class _Tally:
    """One label set's observations, counted without locks on the event loop (where
    every observation is made) and handed to its prometheus-client child when the
    histogram is collected.  The counts only grow and ``hand_over`` passes on what
    came since the last hand-over, so an observation made while another thread
    collects is handed over by the next collection, never lost nor counted twice."""

    __slots__ = ("_bounds", "_buckets", "_counts", "_handed", "_handed_sum", "_sum", "_total")

    def __init__(self, child: Any) -> None:
        self._buckets: list[Any] = child._buckets
        self._sum: Any = child._sum
        #: The upper bounds, +Inf last: an observation goes to the first bound it does
        #: not exceed, as prometheus-client's observe() places it.
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._handed = [0] * len(self._bounds)
        self._total = 0.0
        self._handed_sum = 0.0

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._total += amount

    def hand_over(self) -> None:
        handed = self._handed
        for i, count in enumerate(self._counts):
            if count != handed[i]:
                self._buckets[i].inc(count - handed[i])
                handed[i] = count
        total = self._total
        if total != self._handed_sum:
            self._sum.inc(total - self._handed_sum)
            self._handed_sum = total


histograms = _Histograms()
