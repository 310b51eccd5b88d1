"""IVF-PQ and HNSW: built off the request path, exact answers meanwhile, tombstoned deletes that
never come back (not from the graph, not after a restart), rebuilds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build
from facesearch_server.retriever.build_schedule import SCRUB
from facesearch_server.retriever.filters import compile_filter
from facesearch_server.retriever.records import BUILTIN_FIELDS
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import FieldSearch
from harness.service_process import start_service
from tests.retriever.conftest import MODEL, Client, eq, point, retriever_env, unit

DIM = 16


def field(kind: int, **params: int) -> pb.VectorFieldSpec:
    from facesearch_server.retriever.index_build import resolve_params

    return pb.VectorFieldSpec(
        name="face",
        dimension=DIM,
        metric=pb.METRIC_INNER_PRODUCT,
        model_id=MODEL,
        index=resolve_params(DIM, pb.IndexParams(kind=kind, **params)),
    )


def exact_top(x: np.ndarray, q: np.ndarray, k: int, ids: list[str]) -> list[list[str]]:
    return [[ids[j] for j in np.argsort(-row)[:k]] for row in q @ x.T]


def shard_ids(shard: LocalShard, q: np.ndarray, k: int, **params: int) -> list[list[str]]:
    rows = shard.search(
        FieldSearch("face", q, k, None, [], pb.SearchParams(**params), False, False)
    )
    return [[p.id for _s, p in row] for row in rows]


@pytest.mark.parametrize("kind", [pb.INDEX_KIND_HNSW, pb.INDEX_KIND_IVF_PQ])
def test_exact_until_built_then_approximate_with_tombstones(tmp_path: Path, kind: int) -> None:
    rng = np.random.default_rng(1)
    requests: list[str] = []
    spec = field(kind, train_threshold=500, nlist=8, pq_m=4, hnsw_m=16)
    shard = LocalShard(tmp_path / "s", [spec], lambda s, name: requests.append(name))
    x = unit(rng, 1000)
    ids = [f"v{i}" for i in range(1000)]
    shard.upsert([point(ids[i], x[i]) for i in range(1000)])
    assert requests == ["face"]  # the build was queued, not run on the write path
    stats = shard.field_stats()[0]
    assert stats.build_state == pb.BUILD_STATE_BUILDING and stats.build_progress == 0.0
    q = unit(rng, 20)
    assert shard_ids(shard, q, 10) == exact_top(x, q, 10, ids)  # exact meanwhile

    shard.build_now("face")
    stats = shard.field_stats()[0]
    assert stats.build_state == pb.BUILD_STATE_READY
    if kind == pb.INDEX_KIND_IVF_PQ:
        assert stats.effective_index.nlist == 8
    truth = exact_top(x, q, 10, ids)
    got = shard_ids(shard, q, 10, rescore_top=100, nprobe=8, ef_search=128)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)])
    assert recall >= 0.9

    # Delete the top hits: they are tombstones in the built index and must not come back.
    victims = sorted({row[0] for row in truth})
    assert shard.delete_ids(victims) == len(victims)
    assert shard.field_stats()[0].tombstones == len(victims)
    found = {i for row in shard_ids(shard, q, 10) for i in row}
    assert not found & set(victims)
    # Re-adding under a new id lands in the un-indexed delta and is still found.
    shard.upsert([point("fresh", q[0])])
    assert shard_ids(shard, q[:1], 1) == [["fresh"]]
    shard.snapshot()
    shard.close()

    reopened = LocalShard(tmp_path / "s", [spec], lambda s, name: requests.append(name))
    assert reopened.field_stats()[0].build_state == pb.BUILD_STATE_READY
    assert reopened.field_stats()[0].tombstones == len(victims)
    found = {i for row in shard_ids(reopened, q, 10) for i in row}
    assert not found & set(victims) and "fresh" in found

    # Enough churn queues a rebuild, which folds tombstones and delta in.
    requests.clear()
    reopened.delete_ids(ids[500:800])
    assert requests == ["face"]
    reopened.build_now("face")
    st = reopened.field_stats()[0]
    assert st.tombstones == 0 and st.build_state == pb.BUILD_STATE_READY
    found = {i for row in shard_ids(reopened, unit(rng, 50), 20) for i in row}
    assert not found & (set(victims) | set(ids[500:800]))
    reopened.close()


@pytest.mark.slow
def test_hnsw_through_the_service(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    env = retriever_env(tmp_path / "data")
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        params = pb.IndexParams(kind=pb.INDEX_KIND_HNSW, train_threshold=800, hnsw_m=16)
        c.create("graph", shards=2, index=params)
        x = unit(rng, 2000)
        states = set()
        for start in range(0, 2000, 500):
            c.upsert("graph", [point(f"g{i}", x[i]) for i in range(start, start + 500)])
            info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="graph")).collection
            states.add(info.field_stats[0].build_state)
            assert len(c.ids("graph", x[:4], k=5)) == 4  # searches keep answering
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="graph")).collection
            if info.field_stats[0].build_state == pb.BUILD_STATE_READY:
                break
            time.sleep(0.2)
        fs = info.field_stats[0]
        assert fs.build_state == pb.BUILD_STATE_READY, fs
        assert fs.effective_index.hnsw_m == 16
        # ef_search was left to tuning: each shard measured the width that reaches 0.95.
        assert fs.effective_index.ef_search >= 16 and fs.measured_recall >= 0.95, fs
        assert fs.index_bytes > 2000 * DIM * 4
        c.Delete(pb.DeleteRequest(collection="graph", ids=pb.IdList(ids=["g1", "g2", "g3"])))
        hits = c.ids("graph", x[1:4], k=3)
        assert all(h not in {"g1", "g2", "g3"} for row in hits for h in row)
        # Tombstones until the purge rebuild, queued at once, has dropped them.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="graph")).collection
            if info.field_stats[0].tombstones == 0:
                break
            time.sleep(0.2)
        assert info.field_stats[0].tombstones == 0, info.field_stats[0]
        c.Snapshot(pb.SnapshotRequest(collection="graph", wait=True))
        tuned = c.DescribeCollection(pb.DescribeCollectionRequest(collection="graph"))
        tuned_fs = tuned.collection.field_stats[0]
    finally:
        svc.stop()
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        # The tuned width and its measured recall come back with the snapshot's index.
        again = c.DescribeCollection(pb.DescribeCollectionRequest(collection="graph"))
        fs = again.collection.field_stats[0]
        assert fs.effective_index.ef_search == tuned_fs.effective_index.ef_search
        assert fs.measured_recall == pytest.approx(tuned_fs.measured_recall)
        hits = c.ids("graph", x[1:4], k=3)
        assert all(h not in {"g1", "g2", "g3"} for row in hits for h in row)
        assert [row[0] for row in c.ids("graph", x[10:13], k=1)] == ["g10", "g11", "g12"]
    finally:
        svc.stop()


def test_delete_after_snapshot_of_a_built_graph_survives_a_crash(tmp_path: Path) -> None:
    """The graph in the snapshot still holds the record; the logged delete must win."""
    rng = np.random.default_rng(4)
    spec = field(pb.INDEX_KIND_HNSW, train_threshold=100, hnsw_m=16)
    shard = LocalShard(tmp_path / "s", [spec], lambda s, name: None)
    x = unit(rng, 300)
    shard.upsert([point(f"h{i}", x[i]) for i in range(300)])
    shard.build_now("face")
    shard.snapshot()
    assert shard.delete_ids(["h7", "h8"]) == 2
    # No close, no snapshot: the process "dies" here and another opens the same directory.
    after = LocalShard(tmp_path / "s", [spec], lambda s, name: None)
    assert after.field_stats()[0].build_state == pb.BUILD_STATE_READY
    assert after.field_stats()[0].tombstones == 2
    assert shard_ids(after, x[[7, 8]], 3) == [
        [i for i in exact_top(x, x[[7]], 5, [f"h{j}" for j in range(300)])[0] if i != "h7"][:3],
        [i for i in exact_top(x, x[[8]], 5, [f"h{j}" for j in range(300)])[0] if i != "h8"][:3],
    ]
    assert not after.get(["h7", "h8"], False)
    after.close()
    shard.close()


@pytest.mark.parametrize("kind", [pb.INDEX_KIND_HNSW, pb.INDEX_KIND_IVF_PQ])
def test_forgotten_person_leaves_no_vectors_in_snapshotted_indexes(
    tmp_path: Path, kind: int
) -> None:
    """A delete by person is a request to forget: the built index (and its snapshot file) must
    not keep the faces until churn happens to cause a rebuild."""
    rng = np.random.default_rng(6)
    requests: list[str] = []
    spec = field(kind, train_threshold=200, nlist=4, pq_m=4, hnsw_m=16)
    shard = LocalShard(tmp_path / "s", [spec], lambda s, name: requests.append(name))
    x = unit(rng, 400)
    shard.upsert([point(f"f{i}", x[i], person_id="ann" if i < 10 else "bob") for i in range(400)])
    shard.build_now("face")
    shard.snapshot()
    requests.clear()

    flt = cpb.Filter(must=[eq("person_id", string_value="ann")])
    assert shard.delete_matching(compile_filter(flt, BUILTIN_FIELDS)) == 10
    assert requests == ["face"]  # 10 of 400 is far below the churn rebuild threshold
    forgotten = set(range(1, 11))  # labels of f0..f9

    def ann_labels() -> set[int] | None:
        snap = max(p for p in (tmp_path / "s").glob("snapshot-*") if p.suffix != ".tmp")
        path = snap / "ann-face.faiss"
        if not path.exists():
            return None
        index = faiss.read_index(str(path))
        return set(faiss.vector_to_array(index.id_map).tolist())

    # Before the purge rebuild ran, a snapshot keeps the index (a restart serves at full speed)
    # with what it owes: the forgotten labels, purged again after a restart.
    shard.snapshot()
    assert forgotten <= (ann_labels() or set())
    assert shard.field_stats()[0].pending_purge == 10
    shard.build_now("face")
    assert shard.field_stats()[0].pending_purge == 0
    # The purge queued a scrub snapshot: it replaces the one that held the forgotten vectors.
    assert requests == ["face", SCRUB]
    shard.build_now(SCRUB)
    held = ann_labels()
    assert held is not None and len(held) == 390 and not held & forgotten
    assert len(list((tmp_path / "s").glob("snapshot-*"))) == 1
    shard.upsert([point("late", x[0], person_id="cy")])
    shard.snapshot()
    held = ann_labels()
    assert held is not None and len(held) == 390 and not held & forgotten
    shard.close()
    again = LocalShard(tmp_path / "s", [spec], lambda s, name: None)
    assert again.field_stats()[0].build_state == pb.BUILD_STATE_READY
    assert again.field_stats()[0].tombstones == 0
    again.close()


def recording_shard(path: Path, spec: pb.VectorFieldSpec) -> tuple[LocalShard, list[str]]:
    """A shard whose build requests are recorded, not run; the settle timer never fires."""
    requests: list[str] = []
    shard = LocalShard(path, [spec], lambda s, name: requests.append(name))
    shard.builds.settle_s = 3600.0
    return shard, requests


def during_next_build(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` once inside the next full build, after it copied the vectors (as writes
    that arrive while a build runs do)."""
    real = index_build.build

    def build(*args: Any, **kw: Any) -> Any:
        monkeypatch.setattr(index_build, "build", real)
        action()
        return real(*args, **kw)

    monkeypatch.setattr(index_build, "build", build)


