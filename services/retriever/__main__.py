"""``python -m facesearch_server.retriever`` (or ``facesearch-retriever``).

Two deployments from one build: with no ``shard_servers`` configured every shard lives in this
process (the embedded default); with ``shard_servers`` (a list of host:port, env
``FACESEARCH_RETRIEVER_SHARD_SERVERS='[a:1, b:2]'``) this process is a router holding only the
catalog and fanning out to those servers, which are plain retriever processes themselves:
every retriever without ``shard_servers`` also serves the internal RetrieverShard service,
holding routers' shards under ``<data_dir>/shards`` (only trusted peers may call it when auth
is on; see retriever_internal_service.proto). A router does not serve it.

Settings: RetrieverSettings (services/retriever/settings.py), tabled in
services/retriever/README.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from facesearch_contract.v1 import persons_service_pb2_grpc as persons_grpc
from facesearch_contract.v1 import retriever_internal_service_pb2_grpc as ipb_grpc
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from facesearch_server.retriever import gpu, metrics, search_batcher
from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.collection import Limits
from facesearch_server.retriever.persons.servicer import PersonsServicer
from facesearch_server.retriever.servicer import RetrieverServicer
from facesearch_server.retriever.settings import RetrieverSettings
from facesearch_server.retriever.shard_factories import local_factory, queue_build, remote_factory
from facesearch_server.retriever.shard_host import ShardHost
from facesearch_server.retriever.shard_servicer import ShardServicer
from facesearch_server.runtime.readiness import writable_dir
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service


def build(cfg: RetrieverSettings) -> ServiceDefinition:
    gpu.configure(cfg.faiss_omp_threads, cfg.hnsw_build)
    search_batcher.configure(cfg.search_coalescing, cfg.search_coalesce_max_queries)
    data_dir = Path(cfg.data_dir).expanduser()
    servers = cfg.shard_servers
    # The shard servers are assumed to run with the router's limits (one config file).
    limits = Limits(
        max_k=cfg.max_k,
        max_upsert_batch=cfg.max_upsert_batch,
        max_search_batch=cfg.max_search_batch,
    )
    factory = remote_factory(cfg, servers) if servers else local_factory(data_dir)
    # A router serves only the public API; every other process also holds shards for routers.
    host = None if servers else ShardHost(data_dir / "shards", queue_build)
    catalog = Catalog(data_dir, factory)
    servicer = RetrieverServicer(cfg, catalog, limits, fixed_shards=len(servers) or None)
    # Persons belong to collections, so the process that holds the catalog serves them.
    persons = PersonsServicer(catalog)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        await catalog.load()
        if not servers:
            interval = cfg.snapshot_interval_s
            min_entries = cfg.snapshot_min_entries
            tasks.append(asyncio.create_task(servicer.snapshot_loop(interval, min_entries)))
            assert host is not None
            tasks.append(asyncio.create_task(host.snapshot_loop(interval, min_entries)))
        # Shard servers know shards by uid only, so a router exports its collections' sizes.
        refresh_s = cfg.metrics_refresh_s
        tasks.append(
            asyncio.create_task(
                metrics.refresh_loop(catalog, refresh_s, cfg.metrics_collection_names)
            )
        )

    async def stop() -> None:
        for t in tasks:
            t.cancel()
        persons.close()
        await catalog.close()
        if host is not None:
            await host.close()

    servicers = [
        Servicer("facesearch.v1.Retriever", servicer, pb_grpc.add_RetrieverServicer_to_server),
        Servicer("facesearch.v1.Persons", persons, persons_grpc.add_PersonsServicer_to_server),
    ]
    if host is not None:
        servicers.append(
            Servicer(
                "facesearch.v1.RetrieverShard",
                ShardServicer(cfg, host),
                ipb_grpc.add_RetrieverShardServicer_to_server,
            )
        )
    return ServiceDefinition(
        servicers=servicers,
        on_start=[start],
        on_stop=[stop],
        # Every write (upsert, delete, a new collection, the catalog) lands in the data
        # directory first; a router's shard servers report their own readiness.
        readiness=[writable_dir(data_dir)],
    )


def main() -> None:
    run_service("retriever", build)


if __name__ == "__main__":
    main()
