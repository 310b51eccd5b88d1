"""The router's handle on a shard server (``RemoteShardHandle`` over the internal RetrieverShard
service) cuts its own large requests to the internal contract's limits: fused and person
searches gather more candidates, queries and ids than one request may carry. Runs against a
real retriever process over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.limits import max_items, value_range
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_internal_pb2 as ipb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import shard_router
from facesearch_server.retriever.filters import compile_filter
from facesearch_server.retriever.records import BUILTIN_FIELDS
from facesearch_server.retriever.shard_host import ShardHost
from facesearch_server.retriever.shard_router import CallBudget, RemoteShardHandle, ShardSearch
from facesearch_server.retriever.shard_search import FieldSearch
from facesearch_server.runtime.errors import NotFound
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import DIM, MODEL, eq, point, retriever_env, unit

UID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def shard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A retriever with auth off: its internal service answers whoever reaches the port."""
    svc = start_service("retriever", retriever_env(tmp_path_factory.mktemp("shard") / "data"))
    yield svc
    svc.stop()


def test_the_router_reads_its_limits_from_the_contract() -> None:
    assert shard_router.MAX_REMOTE_QUERIES == max_items(ipb.ShardSearchRequest, "queries")
    assert shard_router.MAX_REMOTE_GET_IDS == max_items(ipb.ShardGetRequest, "ids")
    assert shard_router.MAX_REMOTE_K == value_range(ipb.ShardSearchRequest, "k")[1]


def test_big_router_requests_are_cut_to_the_shard_servers_limits(
    shard_server: ServiceProcess,
) -> None:
    rng = np.random.default_rng(11)
    x = unit(rng, 1500)
    ids = [f"m{i}" for i in range(1500)]
    q = unit(rng, 300)
    spec = pb.CreateCollectionRequest(
        vector_fields=[pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)]
    )
    person = cpb.Filter(must=[eq("person_id", string_value="p1")])
    pred = compile_filter(person, BUILTIN_FIELDS)

    async def scenario() -> tuple[list[list[str]], list[str], list[str], int]:
        async with grpc.aio.insecure_channel(shard_server.address) as channel:
            handle = RemoteShardHandle(0, shard_server.address, channel, UID)
            # Smaller limits than the contract's, so small data shows the cutting.
            handle.max_k, handle.max_queries, handle.max_get_ids = 100, 128, 512
            b = CallBudget(timeout=30.0)
            await handle.create(spec, b)
            await handle.create(spec, b)  # a retried create finds its shard
            for lo in range(0, 1500, 500):
                pts = [point(ids[i], x[i], person_id=f"p{i % 3}") for i in range(lo, lo + 500)]
                assert await handle.upsert(pts, True, b) == (500, 0)
            search = FieldSearch("face", q, 500, None, [], pb.SearchParams(), False, False)
            req = ShardSearch(search, MODEL, None)
            rows = await handle.search(req, b)  # k 500 > max_k 100, 300 queries > 128
            got = await handle.get(ids, False, b)  # 1,500 ids > 512 per GetShard
            faces = await handle.get_matching(person, pred, "face", 10_000, b)  # type: ignore[arg-type]
            deleted = await handle.delete_filter(person, pred, b)  # type: ignore[arg-type]
            report = await handle.report(b)
            assert report.available and report.points == 1000
            await handle.drop(b)
            await handle.drop(b)  # dropping what is gone is done, not an error
            return (
                [[p.id for _s, p in row] for row in rows],
                [p.id for p in got],
                [p.id for p in faces],
                deleted,
            )

    rows, got, faces, deleted = asyncio.run(scenario())
    truth = [[ids[j] for j in np.argsort(-r)[:100]] for r in q @ x.T]
    assert len(rows) == 300 and rows == truth
    assert sorted(got) == sorted(ids)
    assert sorted(faces) == sorted(ids[i] for i in range(1500) if i % 3 == 1)
    assert deleted == 500


def test_a_shard_server_reopens_its_shards_from_disk_and_drops_them(tmp_path: Path) -> None:
    """After a restart the first call naming a shard opens it from its directory (its field
    specs are kept there); a dropped shard is gone, and a shard never created is NOT_FOUND."""
    fields = [pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)]
    x = unit(np.random.default_rng(3), 5)
    key = (UID, 2)

    async def scenario() -> None:
        host = ShardHost(tmp_path / "shards")
        shard = await host.open(key, fields)
        await asyncio.to_thread(shard.upsert, [point(f"h{i}", x[i]) for i in range(5)])
        await host.close()

        again = ShardHost(tmp_path / "shards")  # a restarted shard server
        assert again.held() == [key]
        with pytest.raises(NotFound):
            await again.open((UID, 3))
        reopened = await again.open(key)
        assert reopened.count() == 5
        assert [p.id for p in reopened.get(["h1"], True)] == ["h1"]
        await again.drop(key)
        assert again.held() == [] and not (tmp_path / "shards" / UID).exists()
        with pytest.raises(NotFound):
            await again.open(key)
        with pytest.raises(NotFound):
            await again.drop(key)

    asyncio.run(scenario())
