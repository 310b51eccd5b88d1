"""The recall metrics of bench/idclip/recall.py on cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from bench.idclip.recall import map_at, recall_at


def test_identity_recall_divides_by_the_relevant_images_within_k() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.7], [0.1, 0.2, 0.3, 0.9]])
    relevant = np.array([[True, False, False, True], [True, True, True, False]])
    # Query 0: top-2 holds 1 of its 2 relevant images; query 1: top-2 holds 1 of 3.
    assert recall_at(scores, relevant, 2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert recall_at(scores, relevant, 1) == pytest.approx((1 + 0) / 2)
    assert recall_at(scores, relevant, 4) == pytest.approx((2 / 2 + 3 / 3) / 2)


def test_map_at_k_is_one_for_a_perfect_ranking_and_less_otherwise() -> None:
    relevant = np.array([[True, True, False, False]])
    assert map_at(np.array([[0.9, 0.8, 0.2, 0.1]]), relevant, 4) == pytest.approx(1.0)
    # Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert map_at(np.array([[0.9, 0.2, 0.8, 0.1]]), relevant, 4) == pytest.approx((1 + 2 / 3) / 2)
