"""The faiss-gpu path, on a host without a GPU.

No GPU (and no faiss-gpu build) is available where these tests run, so ``faiss.get_num_gpus``
and ``faiss.index_cpu_to_all_gpus`` are replaced by a fake that hands back a CPU clone wrapped
to count its searches. What is real: the shard, its built index, the CPU fallback and the
routing decisions (unfiltered searches on the GPU clone; filtered ones, which GPU indexes
cannot take ID selectors for, and anything the GPU fails on, on the CPU index).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import gpu
from facesearch_server.retriever.filters import compile_filter
from facesearch_server.retriever.records import BUILTIN_FIELDS
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import FieldSearch
from tests.retriever.conftest import eq, point, unit
from tests.retriever.test_index_builds import exact_top, field, shard_ids


class FakeGpuIndex:
    """Stands in for a GPU clone: a CPU copy that counts searches, or fails them."""

    def __init__(self, index: faiss.Index, fail: bool = False) -> None:
        self.cpu = faiss.clone_index(index)
        self.fail = fail
        self.searches = 0

    @property
    def ntotal(self) -> int:
        return int(self.cpu.ntotal)

    def search(self, q: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        self.searches += 1
        if self.fail:
            raise RuntimeError("CUDA error: out of memory (fake)")
        assert params is None or params.sel is None, "GPU indexes take no ID selectors"
        return self.cpu.search(q, k, params=params)


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> list[FakeGpuIndex]:
    clones: list[FakeGpuIndex] = []

    def to_all_gpus(index: faiss.Index) -> FakeGpuIndex:
        if isinstance(faiss.downcast_index(faiss.downcast_index(index).index), faiss.IndexHNSW):
            raise RuntimeError("HNSW has no GPU implementation")  # what faiss-gpu says
        clones.append(FakeGpuIndex(index))
        return clones[-1]

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_all_gpus, raising=False)
    return clones


def built_shard(tmp_path: Path, kind: int) -> tuple[LocalShard, np.ndarray, list[str]]:
    rng = np.random.default_rng(11)
    shard = LocalShard(
        tmp_path / "s", [field(kind, train_threshold=300, nlist=8, pq_m=4)], lambda s, n: None
    )
    x = unit(rng, 600)
    ids = [f"v{i}" for i in range(600)]
    shard.upsert(
        [point(ids[i], x[i], person_id="p-even" if i % 2 == 0 else "p-odd") for i in range(600)]
    )
    shard.build_now("face")
    return shard, x, ids


def test_no_gpu_means_the_cpu_index_itself() -> None:
    index = faiss.IndexFlatIP(4)
    assert gpu.gpu_count() == 0
    assert gpu.search_copy(index) is index


def test_unfiltered_searches_run_on_the_gpu_clone_filtered_ones_on_the_cpu(
    tmp_path: Path, fake_gpus: list[FakeGpuIndex]
) -> None:
    shard, x, ids = built_shard(tmp_path, pb.INDEX_KIND_IVF_PQ)
    assert len(fake_gpus) == 1  # the built IVF-PQ index went to the GPUs, once
    clone = fake_gpus[0]
    q = x[:5]
    got = shard_ids(shard, q, 5, nprobe=8)
    assert clone.searches == 1
    # Same answers as the CPU index would give: every list probed and re-ranked, so exact.
    assert got == exact_top(x, q, 5, ids)
    pred = compile_filter(cpb.Filter(must=[eq("person_id", string_value="p-even")]), BUILTIN_FIELDS)
    rows = shard.search(FieldSearch("face", q, 5, pred, [], pb.SearchParams(nprobe=8), True, False))
    assert clone.searches == 1  # the filter needed an ID selector: CPU index
    assert all(p.metadata["person_id"].string_value == "p-even" for row in rows for _s, p in row)
    shard.delete_ids(["v0"])  # a tombstone is a selector too
    assert "v0" not in {i for row in shard_ids(shard, q, 5, nprobe=8) for i in row}
    assert clone.searches == 1
    shard.close()


def test_hnsw_stays_on_the_cpu(tmp_path: Path, fake_gpus: list[FakeGpuIndex]) -> None:
    shard, x, _ids = built_shard(tmp_path, pb.INDEX_KIND_HNSW)
    assert fake_gpus == []
    assert shard.field_stats()[0].build_state == pb.BUILD_STATE_READY
    assert shard_ids(shard, x[:3], 1) == [["v0"], ["v1"], ["v2"]]
    shard.close()


def test_a_failing_gpu_search_is_answered_from_the_cpu(
    tmp_path: Path, fake_gpus: list[FakeGpuIndex]
) -> None:
    shard, x, ids = built_shard(tmp_path, pb.INDEX_KIND_IVF_PQ)
    fake_gpus[0].fail = True
    assert shard_ids(shard, x[:4], 5, nprobe=8) == exact_top(x, x[:4], 5, ids)
    assert fake_gpus[0].searches == 1
    shard.close()
