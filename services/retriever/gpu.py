"""FAISS on whatever this host has: faiss-gpu with every GPU when present, faiss-cpu otherwise.

One code path: callers hand an index to ``search_copy`` and get back either a GPU clone or the
index itself. Only approximate indexes that never change after their build are cloned (a clone
of an index that takes writes would go stale); filtered searches stay on the CPU index because
GPU indexes do not take FAISS ID selectors.
"""

from __future__ import annotations

import logging
import threading

import faiss

log = logging.getLogger("facesearch.retriever.gpu")

# Below this many queries FAISS computes flat distances without BLAS; its default is so high
# that a batch of 64 takes the slow path (STACK.md: 200k x 64, 1,662 ms -> 183 ms).
BLAS_THRESHOLD = 16


def configure(omp_threads: int = 1) -> int:
    """Process-wide FAISS settings; returns the number of GPUs FAISS will use.

    ``omp_threads`` caps FAISS's OpenMP threads per call (0 = FAISS's default, all cores).
    Concurrent requests already run on separate worker threads, and OpenMP teams spinning
    against each other on a busy host made one batch-1 search 10-20x slower here (2 cores).
    """
    global _OMP_THREADS
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    _OMP_THREADS = omp_threads
    pin_threads()
    n = gpu_count()
    log.info("faiss ready", extra={"gpus": n, "version": faiss.__version__})
    return n


_OMP_THREADS = 0
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


def search_copy(index: faiss.Index) -> faiss.Index:
    """The index to run unfiltered searches on: a clone on all GPUs when there are any."""
    if gpu_count() == 0 or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as exc:  # e.g. HNSW has no GPU form: stay on the CPU
        log.info("index stays on the CPU", extra={"why": str(exc)[:200]})
        return index
