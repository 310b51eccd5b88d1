"""Approximate indexes (IVF-PQ, HNSW): their defaults, their construction off the request path,
and the per-search parameters they take.

An approximate index is built from a copy of a shard field's exact vectors, in one background
thread shared by the process (so builds never compete with each other for the few cores), and
swapped in when done. Until then the exact flat index answers. The built index is immutable:
records deleted after it was built become tombstones filtered at search time, records added
after it are searched exactly (the "delta"). A small delta is folded in by ``extend`` (a copy of
the index with the delta added, swapped in the same way: cost grows with the delta, not the
index); a full rebuild (which also re-tunes the search width) folds in everything once churn or
growth since the last full build passes ``REBUILD_FRACTION``, or deleted vectors must be purged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import gpu, index_tuning, similarity

log = logging.getLogger("facesearch.retriever.build")

DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 200
# Widths in force only when an index has no tuning (one loaded from an older snapshot); built
# indexes get theirs from index_tuning.
FALLBACK_NPROBE = 16
FALLBACK_EF_SEARCH = 256
DEFAULT_TRAIN_THRESHOLD = {pb.INDEX_KIND_IVF_PQ: 20_000, pb.INDEX_KIND_HNSW: 5_000}
MAX_NLIST = 65_536
# Rebuild when tombstones plus un-indexed additions plus vectors added by ``extend`` since the
# last full build pass this share of that build: the width tuned then is out of date by then.
REBUILD_FRACTION = 0.2
# A delta this large (or this share of the index) is folded in by ``extend`` at once; a smaller
# one once writes have paused for ``build_schedule.SETTLE_S`` (each extension copies the index,
# so a trickle of writes must not cause one per write).
EXTEND_MIN = 1_000
EXTEND_FRACTION = 0.01
_ADD_CHUNK = 2_000


def default_pq_m(dim: int) -> int:
    """Half a byte per dimension (64 bytes for 128-d SFace): recall stays high on faces."""
    for m in (dim // 2, dim // 4, dim // 8):
        if m >= 1 and dim % m == 0 and m <= 256:
            return m
    return 1


def resolve_params(dim: int, p: pb.IndexParams) -> pb.IndexParams:
    """Defaults filled in; zero nlist stays zero until training picks it from the data size."""
    out = pb.IndexParams()
    out.CopyFrom(p)
    if out.kind == pb.INDEX_KIND_UNSPECIFIED:
        out.kind = pb.INDEX_KIND_FLAT
    # nprobe / ef_search stay zero unless set: zero means "tuned after each build".
    if out.kind == pb.INDEX_KIND_IVF_PQ:
        out.pq_m = out.pq_m or default_pq_m(dim)
    if out.kind == pb.INDEX_KIND_HNSW:
        out.hnsw_m = out.hnsw_m or DEFAULT_HNSW_M
        out.ef_construction = out.ef_construction or DEFAULT_EF_CONSTRUCTION
    if out.kind != pb.INDEX_KIND_FLAT:
        out.train_threshold = out.train_threshold or DEFAULT_TRAIN_THRESHOLD[out.kind]
        out.target_recall = out.target_recall or index_tuning.DEFAULT_TARGET_RECALL
        out.tuning_objective = out.tuning_objective or index_tuning.RECALL_AT_K
    return out


def nlist_for(n: int, requested: int) -> int:
    if requested:
        return requested
    return int(min(MAX_NLIST, max(1, 4 * math.sqrt(n))))


@dataclass
class AnnIndex:
    """A built approximate index: immutable once swapped in."""

    index: faiss.Index  # IndexIDMap2 over IVF-PQ or HNSW, labels = shard labels
    covered: np.ndarray  # sorted int64 labels it holds
    kind: int
    nlist: int
    nbytes: int
    build_seconds: float
    # The width in force when neither the search nor the field spec names one (None: an index
    # from a snapshot written before tuning existed).
    tuning: index_tuning.Tuning | None = None
    # Where unfiltered searches run: a clone on every GPU when there are any, else ``index``.
    search_index: faiss.Index | None = None
    # Vectors the last full build (and its tuning) saw; ``extend`` adds to ``covered`` only.
    # 0: as many as ``covered`` (a fresh build, or a snapshot written before extensions).
    built_n: int = 0

    def __post_init__(self) -> None:
        if self.search_index is None:
            self.search_index = gpu.search_copy(self.index) if gpu.gpu_count() else self.index
        if not self.built_n:
            self.built_n = len(self.covered)

    @property
    def grown(self) -> int:
        """Vectors added by extensions since the last full build."""
        return max(0, len(self.covered) - self.built_n)

    def width(self, params: pb.IndexParams) -> int:
        """nprobe / ef_search in force: the field's fixed value, else the tuned one."""
        if self.kind == pb.INDEX_KIND_IVF_PQ:
            fixed, fallback = params.nprobe, FALLBACK_NPROBE
        else:
            fixed, fallback = params.ef_search, FALLBACK_EF_SEARCH
        return fixed or (self.tuning.width if self.tuning else fallback)

    def covers(self, label: int) -> bool:
        i = int(np.searchsorted(self.covered, label))
        return i < len(self.covered) and int(self.covered[i]) == label


