"""What one round shows: the share of exploratory faces, the retriever query, the final pick.

Pure functions over vectors, shared by the service (sessions.py, candidates from the
retriever) and the benchmark (candidates from an in-process index), so the benchmark measures
the very ranking the service serves.

A round with k faces:
- no positive yet: all k exploratory (farthest from everything seen; exploration.py);
- in the first ``explore_rounds`` rounds after the first positive: ceil(k * explore_share)
  exploratory, the rest by score;
- afterwards: all k by score s(x) (scoring.py): the top ``rescore_top`` hits of the linear
  retriever query, rescored exactly with the head, best unseen first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facesearch_server.personalizer.exploration import farthest_points
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.online_training import TrainingParams
from facesearch_server.personalizer.scoring import Clusters, ScoringParams, rescore


@dataclass(frozen=True)
class RoundParams:
    rescore_top: int = 256
    explore_share: float = 0.25
    explore_rounds: int = 2
    pool_directions: int = 16
    pool_per_direction: int = 8
    scoring: ScoringParams = field(default_factory=ScoringParams)
    training: TrainingParams = field(default_factory=TrainingParams)


@dataclass
class Pick:
    id: str
    score: float
    exploratory: bool
    vector: np.ndarray


def exploratory_count(k: int, n_positive: int, rounds_with_positive: int, p: RoundParams) -> int:
    if n_positive == 0:
        return k
    if rounds_with_positive < p.explore_rounds:
        return min(k, math.ceil(k * p.explore_share))
    return 0


def select(
    head: Head,
    c: Clusters,
    candidates: list[tuple[str, np.ndarray]],
    pool: list[tuple[str, np.ndarray]],
    seen: np.ndarray,
    exclude: set[str],
    k: int,
    n_explore: int,
    p: RoundParams = RoundParams(),
) -> list[Pick]:
    """The k faces to show: the best-scoring candidates plus ``n_explore`` from the pool.

    ``candidates`` are the retriever's hits for the scoring query, ``pool`` the exploration
    pool; ids in ``exclude`` (already shown) are never picked. When one side runs short the
    other fills the round."""
    picks: list[Pick] = []
    taken = set(exclude)
    cands = [(i, v) for i, v in candidates if i not in taken]
    if c.mu_pos is not None and cands:
        vecs = np.stack([v for _, v in cands])
        scores = rescore(head, vecs, c, p.scoring)
        for j in np.argsort(-scores, kind="stable")[: max(0, k - n_explore)]:
            picks.append(Pick(cands[j][0], float(scores[j]), False, cands[j][1]))
            taken.add(cands[j][0])
    pool = [(i, v) for i, v in pool if i not in taken]
    want = k - len(picks)
    if pool and want > 0:
        ref = [seen] if len(seen) else []
        ref += [np.stack([pk.vector for pk in picks])] if picks else []
        ref_arr = np.concatenate(ref) if ref else np.zeros((0, pool[0][1].shape[0]), np.float32)
        pvecs = np.stack([v for _, v in pool])
        pscores = (
            rescore(head, pvecs, c, p.scoring)
            if c.mu_pos is not None
            else np.zeros(len(pool), np.float32)
        )
        for j in farthest_points(pvecs, ref_arr, want):
            picks.append(Pick(pool[j][0], float(pscores[j]), True, pool[j][1]))
            taken.add(pool[j][0])
    if len(picks) < k and c.mu_pos is not None:
        # The pool ran dry: fill from the remaining scored candidates.
        rest = [(i, v) for i, v in cands if i not in taken]
        if rest:
            vecs = np.stack([v for _, v in rest])
            scores = rescore(head, vecs, c, p.scoring)
            for j in np.argsort(-scores, kind="stable")[: k - len(picks)]:
                picks.append(Pick(rest[j][0], float(scores[j]), False, rest[j][1]))
    return picks
