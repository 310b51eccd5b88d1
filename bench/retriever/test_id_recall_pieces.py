"""The identification-recall bench's own pieces: pooled id-recall and the width search."""

from __future__ import annotations

import numpy as np

from bench.retriever.bench_id_recall import id_recall, smallest_width


def test_id_recall_is_pooled_over_queries_and_ignores_queries_without_targets() -> None:
    found = np.array([[1, 2, 3], [7, 8, 9], [4, 5, 6]])
    targets = [{1, 2, 10, 11}, set(), {4}]
    share, total = id_recall(found, targets)
    # 3 of 5 targets found: pooled, not the mean of per-query shares (0.5 and 1.0).
    assert total == 5 and share == 0.6
    assert id_recall(found, [set(), set(), set()]) == (1.0, 0)


def test_smallest_width_doubles_then_bisects_and_says_when_none_passes() -> None:
    tried: list[int] = []

    def passes(w: int) -> bool:
        tried.append(w)
        return w >= 37

    # Three bisection steps bring the first passing doubling (64) within an eighth of the step.
    assert smallest_width(passes, 1, 1024) == 40
    assert tried[:7] == [1, 2, 4, 8, 16, 32, 64] and tried[7:] == [48, 40, 36]
    assert smallest_width(lambda w: False, 16, 100) is None
