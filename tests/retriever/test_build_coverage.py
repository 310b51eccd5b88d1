"""Builds keep up with loads, through the real service over gRPC: a bulk load ends with every
vector in the approximate index (no delta left to scan), without another write or a restart,
and DescribeCollection shows that coverage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.shard_router import merge_field_stats
from harness.service_process import start_service
from tests.retriever.conftest import Client, point, retriever_env, unit

# Generous: the build thread shares two busy cores with other suites. A wait, not a timing.
WAIT_S = 120.0


def face_stats(c: Client, name: str) -> pb.VectorFieldStats:
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection
    fs = info.field_stats[0]
    # A built index over live vectors covers some: 0 means Describe does not pass the stat on.
    assert fs.build_state != pb.BUILD_STATE_READY or fs.indexed_vectors > 0, (
        "DescribeCollection reports no indexed_vectors: the collection's field stats must be "
        "merged by shard_router.merge_field_stats"
    )
    return fs


def wait_for(
    c: Client, name: str, done: Callable[[pb.VectorFieldStats], bool]
) -> pb.VectorFieldStats:
    deadline = time.monotonic() + WAIT_S
    fs = face_stats(c, name)
    while not done(fs) and time.monotonic() < deadline:
        time.sleep(0.25)
        fs = face_stats(c, name)
    return fs


def fully_indexed(fs: pb.VectorFieldStats) -> bool:
    return fs.build_state == pb.BUILD_STATE_READY and fs.indexed_vectors == fs.vectors


@pytest.mark.slow
def test_a_bulk_load_in_one_stream_ends_fully_indexed(tmp_path: Path) -> None:
    """Before the fix, the first build started at the train threshold (5,000), the rest of the
    stream arrived while it ran, and nothing re-checked when it ended: the load finished with
    most vectors in the exact delta until another write or a restart."""
    n = 50_000
    x = unit(np.random.default_rng(21), n + 1)
    svc = start_service("retriever", retriever_env(tmp_path / "data"))
    try:
        c = Client(svc.channel(), None)
        # Default train threshold (5,000); a light graph so the builds fit two busy cores.
        params = pb.IndexParams(kind=pb.INDEX_KIND_HNSW, hnsw_m=16, ef_construction=40)
        c.create("load", shards=2, index=params)

        def batches() -> Iterator[pb.UpsertRequest]:
            for lo in range(0, n, 1000):
                pts = [point(f"p{i}", x[i]) for i in range(lo, lo + 1000)]
                yield pb.UpsertRequest(collection="load", points=pts, durable=False)

        acks = list(c.stub.UpsertStream(batches(), metadata=c.md, timeout=120))
        assert sum(a.result.upserted for a in acks) == n

        fs = wait_for(c, "load", fully_indexed)
        # Coverage 100%: every stored vector is in the graph, so searches scan no delta.
        assert (fs.build_state, fs.vectors, fs.indexed_vectors) == (pb.BUILD_STATE_READY, n, n)
        assert fs.tombstones == 0 and fs.pending_purge == 0
        assert fs.measured_recall > 0
        assert c.ids("load", x[[7]], k=1) == [["p7"]]

        # One more write after the load: folded in once writes pause, not left in the delta.
        c.upsert("load", [point("one-more", x[n])])
        fs = wait_for(c, "load", lambda f: f.vectors == n + 1 and fully_indexed(f))
        assert (fs.vectors, fs.indexed_vectors) == (n + 1, n + 1), fs
        assert c.ids("load", x[[n]], k=1) == [["one-more"]]
    finally:
        svc.stop()


def test_the_router_sums_coverage_over_shards() -> None:
    spec = pb.VectorFieldSpec(name="face", index=pb.IndexParams(kind=pb.INDEX_KIND_HNSW))
    ready = pb.BUILD_STATE_READY
    per = [
        pb.VectorFieldStats(name="face", build_state=ready, vectors=100, indexed_vectors=90),
        pb.VectorFieldStats(
            name="face", build_state=ready, vectors=50, indexed_vectors=50, pending_purge=3
        ),
    ]
    agg = merge_field_stats(spec, per)
    assert (agg.vectors, agg.indexed_vectors, agg.pending_purge) == (150, 140, 3)
    assert agg.build_state == ready
    assert merge_field_stats(spec, []).build_state == pb.BUILD_STATE_EXACT
