"""HNSW graphs built on the GPU (``hnsw_build: gpu``: CAGRA, then an HNSW graph served on the
CPU), on a host without a GPU.

What is real here: the start-up refusal where faiss-gpu is absent (settings, ``gpu.configure``
and the retriever process itself), and everything around the GPU call in the build: the CPU
``IndexHNSWCagra`` the graph lands in, its labels, tuning, held-out adds, extensions,
serialisation, the CPU fallback and the CPU path left as it was. The one GPU call
(``gpu.build_cagra_into``) is stood in for by the same index filled on the CPU; the real call
runs in the last test, only where faiss-gpu with cuVS and a GPU are present (and in
bench/gpu).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
from pydantic import ValidationError

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import gpu, index_build
from facesearch_server.retriever.settings import RetrieverSettings
from harness.service_process import REPO_ROOT

DIM = 32
NO_CAGRA = gpu.cagra_missing()


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    pick = rng.integers(0, len(centres), n)
    x = centres[pick] + 0.2 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((500, DIM)) / np.sqrt(DIM)
    return clustered(rng, 4_000, centres), clustered(rng, 200, centres)


def build(x: np.ndarray, labels: np.ndarray) -> index_build.AnnIndex:
    params = index_build.resolve_params(
        DIM, pb.IndexParams(kind=pb.INDEX_KIND_HNSW, hnsw_m=16, target_recall=0.95)
    )
    ann = index_build.build(
        pb.INDEX_KIND_HNSW,
        DIM,
        pb.METRIC_INNER_PRODUCT,
        params,
        labels,
        x,
        lambda _p: None,
        threading.Event(),
    )
    assert ann is not None
    return ann


def recall_at_10(
    ann: index_build.AnnIndex, x: np.ndarray, labels: np.ndarray, q: np.ndarray
) -> float:
    truth = labels[np.argsort(-(q @ x.T), axis=1)[:, :10]]
    sp = index_build.search_parameters(ann, pb.IndexParams(kind=ann.kind), pb.SearchParams(), None)
    _, got = ann.index.search(q, 10, params=sp)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)]))


@pytest.fixture
def gpu_build_on_cpu(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``hnsw_build: gpu`` with the GPU call done on the CPU: the same IndexHNSWCagra, its
    graph inserted by HNSW instead of built by CAGRA. Records the rows each call got."""
    calls: list[int] = []

    def fill_on_cpu(target: faiss.IndexHNSWCagra, vectors: np.ndarray, graph_degree: int) -> None:
        assert target.ntotal == 0 and graph_degree == 2 * target.hnsw.nb_neighbors(1)
        calls.append(len(vectors))
        target.add(vectors)

    monkeypatch.setattr(gpu, "_HNSW_BUILD", "gpu")
    monkeypatch.setattr(gpu, "build_cagra_into", fill_on_cpu)
    return calls


def test_gpu_build_is_refused_at_start_up_where_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Here: faiss-cpu. On a GPU host the same refusal is reached with no GPU visible.
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    with pytest.raises(ValidationError, match="set hnsw_build: cpu"):
        RetrieverSettings(hnsw_build="gpu")
    with pytest.raises(RuntimeError, match="hnsw_build is gpu, but"):
        gpu.configure(1, hnsw_build="gpu")
    assert not gpu.hnsw_on_gpu()  # the refusal changed nothing
    proc = subprocess.run(
        [sys.executable, "-m", "facesearch_server.retriever"],
        env={
            "PATH": "/usr/bin:/bin",
            "CUDA_VISIBLE_DEVICES": "",
            "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path / "data"),
            "FACESEARCH_RETRIEVER_HNSW_BUILD": "gpu",
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "configuration error" in proc.stderr and "hnsw_build" in proc.stderr
    assert "set hnsw_build: cpu" in proc.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_the_cpu_path_is_unchanged_by_default(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    assert not gpu.hnsw_on_gpu() and RetrieverSettings().hnsw_build == "cpu"
    ann = build(x[:1_500], np.arange(1_500, dtype=np.int64))
    assert type(faiss.downcast_index(ann.index.index)) is faiss.IndexHNSWFlat


def test_a_gpu_built_graph_is_labelled_tuned_served_and_extended(
    data: tuple[np.ndarray, np.ndarray], gpu_build_on_cpu: list[int]
) -> None:
    x, q = data
    labels = np.arange(len(x), dtype=np.int64) * 7 + 3  # labels are not row numbers
    ann = build(x[:3_500], labels[:3_500])
    inner = faiss.downcast_index(ann.index.index)
    assert isinstance(inner, faiss.IndexHNSWCagra) and not inner.base_level_only
    held = len(index_build.index_tuning.held_out_rows(3_500))
    assert gpu_build_on_cpu == [3_500 - held]  # the GPU got every row but the tuner's
    assert ann.index.ntotal == 3_500 and np.array_equal(ann.covered, np.sort(labels[:3_500]))
    assert ann.tuning is not None
    assert recall_at_10(ann, x[:3_500], labels[:3_500], q) >= 0.9
    # Snapshots write it and read it back as it was.
    again = faiss.deserialize_index(faiss.serialize_index(ann.index))
    assert np.array_equal(again.search(q[:20], 5)[1], ann.index.search(q[:20], 5)[1])
    # A later delta is folded in on the CPU, as for any HNSW index.
    grown = index_build.extend(ann, labels[3_500:], x[3_500:], lambda _p: None, threading.Event())
    assert grown is not None and grown.index.ntotal == len(x)
    _, top = grown.index.search(x[3_500:3_520], 1)
    assert np.array_equal(top[:, 0], labels[3_500:3_520])


def test_small_builds_and_gpu_failures_build_on_the_cpu(
    data: tuple[np.ndarray, np.ndarray],
    gpu_build_on_cpu: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, _ = data
    small = build(x[: gpu.CAGRA_MIN_ROWS // 2], np.arange(gpu.CAGRA_MIN_ROWS // 2))
    assert gpu_build_on_cpu == []
    assert type(faiss.downcast_index(small.index.index)) is faiss.IndexHNSWFlat

    def out_of_memory(*_args: object, **_kw: object) -> None:
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(gpu, "build_cagra_into", out_of_memory)
    with caplog.at_level(logging.WARNING, logger="facesearch.retriever.build"):
        ann = build(x[:2_000], np.arange(2_000, dtype=np.int64))
    assert type(faiss.downcast_index(ann.index.index)) is faiss.IndexHNSWFlat
    assert ann.index.ntotal == 2_000
    assert any("GPU graph build failed" in r.getMessage() for r in caplog.records)


def test_hnsw_is_served_on_the_cpu_even_with_gpus(
    data: tuple[np.ndarray, np.ndarray],
    gpu_build_on_cpu: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, _ = data
    cloned: list[faiss.Index] = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", cloned.append, raising=False)
    ann = build(x[:1_500], np.arange(1_500, dtype=np.int64))
    assert ann.search_index is ann.index and cloned == []


@pytest.mark.needs_gpu
@pytest.mark.skipif(NO_CAGRA is not None, reason=f"no GPU build here: {NO_CAGRA}")
def test_cagra_on_the_gpu_gives_a_searchable_hnsw_graph(
    data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, q = data
    monkeypatch.setattr(gpu, "_HNSW_BUILD", "gpu")
    labels = np.arange(len(x), dtype=np.int64) + 100
    ann = build(x, labels)
    assert isinstance(faiss.downcast_index(ann.index.index), faiss.IndexHNSWCagra)
    assert recall_at_10(ann, x, labels, q) >= 0.9
