"""The lasting head's update from a session's relative answers (consolidation.py) and how a
head is described (head.py), in process: torch on CPU, no service."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesearch_server.personalizer.consolidation import (
    ConsolidationParams,
    consolidate,
    relative_answers,
    relative_loss,
)
from facesearch_server.personalizer.head import Head

D = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _metric(rng: np.random.Generator, rank: int = 3, strength: float = 4.0) -> np.ndarray:
    """A hidden notion of likeness: a few directions weigh far more than the embedding says."""
    u, _ = np.linalg.qr(rng.standard_normal((D, rank)))
    return (np.eye(D) + strength * u @ u.T).astype(np.float32)


def _session(
    rng: np.random.Generator, metric: np.ndarray, n: int = 400, top: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A target, the faces a user with ``metric`` calls like it (top ``top`` by their own
    cosine) and a sample of the rest."""
    faces = _unit(rng.standard_normal((n, D)))
    target = faces[0]
    z = _unit(faces @ metric.T)
    sims = z @ z[0]
    like = sims >= np.quantile(sims, 1 - top)
    like[0] = False
    return target, faces[like], faces[~like][1:120]


def _agreement(w: np.ndarray, metric: np.ndarray, rng: np.random.Generator) -> float:
    """Rank correlation of pair likeness under the head and under the hidden metric."""
    x = _unit(rng.standard_normal((200, D)))
    zw, zm = _unit(x @ w.T), _unit(x @ metric.T)
    iu = np.triu_indices(len(x), 1)
    a, b = (zw @ zw.T)[iu], (zm @ zm.T)[iu]
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_answers_the_embedding_already_orders_leave_the_identity() -> None:
    """A user whose notion of likeness is the embedding's: every answer is ordered right by a
    margin, so the update does not move the head (the carried head does no harm)."""
    rng = np.random.default_rng(0)
    target, pos, neg = _session(rng, np.eye(D, dtype=np.float32))
    params = ConsolidationParams()
    answers = relative_answers(pos, neg, target, params)
    assert answers.usable and len(answers.anchors) == 1
    w, steps = consolidate(np.eye(D, dtype=np.float32), answers, params)
    assert 1 <= steps <= params.steps
    assert Head("m", w).distance_from_identity() < 0.01


def test_answers_of_another_notion_move_the_head_towards_it() -> None:
    rng = np.random.default_rng(1)
    metric = _metric(rng)
    params = ConsolidationParams()
    w = np.eye(D, dtype=np.float32)
    before = _agreement(w, metric, np.random.default_rng(9))
    losses = []
    for _ in range(6):  # six sessions of the same user, a different target each
        target, pos, neg = _session(rng, metric)
        answers = relative_answers(pos, neg, target, params)
        losses.append(float(relative_loss(torch.from_numpy(w), answers, params)))
        w, _ = consolidate(w, answers, params)
    after = _agreement(w, metric, np.random.default_rng(9))
    assert after > before + 0.05, (before, after)
    # Each session a small step: the head stays near the identity, the pull holds it there.
    assert 0.01 < Head("m", w).distance_from_identity() < 0.5


def test_a_lone_positive_teaches_nothing_and_no_negatives_nothing() -> None:
    rng = np.random.default_rng(2)
    faces = _unit(rng.standard_normal((40, D)))
    params = ConsolidationParams()
    # Two positives far apart: neither corroborates the other (a wrong "similar" looks so).
    far = _unit(np.stack([faces[0], -faces[0] + 0.1 * faces[1]]))
    answers = relative_answers(far, faces[2:], None, params)
    assert not answers.usable and len(answers.positives) == 0
    eye = np.eye(D, dtype=np.float32)
    assert consolidate(eye, answers, params) == (eye, 0)
    near = _unit(np.stack([faces[0], faces[0] + 0.05 * faces[1], faces[0] + 0.05 * faces[2]]))
    assert not relative_answers(near, np.zeros((0, D)), None, params).usable
    # Without FOUND each corroborated positive is an anchor for the others, never for itself.
    answers = relative_answers(near, faces[3:], None, params)
    assert answers.usable and answers.same.sum() == len(answers.anchors) == 3


def test_a_head_is_described_by_distance_and_cosine_change() -> None:
    eye = Head.identity("m", D)
    assert eye.distance_from_identity() == 0.0
    assert eye.probe_cosine_change() == pytest.approx(0.0, abs=1e-9)
    # Scaling every face changes no likeness: far from the identity, no cosine change.
    scaled = Head("m", 2.0 * np.eye(D, dtype=np.float32))
    assert scaled.distance_from_identity() == pytest.approx(1.0)
    assert scaled.probe_cosine_change() == pytest.approx(0.0, abs=1e-9)
    warped = Head("m", _metric(np.random.default_rng(3)))
    assert warped.probe_cosine_change() > 0.05
    assert warped.probe_cosine_change() == Head("m", warped.weight).probe_cosine_change()
