"""How a user's head and a session's clusters rank faces.

With f(x) = W x the head, mu+ and mu- the normalised centroids of f(positives) and
f(negatives), the score of a face x is

    s(x) = cos(f(x), mu+) - lambda * cos(f(x), mu-)

Candidates come from the retriever first. For unit-norm x and a head close to the identity
(the anchor term of SCLoss keeps it close), ||f(x)|| is nearly constant, so s(x) is, up to that
norm, the linear form

    f(x) . (mu+ - lambda mu-) = x . W^T (mu+ - lambda mu-)

and the single inner-product query q = normalize(W^T (mu+ - lambda mu-)) fetches the faces with
the highest s from any inner-product index (FAISS flat, IVF, HNSW): search stays sub-linear as
the gallery grows. The top M of that query are then rescored exactly with s(x), which corrects
for ||f(x)|| and anything the linear form misses.

The exact stage may add two nearest-neighbour terms (weights beta, eta; 0 = off):

    + beta * max_p cos(f(x), f(p)) - eta * max_n cos(f(x), f(n))

which let a face near one marked positive rank high even when the positives are spread out,
and push down faces next to a face the user rejected; and (weight gamma) the log-likelihood of
every answer so far if x were the person (answer_model.py: PicHunter's user model with a floor
for wrong answers, and the near-miss / nothing-like answers):

    + gamma * log P(answers | target = x)

A positive no other positive corroborates, six or more of whose person's faces (cosine >=
tau_same) the user called dissimilar, is contradicted (answer_model.contradicted): it gets
weight 0 in mu+ and the nearest-positive term, and the mu+ term is scaled by the best
remaining weight ("trust"), so a wrong "similar" (or a wrong seed) the user keeps rejecting
around stops steering the search, and with no positive left the negatives lead it away.

A face of the same person as a "not this person, but similar" answer loses
near_miss_penalty * sig((cos(f(x), f(l)) - tau_same) / slope): that person is ruled out, the
likeness kept (the answer is a positive above).

Options measured in bench/personalize and off by default (they did not help there): gamma > 0,
and credibility weights (answer_model.credibility) on mu+ and the nearest-positive term, with
the mu+ term scaled by the best credibility ("trust"). What does make FaIRCoP tolerate wrong
answers is in the head's update: it trains only on corroborated positives (sc_loss.py).
Without a positive there is no mu+; the round is exploratory (exploration.py, round_planner.py:
faces the negatives rule out are dropped first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facesearch_server.personalizer.answer_model import (
    NEAR_MISS,
    AnswerModel,
    contradicted,
    corroboration,
    credibility,
    log_likelihood,
)
from facesearch_server.personalizer.head import Head


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class Clusters:
    """Centroids of the session's labelled faces in head space (unit vectors or None)."""

    mu_pos: np.ndarray | None
    mu_neg: np.ndarray | None
    # Normalised projections of the labelled faces, for the nearest-neighbour terms.
    z_pos: np.ndarray | None = None
    z_neg: np.ndarray | None = None
    # Credibility of each positive (answer_model.credibility), 1 = fully trusted.
    w_pos: np.ndarray | None = None
    # Every labelled face (positives then negatives) with its answer code, for the likelihood.
    z_labelled: np.ndarray | None = None
    codes: np.ndarray | None = None
    # Weight of the positive centroid: the best positive's credibility (1 = as published;
    # towards 0 when every positive is contradicted, e.g. a seed the user rejects around).
    trust: float = 1.0
    # Training weight of each positive (answer_model.corroboration); None = every one weighs 1.
    train_weights: np.ndarray | None = None
    # The labelled faces' embedding vectors (same order as z_labelled), for scores in another
    # head's space (target_posterior.py).
    x_labelled: np.ndarray | None = None


@dataclass(frozen=True)
class ScoringParams:
    # Weight of the negative cluster.
    # lambda; beta and eta of the exact stage (chosen by target testing, bench/personalize).
    negative_weight: float = 0.25
    nearest_positive_weight: float = 0.5
    nearest_negative_weight: float = 0.3
    # gamma: weight of the answer log-likelihood (answer_model.py), and its model.
    likelihood_weight: float = 0.0
    answers: AnswerModel = field(default_factory=AnswerModel)
    # Temperature of the positives' credibility weights; 0 = every positive weighs 1.
    credibility_temperature: float = 0.0
    # Train the head only on positives another positive corroborates (answer_model.py).
    corroborated_training: bool = True
    # Rejected faces of a lone positive's person that make it contradicted (0 = never).
    contradicting_rejections: int = 6
    # Score taken off a face of the same person as a "not this person, but similar" answer.
    near_miss_penalty: float = 1.0


