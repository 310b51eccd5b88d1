"""Small searches answered on the event loop (LocalShard.search_small, shard_search.is_small):
the same answers as the worker-thread path, and never taken for a search that may scan or for
a lock a writer holds (the loop must not block)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.filters import compile_filter
from facesearch_server.retriever.index_build import resolve_params
from facesearch_server.retriever.records import BUILTIN_FIELDS
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import (
    INLINE_MAX_QUERIES,
    INLINE_MAX_WIDTH,
    FieldSearch,
)
from tests.retriever.conftest import MODEL, eq, point, unit

DIM = 16
N = 600


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalShard, np.ndarray]:
    spec = pb.VectorFieldSpec(
        name="face",
        dimension=DIM,
        metric=pb.METRIC_INNER_PRODUCT,
        model_id=MODEL,
        index=resolve_params(
            DIM, pb.IndexParams(kind=pb.INDEX_KIND_HNSW, train_threshold=300, hnsw_m=16)
        ),
    )
    shard = LocalShard(tmp_path_factory.mktemp("inline") / "s", [spec], lambda s, name: None)
    x = unit(np.random.default_rng(3), N)
    shard.upsert([point(f"v{i}", x[i], person_id="ann") for i in range(N)])
    shard.build_now("face")
    assert shard.field_stats()[0].indexed_vectors == N
    return shard, x


def search(q: np.ndarray, **params: object) -> FieldSearch:
    return FieldSearch("face", q, 10, None, [], pb.SearchParams(**params), True, False)  # type: ignore[arg-type]


def test_small_search_answers_as_the_thread_path(built: tuple[LocalShard, np.ndarray]) -> None:
    shard, x = built
    for nq in (1, INLINE_MAX_QUERIES):
        q = x[:nq]
        small = shard.search_small(search(q))
        assert small is not None
        full = shard.search(search(q))
        assert [[(s, p.id, dict(p.metadata)) for s, p in row] for row in small] == [
            [(s, p.id, dict(p.metadata)) for s, p in row] for row in full
        ]
        assert [row[0][1].id for row in small] == [f"v{i}" for i in range(nq)]


def test_searches_that_may_scan_keep_the_worker_thread(
    built: tuple[LocalShard, np.ndarray],
) -> None:
    shard, x = built
    assert shard.search_small(search(x[: INLINE_MAX_QUERIES + 1])) is None
    assert shard.search_small(search(x[:1], exact=True)) is None
    assert shard.search_small(search(x[:1], ef_search=INLINE_MAX_WIDTH + 1)) is None
    flt = cpb.Filter(must=[eq("person_id", string_value="ann")])
    pred = compile_filter(flt, BUILTIN_FIELDS)
    filtered = FieldSearch("face", x[:1], 10, pred, [], pb.SearchParams(), True, False)
    assert shard.search_small(filtered) is None


def test_a_held_write_lock_is_not_waited_for(built: tuple[LocalShard, np.ndarray]) -> None:
    shard, x = built
    with shard._rw.write():  # in this very thread: waiting would never end
        assert shard.search_small(search(x[:1])) is None
    assert shard.search_small(search(x[:1])) is not None


def test_a_delta_keeps_the_worker_thread(tmp_path: Path) -> None:
    spec = pb.VectorFieldSpec(
        name="face",
        dimension=DIM,
        metric=pb.METRIC_INNER_PRODUCT,
        model_id=MODEL,
        index=resolve_params(DIM, pb.IndexParams(kind=pb.INDEX_KIND_HNSW, train_threshold=50)),
    )
    shard = LocalShard(tmp_path / "s", [spec], lambda s, name: None)
    x = unit(np.random.default_rng(4), 101)
    shard.upsert([point(f"v{i}", x[i]) for i in range(100)])
    shard.build_now("face")
    assert shard.search_small(search(x[:1])) is not None
    shard.upsert([point("late", x[100])])  # not in the graph: scanned exactly
    assert shard.search_small(search(x[100:101])) is None
    assert shard.search(search(x[100:101]))[0][0][1].id == "late"
