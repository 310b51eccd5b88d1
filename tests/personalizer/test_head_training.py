"""The head, SCLoss and one round of online training (torch, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.online_training import TrainingParams, train_round
from facesearch_server.personalizer.sc_loss import SCLossParams, sc_loss


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clusters(rng: np.random.Generator, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives that overlap in the plain embedding: they differ only along a
    few directions, which the head has to stretch."""
    base = rng.standard_normal(d)
    shift = np.zeros(d)
    shift[:3] = 0.6
    pos = _unit(base + shift + 0.8 * rng.standard_normal((12, d)))
    neg = _unit(base - shift + 0.8 * rng.standard_normal((20, d)))
    return pos, neg


def test_identity_head_is_plain_embedding_and_round_trips() -> None:
    h = Head.identity("sface", 16)
    x = _unit(np.random.default_rng(0).standard_normal((5, 16)))
    np.testing.assert_allclose(h.apply(x), x, atol=1e-6)
    assert h.drift() == 0.0
    h.weight[0, 1] = 0.25
    back = Head.weight_from_bytes(h.weight_bytes(), 16)
    np.testing.assert_array_equal(back, h.weight)
    with pytest.raises(ValueError):
        Head.weight_from_bytes(h.weight_bytes()[:-4], 16)
    bad = h.weight.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        Head.weight_from_bytes(Head("m", bad).weight_bytes(), 16)


def test_sc_loss_is_lower_when_clusters_are_separated() -> None:
    rng = np.random.default_rng(1)
    pos, neg = _clusters(rng)
    w = torch.eye(32)
    mixed = sc_loss(w, torch.from_numpy(pos), torch.from_numpy(neg))
    # The same negatives mirrored far from the positives: loss must drop.
    far = sc_loss(w, torch.from_numpy(pos), torch.from_numpy(-pos[:8]))
    assert far < mixed
    # Only the anchor is left without positives: zero at the identity, positive elsewhere.
    assert sc_loss(w, torch.zeros(0, 32), torch.from_numpy(neg)) == 0
    assert sc_loss(w * 1.1, torch.zeros(0, 32), torch.from_numpy(neg)) > 0


def test_training_separates_the_clusters_and_stays_near_identity() -> None:
    rng = np.random.default_rng(2)
    pos, neg = _clusters(rng)
    w0 = np.eye(32, dtype=np.float32)
    params = TrainingParams(steps=60, learning_rate=0.02, time_budget_s=5.0)

    def gap(w: np.ndarray) -> float:
        zp, zn = _unit(pos @ w.T), _unit(neg @ w.T)
        mu = _unit(zp.mean(0))
        return float((zp @ mu).mean() - (zn @ mu).mean())

    w1, steps = train_round(w0, pos, neg, params)
    assert steps == 60
    assert gap(w1) > gap(w0) + 0.05
    drift = float(np.linalg.norm(w1 - w0))
    assert 0 < drift < 3.0  # the anchor keeps W close to the identity
    # A stronger anchor moves it less.
    strong = TrainingParams(
        steps=60, learning_rate=0.02, time_budget_s=5.0, loss=SCLossParams(anchor=5.0)
    )
    w2, _ = train_round(w0, pos, neg, strong)
    assert np.linalg.norm(w2 - w0) < drift


def test_training_is_bounded_and_needs_a_positive() -> None:
    rng = np.random.default_rng(3)
    pos, neg = _clusters(rng)
    w0 = np.eye(32, dtype=np.float32)
    same, steps = train_round(w0, pos[:0], neg, TrainingParams())
    assert steps == 0 and same is w0
    _, steps = train_round(w0, pos, neg, TrainingParams(steps=10_000, time_budget_s=0.02))
    assert 1 <= steps < 10_000  # the time budget stopped it
