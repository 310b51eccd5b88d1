"""FAISS on whatever this host has: faiss-gpu with every GPU when present, faiss-cpu otherwise.

One code path: callers hand an index to ``search_copy`` and get back either a GPU clone or the
index itself. Only approximate indexes that never change after their build are cloned (a clone
of an index that takes writes would go stale); filtered searches stay on the CPU index because
GPU indexes do not take FAISS ID selectors.

HNSW graphs can be built on the GPU (setting ``hnsw_build: gpu``): CAGRA (cuVS, inside
faiss-gpu) builds the neighbour graph, which becomes the base level of a CPU HNSW index
(``IndexHNSWCagra``, upper levels added on the CPU), served on the CPU like any HNSW index:
the minutes of a large HNSW build move to the GPU, the search path does not change.
"""

from __future__ import annotations

import logging
import threading

import faiss
import numpy as np

log = logging.getLogger("facesearch.retriever.gpu")

# Below this many queries FAISS computes flat distances without BLAS; its default is so high
# that a batch of 64 takes the slow path (STACK.md: 200k x 64, 1,662 ms -> 183 ms).
BLAS_THRESHOLD = 16


HNSW_BUILDS = ("cpu", "gpu")
# Below this many vectors a CPU build takes about a second: not worth a GPU round trip (and
# CAGRA needs several times its graph degree in rows).
CAGRA_MIN_ROWS = 1_000


def configure(omp_threads: int = 1, hnsw_build: str = "cpu") -> int:
    """Process-wide FAISS settings; returns the number of GPUs FAISS will use.

    ``omp_threads`` caps FAISS's OpenMP threads per call (0 = FAISS's default, all cores).
    Concurrent requests already run on separate worker threads, and OpenMP teams spinning
    against each other on a busy host made one batch-1 search 10-20x slower here (2 cores).
    ``hnsw_build``: where HNSW graphs are built, ``cpu`` or ``gpu`` (CAGRA); ``gpu`` on a host
    that cannot is refused here, at start-up, with the reason.
    """
    global _OMP_THREADS, _HNSW_BUILD
    if hnsw_build not in HNSW_BUILDS:
        raise ValueError(f"hnsw_build is {hnsw_build!r}; it must be one of {HNSW_BUILDS}")
    if hnsw_build == "gpu" and (why := cagra_missing()) is not None:
        raise RuntimeError(f"hnsw_build is gpu, but {why}")
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    _OMP_THREADS = omp_threads
    _HNSW_BUILD = hnsw_build
    pin_threads()
    n = gpu_count()
    log.info("faiss ready", extra={"gpus": n, "version": faiss.__version__})
    return n


_OMP_THREADS = 0
_HNSW_BUILD = "cpu"
_PINNED = threading.local()


def pin_threads() -> None:
    """Apply the OpenMP cap in the calling thread: OpenMP keeps it per thread, so worker
    threads that run FAISS calls must each set it once."""
    if _OMP_THREADS > 0 and not getattr(_PINNED, "done", False):
        faiss.omp_set_num_threads(_OMP_THREADS)
        _PINNED.done = True


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def cagra_missing() -> str | None:
    """Why HNSW graphs cannot be built on the GPU here (None: they can), with what to do."""
    if not hasattr(faiss, "GpuIndexCagra"):
        return (
            f"this FAISS ({faiss.__version__}) has no GPU support (faiss-cpu is installed): "
            "install a faiss-gpu build with cuVS on a host with a CUDA GPU, or set "
            "hnsw_build: cpu"
        )
    if "CUVS" not in faiss.get_compile_options():
        return "this faiss-gpu was built without cuVS, which CAGRA needs; or set hnsw_build: cpu"
    if gpu_count() == 0:
        return (
            "faiss-gpu sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES); or set "
            "hnsw_build: cpu"
        )
    return None


def hnsw_on_gpu() -> bool:
    """Whether HNSW graphs are built on the GPU (``configure(hnsw_build="gpu")``)."""
    return _HNSW_BUILD == "gpu"


def build_cagra_into(
    target: faiss.IndexHNSWCagra, vectors: np.ndarray, graph_degree: int, device: int = 0
) -> None:
    """Fill ``target`` (an empty CPU ``IndexHNSWCagra``: its d and metric) with ``vectors``,
    the neighbour graph built on the GPU by CAGRA.

    The graph (``graph_degree`` neighbours per vector: HNSW's level 0 holds 2 x M) becomes
    target's level 0; copyTo adds the upper levels on the CPU (about 1/M of the vectors), so
    target is an ordinary HNSW index that searches with efSearch and takes later adds. Row i
    of ``vectors`` is target's vector i.
    """
    config = faiss.GpuIndexCagraConfig()
    config.graph_degree = graph_degree
    config.intermediate_graph_degree = 2 * graph_degree  # CAGRA's default ratio (128 / 64)
    config.device = device
    resources = faiss.StandardGpuResources()
    cagra = faiss.GpuIndexCagra(resources, target.d, target.metric_type, config)
    cagra.train(np.ascontiguousarray(vectors, dtype=np.float32))
    target.base_level_only = False  # keep the hierarchy, so adds and efSearch work as usual
    cagra.copyTo(target)


def search_copy(index: faiss.Index) -> faiss.Index:
    """The index to run unfiltered searches on: a clone on all GPUs when there are any."""
    if gpu_count() == 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return index
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    if isinstance(inner, faiss.IndexHNSW):
        # HNSW serves on the CPU (a GPU built graph too): FAISS's GPU cloner would turn an
        # IndexHNSWCagra into a GpuIndexCagra, which takes neither efSearch nor deletes.
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as exc:  # e.g. HNSW has no GPU form: stay on the CPU
        log.info("index stays on the CPU", extra={"why": str(exc)[:200]})
        return index
