"""Latency summaries shared by the benches: warm-up before timing, percentiles with their n.

A percentile is only printed when the sample count supports it: the q-th percentile of fewer
than 1 / (1 - q/100) samples is just the largest one (p99 of 3 requests is their max), so p99
needs at least 100 samples, p95 20, p90 10. Below that a summary reports the max and says n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

P99_MIN_SAMPLES = 100


def min_samples(q: float) -> int:
    """Samples needed before the q-th percentile differs from the max (p99: 100, p50: 2)."""
    if not 0 < q < 100:
        raise ValueError(f"percentile {q} is outside (0, 100)")
    # Rounded first so that float error in 1 / (1 - 0.99) does not turn 100 into 101.
    return max(1, math.ceil(round(1.0 / (1.0 - q / 100.0), 9)))


def percentile_ms(latencies_s: Sequence[float], q: float) -> float:
    """The q-th percentile in ms; ValueError when there are too few samples to mean anything."""
    need = min_samples(q)
    if len(latencies_s) < need:
        raise ValueError(f"p{q:g} needs >= {need} samples, got {len(latencies_s)}")
    return 1000.0 * float(np.percentile(np.asarray(latencies_s, dtype=np.float64), q))


def warm_up(fn: Callable[[], object], calls: int = 3) -> None:
    """Untimed calls first: lazy imports, first allocations, connection set-up, thread pools
    and caches would otherwise land in the first timed samples and in the tail."""
    for _ in range(calls):
        fn()


@dataclass(frozen=True)
class LatencySummary:
    """One latency distribution, in ms. ``p99_ms`` is None when n < 100."""

    n: int
    mean_ms: float
    p50_ms: float
    p99_ms: float | None
    max_ms: float

    @property
    def tail_label(self) -> str:
        return "p99" if self.p99_ms is not None else "max"

    @property
    def tail_ms(self) -> float:
        """p99 when n supports it, else the max (never a p99 computed from too few samples)."""
        return self.p99_ms if self.p99_ms is not None else self.max_ms

    def tail_cell(self, fmt: str = ".1f") -> str:
        """A table cell for a "p99 ms" column: the figure, or "max X (n=N)" when n < 100."""
        if self.p99_ms is not None:
            return format(self.p99_ms, fmt)
        return f"max {format(self.max_ms, fmt)} (n={self.n})"

    def text(self, fmt: str = ".1f") -> str:
        """``p50 X / p99 Y ms (n=N)``, or ``p50 X / max Y ms (n=N, too few for p99)``."""
        tail = f"{self.tail_label} {format(self.tail_ms, fmt)}"
        note = "" if self.p99_ms is not None else ", too few for p99"
        return f"p50 {format(self.p50_ms, fmt)} / {tail} ms (n={self.n}{note})"

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def summarize(latencies_s: Sequence[float]) -> LatencySummary:
    """Summary of latencies given in seconds; at least one sample."""
    if len(latencies_s) == 0:
        raise ValueError("no samples")
    arr = 1000.0 * np.asarray(latencies_s, dtype=np.float64)
    return LatencySummary(
        n=len(arr),
        mean_ms=float(arr.mean()),
        p50_ms=float(np.percentile(arr, 50)),
        p99_ms=float(np.percentile(arr, 99)) if len(arr) >= P99_MIN_SAMPLES else None,
        max_ms=float(arr.max()),
    )
