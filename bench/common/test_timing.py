"""The shared latency summary: percentiles only where the sample count supports them."""

from __future__ import annotations

import pytest

from bench.common.timing import (
    P99_MIN_SAMPLES,
    min_samples,
    percentile_ms,
    summarize,
    warm_up,
)


def test_min_samples_per_percentile() -> None:
    assert min_samples(99) == P99_MIN_SAMPLES == 100
    assert min_samples(95) == 20
    assert min_samples(90) == 10
    assert min_samples(50) == 2
    with pytest.raises(ValueError):
        min_samples(100)


def test_percentile_refuses_too_few_samples() -> None:
    with pytest.raises(ValueError, match="p99 needs >= 100 samples, got 3"):
        percentile_ms([0.01, 0.02, 0.03], 99)
    assert percentile_ms([0.001 * i for i in range(1, 101)], 50) == pytest.approx(50.5)


def test_summary_reports_max_and_n_under_100_samples() -> None:
    s = summarize([0.010, 0.020, 0.030])
    assert s.n == 3 and s.p99_ms is None
    assert s.tail_label == "max" and s.tail_ms == pytest.approx(30.0)
    assert s.p50_ms == pytest.approx(20.0)
    assert s.text() == "p50 20.0 / max 30.0 ms (n=3, too few for p99)"
    assert s.tail_cell() == "max 30.0 (n=3)"


def test_summary_reports_p99_from_100_samples() -> None:
    s = summarize([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert s.n == 100 and s.p99_ms == pytest.approx(99.01)
    assert s.max_ms == pytest.approx(100.0) and s.mean_ms == pytest.approx(50.5)
    assert s.text() == "p50 50.5 / p99 99.0 ms (n=100)"
    assert s.tail_cell() == "99.0"
    assert s.as_dict()["n"] == 100
    with pytest.raises(ValueError):
        summarize([])


def test_warm_up_calls_untimed() -> None:
    calls: list[int] = []
    warm_up(lambda: calls.append(1), calls=4)
    assert len(calls) == 4
