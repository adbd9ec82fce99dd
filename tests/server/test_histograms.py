"""The latency histograms' tallies: what they hand over is what prometheus-client's
own observe() would have counted."""

from __future__ import annotations

from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")

from tusd_trio.server._histograms import _Tally, histograms  # noqa: E402

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# On and around every bound, below the first, above the last.
AMOUNTS = [0.0, 0.0005, 0.001, 0.0010001, 0.01, 0.05, 0.1, 0.1000001, 1.0, 1.5, 400.0]


def _histogram(name: str) -> Any:
    registry = prometheus_client.CollectorRegistry()
    return prometheus_client.Histogram(name, "h", ["k"], buckets=BUCKETS, registry=registry)


def _samples(metric: Any) -> dict[tuple[str, str], float]:
    return {
        (s.name[len(family.name) :], s.labels.get("le", "")): s.value
        for family in metric.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_tally_hands_over_what_observe_would_count() -> None:
    direct, tallied = _histogram("a_direct"), _histogram("a_tallied")
    tally = _Tally(tallied.labels("x"))
    for amount in AMOUNTS[:5]:
        direct.labels("x").observe(amount)
        tally.observe(amount)
    tally.hand_over()
    # Observations after a hand-over are handed over by the next one, once.
    for amount in AMOUNTS[5:]:
        direct.labels("x").observe(amount)
        tally.observe(amount)
    tally.hand_over()
    tally.hand_over()
    expected, got = _samples(direct), _samples(tallied)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    assert got[("_count", "")] == len(AMOUNTS)


def test_collecting_a_histogram_hands_its_tallies_over() -> None:
    def count() -> float:
        for family in histograms.store.collect():
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name.endswith("_count")
                    and labels.get("store") == "tallytest"
                    and labels.get("operation") == "create"
                ):
                    return float(sample.value)
        return 0.0

    before = count()
    histograms.observe_store("tallytest", "create", 0.002)
    histograms.observe_store("tallytest", "create", 3.0)
    assert count() == before + 2
    assert count() == before + 2  # not counted again
