"""The benchmark's own parts: synthetic padding that matches the real statistics, the simulated
user, and a small target test where FaIRCoP must beat random display."""

from __future__ import annotations

import numpy as np
import pytest

from bench.common.gallery import Gallery, embedding_statistics, pad_synthetic
from bench.personalize.policies import POLICIES, first_round
from bench.personalize.simulator import GroundTruth, SimulatedUser
from bench.personalize.target_testing import parse_condition, run_session
from facesearch_server.personalizer.round_planner import RoundParams


def _gallery(n_id: int = 120, per: int = 5, d: int = 32, seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_id, d)) + 2.0  # a cone, like real embeddings
    labels = np.repeat(np.arange(n_id), per)
    v = centres[labels] + 0.6 * rng.standard_normal((len(labels), d))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    n = len(v)
    return Gallery(
        vectors=v,
        ids=[f"r{i}" for i in range(n)],
        identity=np.array([f"x:{i}" for i in labels], dtype=object),
        folder=np.full(n, "x", dtype=object),
        attributes=np.zeros((n, 40), np.int8),
        attribute_names=[],
        degraded=np.zeros(n, bool),
        source_index=np.arange(n),
        aligned=np.ones(n, bool),
        synthetic=np.zeros(n, bool),
    )


def test_padding_matches_the_real_statistics() -> None:
    g = _gallery()
    padded = pad_synthetic(g, 5000, seed=1)
    assert len(padded) == 5000 and padded.synthetic.sum() == 5000 - len(g)
    syn = padded.vectors[padded.synthetic]
    np.testing.assert_allclose(np.linalg.norm(syn, axis=1), 1.0, atol=1e-5)
    assert all(str(x).startswith("syn:") for x in padded.identity[padded.synthetic])
    # Mean direction and the spread of pairwise cosines follow the real faces.
    real_cos = g.vectors @ g.vectors.T
    syn_cos = syn[:600] @ syn[:600].T
    assert abs(real_cos.mean() - syn_cos.mean()) < 0.05
    real_mean = g.vectors.mean(0) / np.linalg.norm(g.vectors.mean(0))
    syn_mean = syn.mean(0) / np.linalg.norm(syn.mean(0))
    assert real_mean @ syn_mean > 0.98
    # Synthetic identities are clusters as tight as the real ones: the gap between same-person
    # and other pairs is about the real gap.

    def gap(cos: np.ndarray, codes: np.ndarray) -> float:
        same = codes[:, None] == codes[None, :]
        other = ~same
        np.fill_diagonal(same, False)
        return float(cos[same].mean() - cos[other].mean())

    real_gap = gap(real_cos, g.identity_codes())
    syn_gap = gap(syn_cos, padded.identity_codes()[padded.synthetic][:600])
    assert real_gap > 0.1 and abs(syn_gap - real_gap) < 0.3 * real_gap, (real_gap, syn_gap)
    _, cov_b, _, sizes = embedding_statistics(g)
    assert cov_b.shape == (32, 32) and (sizes == 5).all()


def test_simulated_user_and_a_small_target_test() -> None:
    g = _gallery()
    v, codes = g.vectors, g.identity_codes()
    gt = GroundTruth(v, codes, g.attributes, "embedding", similar_fraction=0.03)
    sim = gt.similar_mask(7, np.random.default_rng(0))
    assert sim[7] and sim[codes == codes[7]].all() and sim.mean() < 0.06
    flip = SimulatedUser(7, sim, 1.0, np.random.default_rng(0))
    # Answer codes: every answer flipped, a positive becomes -1, a negative 1.
    assert flip.answer([7, 500]) == [-1 if sim[7] else 1, -1 if sim[500] else 1]
    # The richer answers of a user who recognises the person.
    rich_gt = GroundTruth(v, codes, g.attributes, "identity_rich", similar_fraction=0.03)
    near, far = rich_gt.rich_masks(7)
    rich = SimulatedUser(7, rich_gt.similar_mask(7, None), 0.0, None, (near, far))
    other = int(np.flatnonzero(near & (codes != codes[7]))[0])
    unlike = int(np.flatnonzero(far)[0])
    assert rich.answer([7, other, unlike]) == [1, 2, -2]
    rounds = {"faircop": [], "random": []}
    for t in range(12):
        target = int(np.random.default_rng(t).integers(len(v)))
        similar = gt.similar_mask(target, np.random.default_rng(t))
        first = first_round(v, 6, np.random.default_rng((t, 1)), RoundParams())
        for name in rounds:
            pol = POLICIES[name](v, np.random.default_rng((t, 3)), first)
            user = SimulatedUser(target, similar, 0.0, np.random.default_rng((t, 2)))
            rounds[name].append(run_session(pol, user, 6, 40))
    assert np.mean(rounds["faircop"]) < 0.6 * np.mean(rounds["random"]), rounds


