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


@dataclass(frozen=True)
class Tuning:
    """What the tuner chose for one built index."""

    width: int  # nprobe (IVF-PQ) or ef_search (HNSW) used when neither request nor spec set one
    recall: float  # recall@10 the held-out sample reached at ``width`` (0: too few vectors)
    target: float  # what it aimed for


def held_out_rows(n: int) -> np.ndarray:
    """Sorted rows kept out of the index until tuning is done (an eighth of tiny indexes)."""
    size = min(SAMPLE, n // 8)
    return np.sort(np.random.default_rng(0).choice(n, size, replace=False))


class _Sample:
    """The held-out queries and their exact top-K among the indexed vectors."""

    def __init__(
        self, vectors: np.ndarray, labels: np.ndarray, held: np.ndarray, metric: int
    ) -> None:
        self.metric = metric
        self.vectors = vectors
        self.queries = np.ascontiguousarray(vectors[held])
        self.order = np.argsort(labels)
        self.sorted_labels = labels[self.order]
        fm = similarity.faiss_metric(metric)
        # Searching the whole set for K + |held| and dropping held rows is exact for the rest.
        kk = min(K + len(held), len(labels))
        _, rows = faiss.knn(self.queries, vectors, kk, metric=fm)
        is_held = np.zeros(len(labels), bool)
        is_held[held] = True
        self.truth = [set(labels[r[(r >= 0) & ~is_held[np.maximum(r, 0)]][:K]]) for r in rows]

    def rows_of(self, found: np.ndarray) -> np.ndarray:
        return self.order[np.searchsorted(self.sorted_labels, found)]

    def recall(self, found: np.ndarray, rescore: bool) -> tuple[float, float]:
        """Mean recall@K over the sample and its standard error."""
        per_query = []
        for q, row, truth in zip(self.queries, found, self.truth, strict=True):
            row = row[row >= 0]
            if rescore and len(row):
                exact = similarity.exact_scores(self.metric, q, self.vectors[self.rows_of(row)])
                row = row[np.argsort(-exact, kind="stable")]
            per_query.append(len(set(row[:K].tolist()) & truth) / max(len(truth), 1))
        r = np.asarray(per_query)
        return float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0


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
) -> Tuning | None:
    """The smallest width whose recall@10 on the ``held`` rows (not yet in ``index``; ``labels``
    and ``vectors`` are every row) reaches ``target``; the widest tried, with the recall it got,
    when none does; with ``fixed``, that width and its recall. None when cancelled."""
    ivf = kind == pb.INDEX_KIND_IVF_PQ
    lo_limit, hi_limit = (1, max(1, nlist)) if ivf else (MIN_EF_SEARCH, MAX_EF_SEARCH)
    if len(held) == 0:  # too few vectors to measure: search them all
        return Tuning(
            width=fixed or (hi_limit if ivf else max(MIN_EF_SEARCH, len(labels))),
            recall=0.0,
            target=target,
        )
    sample = _Sample(vectors, labels, held, metric)
    kk = min(max(PQ_RESCORE, K) if ivf else K, max(1, index.ntotal))
    tried: dict[int, float] = {}
    passes: dict[int, bool] = {}

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
            mean, stderr = sample.recall(found, rescore=ivf)
            tried[width] = mean
            # One standard error of margin: new queries are a different sample, and a width
            # that only just passes on this one would miss the target half the time on them.
            passes[width] = mean - stderr >= target
        return tried[width]

    def reaches(width: int) -> bool:
        measure(width)
        return passes[width]

    if fixed:
        return Tuning(width=fixed, recall=measure(fixed), target=target)
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
        return Tuning(width=width, recall=tried[width], target=target)
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
    return Tuning(width=hi, recall=tried[hi], target=target)
