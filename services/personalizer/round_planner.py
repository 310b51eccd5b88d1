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

Rounds without a positive learn from the negatives: pool faces the answers so far rule out (answer
log-likelihood more than ``explore_margin`` below the pool's best, answer_model.py, or the
same person as a rejected face: head-space cosine >= tau_same) are dropped before the
farthest-point pick, so "not this person" / "nothing like them" rounds move
the search away from the rejected faces' region, not only from the faces themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from facesearch_server.personalizer.answer_model import NOTHING_LIKE, log_likelihood, on_scale
from facesearch_server.personalizer.exploration import farthest_points
from facesearch_server.personalizer.head import Head
from facesearch_server.personalizer.online_training import TrainingParams
from facesearch_server.personalizer.scoring import (
    Clusters,
    ScoringParams,
    answer_log_likelihood,
    rescore,
    retriever_query,
)
from facesearch_server.personalizer.target_posterior import (
    PosteriorParams,
    label_weights,
    log_posterior,
)
from facesearch_server.personalizer.target_posterior import (
    queries as posterior_queries,
)

# How scored candidates are ranked: FaIRCoP's cluster score (scoring.rescore), or the posterior
# over the target that the head's cosines feed, plus the cluster score (target_posterior.py).
RANKINGS = ("clusters", "posterior")


@dataclass(frozen=True)
class RoundParams:
    rescore_top: int = 256
    explore_share: float = 0.25
    explore_rounds: int = 2
    pool_directions: int = 16
    pool_per_direction: int = 8
    # Rounds 1..hub_rounds draw their exploration pool around the collection's centroid
    # (exploration.hub_directions, spread hub_spread), when the retriever reports one; round 0
    # (an overview of the collection) and later rounds use isotropic directions. 0 = never.
    hub_rounds: int = 4
    hub_spread: float = 0.3
    # ... in collections of at least this many faces: in a small one the isotropic pool
    # already reaches every kind of face, and its 98th-percentile pair score (the likeness
    # scale) is same-person territory, too coarse to tell people apart near the centroid.
    hub_min_faces: int = 1000
    # Log-likelihood below the pool's best at which an exploratory face is ruled out.
    explore_margin: float = 1.0
    # Besides the linear query: one query per positive for the ``positive_queries`` positives
    # the answers make likeliest to be near the person, ``per_positive_top`` hits each, so the
    # candidates cover every region a positive points at, not only the centroid's (0 = off).
    positive_queries: int = 0
    per_positive_top: int = 32
    scoring: ScoringParams = field(default_factory=ScoringParams)
    training: TrainingParams = field(default_factory=TrainingParams)
    ranking: str = "posterior"
    posterior: PosteriorParams = field(default_factory=PosteriorParams)

    def __post_init__(self) -> None:
        if self.ranking not in RANKINGS:
            raise ValueError(f"ranking is {self.ranking!r}; use one of {RANKINGS}")


def on_likeness_scale(
    p: RoundParams, median: float, p98: float, lifted: bool = True
) -> RoundParams:
    """``p`` with its answer model on a collection's own scale (answer_model.on_scale)."""
    answers = on_scale(p.scoring.answers, median, p98, lifted)
    return replace(p, scoring=replace(p.scoring, answers=answers))


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


def _likeness(head: Head, lasting: Head | None, p: RoundParams) -> Head:
    """The head whose cosines the target posterior uses (PosteriorParams.likeness)."""
    return lasting if lasting is not None and p.posterior.likeness == "lasting" else head


def scoring_queries(
    head: Head, c: Clusters, k: int, p: RoundParams, lasting: Head | None = None
) -> list[tuple[np.ndarray, int]]:
    """The retriever queries (vector, top) of a round's scored candidates: the linear query of
    the score (scoring.retriever_query), then the head-space directions of the likeliest
    positives (answer log-likelihood at the positive). Empty without a positive."""
    if c.mu_pos is None:
        return []
    queries = [(retriever_query(head, c, p.scoring), max(p.rescore_top, k))]
    if p.positive_queries and c.z_pos is not None and c.z_labelled is not None:
        ll = log_likelihood(c.z_pos, c.z_labelled, c.codes, p.scoring.answers)
        for j in np.argsort(-ll, kind="stable")[: p.positive_queries]:
            q = head.weight.T @ c.z_pos[j]
            queries.append(
                ((q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32), p.per_positive_top)
            )
    if p.ranking == "posterior" and c.x_labelled is not None and c.codes is not None:
        like = _likeness(head, lasting, p)
        queries += posterior_queries(like, c.x_labelled, c.codes, p.scoring.answers, p.posterior)
    return queries


