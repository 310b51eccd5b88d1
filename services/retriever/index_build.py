"""Approximate indexes (IVF-PQ, HNSW): their defaults, their construction off the request path,
and the per-search parameters they take.

An approximate index is built from a copy of a shard field's exact vectors, in one background
thread shared by the process (so builds never compete with each other for the few cores), and
swapped in when done. Until then the exact flat index answers. The built index is immutable:
records deleted after it was built become tombstones filtered at search time, records added
after it are searched exactly (the "delta"), and both are folded in by the next rebuild.
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

from facesearch.v1 import retriever_pb2 as pb
from services.retriever import gpu

log = logging.getLogger("facesearch.retriever.build")

DEFAULT_NPROBE = 16
DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 200
# 64 gave recall@10 0.89 on degraded real face queries at 100k; 256 gave 0.98 (bench).
DEFAULT_EF_SEARCH = 256
DEFAULT_TRAIN_THRESHOLD = {pb.INDEX_KIND_IVF_PQ: 20_000, pb.INDEX_KIND_HNSW: 5_000}
MAX_NLIST = 65_536
# Rebuild when tombstones plus un-indexed additions pass this share of the built index.
REBUILD_FRACTION = 0.2
_ADD_CHUNK = 2_000


def faiss_metric(metric: int) -> int:
    return faiss.METRIC_L2 if metric == pb.METRIC_L2 else faiss.METRIC_INNER_PRODUCT


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
    if out.kind == pb.INDEX_KIND_IVF_PQ:
        out.pq_m = out.pq_m or default_pq_m(dim)
        out.nprobe = out.nprobe or DEFAULT_NPROBE
    if out.kind == pb.INDEX_KIND_HNSW:
        out.hnsw_m = out.hnsw_m or DEFAULT_HNSW_M
        out.ef_construction = out.ef_construction or DEFAULT_EF_CONSTRUCTION
        out.ef_search = out.ef_search or DEFAULT_EF_SEARCH
    if out.kind != pb.INDEX_KIND_FLAT:
        out.train_threshold = out.train_threshold or DEFAULT_TRAIN_THRESHOLD[out.kind]
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
    # Where unfiltered searches run: a clone on every GPU when there are any, else ``index``.
    search_index: faiss.Index | None = None

    def __post_init__(self) -> None:
        if self.search_index is None:
            self.search_index = gpu.search_copy(self.index) if gpu.gpu_count() else self.index

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
    """Train and fill an approximate index; None when cancelled (collection dropped)."""
    start = time.perf_counter()
    fm = faiss_metric(metric)
    n = len(labels)
    nlist = 0
    if kind == pb.INDEX_KIND_IVF_PQ:
        nlist = min(nlist_for(n, params.nlist), max(1, n // 39))
        quantizer = faiss.IndexFlat(dim, fm)
        inner: faiss.Index = faiss.IndexIVFPQ(quantizer, dim, nlist, params.pq_m, 8, fm)
        inner.nprobe = params.nprobe
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
        inner.hnsw.efSearch = params.ef_search
        index = faiss.IndexIDMap2(inner)
        lo = 0.0
    progress(lo)
    for start_row in range(0, n, _ADD_CHUNK):
        if cancelled.is_set():
            return None
        end = min(n, start_row + _ADD_CHUNK)
        index.add_with_ids(vectors[start_row:end], labels[start_row:end])
        progress(lo + (1 - lo) * end / max(n, 1))
    nbytes = int(faiss.serialize_index(index).nbytes) if n < 2_000_000 else 0
    order = np.argsort(labels)
    return AnnIndex(
        index=index,
        covered=labels[order].astype(np.int64),
        kind=kind,
        nlist=nlist,
        nbytes=nbytes,
        build_seconds=time.perf_counter() - start,
    )


def search_parameters(
    ann: AnnIndex, params: pb.IndexParams, req: pb.SearchParams, sel: faiss.IDSelector | None
) -> faiss.SearchParameters:
    if ann.kind == pb.INDEX_KIND_IVF_PQ:
        sp = faiss.SearchParametersIVF()
        sp.nprobe = req.nprobe or params.nprobe
    else:
        sp = faiss.SearchParametersHNSW()
        sp.efSearch = req.ef_search or params.ef_search
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
