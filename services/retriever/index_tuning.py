"""Search-width tuning: after every build, the smallest ``nprobe`` (IVF-PQ) or ``ef_search``
(HNSW) that reaches the field's target recall@10, measured on the field's own vectors.

Why measure instead of a fixed default: the width a given recall needs grows with the
collection and depends on the data. On real + synthetic SFace faces, HNSW at ef_search 256 gave
recall@10 0.98 at 100k vectors but 0.83 at 1M, and IVF-PQ needed 4x the nprobe at 1M that it
needed at 100k (bench/retriever/README.md). A fixed default is either slow on small
collections or wrong on large ones.

How: a seeded sample of the field's vectors is held out of the index while it is built, searched
exactly against the rest and through the index at doubling widths, then added. Held out, not
left one out: a vector already in an HNSW graph is linked to its neighbours at insertion, so
searching for it finds them far more easily than a new face would (on clustered data, 0.95 for
in-graph queries was 0.91 for fresh ones). Widths double until the sample reaches the target,
then two bisection steps shrink the overshoot to a quarter. A width passes when the sample's
mean recall less one standard error reaches the target, so that new queries (a different
sample) reach it too, not just half the time. IVF-PQ is scored after the exact
re-ranking its searches always get, so the tuned nprobe buys routing recall, not PQ precision.
It runs on the build thread before the index is swapped in: searches never see an untuned one.

Two objectives (IndexParams.tuning_objective). RECALL_AT_K (the default) scores the whole exact
top 10. ABOVE_THRESHOLD scores only the exact top-10 neighbours at or above ``min_score``: for a
face field at the model's match threshold, the same person's other photos, which is what a face
search is for; the strangers filling the rest of a face's top 10 sit at diffuse distances that
cost most of the width (at 1M faces recall@10 0.95 needs ef_search ~900). Its figure is pooled
over the sample (found / all such neighbours) with the ratio estimator's standard error, since
one query may hold many of them. Both figures are measured at the chosen width whenever a
``min_score`` is given, so Describe can show what the other objective would have said.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import similarity

DEFAULT_TARGET_RECALL = 0.95
K = 10
SAMPLE = 512
MIN_EF_SEARCH = 16
MAX_EF_SEARCH = 8192
# IVF-PQ codes are 16x smaller than the vectors and lossy; every IVF-PQ search re-ranks at
# least this many candidates exactly from the stored vectors (a few microseconds per query).
PQ_RESCORE = 100


# Fewer above-threshold neighbours than this in the sample (a gallery of one photo per person,
# a threshold few pairs reach) measure nothing: such a field is tuned by recall@10 instead.
MIN_ABOVE_THRESHOLD = 50
RECALL_AT_K = pb.TUNING_OBJECTIVE_RECALL_AT_K
ABOVE_THRESHOLD = pb.TUNING_OBJECTIVE_ABOVE_THRESHOLD


@dataclass(frozen=True)
class Tuning:
    """What the tuner chose for one built index. Snapshots store it as a dict, so fields added
    later need defaults (an older snapshot's tuning loads with them)."""

    width: int  # nprobe (IVF-PQ) or ef_search (HNSW) used when neither request nor spec set one
    recall: float  # recall@10 the held-out sample reached at ``width`` (0: too few vectors)
    target: float  # what it aimed for
    # Share of the sample's exact top-10 neighbours scoring >= min_score found at ``width``;
    # 0: not measured (no min_score, or fewer than MIN_ABOVE_THRESHOLD such neighbours).
    above_threshold_recall: float = 0.0
    # The objective the width was chosen by: RECALL_AT_K also where ABOVE_THRESHOLD was asked
    # for but the sample had too few neighbours above the threshold to measure it.
    objective: int = RECALL_AT_K


def held_out_rows(n: int) -> np.ndarray:
    """Sorted rows kept out of the index until tuning is done (an eighth of tiny indexes)."""
    size = min(SAMPLE, n // 8)
    return np.sort(np.random.default_rng(0).choice(n, size, replace=False))


@dataclass(frozen=True)
class Measured:
    """One width's figures on the sample: each with its standard error."""

    recall: float
    recall_se: float
    above: float  # 0 when the sample has no above-threshold neighbours to find
    above_se: float


class _Sample:
    """The held-out queries, their exact top-K among the indexed vectors and, with a
    ``min_score``, those of the top-K that score at or above it."""

    def __init__(
        self,
        vectors: np.ndarray,
        labels: np.ndarray,
        held: np.ndarray,
        metric: int,
        min_score: float | None = None,
    ) -> None:
        self.metric = metric
        self.vectors = vectors
        self.queries = np.ascontiguousarray(vectors[held])
        self.order = np.argsort(labels)
        self.sorted_labels = labels[self.order]
        fm = similarity.faiss_metric(metric)
        # Searching the whole set for K + |held| and dropping held rows is exact for the rest.
        kk = min(K + len(held), len(labels))
        dist, rows = faiss.knn(self.queries, vectors, kk, metric=fm)
        # Scores as searches return them (higher is closer): L2 distances negated.
        scores = -dist if metric == pb.METRIC_L2 else dist
        is_held = np.zeros(len(labels), bool)
        is_held[held] = True
        self.truth: list[set[int]] = []
        self.above: list[set[int]] = []
        for r, s in zip(rows, scores, strict=True):
            keep = (r >= 0) & ~is_held[np.maximum(r, 0)]
            top, top_scores = labels[r[keep][:K]], s[keep][:K]
            self.truth.append(set(top.tolist()))
            self.above.append(
                set(top[top_scores >= min_score].tolist()) if min_score is not None else set()
            )
        self.above_total = sum(len(a) for a in self.above)

    def rows_of(self, found: np.ndarray) -> np.ndarray:
        return self.order[np.searchsorted(self.sorted_labels, found)]

    def measure(self, found: np.ndarray, rescore: bool) -> Measured:
        """Mean recall@K over the sample, the pooled share of above-threshold neighbours found,
        and their standard errors."""
        per_query, hits, totals = [], [], []
        for q, row, truth, above in zip(self.queries, found, self.truth, self.above, strict=True):
            row = row[row >= 0]
            if rescore and len(row):
                exact = similarity.exact_scores(self.metric, q, self.vectors[self.rows_of(row)])
                row = row[np.argsort(-exact, kind="stable")]
            top = set(row[:K].tolist())
            per_query.append(len(top & truth) / max(len(truth), 1))
            if above:
                hits.append(len(top & above))
                totals.append(len(above))
        r = np.asarray(per_query)
        recall_se = float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0
        above, above_se = _pooled_share(np.asarray(hits, float), np.asarray(totals, float))
        return Measured(float(r.mean()), recall_se, above, above_se)


def _pooled_share(hits: np.ndarray, totals: np.ndarray) -> tuple[float, float]:
    """sum(hits) / sum(totals) and its standard error as a ratio estimator over queries (the
    neighbours of one query are found or missed together, so they are not independent)."""
    if len(totals) == 0 or totals.sum() == 0:
        return 0.0, 0.0
    share = float(hits.sum() / totals.sum())
    n = len(totals)
    if n < 2:
        return share, 0.0
    resid = hits - share * totals
    return share, float(np.sqrt(n / (n - 1) * np.sum(resid**2)) / totals.sum())


def tune(
    kind: int,
    index: faiss.Index,
    vectors: np.ndarray,
    labels: np.ndarray,
    held: np.ndarray,
    metric: int,
    target: float,
    nlist: int,
    cancelled: threading.Event,
    progress: Callable[[float], None] = lambda _p: None,
    fixed: int = 0,
    objective: int = RECALL_AT_K,
    min_score: float | None = None,
) -> Tuning | None:
    """The smallest width whose figure for ``objective`` on the ``held`` rows (not yet in
    ``index``; ``labels`` and ``vectors`` are every row) reaches ``target``: recall@10, or with
    ABOVE_THRESHOLD the share of exact top-10 neighbours scoring >= ``min_score`` found. The
    widest tried, with what it got, when none does; with ``fixed``, that width and its figures.
    None when cancelled."""
    ivf = kind == pb.INDEX_KIND_IVF_PQ
    lo_limit, hi_limit = (1, max(1, nlist)) if ivf else (MIN_EF_SEARCH, MAX_EF_SEARCH)
    if len(held) == 0:  # too few vectors to measure: search them all
        return Tuning(
            width=fixed or (hi_limit if ivf else max(MIN_EF_SEARCH, len(labels))),
            recall=0.0,
            target=target,
        )
    sample = _Sample(vectors, labels, held, metric, min_score)
    measurable = sample.above_total >= MIN_ABOVE_THRESHOLD
    if objective == ABOVE_THRESHOLD and not measurable:
        objective = RECALL_AT_K
    kk = min(max(PQ_RESCORE, K) if ivf else K, max(1, index.ntotal))
    tried: dict[int, float] = {}
    above: dict[int, float] = {}
    passes: dict[int, bool] = {}

    def result(width: int) -> Tuning:
        return Tuning(
            width=width,
            recall=tried[width],
            target=target,
            above_threshold_recall=above[width] if measurable else 0.0,
            objective=objective,
        )

    def measure(width: int) -> float:
        if width not in tried:
            sp: faiss.SearchParameters
            if ivf:
                sp = faiss.SearchParametersIVF()
                sp.nprobe = width
            else:
                sp = faiss.SearchParametersHNSW()
                sp.efSearch = width
            _, found = index.search(sample.queries, kk, params=sp)
            m = sample.measure(found, rescore=ivf)
            tried[width], above[width] = m.recall, m.above
            # One standard error of margin: new queries are a different sample, and a width
            # that only just passes on this one would miss the target half the time on them.
            if objective == ABOVE_THRESHOLD:
                passes[width] = m.above - m.above_se >= target
            else:
                passes[width] = m.recall - m.recall_se >= target
        return tried[width]

    def reaches(width: int) -> bool:
        measure(width)
        return passes[width]

    if fixed:
        measure(fixed)
        return result(fixed)
    # Doubling: the first width that passes bounds the answer from above.
    width, passed = lo_limit, None
    while True:
        if cancelled.is_set():
            return None
        if reaches(width):
            passed = width
            break
        if width >= hi_limit:
            break
        width = min(hi_limit, width * 2)
        progress(min(0.9, len(tried) / 12))
    if passed is None:
        return result(width)
    lo = max(lo_limit, passed // 2)
    hi = passed
    for _ in range(2):
        if hi - lo <= 1 or cancelled.is_set():
            break
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    progress(1.0)
    return result(hi)
