"""The retriever benchmark's own pieces: the closed loop's warm-up and sample floor, recall."""

from __future__ import annotations

import numpy as np

from bench.retriever.bench_retriever import K, chunked_ms, measure, recall_at_k, starts


def test_measure_warms_up_and_times_at_least_min_samples() -> None:
    calls: list[int] = []
    r = measure(calls.append, n_queries=100, batch=10, clients=2, seconds=0.0, min_samples=120)
    lat = r["latency"]
    assert isinstance(lat, dict)
    # 3 untimed warm-up calls, then at least 120 timed ones even though no time was given.
    assert lat["n"] >= 120 and len(calls) == lat["n"] + 3
    assert lat["p99_ms"] is not None and "n=" in str(r["text"])
    assert all(c in starts(100, 10) for c in calls)


def test_measure_reports_max_below_100_samples() -> None:
    r = measure(lambda s: None, n_queries=10, batch=1, clients=1, seconds=0.0, min_samples=5)
    lat = r["latency"]
    assert isinstance(lat, dict)
    assert lat["n"] >= 5
    if lat["n"] < 100:
        assert lat["p99_ms"] is None and "too few for p99" in str(r["text"])


def test_recall_and_chunked_search() -> None:
    truth = np.arange(2 * K).reshape(2, K)
    found = truth.copy()
    found[1, :5] = -1
    assert recall_at_k(found, truth) == 0.75
    q = np.zeros((600, 4), np.float32)
    ids, ms = chunked_ms(lambda qq: np.zeros((len(qq), K), np.int64), q)
    assert ids.shape == (600, K) and ms >= 0