def test_in_process_rounds_are_timed_per_round() -> None:
    import faiss

    from bench.personalize.round_latency import time_rounds, warm_up_round

    v = _gallery(n_id=60, per=5).vectors
    index = faiss.IndexFlatIP(v.shape[1])
    index.add(v)
    warm_up_round(v, index)
    t = time_rounds(v, index, rounds=6, session_rounds=3, k=4)
    assert len(t.round) == len(t.train) == len(t.faiss) == 6
    assert all(r >= f for r, f in zip(t.round, t.faiss, strict=True))


def test_conditions_parse_truth_and_flip() -> None:
    assert parse_condition("embedding") == ("embedding", 0.0)
    assert parse_condition("embedding:0.2") == ("embedding", 0.2)
    with pytest.raises(ValueError):
        parse_condition("likeness:0.1")


def test_head_space_scale_and_answer_information() -> None:
    from bench.personalize.carry_over import information_bound, session_answers
    from bench.personalize.policies import FaircopPolicy, gallery_scale, head_space_scale
    from bench.personalize.simulator import hidden_metric
    from facesearch_server.personalizer.head import Head

    g = _gallery()
    v = g.vectors
    d = v.shape[1]
    # The identity head's cosines are the embedding's: the same scale.
    np.testing.assert_allclose(
        head_space_scale(v, Head.identity("t", d)), gallery_scale(v), atol=1e-5
    )
    # A strong rank-4 metric spreads the cosines: its p98 sits elsewhere, and the policy
    # built with head_scale reads answers on it.
    w = hidden_metric(np.random.default_rng(3), d, rank=4, strength=3.0)
    head = Head("t", (w / np.linalg.norm(w, 2)).astype(np.float32))
    scaled = head_space_scale(v, head)
    assert abs(scaled[1] - gallery_scale(v)[1]) > 0.01
    rng = np.random.default_rng(0)
    p = RoundParams()
    pol = FaircopPolicy(v, rng, first_round(v, 8, rng, p), head=head, head_scale=True)
    assert pol.scale == scaled
    # What sessions' answers can teach beyond cos(x, target): some bits, and fewer the better
    # the cosine predicts the answers (a user whose "similar" is a cosine threshold).
    gt = GroundTruth(v, g.identity_codes(), g.attributes, "embedding")
    sessions = []
    for target in (7, 100, 300):
        user = SimulatedUser(target, gt.similar_mask(target, rng), 0.0, rng)
        fresh = FaircopPolicy(v, np.random.default_rng(target), first_round(v, 8, rng, p))
        run_session(fresh, user, 8, 6)
        sessions.append(session_answers(fresh, target, user))
    bits, against = information_bound(sessions)
    answers = np.mean([len(c) for c, _ in sessions])
    assert 0.0 < bits < answers and 0.0 <= against < answers
    # Answers drawn at random, whatever the cosine, hold about a bit each.
    noise = [(c, np.random.default_rng(9).random(len(c)) < 0.5) for c, _ in sessions]
    noisy_bits, _ = information_bound(noise)
    assert noisy_bits > 0.8 * answers > bits


def test_lasting_estimators_score_against_the_hidden_notion() -> None:
    import argparse

    from bench.personalize.lasting_estimators import run_rank

    args = argparse.Namespace(users=2, sessions=2, k=8, max_rounds=6)
    out = run_rank(2, _gallery(), args)
    assert out["chance overlap"] == [2 / 32] * 2
    for name in ("score overlap", "kissme overlap", "score recovery", "kissme recovery"):
        assert len(out[name]) == 2 and all(0.0 <= x <= 1.0 for x in out[name]), name
    assert 0.0 < out["identity recovery"][0] <= 1.0
