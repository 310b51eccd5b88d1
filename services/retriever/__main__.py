"""``python -m facesearch_server.retriever`` (or ``facesearch-retriever``).

Two deployments from one build: with no ``shard_servers`` configured every shard lives in this
process (the embedded default); with ``shard_servers`` (a list of host:port, env
``FACESEARCH_RETRIEVER_SHARD_SERVERS='[a:1, b:2]'``) this process is a router holding only the
catalog and fanning out to those servers, which are plain retriever processes themselves.

Keys (file section ``retriever`` or ``FACESEARCH_RETRIEVER_<KEY>``): data_dir, shard_servers,
max_k (1000), max_upsert_batch (1024), max_search_batch (256), snapshot_interval_s (60),
snapshot_min_entries (1000), faiss_omp_threads (1; 0 = all cores), metrics_refresh_s (15).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from facesearch_server.retriever import gpu, metrics
from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.collection import Limits
from facesearch_server.retriever.index_build import BuildQueue
from facesearch_server.retriever.servicer import RetrieverServicer
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_router import (
    CallBudget,
    LocalShardHandle,
    RemoteShardHandle,
    ShardHandle,
    ShardSet,
    shard_collection_name,
)
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.downstream import open_channel
from facesearch_server.runtime.errors import Unavailable
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service


def _local_factory(root: Path):  # type: ignore[no-untyped-def]
    def on_build(shard: LocalShard, field: str) -> None:
        BuildQueue.shared().submit(lambda: shard.build_now(field))

    async def make(
        tenant: str,
        name: str,
        uid: str,
        spec: pb.CreateCollectionRequest,
        b: CallBudget,
        create: bool,
    ) -> ShardSet:
        def open_all() -> list[ShardHandle]:
            base = root / "collections" / uid
            return [
                LocalShardHandle(
                    i, LocalShard(base / f"shard-{i:03d}", list(spec.vector_fields), on_build)
                )
                for i in range(spec.shard_count)
            ]

        handles = await asyncio.to_thread(open_all)
        for h in handles:
            assert isinstance(h, LocalShardHandle)
            h.shard._maybe_build()  # an index not in the snapshot is rebuilt after a restart
        return ShardSet(handles)

    return make


def _remote_factory(  # type: ignore[no-untyped-def]
    cfg: ServerConfig, servers: list[str], limits: Limits
):
    # Opened on first use: a grpc.aio channel belongs to the event loop it was made on.
    channels: dict[str, grpc.aio.Channel] = {}

    async def make(
        tenant: str,
        name: str,
        uid: str,
        spec: pb.CreateCollectionRequest,
        b: CallBudget,
        create: bool,
    ) -> ShardSet:
        for a in servers:
            if a not in channels:
                channels[a] = open_channel(a, cfg)
        remote = shard_collection_name(name, uid)
        handles = [
            RemoteShardHandle(
                i,
                a,
                channels[a],
                remote,
                max_k=limits.max_k,
                max_queries=limits.max_search_batch,
            )
            for i, a in enumerate(servers)
        ]
        if create:
            results = await asyncio.gather(
                *(h.create(spec, b) for h in handles), return_exceptions=True
            )
            failed = [
                (h.location, r) for h, r in zip(handles, results, strict=True) if r is not None
            ]
            if failed:
                raise Unavailable(
                    f"could not create {name!r} on shard servers {[f[0] for f in failed]}: "
                    f"{failed[0][1]}; retry when they are up"
                )
        return ShardSet(handles)  # type: ignore[arg-type]

    return make


def _servers(raw: object) -> list[str]:
    if not raw:
        return []
    if isinstance(raw, str):
        return [s.strip() for s in raw.split(",") if s.strip()]
    return [str(s) for s in raw]  # type: ignore[attr-defined]


def build(cfg: ServerConfig) -> ServiceDefinition:
    gpu.configure(int(cfg.get("faiss_omp_threads", 1)))
    data_dir = Path(cfg.get("data_dir", cfg.data_dir)).expanduser()
    servers = _servers(cfg.get("shard_servers"))
    # The shard servers are assumed to run with the router's limits (one config file).
    limits = Limits(
        max_k=int(cfg.get("max_k", 1000)),
        max_upsert_batch=int(cfg.get("max_upsert_batch", 1024)),
        max_search_batch=int(cfg.get("max_search_batch", 256)),
    )
    factory = _remote_factory(cfg, servers, limits) if servers else _local_factory(data_dir)
    catalog = Catalog(data_dir, factory)
    servicer = RetrieverServicer(cfg, catalog, limits, fixed_shards=len(servers) or None)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        await catalog.load()
        if not servers:
            interval = float(cfg.get("snapshot_interval_s", 60))
            min_entries = int(cfg.get("snapshot_min_entries", 1000))
            tasks.append(asyncio.create_task(servicer.snapshot_loop(interval, min_entries)))
            refresh_s = float(cfg.get("metrics_refresh_s", 15))
            tasks.append(asyncio.create_task(metrics.refresh_loop(catalog, refresh_s)))

    async def stop() -> None:
        for t in tasks:
            t.cancel()
        await catalog.close()

    return ServiceDefinition(
        servicers=[
            Servicer("facesearch.v1.Retriever", servicer, pb_grpc.add_RetrieverServicer_to_server)
        ],
        on_start=[start],
        on_stop=[stop],
    )


def main() -> None:
    run_service("retriever", build)


if __name__ == "__main__":
    main()
