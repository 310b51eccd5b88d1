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
and push down faces next to a face the user rejected; and, optionally (weight gamma, 0 = off),
a soft answer likelihood in the manner of PicHunter's user model,

    + gamma * ( sum_p log sig((cos(f(x), f(p)) - tau) / 0.05)
              + sum_n log sig(-(cos(f(x), f(n)) - tau) / 0.05) )

meant to tolerate wrong answers better than the max terms; off by default until a held-out
run shows it helps (bench/personalize/README.md).

Without a positive yet there is no mu+; that round is exploratory (see exploration.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class ScoringParams:
    # Weight of the negative cluster.
    # lambda; beta and eta of the exact stage (chosen by target testing, bench/personalize).
    negative_weight: float = 0.25
    nearest_positive_weight: float = 0.5
    nearest_negative_weight: float = 0.3
    # gamma and tau of the answer-likelihood term.
    likelihood_weight: float = 0.0
    likelihood_threshold: float = 0.25


def clusters(head: Head, positives: np.ndarray, negatives: np.ndarray) -> Clusters:
    zp = _unit_rows(head.apply(positives)) if len(positives) else None
    zn = _unit_rows(head.apply(negatives)) if len(negatives) else None
    mu_pos = _unit(zp.mean(0)) if zp is not None else None
    mu_neg = _unit(zn.mean(0)) if zn is not None else None
    return Clusters(mu_pos, mu_neg, zp, zn)


def retriever_query(head: Head, c: Clusters, params: ScoringParams = ScoringParams()) -> np.ndarray:
    """q = normalize(W^T (mu+ - lambda mu-)), the one inner-product query for the index."""
    if c.mu_pos is None:
        raise ValueError("no positive cluster: the round is exploratory")
    target = c.mu_pos.copy()
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
    s = z @ c.mu_pos
    if c.mu_neg is not None:
        s = s - params.negative_weight * (z @ c.mu_neg)
    if params.nearest_positive_weight and c.z_pos is not None:
        s = s + params.nearest_positive_weight * (z @ c.z_pos.T).max(1)
    if params.nearest_negative_weight and c.z_neg is not None:
        s = s - params.nearest_negative_weight * (z @ c.z_neg.T).max(1)
    if params.likelihood_weight:
        tau, ll = params.likelihood_threshold, np.zeros(len(z))
        if c.z_pos is not None:
            ll -= np.logaddexp(0.0, -((z @ c.z_pos.T) - tau) / 0.05).sum(1)
        if c.z_neg is not None:
            ll -= np.logaddexp(0.0, ((z @ c.z_neg.T) - tau) / 0.05).sum(1)
        s = s + params.likelihood_weight * ll
    return s.astype(np.float32)
