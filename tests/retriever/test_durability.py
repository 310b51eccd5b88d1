"""Durability: kill -9 in the middle of writes, snapshots, torn logs, deletes that stick."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.wal import OP_UPSERT, WriteAheadLog
from harness.service_process import start_service
from tests.retriever.conftest import Client, point, retriever_env, unit


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
