"""How alike a vector field's stored vectors are to each other
(VectorFieldStats.similarity_profile): quantiles of the pair scores of a random sample, so
consumers read the scale of "alike" of this model and this archive instead of assuming one.

A sample of SAMPLE vectors gives SAMPLE * (SAMPLE - 1) / 2 pairs (~500k at 1,000): the 98th
percentile is then known to about +-0.002 on SFace faces, far finer than any threshold read from
it. It is computed on a Describe, not on writes, and kept until the field's size has moved by
REFRESH_SHARE, so a Describe of a large, stable collection costs one matrix product per tenth
of growth. The sample is drawn with a fixed seed, so the same vectors give the same figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb

SAMPLE = 1_000
MIN_VECTORS = 50
REFRESH_SHARE = 0.1


@dataclass(frozen=True)
class Profile:
    median: float
    p98: float
    pairs: int
    size: int  # vectors in the field when it was computed

    def to_proto(self) -> pb.SimilarityProfile:
        return pb.SimilarityProfile(median=self.median, p98=self.p98, pairs=self.pairs)

    def stale(self, size: int) -> bool:
        return abs(size - self.size) > REFRESH_SHARE * max(self.size, 1)


def pair_scores(vectors: np.ndarray, metric: int) -> np.ndarray:
    """Scores of every pair of distinct rows, as searches return them (higher is closer)."""
    x = np.asarray(vectors, np.float32)
    if metric == pb.METRIC_L2:
        sq = (x * x).sum(1)
        scores = -(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T))
    else:
        scores = x @ x.T
    return scores[np.triu_indices(len(x), k=1)]


def compute(
    labels: np.ndarray, fetch: Callable[[np.ndarray], np.ndarray], metric: int, seed: int = 0
) -> Profile | None:
    """The profile of the vectors under ``labels`` (``fetch(labels) -> (n, d)`` reads them);
    None below MIN_VECTORS."""
    n = len(labels)
    if n < MIN_VECTORS:
        return None
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=min(n, SAMPLE), replace=False))
    scores = pair_scores(fetch(np.ascontiguousarray(labels[pick], dtype=np.int64)), metric)
    median, p98 = np.quantile(scores, [0.5, 0.98])
    return Profile(float(median), float(p98), len(scores), n)


def merge(per: list[pb.SimilarityProfile]) -> pb.SimilarityProfile | None:
    """Shards' profiles as one: quantiles averaged, weighted by pairs (shards hold random
    splits of the records, so their quantiles estimate the same ones)."""
    per = [p for p in per if p.pairs]
    if not per:
        return None
    w = np.array([p.pairs for p in per], np.float64)
    return pb.SimilarityProfile(
        median=float(np.average([p.median for p in per], weights=w)),
        p98=float(np.average([p.p98 for p in per], weights=w)),
        pairs=int(w.sum()),
    )
