"""Durability: kill -9 in the middle of writes, snapshots, torn logs, deletes that stick."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import index_build
from facesearch_server.retriever.build_schedule import SCRUB
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_search import FieldSearch
from facesearch_server.retriever.wal import OP_UPSERT, WriteAheadLog
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import MODEL, Client, point, retriever_env, unit


def test_wal_replays_intact_entries_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    list(wal.replay(0))
    for i in range(5):
        wal.append(OP_UPSERT, f"entry-{i}".encode())
    wal.close()
    seg = next(tmp_path.glob("wal-*.log"))
    with open(seg, "ab") as f:
        f.write(b"\x07\x00\x00\x00garbage")  # a write cut short by a crash
    again = WriteAheadLog(tmp_path)
    assert [p for _s, _o, p in again.replay(2)] == [b"entry-2", b"entry-3", b"entry-4"]
    assert again.append(OP_UPSERT, b"after") == 6
    again.close()
    third = WriteAheadLog(tmp_path)
    assert [p for _s, _o, p in third.replay(0)][-1] == b"after"


@pytest.mark.slow
def test_kill_9_during_writes_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    """Acknowledged upserts survive, acknowledged deletes stay deleted, the store reopens."""
    env = retriever_env(tmp_path / "data", snapshot_interval_s="0.3", snapshot_min_entries="3")
    svc = start_service("retriever", env)
    rng = np.random.default_rng(3)
    x = unit(rng, 4000)
    acked: dict[str, int] = {}  # id -> row of x of its last acknowledged version
    deleted: set[str] = set()
    in_doubt: set[str] = set()
    stop = threading.Event()
    try:
        c = Client(svc.channel(), None)
        c.create("durable", shards=2)

        def writer() -> None:
            n = 0
            while not stop.is_set() and n + 20 <= len(x):
                batch = {f"w{n + j}": n + j for j in range(20)}
                # Replace a few earlier ids too, so a replay must keep the latest version.
                redo = [i for i in list(acked)[-5:] if i not in deleted]
                rows = dict(batch)
                for i in redo:
                    rows[i] = (acked[i] + 1) % len(x)
                pts = [point(i, x[r]) for i, r in rows.items()]
                try:
                    c.upsert("durable", pts)
                except grpc.RpcError:
                    in_doubt.update(rows)
                    return
                acked.update(rows)
                n += 20
                victims = [i for i in list(acked)[::7] if i not in deleted][:3]
                try:
                    c.Delete(
                        pb.DeleteRequest(collection="durable", ids=pb.IdList(ids=victims)),
                        timeout=10,
                    )
                except grpc.RpcError:
                    in_doubt.update(victims)
                    return
                deleted.update(victims)

        t = threading.Thread(target=writer)
        t.start()
        deadline = time.monotonic() + 20
        while len(acked) < 1500 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.05)
        writing = t.is_alive()
        svc.proc.kill()  # SIGKILL: no drain, no flush, no snapshot
        svc.proc.wait(timeout=10)
        stop.set()
        t.join(timeout=30)
    finally:
        svc.stop(timeout=5)
    assert writing, "the kill should land while the writer is still writing"
    assert len(acked) >= 200, "the writer made too little progress to test anything"
    snapshots = list((tmp_path / "data").rglob("snapshot-*"))
    assert snapshots, "background snapshots should have run during the stream"

    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        live = sorted(set(acked) - deleted - in_doubt)
        got = {}
        for start in range(0, len(live), 1000):
            req = pb.GetRequest(
                collection="durable", ids=live[start : start + 1000], with_vectors=True
            )
            got.update({p.id: p for p in c.Get(req).points})
        assert set(got) == set(live)
        for i in live:
            assert np.allclose(got[i].vectors["face"].values, x[acked[i]]), i
        gone = sorted(deleted - in_doubt)
        assert not c.Get(pb.GetRequest(collection="durable", ids=gone)).points
        hits = {
            h.id
            for r in c.search("durable", x[[acked[i] for i in gone[:50]]], k=3).results
            for h in r.hits
        }
        assert not hits & set(gone)
        info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="durable")).collection
        assert len(live) <= info.points <= len(live) + len(in_doubt)
    finally:
        svc.stop()


def test_snapshot_then_delete_then_restart(tmp_path: Path) -> None:
    env = retriever_env(tmp_path / "data", snapshot_interval_s="3600")
    rng = np.random.default_rng(5)
    x = unit(rng, 50)
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        c.create("snap", shards=2)
        c.upsert("snap", [point(f"s{i}", x[i], person_id=f"p{i % 5}") for i in range(50)])
        r = c.Snapshot(pb.SnapshotRequest(collection="snap", wait=True))
        assert r.sequence >= 1 and r.HasField("finished")
        info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="snap")).collection
        assert all(s.wal_entries == 0 and s.HasField("last_snapshot") for s in info.shards)
        assert c.Delete(pb.DeleteRequest(collection="snap", person_id="p1")).deleted == 10
        c.upsert("snap", [point("late", x[0])])
    finally:
        svc.stop()
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        ids = {i for row in c.ids("snap", x, k=50) for i in row}
        assert ids == {f"s{i}" for i in range(50) if i % 5 != 1} | {"late"}
        c.Snapshot(pb.SnapshotRequest(collection="snap", wait=True))
    finally:
        svc.stop()
    # Third start from the second snapshot alone (its log was truncated).
    wal_files = list((tmp_path / "data").rglob("wal-*.log"))
    assert all(f.stat().st_size == 0 for f in wal_files)
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        assert c.Stats(pb.StatsRequest(collection="snap")).points == 41
        assert not c.Get(pb.GetRequest(collection="snap", ids=["s1", "s6"])).points
    finally:
        svc.stop()


def test_drop_removes_files_and_survives_restart(tmp_path: Path) -> None:
    env = retriever_env(tmp_path / "data")
    x = unit(np.random.default_rng(8), 4)
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        for name in ("keep", "gone", "page3"):
            c.create(name)
        c.upsert("gone", [point("a", x[0])])
        c.upsert("keep", [point("k", x[1])])
        first = c.ListCollections(pb.ListCollectionsRequest(page=cpb.PageRequest(page_size=2)))
        assert [i.name for i in first.collections] == ["gone", "keep"]
        rest = c.ListCollections(
            pb.ListCollectionsRequest(page=cpb.PageRequest(page_token=first.page.next_page_token))
        )
        assert [i.name for i in rest.collections] == ["page3"] and not rest.page.next_page_token
        c.DropCollection(pb.DropCollectionRequest(collection="gone"))
        assert len(list((tmp_path / "data" / "collections").iterdir())) == 2
    finally:
        svc.stop()
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        names = [i.name for i in c.ListCollections(pb.ListCollectionsRequest()).collections]
        assert names == ["keep", "page3"]
        c.create("gone")
        assert c.Stats(pb.StatsRequest(collection="gone")).points == 0
        assert c.ids("keep", x[1], k=1) == [["k"]]
    finally:
        svc.stop()


def _hnsw(threshold: int) -> pb.VectorFieldSpec:
    params = pb.IndexParams(kind=pb.INDEX_KIND_HNSW, train_threshold=threshold, hnsw_m=16)
    return pb.VectorFieldSpec(
        name="face",
        dimension=16,
        metric=pb.METRIC_INNER_PRODUCT,
        model_id=MODEL,
        index=index_build.resolve_params(16, params),
    )


def _recording(path: Path, spec: pb.VectorFieldSpec) -> tuple[LocalShard, list[str]]:
    """A shard whose build requests are recorded, not run; the settle timer never fires."""
    requests: list[str] = []
    shard = LocalShard(path, [spec], lambda s, name: requests.append(name))
    shard.builds.settle_s = 3600.0
    return shard, requests


def _snapshot_ann_labels(shard_dir: Path) -> tuple[set[int], set[int]]:
    """(labels in the newest snapshot's HNSW file, labels it records as owed a purge)."""
    (snap,) = [p for p in shard_dir.glob("snapshot-*") if not p.name.endswith(".tmp")]
    index = faiss.read_index(str(snap / "ann-face.faiss"))
    held = set(faiss.vector_to_array(index.id_map).tolist())
    return held, set(np.fromfile(snap / "purge-face.i64", dtype=np.int64).tolist())


def test_restart_serves_the_snapshot_index_at_once_and_purges_in_the_background(
    tmp_path: Path,
) -> None:
    """A snapshot taken after deletes keeps its built index (no rebuild to serve at full speed
    after a restart) with the deletes it owes; they stay filtered, the purge rebuild is queued
    at open, and the scrub snapshot after it leaves no deleted vector on disk."""
    spec = _hnsw(200)
    x = unit(np.random.default_rng(31), 1000)
    ids = [f"r{i}" for i in range(1000)]
    shard, requests = _recording(tmp_path / "s", spec)
    shard.upsert([point(ids[i], x[i]) for i in range(1000)])
    shard.build_now("face")
    requests.clear()
    victims = ids[::50]  # 20
    victim_labels = set(shard.state.store.labels_of(victims))
    assert shard.delete_ids(victims) == 20
    assert requests == ["face"]  # queued at once; "the process dies" before it runs
    shard.snapshot()
    shard.close()
    held, owed = _snapshot_ann_labels(tmp_path / "s")
    assert victim_labels <= held and owed == victim_labels  # the window: until the purge

    again, requests = _recording(tmp_path / "s", spec)
    st = again.field_stats()[0]
    # In force at open: no build ran, and nothing is left in the delta.
    assert st.build_state == pb.BUILD_STATE_READY and requests == []
    assert (st.vectors, st.indexed_vectors) == (980, 980)
    assert (st.tombstones, st.pending_purge) == (20, 20)
    found = {
        p.id
        for row in again.search(
            FieldSearch("face", x[::50], 5, None, [], pb.SearchParams(), False, False)
        )
        for _s, p in row
    }
    assert not found & set(victims) and not again.get(victims, False)
    again.resume_builds()
    assert requests == ["face"]  # the purge, in the background
    again.build_now("face")
    st = again.field_stats()[0]
    assert (st.tombstones, st.pending_purge, st.indexed_vectors) == (0, 0, 980)
    assert requests == ["face", SCRUB]
    again.build_now(SCRUB)
    held, owed = _snapshot_ann_labels(tmp_path / "s")
    assert not held & victim_labels and not owed and len(held) == 980
    assert all(f.stat().st_size == 0 for f in (tmp_path / "s").rglob("wal-*.log"))
    again.close()

    third, requests = _recording(tmp_path / "s", spec)
    third.resume_builds()
    st = third.field_stats()[0]
    assert requests == [] and st.build_state == pb.BUILD_STATE_READY  # nothing left to do
    assert (st.indexed_vectors, st.tombstones, st.pending_purge) == (980, 0, 0)
    assert not third.get(victims, False)
    third.close()


def _face_stats(c: Client, name: str) -> pb.VectorFieldStats:
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection
    fs = info.field_stats[0]
    # A built index over live vectors covers some: 0 means Describe does not pass the stat on.
    assert fs.build_state != pb.BUILD_STATE_READY or fs.indexed_vectors > 0, (
        "DescribeCollection reports no indexed_vectors: the collection's field stats must be "
        "merged by shard_router.merge_field_stats"
    )
    return fs


def _wait(c: Client, name: str, done: Callable[[pb.VectorFieldStats], bool]) -> pb.VectorFieldStats:
    deadline = time.monotonic() + 90  # a wait on two busy cores, not a timing
    fs = _face_stats(c, name)
    while not done(fs) and time.monotonic() < deadline:
        time.sleep(0.25)
        fs = _face_stats(c, name)
    return fs


def _built_logged(svc: ServiceProcess) -> list[dict[str, object]]:
    return [
        r
        for r in svc.log_records()
        if r.get("message") in ("index built", "index extended")
        or r.get("msg") in ("index built", "index extended")
    ]


@pytest.mark.slow
def test_restart_after_deletes_serves_the_built_index_at_once(tmp_path: Path) -> None:
    env = retriever_env(tmp_path / "data", snapshot_interval_s="3600")
    n = 20_000
    x = unit(np.random.default_rng(32), n)
    victims = [f"v{i}" for i in range(0, n, 500)]  # 40
    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        params = pb.IndexParams(
            kind=pb.INDEX_KIND_HNSW, train_threshold=2000, hnsw_m=16, ef_construction=40
        )
        c.create("restart", shards=2, index=params)

        def batches() -> Iterator[pb.UpsertRequest]:
            for lo in range(0, n, 1000):
                pts = [point(f"v{i}", x[i]) for i in range(lo, lo + 1000)]
                yield pb.UpsertRequest(collection="restart", points=pts, durable=False)

        list(c.stub.UpsertStream(batches(), metadata=c.md, timeout=120))
        fs = _wait(c, "restart", lambda f: f.indexed_vectors == n)
        assert fs.indexed_vectors == n, fs
        c.Delete(pb.DeleteRequest(collection="restart", ids=pb.IdList(ids=victims)))
        c.Snapshot(pb.SnapshotRequest(collection="restart", wait=True))
        svc.proc.kill()  # no drain: whatever the purge got done before this is all there is
        svc.proc.wait(timeout=10)
    finally:
        svc.stop(timeout=5)

    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        fs = _face_stats(c, "restart")  # the first call after start: no wait
        assert fs.build_state == pb.BUILD_STATE_READY, fs
        assert (fs.vectors, fs.indexed_vectors) == (n - 40, n - 40), fs
        hits = {h for row in c.ids("restart", x[::500], k=5) for h in row}
        assert not hits & set(victims)
        assert not c.Get(pb.GetRequest(collection="restart", ids=victims)).points
        # The purge (if the snapshot still owed it) runs in the background, then the scrub.
        fs = _wait(c, "restart", lambda f: f.pending_purge == 0 and f.tombstones == 0)
        assert (fs.pending_purge, fs.tombstones, fs.indexed_vectors) == (0, 0, n - 40), fs
        deadline = time.monotonic() + 60
        shard_dirs = sorted((tmp_path / "data" / "collections").glob("*/shard-*"))
        while time.monotonic() < deadline:
            try:
                files = [_snapshot_ann_labels(d) for d in shard_dirs]
            except (ValueError, RuntimeError, FileNotFoundError):
                files = []  # a snapshot being replaced right now
            if files and sum(len(h) for h, _o in files) == n - 40:
                break
            time.sleep(0.25)
        assert files and all(not owed for _h, owed in files)
        assert sum(len(held) for held, _o in files) == n - 40  # no deleted vector on disk
    finally:
        svc.stop()

    svc = start_service("retriever", env)
    try:
        c = Client(svc.channel(), None)
        fs = _face_stats(c, "restart")
        assert fs.build_state == pb.BUILD_STATE_READY and fs.indexed_vectors == n - 40, fs
        assert c.ids("restart", x[[1]], k=1) == [["v1"]]
        time.sleep(1.0)
        assert not _built_logged(svc)  # nothing was rebuilt or owed
    finally:
        svc.stop()
