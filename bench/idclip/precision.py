"""Precision@k of ranked photos against known answers, and bootstrap intervals over queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def distinct(media_ids: Iterable[str]) -> list[str]:
    """Photos in hit order, each once: several faces of one photo are one answer."""
    return list(dict.fromkeys(media_ids))


def precision_at(ranked: Sequence[str], relevant: frozenset[str] | set[str], k: int) -> float:
    """Relevant photos among the first ``k`` of ``ranked`` (distinct photos), over ``k``: a
    list shorter than ``k`` counts its missing places as wrong."""
    return sum(1 for m in distinct(ranked)[:k] if m in relevant) / k


def ceiling_at(relevant: frozenset[str] | set[str], k: int) -> float:
    """The best precision@k a query can reach: min(k, |relevant|) / k."""
    return min(k, len(relevant)) / k


def bootstrap_ci(
    values: np.ndarray, n: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (one per query), resampling queries."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(n, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def grouped_intervals(values: np.ndarray, groups: np.ndarray) -> tuple[tuple[float, float], ...]:
    """95 % bootstrap intervals of the mean over queries, then over ``groups`` (queries that
    share what makes them alike: a person, an answer image; the mean of group means, which is
    the mean when groups are of equal size)."""
    by_group = np.array([values[groups == g].mean() for g in np.unique(groups)])
    return bootstrap_ci(values), bootstrap_ci(by_group)