def training_weights(c: Clusters, p: RoundParams, likeness: Head) -> np.ndarray | None:
    """Each positive's weight in the head's loss: the posterior's (label_weights, cosines in
    the space of ``likeness``) when its temperature is set, else the clusters'
    (corroboration)."""
    if p.posterior.train_temperature > 0 and c.x_labelled is not None and c.codes is not None:
        return label_weights(likeness, c.x_labelled, c.codes, p.scoring.answers, p.posterior)
    return c.train_weights


def score(
    head: Head, vectors: np.ndarray, c: Clusters, p: RoundParams, lasting: Head | None = None
) -> np.ndarray:
    """The score scored candidates are ranked by (higher first); needs a positive cluster.
    ``lasting``: the head the session started from (PosteriorParams.likeness)."""
    s = rescore(head, vectors, c, p.scoring)
    if p.ranking != "posterior":
        return s
    like = _likeness(head, lasting, p)
    lp = log_posterior(like, vectors, c.x_labelled, c.codes, p.scoring.answers, p.posterior)
    return (lp + p.posterior.cluster_weight * s).astype(np.float32)


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
    lasting: Head | None = None,
    fallback: list[tuple[str, np.ndarray]] | None = None,
) -> list[Pick]:
    """The k faces to show: the best-scoring candidates plus ``n_explore`` from the pool.

    ``candidates`` are the retriever's hits for the scoring query, ``pool`` the exploration
    pool; ids in ``exclude`` (already shown) are never picked. When one side runs short the
    other fills the round. ``fallback`` (the isotropic pool of a hub round) is drawn from only
    when the answers so far rule out too much of ``pool`` to fill the round."""
    picks: list[Pick] = []
    taken = set(exclude)
    # Several queries may return one face; each is a candidate once.
    cands = list({i: v for i, v in candidates if i not in taken}.items())
    if c.mu_pos is not None and cands:
        vecs = np.stack([v for _, v in cands])
        scores = score(head, vecs, c, p, lasting)
        for j in np.argsort(-scores, kind="stable")[: max(0, k - n_explore)]:
            picks.append(Pick(cands[j][0], float(scores[j]), False, cands[j][1]))
            taken.add(cands[j][0])
    # A face in the pool twice (or among the picks already) is shown once.
    first = dict.fromkeys(i for i, _ in pool)
    pool = list({i: v for i, v in [*pool, *(fallback or [])] if i not in taken}.items())
    preferred = np.array([i in first for i, _ in pool], bool)
    want = k - len(picks)
    if pool and want > 0 and c.mu_pos is None and c.codes is not None and len(c.codes):
        pvecs = np.stack([v for _, v in pool])
        ll = answer_log_likelihood(head, pvecs, c, p.scoring)
        same = np.zeros(len(pool), bool)
        if c.z_neg is not None:
            # A face of the same person as a rejected one is no candidate either; nor one alike
            # (tau) to a face the user called "nothing like them", which rules out more: on a
            # collection's own scale tau_same can sit above many of a person's own pairs.
            z = head.apply(pvecs)
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
            a = p.scoring.answers
            neg_codes = c.codes[len(c.codes) - len(c.z_neg) :]
            bar = np.where(neg_codes == NOTHING_LIKE, a.threshold, a.same_person_threshold)
            same = (z @ c.z_neg.T >= bar[None, :]).any(1)
            ll = ll - 1e3 * same
        # The pool's own cut first (relative to its best face: a hub round's faces are alike
        # to more of the rejected ones than the fallback's extremes, by design); the fallback
        # only when that leaves too few faces of people not yet rejected.
        usable = preferred & ~same
        keep = usable & (ll >= ll[usable].max() - p.explore_margin) if usable.any() else usable
        if keep.sum() < want:
            keep = ll >= ll.max() - p.explore_margin
        if keep.sum() < want:  # too few left: the round takes the least ruled-out faces
            keep = np.zeros(len(pool), bool)
            keep[np.argsort(-ll, kind="stable")[:want]] = True
        pool = [item for item, ok in zip(pool, keep, strict=True) if ok]
    elif not preferred.all() and preferred.sum() >= want:
        pool = [item for item, ok in zip(pool, preferred, strict=True) if ok]
    if pool and want > 0:
        ref = [seen] if len(seen) else []
        ref += [np.stack([pk.vector for pk in picks])] if picks else []
        ref_arr = np.concatenate(ref) if ref else np.zeros((0, pool[0][1].shape[0]), np.float32)
        pvecs = np.stack([v for _, v in pool])
        pscores = (
            score(head, pvecs, c, p, lasting)
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
            scores = score(head, vecs, c, p, lasting)
            for j in np.argsort(-scores, kind="stable")[: k - len(picks)]:
                picks.append(Pick(rest[j][0], float(scores[j]), False, rest[j][1]))
    return picks