def build(
    kind: int,
    dim: int,
    metric: int,
    params: pb.IndexParams,
    labels: np.ndarray,
    vectors: np.ndarray,
    progress: Callable[[float], None],
    cancelled: threading.Event,
) -> AnnIndex | None:
    """Train and fill an approximate index, then tune its search width (or measure the recall
    of the fixed one); None when cancelled (collection dropped)."""
    start = time.perf_counter()
    fm = similarity.faiss_metric(metric)
    n = len(labels)
    nlist = 0
    if kind == pb.INDEX_KIND_IVF_PQ:
        nlist = min(nlist_for(n, params.nlist), max(1, n // 39))
        quantizer = faiss.IndexFlat(dim, fm)
        inner: faiss.Index = faiss.IndexIVFPQ(quantizer, dim, nlist, params.pq_m, 8, fm)
        # Training on a sample keeps the cost bounded; 256 points per list is plenty.
        sample = vectors
        if n > 256 * max(nlist, 256):
            pick = np.random.default_rng(0).choice(n, 256 * max(nlist, 256), replace=False)
            sample = vectors[np.sort(pick)]
        progress(0.05)
        inner.train(sample)
        index = faiss.IndexIDMap2(inner)
        lo = 0.5
    else:
        inner = faiss.IndexHNSWFlat(dim, params.hnsw_m, fm)
        inner.hnsw.efConstruction = params.ef_construction
        index = faiss.IndexIDMap2(inner)
        lo = 0.0
    # Tuning takes the last tenth of the progress bar (seconds, where adding takes minutes).
    hi = 0.9
    progress(lo)
    held = index_tuning.held_out_rows(n)
    indexed = np.ones(n, bool)
    indexed[held] = False
    on_gpu = None
    if kind == pb.INDEX_KIND_HNSW and gpu.hnsw_on_gpu():
        on_gpu = _hnsw_graph_on_gpu(dim, fm, params, vectors[indexed], labels[indexed])
    if on_gpu is not None:
        index = on_gpu
        progress(hi)
    else:
        for start_row in range(0, n, _ADD_CHUNK):
            if cancelled.is_set():
                return None
            end = min(n, start_row + _ADD_CHUNK)
            rows = slice(start_row, end)
            index.add_with_ids(vectors[rows][indexed[rows]], labels[rows][indexed[rows]])
            progress(lo + (hi - lo) * end / max(n, 1))
    if cancelled.is_set():
        return None
    fixed = params.nprobe if kind == pb.INDEX_KIND_IVF_PQ else params.ef_search
    tuning = index_tuning.tune(
        kind,
        index,
        vectors,
        labels,
        held,
        metric,
        params.target_recall or index_tuning.DEFAULT_TARGET_RECALL,
        nlist,
        cancelled,
        lambda p: progress(hi + (1 - hi) * p),
        fixed=fixed,
        objective=params.tuning_objective or index_tuning.RECALL_AT_K,
        min_score=params.min_score if params.HasField("min_score") else None,
    )
    if tuning is None:
        return None
    if len(held):
        index.add_with_ids(vectors[held], labels[held])
    nbytes = int(faiss.serialize_index(index).nbytes) if n < 2_000_000 else 0
    order = np.argsort(labels)
    return AnnIndex(
        index=index,
        covered=labels[order].astype(np.int64),
        kind=kind,
        nlist=nlist,
        nbytes=nbytes,
        build_seconds=time.perf_counter() - start,
        tuning=tuning,
    )


def _hnsw_graph_on_gpu(
    dim: int, fm: int, params: pb.IndexParams, vectors: np.ndarray, labels: np.ndarray
) -> faiss.IndexIDMap2 | None:
    """An HNSW index over ``vectors`` under ``labels`` whose graph CAGRA built on the GPU
    (gpu.build_cagra_into), labelled as the CPU build labels; None to build on the CPU instead:
    too few vectors to be worth it, or the GPU build failed (logged with why)."""
    if len(vectors) < gpu.CAGRA_MIN_ROWS:
        return None
    inner = faiss.IndexHNSWCagra(dim, params.hnsw_m, fm)
    inner.hnsw.efConstruction = params.ef_construction  # for the upper levels and later adds
    # IndexIDMap2 takes only an empty index: wrap first, then fill the wrapped one.
    index = faiss.IndexIDMap2(inner)
    start = time.perf_counter()
    try:
        gpu.build_cagra_into(inner, vectors, graph_degree=2 * params.hnsw_m)
    except RuntimeError as exc:  # FAISS's errors (GPU memory, CUDA); the CPU build still works
        log.warning("GPU graph build failed; building on the CPU", extra={"error": str(exc)[:300]})
        return None
    if inner.ntotal != len(vectors):
        raise RuntimeError(f"CAGRA copied {inner.ntotal} of {len(vectors)} vectors")
    index.ntotal = inner.ntotal
    faiss.copy_array_to_vector(np.ascontiguousarray(labels, dtype=np.int64), index.id_map)
    index.construct_rev_map()
    log.info(
        "HNSW graph built on the GPU",
        extra={"n": len(vectors), "seconds": round(time.perf_counter() - start, 2)},
    )
    return index


def extend(
    ann: AnnIndex,
    labels: np.ndarray,
    vectors: np.ndarray,
    progress: Callable[[float], None],
    cancelled: threading.Event,
) -> AnnIndex | None:
    """A copy of ``ann`` with ``vectors`` (under ``labels``, none of them in ``ann``) added; the
    tuned width is kept (the next full rebuild re-tunes). None when cancelled."""
    start = time.perf_counter()
    index = faiss.clone_index(ann.index)
    n = len(labels)
    for lo in range(0, n, _ADD_CHUNK):
        if cancelled.is_set():
            return None
        hi = min(n, lo + _ADD_CHUNK)
        index.add_with_ids(vectors[lo:hi], labels[lo:hi])
        progress(hi / max(n, 1))
    covered = np.union1d(ann.covered, labels).astype(np.int64)
    log.debug("index extended", extra={"n": n, "seconds": round(time.perf_counter() - start, 2)})
    return AnnIndex(
        index=index,
        covered=covered,
        kind=ann.kind,
        nlist=ann.nlist,
        # Measuring means serialising the whole index; the share it grew by is close enough.
        nbytes=ann.nbytes * len(covered) // max(1, len(ann.covered)),
        build_seconds=ann.build_seconds,
        tuning=ann.tuning,
        built_n=ann.built_n,
    )


def search_parameters(
    ann: AnnIndex, params: pb.IndexParams, req: pb.SearchParams, sel: faiss.IDSelector | None
) -> faiss.SearchParameters:
    if ann.kind == pb.INDEX_KIND_IVF_PQ:
        sp = faiss.SearchParametersIVF()
        sp.nprobe = req.nprobe or ann.width(params)
    else:
        sp = faiss.SearchParametersHNSW()
        sp.efSearch = req.ef_search or ann.width(params)
    if sel is not None:
        sp.sel = sel
    return sp


class BuildQueue:
    """One background thread for every index build of the process."""

    _instance: BuildQueue | None = None

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-build")

    @classmethod
    def shared(cls) -> BuildQueue:
        if cls._instance is None:
            cls._instance = BuildQueue()
        return cls._instance

    def submit(self, fn: Callable[[], None]) -> Future[None]:
        def run() -> None:
            try:
                fn()
            except Exception:  # a failed build leaves the exact index serving; log why
                log.exception("index build failed")

        return self._pool.submit(run)
