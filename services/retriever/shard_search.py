"""Search of one vector field of a shard: exact (flat, optionally restricted to the labels a
filter allows) or approximate (ANN index, plus the delta added since its build, minus its
tombstones), then an exact re-ranking of the top candidates from the stored vectors.

``FieldSearch`` is what one such search asks, as the shard, its search batcher and the router's
handles pass it along. Callers of the search itself hold the shard's read lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build, index_tuning
from facesearch_server.retriever.field_index import FieldIndex, Hit, batch_selector
from facesearch_server.retriever.filters import Predicate
from facesearch_server.retriever.record_store import RecordStore
from facesearch_server.retriever.validation import MAX_RESCORE

log = logging.getLogger("facesearch.retriever.shard")

# A filter matching at most this many records is answered exactly over just those records:
# cheaper than the approximate index and never short of results.
FLAT_FILTER_MAX = 20_000

# Searches at most this costly run on the event loop instead of a worker thread (is_small):
# at batch 1 the thread hop (pool submit, two wake-ups, call_soon_threadsafe) took more of the
# server's CPU than the HNSW search itself (py-spy, bench/peers/README.md). A few queries
# through a built graph of moderate width with no exact-scanned delta and no filter cost
# 0.05-0.5 ms; anything that may scan (exact, filter, delta, wide IVF) keeps the thread.
INLINE_MAX_QUERIES = 4
INLINE_MAX_WIDTH = 256


# eq=False: the generated __eq__ / __hash__ would compare arrays element-wise and hash a list;
# a search is compared by identity (the batcher's coalescing key says which ones are alike).
@dataclass(frozen=True, eq=False)
class FieldSearch:
    """A batch of queries against one vector field of one shard: the top ``k`` of each row,
    limited to records ``pred`` allows (None: all) and not in ``exclude`` (ids), searched with
    ``params``; hits carry metadata when ``with_meta``, vectors when ``with_vectors``."""

    field: str
    queries: np.ndarray
    k: int
    pred: Predicate | None
    exclude: list[str]
    params: pb.SearchParams
    with_meta: bool
    with_vectors: bool


def is_small(fi: FieldIndex, nq: int, pred: Predicate | None, params: pb.SearchParams) -> bool:
    """Whether a search is cheap enough to answer on the event loop (INLINE_MAX_QUERIES)."""
    ann = fi.ann
    if ann is None or nq > INLINE_MAX_QUERIES or pred is not None or params.exact or fi.delta:
        return False
    if ann.kind != pb.INDEX_KIND_HNSW or ann.search_index is not ann.index:
        return False  # IVF probes and GPU calls vary more; they keep the worker thread
    width = params.ef_search or ann.width(fi.spec.index)
    return width <= INLINE_MAX_WIDTH and params.rescore_top <= INLINE_MAX_WIDTH


def search_field(
    store: RecordStore,
    fi: FieldIndex,
    q: np.ndarray,
    k: int,
    pred: Predicate | None,
    exclude: list[str],
    params: pb.SearchParams,
) -> list[list[Hit]]:
    """The top ``k`` (score, id, label) of each query row, best first."""
    nq = len(q)
    if fi.flat.ntotal == 0:
        return [[] for _ in range(nq)]
    excl = set(store.labels_of(exclude))
    allowed: np.ndarray | None = None
    if pred is not None:
        allowed = np.fromiter(
            (
                lab
                for lab, r in store.candidates(pred)
                if fi.name in r.fields and lab not in excl and pred(r.meta)
            ),
            dtype=np.int64,
        )
        if len(allowed) == 0:
            return [[] for _ in range(nq)]
    ann = fi.ann
    use_ann = (
        ann is not None and not params.exact and (allowed is None or len(allowed) > FLAT_FILTER_MAX)
    )
    if not use_ann:
        if allowed is not None:
            sel: faiss.IDSelector | None = batch_selector(allowed)
        elif excl:
            sel = faiss.IDSelectorNot(batch_selector(excl))
        else:
            sel = None
        kk = min(k, fi.flat.ntotal)
        sp = faiss.SearchParameters(sel=sel) if sel else None
        return _run(store, fi, fi.flat, q, kk, sp)
    assert ann is not None
    rescore_top = min(params.rescore_top, MAX_RESCORE)
    if ann.kind == pb.INDEX_KIND_IVF_PQ:
        rescore_top = max(rescore_top, index_tuning.PQ_RESCORE)
    kk = max(k, rescore_top)
    if allowed is not None:
        ann_sel: faiss.IDSelector | None = batch_selector(allowed)
    elif excl or fi.tombstones:
        ann_sel = faiss.IDSelectorNot(batch_selector(excl | fi.tombstones))
    else:
        ann_sel = None
    sp_ann = index_build.search_parameters(ann, fi.spec.index, params, ann_sel)
    merged = _run_ann(store, fi, ann, q, min(kk, ann.index.ntotal), sp_ann, ann_sel is None)
    if fi.delta:
        delta = fi.delta - excl
        if allowed is not None:
            delta = delta & set(allowed.tolist())
        if delta:
            dsp = faiss.SearchParameters(sel=batch_selector(delta))
            extra = _run(store, fi, fi.flat, q, min(kk, len(delta)), dsp)
            merged = [sorted(a + b, reverse=True) for a, b in zip(merged, extra, strict=True)]
    if rescore_top:
        merged = [_rescore(fi, q[i], row) for i, row in enumerate(merged)]
    return [row[:k] for row in merged]


def _run_ann(
    store: RecordStore,
    fi: FieldIndex,
    ann: index_build.AnnIndex,
    q: np.ndarray,
    k: int,
    sp: faiss.SearchParameters,
    unfiltered: bool,
) -> list[list[Hit]]:
    # GPU clones take no ID selectors, so only unfiltered searches go there.
    if unfiltered and ann.search_index is not ann.index:
        try:
            return _run(store, fi, ann.search_index, q, k, sp)
        except RuntimeError:
            log.warning("GPU search failed; answering from the CPU index", exc_info=True)
    return _run(store, fi, ann.index, q, k, sp)


def _run(
    store: RecordStore,
    fi: FieldIndex,
    index: faiss.Index,
    q: np.ndarray,
    k: int,
    sp: faiss.SearchParameters | None,
) -> list[list[Hit]]:
    if k <= 0:
        return [[] for _ in range(len(q))]
    dist, labs = index.search(q, k, params=sp) if sp is not None else index.search(q, k)
    scores = fi.to_score(dist)
    recs = store.records
    out = []
    for srow, lrow in zip(scores.tolist(), labs.tolist(), strict=True):
        out.append(
            [
                (s, recs[lab].id, lab)
                for s, lab in zip(srow, lrow, strict=True)
                if lab >= 0 and lab in recs
            ]
        )
    return out


def _rescore(fi: FieldIndex, q: np.ndarray, row: list[Hit]) -> list[Hit]:
    if not row:
        return row
    labs = np.array([lab for _s, _i, lab in row], dtype=np.int64)
    vecs = fi.flat.reconstruct_batch(labs)
    exact = fi.exact_scores(q, vecs).tolist()
    return sorted(((s, i, lab) for s, (_o, i, lab) in zip(exact, row, strict=True)), reverse=True)