def test_writes_that_overtook_a_build_start_the_next_one_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk-load case: the first build starts at the threshold and the rest of the load
    arrives while it runs. Its end must start the next build, not wait for another write."""
    rng = np.random.default_rng(9)
    shard, requests = recording_shard(
        tmp_path / "s", field(pb.INDEX_KIND_HNSW, train_threshold=500)
    )
    x = unit(rng, 3000)
    shard.upsert([point(f"b{i}", x[i]) for i in range(500)])
    assert requests == ["face"]
    during_next_build(
        monkeypatch, lambda: shard.upsert([point(f"b{i}", x[i]) for i in range(500, 3000)])
    )
    shard.build_now("face")
    assert requests == ["face", "face"]  # re-checked when it ended
    st = shard.field_stats()[0]
    assert st.build_state == pb.BUILD_STATE_READY
    assert (st.indexed_vectors, st.vectors) == (500, 3000)  # stale: 2,500 in the delta
    shard.build_now("face")
    st = shard.field_stats()[0]
    assert (st.indexed_vectors, st.vectors) == (3000, 3000)
    assert requests == ["face", "face"]
    assert not shard.state.fields["face"].delta  # searches scan no delta any more
    shard.close()


def test_one_more_upsert_after_a_stale_build_starts_a_rebuild(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    spec = field(pb.INDEX_KIND_HNSW, train_threshold=500)
    x = unit(rng, 3001)
    # A stale build on disk: built at 500, then 2,500 more with no build running.
    stale = LocalShard(tmp_path / "s", [spec])
    stale.upsert([point(f"u{i}", x[i]) for i in range(500)])
    stale.build_now("face")
    stale.upsert([point(f"u{i}", x[i]) for i in range(500, 3000)])
    stale.snapshot()
    stale.close()
    shard, requests = recording_shard(tmp_path / "s", spec)
    assert shard.field_stats()[0].indexed_vectors == 500
    shard.upsert([point("u3000", x[3000])])
    assert requests == ["face"]
    shard.build_now("face")
    st = shard.field_stats()[0]
    assert (st.indexed_vectors, st.vectors) == (3001, 3001)
    shard.close()


def test_a_small_delta_is_folded_in_by_an_extension_once_writes_pause(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    shard, requests = recording_shard(
        tmp_path / "s", field(pb.INDEX_KIND_HNSW, train_threshold=500, hnsw_m=16)
    )
    x = unit(rng, 2300)
    shard.upsert([point(f"e{i}", x[i]) for i in range(2000)])
    shard.build_now("face")
    requests.clear()
    built = shard.state.fields["face"].ann
    assert built is not None and built.built_n == 2000
    shard.upsert([point(f"e{i}", x[i]) for i in range(2000, 2010)])
    assert requests == []  # 10 vectors: not worth copying the index while writes go on
    shard.builds.settle_s = 0.0  # writes have paused
    shard.builds.request_due()
    assert requests == ["face"]
    shard.build_now("face")
    ann = shard.state.fields["face"].ann
    assert ann is not None and len(ann.covered) == 2010 and ann.tuning == built.tuning
    assert ann.built_n == 2000 and ann.index is not built.index
    assert shard.field_stats()[0].indexed_vectors == 2010
    # Found through the index now, not the delta.
    assert shard_ids(shard, x[2000:2010], 1) == [[f"e{i}"] for i in range(2000, 2010)]
    assert not shard.state.fields["face"].delta
    # Extensions add up: growth past REBUILD_FRACTION (400 of 2000) re-tunes by a full rebuild.
    x2 = unit(rng, 400)
    requests.clear()
    shard.upsert([point(f"g{i}", x2[i]) for i in range(300)])
    assert requests == ["face"]
    shard.build_now("face")
    ann = shard.state.fields["face"].ann
    assert ann is not None and ann.built_n == 2000 and ann.grown == 310
    shard.upsert([point(f"g{i}", x2[i]) for i in range(300, 391)])
    assert requests == ["face", "face"]
    shard.build_now("face")
    ann = shard.state.fields["face"].ann
    assert ann is not None and ann.built_n == 2401 and ann.grown == 0
    shard.close()


def test_every_delete_is_purged_also_one_made_while_a_build_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(12)
    shard, requests = recording_shard(
        tmp_path / "s", field(pb.INDEX_KIND_HNSW, train_threshold=500, hnsw_m=16)
    )
    x = unit(rng, 1000)
    shard.upsert([point(f"d{i}", x[i]) for i in range(1000)])
    # Deleted after the build copied the vectors: the new index holds it.
    during_next_build(monkeypatch, lambda: shard.delete_ids(["d5"]))
    shard.build_now("face")
    st = shard.field_stats()[0]
    assert (st.tombstones, st.pending_purge) == (1, 1)
    assert requests == ["face", "face"]  # the purge rebuild follows at once
    shard.build_now("face")
    st = shard.field_stats()[0]
    assert (st.tombstones, st.pending_purge, st.indexed_vectors) == (0, 0, 999)
    assert requests[-1] == SCRUB
    shard.build_now(SCRUB)
    # A delete by id of 2 of 999 is far below the churn rule, and still purged at once.
    requests.clear()
    assert shard.delete_ids(["d7", "d8"]) == 2
    assert requests == ["face"]
    assert shard.field_stats()[0].pending_purge == 2
    assert "d7" not in {i for row in shard_ids(shard, x[[7, 8]], 5) for i in row}
    shard.close()
