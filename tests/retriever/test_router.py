"""The distributed deployment: a router process in front of three shard server processes,
all real retrievers over gRPC; the router reaches them through the internal RetrieverShard
service. One shard killed -> UNAVAILABLE, or partial results that say which shard is
missing."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import retriever_internal_pb2 as ipb
from facesearch_contract.v1 import retriever_internal_service_pb2_grpc as ipb_grpc
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.shard_router import shard_of
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import Client, code_of, point, retriever_env, unit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, list[ServiceProcess]]]:
    base: Path = tmp_path_factory.mktemp("cluster")
    shards: list[ServiceProcess] = []
    router = None
    try:
        for i in range(3):
            shards.append(start_service("retriever", retriever_env(base / f"shard{i}")))
        servers = "[" + ", ".join(s.address for s in shards) + "]"
        router = start_service(
            "retriever",
            retriever_env(base / "router", shard_servers=servers, downstream_timeout_s="5"),
        )
        yield router, shards
    finally:
        if router is not None:
            router.stop()
        for s in shards:
            s.stop()


def held(server: ServiceProcess) -> dict[tuple[str, int], int]:
    """(collection uid, shard number) -> points, of every shard a shard server holds."""
    stub = ipb_grpc.RetrieverShardStub(server.channel())
    refs = stub.ListShards(ipb.ListShardsRequest(), timeout=10).shards
    return {
        (r.collection_uid, r.shard): stub.DescribeShard(
            ipb.DescribeShardRequest(ref=r), timeout=10
        ).shard.points
        for r in refs
    }


def test_recreate_after_a_drop_that_missed_a_shard_starts_empty(
    cluster: tuple[ServiceProcess, list[ServiceProcess]],
) -> None:
    """A drop while a shard server stalls cannot remove that shard's copy; a later create of
    the same name must not adopt it (it gets the router's new uid in its shard-side name)."""
    router, shards = cluster
    c = Client(router.channel(), None)
    before = held(shards[2])
    c.create("phoenix", shards=0)
    x = unit(np.random.default_rng(12), 30)
    c.upsert("phoenix", [point(f"old{i}", x[i]) for i in range(30)])
    (old_shard,) = set(held(shards[2])) - set(before)
    assert old_shard[1] == 2  # shard 2 of the collection, by the router's uid
    shards[2].proc.send_signal(signal.SIGSTOP)
    try:
        code = code_of(
            lambda: c.DropCollection(pb.DropCollectionRequest(collection="phoenix"), timeout=2.0)
        )
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        shards[2].proc.send_signal(signal.SIGCONT)
    c.create("phoenix", shards=0)
    assert c.Stats(pb.StatsRequest(collection="phoenix")).points == 0
    assert not c.Get(pb.GetRequest(collection="phoenix", ids=[f"old{i}" for i in range(30)])).points
    # The new collection got a new uid on the stalled server, so it could not adopt the old
    # copy, which stays there under the old uid (unless the late drop reached it after all).
    now = held(shards[2])
    if old_shard in now:
        assert now[old_shard] == sum(1 for i in range(30) if shard_of(f"old{i}", 3) == 2)
    (new_shard,) = set(now) - set(before) - {old_shard}
    assert new_shard[0] != old_shard[0] and now[new_shard] == 0
    c.DropCollection(pb.DropCollectionRequest(collection="phoenix"))
    assert new_shard not in held(shards[2])


def test_router_fans_out_merges_and_reports_missing_shards(
    cluster: tuple[ServiceProcess, list[ServiceProcess]],
) -> None:
    router, shards = cluster
    c = Client(router.channel(), None)
    before = [held(s) for s in shards]
    info = c.create("routed", shards=0)
    assert info.shard_count == 3
    assert [s.location for s in info.shards] == [s.address for s in shards]
    assert code_of(lambda: c.create("routed2", shards=2)) == grpc.StatusCode.INVALID_ARGUMENT

    rng = np.random.default_rng(9)
    x = unit(rng, 300)
    ids = [f"r{i}" for i in range(300)]
    c.upsert("routed", [point(ids[i], x[i], person_id=f"p{i % 10}") for i in range(300)])
    # Each shard server holds exactly the ids hashed to it, as shard n of the router's uid; the
    # shard servers' own catalogs (the public API) know nothing of it.
    uids = set()
    for n, s in enumerate(shards):
        now = held(s)
        ((uid, number),) = set(now) - set(before[n])
        uids.add(uid)
        assert number == n and now[(uid, n)] == sum(1 for i in ids if shard_of(i, 3) == n)
        public = Client(s.channel(), None).ListCollections(pb.ListCollectionsRequest())
        assert not public.collections
    assert len(uids) == 1
    # The router serves only the public API.
    on_router = ipb_grpc.RetrieverShardStub(router.channel())
    assert code_of(lambda: on_router.ListShards(ipb.ListShardsRequest(), timeout=10)) == (
        grpc.StatusCode.UNIMPLEMENTED
    )

    q = unit(rng, 5)
    truth = [[ids[j] for j in np.argsort(-row)[:10]] for row in q @ x.T]
    assert c.ids("routed", q, k=10) == truth
    got = c.Get(pb.GetRequest(collection="routed", ids=["r1", "r2", "nope"], with_vectors=True))
    assert sorted(p.id for p in got.points) == ["r1", "r2"]
    assert c.Delete(pb.DeleteRequest(collection="routed", person_id="p3")).deleted == 30
    person = pb.SearchRequest(collection="routed")
    person.queries.add(k=3).terms.add(person_id="p4", person_aggregation=pb.PERSON_AGGREGATION_MAX)
    top = c.Search(person).results[0].hits
    assert top[0].score == pytest.approx(1.0, abs=1e-5) and int(top[0].id[1:]) % 10 == 4
    assert (
        c.DescribeCollection(pb.DescribeCollectionRequest(collection="routed")).collection.points
        == 270
    )

    # One shard server stalls (SIGSTOP: connected, never answers): the caller's deadline holds.
    stalled = shards[2]
    stalled.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        late = c.search("routed", q, k=10, allow_partial=True, timeout=2.0)
        assert time.monotonic() - t0 < 2.0
        assert list(late.missing_shards) == [2]
        assert all(shard_of(h.id, 3) != 2 for r in late.results for h in r.hits)
        assert code_of(lambda: c.search("routed", q, k=10, timeout=2.0)) in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
    finally:
        stalled.proc.send_signal(signal.SIGCONT)
    kept = np.array([i for i in range(300) if i % 10 != 3])
    assert c.ids("routed", q, k=10) == [
        [f"r{kept[j]}" for j in np.argsort(-r)[:10]] for r in q @ x[kept].T
    ]

    # One shard server dies.
    dead = 1
    shards[dead].proc.kill()
    shards[dead].proc.wait(timeout=10)
    assert code_of(lambda: c.search("routed", q, k=10)) == grpc.StatusCode.UNAVAILABLE
    partial = c.search("routed", q, k=10, allow_partial=True)
    assert list(partial.missing_shards) == [dead]
    alive = [i for i in ids if shard_of(i, 3) != dead and int(i[1:]) % 10 != 3]
    rows = np.array([int(i[1:]) for i in alive])
    expect = [[f"r{rows[j]}" for j in np.argsort(-r)[:10]] for r in q @ x[rows].T]
    assert [[h.id for h in r.hits] for r in partial.results] == expect
    info = c.DescribeCollection(pb.DescribeCollectionRequest(collection="routed")).collection
    assert [s.available for s in info.shards] == [True, False, True]
    # Writes never go partial: a batch touching the dead shard is refused.
    assert code_of(lambda: c.upsert("routed", [point(f"n{i}", x[i]) for i in range(20)])) == (
        grpc.StatusCode.UNAVAILABLE
    )
