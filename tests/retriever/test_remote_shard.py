"""The router's handle on a shard server cuts its own large requests to the server's limits:
fused and person searches gather more candidates, queries and ids than one client request may
carry. Runs against a real retriever process (``max_k`` 100) over gRPC."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.shard_router import CallBudget, RemoteShardHandle, ShardSearch
from harness.service_process import ServiceProcess
from tests.retriever.conftest import MODEL, Client, point, unit


def test_big_router_requests_are_cut_to_the_shard_servers_limits(
    server: ServiceProcess, alpha: Client
) -> None:
    rng = np.random.default_rng(11)
    x = unit(rng, 1500)
    ids = [f"m{i}" for i in range(1500)]
    alpha.create("remote-limits")
    for lo in range(0, 1500, 500):
        alpha.upsert("remote-limits", [point(ids[i], x[i]) for i in range(lo, lo + 500)])
    q = unit(rng, 300)  # more queries than max_search_batch (256)

    async def scenario() -> tuple[list[list[str]], list[str]]:
        async with grpc.aio.insecure_channel(server.address) as channel:
            handle = RemoteShardHandle(0, server.address, channel, "remote-limits")
            handle.max_k = 100  # the server's max_k (the router passes its own config)
            b = CallBudget(timeout=30.0, metadata=(("x-api-key", "key-alpha"),))
            req = ShardSearch(
                "face", MODEL, q, 500, None, None, [], pb.SearchParams(), False, False
            )
            rows = await handle.search(req, b)  # k 500 > max_k 100
            got = await handle.get(ids, False, b)  # 1,500 ids > 1,024 per Get
            return [[p.id for _s, p in row] for row in rows], [p.id for p in got]

    rows, got = asyncio.run(scenario())
    truth = [[ids[j] for j in np.argsort(-r)[:100]] for r in q @ x.T]
    assert len(rows) == 300 and rows == truth
    assert sorted(got) == sorted(ids)
