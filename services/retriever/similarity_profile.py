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
    centroid: tuple[float, ...] = ()  # the sample's unit mean direction

    def to_proto(self) -> pb.SimilarityProfile:
        return pb.SimilarityProfile(
            median=self.median, p98=self.p98, pairs=self.pairs, centroid=self.centroid
        )

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
    sample = np.asarray(fetch(np.ascontiguousarray(labels[pick], dtype=np.int64)), np.float32)
    median, p98 = np.quantile(pair_scores(sample, metric), [0.5, 0.98])
    mean = sample.astype(np.float64).mean(0)
    centroid = mean / max(float(np.linalg.norm(mean)), 1e-12)
    pairs = len(pick) * (len(pick) - 1) // 2
    return Profile(float(median), float(p98), pairs, n, tuple(float(c) for c in centroid))


def merge(per: list[pb.SimilarityProfile]) -> pb.SimilarityProfile | None:
    """Shards' profiles as one: quantiles averaged, weighted by pairs (shards hold random
    splits of the records, so their quantiles estimate the same ones)."""
    per = [p for p in per if p.pairs]
    if not per:
        return None
    w = np.array([p.pairs for p in per], np.float64)
    out = pb.SimilarityProfile(
        median=float(np.average([p.median for p in per], weights=w)),
        p98=float(np.average([p.p98 for p in per], weights=w)),
        pairs=int(w.sum()),
    )
    with_centroid = [p for p in per if p.centroid]
    if with_centroid:
        # A shard's sample of m vectors gives m (m - 1) / 2 pairs: weight by m.
        m = np.array([(1 + np.sqrt(1 + 8 * p.pairs)) / 2 for p in with_centroid])
        mean = (m[:, None] * np.array([list(p.centroid) for p in with_centroid])).sum(0)
        out.centroid.extend((mean / max(float(np.linalg.norm(mean)), 1e-12)).tolist())
    return out