def clusters(
    head: Head,
    positives: np.ndarray,
    negatives: np.ndarray,
    pos_codes: np.ndarray | None = None,
    neg_codes: np.ndarray | None = None,
    params: ScoringParams = ScoringParams(),
) -> Clusters:
    """The session's clusters in head space. Codes default to SIMILAR / DISSIMILAR."""
    zp = _unit_rows(head.apply(positives)) if len(positives) else None
    zn = _unit_rows(head.apply(negatives)) if len(negatives) else None
    pc = np.ones(len(positives), int) if pos_codes is None else np.asarray(pos_codes)
    nc = -np.ones(len(negatives), int) if neg_codes is None else np.asarray(neg_codes)
    parts = [z for z in (zp, zn) if z is not None]
    z_lab = np.concatenate(parts) if parts else None
    raw = [np.asarray(x, np.float32) for x in (positives, negatives) if len(x)]
    x_lab = np.concatenate(raw) if raw else None
    codes = np.concatenate([pc, nc]).astype(int)
    w_pos = None
    if zp is not None and z_lab is not None:
        w_pos = credibility(z_lab, codes, params.answers, params.credibility_temperature)
        w_pos = w_pos[: len(zp)]
    corroborated = (
        corroboration(zp, params.answers.threshold)
        if zp is not None and params.corroborated_training
        else None
    )
    if w_pos is not None and zn is not None and corroborated is not None:
        out = contradicted(
            zp,
            zn,
            corroborated,
            params.answers.same_person_threshold,
            params.contradicting_rejections,
        )
        if out.any():
            w_pos = np.where(out, 0.0, w_pos)
    mu_pos = None
    if zp is not None and w_pos is not None:
        mu_pos = _unit(((w_pos if w_pos.any() else np.ones(len(zp)))[:, None] * zp).sum(0))
    mu_neg = _unit(zn.mean(0)) if zn is not None else None
    trust = float(w_pos.max()) if w_pos is not None else 1.0
    return Clusters(mu_pos, mu_neg, zp, zn, w_pos, z_lab, codes, trust, corroborated, x_lab)


def answer_log_likelihood(
    head: Head, vectors: np.ndarray, c: Clusters, params: ScoringParams = ScoringParams()
) -> np.ndarray:
    """log P(answers | target = x) per face (0 without answers): ranks exploratory faces."""
    if c.z_labelled is None or c.codes is None or not len(vectors):
        return np.zeros(len(vectors), np.float64)
    z = _unit_rows(head.apply(vectors))
    return log_likelihood(z, c.z_labelled, c.codes, params.answers)


def retriever_query(head: Head, c: Clusters, params: ScoringParams = ScoringParams()) -> np.ndarray:
    """q = normalize(W^T (mu+ - lambda mu-)), the one inner-product query for the index."""
    if c.mu_pos is None:
        raise ValueError("no positive cluster: the round is exploratory")
    target = c.trust * c.mu_pos
    if c.mu_neg is not None:
        target -= params.negative_weight * c.mu_neg
    return _unit(head.weight.T @ target).astype(np.float32)


def rescore(
    head: Head, vectors: np.ndarray, c: Clusters, params: ScoringParams = ScoringParams()
) -> np.ndarray:
    """Exact s(x) for a batch of face vectors (n, d) -> (n,)."""
    if c.mu_pos is None:
        raise ValueError("no positive cluster: the round is exploratory")
    z = _unit_rows(head.apply(vectors))
    s = c.trust * (z @ c.mu_pos)
    if c.mu_neg is not None:
        s = s - params.negative_weight * (z @ c.mu_neg)
    if params.nearest_positive_weight and c.z_pos is not None:
        near = z @ c.z_pos.T
        if c.w_pos is not None:
            near = near * c.w_pos[None, :]
        s = s + params.nearest_positive_weight * near.max(1)
    if params.nearest_negative_weight and c.z_neg is not None:
        s = s - params.nearest_negative_weight * (z @ c.z_neg.T).max(1)
    if c.z_labelled is not None and c.codes is not None and (c.codes == NEAR_MISS).any():
        # "Not this person, but similar": that face's person is ruled out, its likeness kept.
        near = (z @ c.z_labelled[c.codes == NEAR_MISS].T).max(1)
        a = params.answers
        s = s - params.near_miss_penalty / (
            1.0 + np.exp(-np.clip((near - a.same_person_threshold) / a.slope, -60, 60))
        )
    if params.likelihood_weight and c.z_labelled is not None and c.codes is not None:
        ll = log_likelihood(z, c.z_labelled, c.codes, params.answers)
        s = s + params.likelihood_weight * ll
    return s.astype(np.float32)
