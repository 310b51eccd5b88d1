"""The open-set bench's interval over non-mated persons, on counts whose answer is known."""

from __future__ import annotations

import numpy as np

from bench.identify.bench_open_set import clopper_pearson, cluster_bootstrap_upper


def test_one_person_failing_together_widens_the_interval() -> None:
    # 200 persons x 16 searches, 32 false matches: all from two persons, or spread one per
    # person. The binomial bound over 3,200 searches is the same for both.
    n = np.full(200, 16)
    clumped = np.zeros(200, np.int64)
    clumped[:2] = 16
    spread = np.zeros(200, np.int64)
    spread[:32] = 1
    binomial = clopper_pearson(32, 3200)[1]
    assert cluster_bootstrap_upper([(spread, n)]) < binomial * 1.1
    assert cluster_bootstrap_upper([(clumped, n)]) > 1.5 * binomial


def test_no_false_matches_bound_at_zero() -> None:
    assert cluster_bootstrap_upper([(np.zeros(50, np.int64), np.full(50, 3))]) == 0.0
