"""Where a collection's shards live, as the catalog's ``ShardFactory``: in this process
(embedded) or one per shard server (router). The catalog calls a factory when it creates a
collection (``create``) and for every collection at start-up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.catalog import ShardFactory
from facesearch_server.retriever.index_build import BuildQueue
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_router import (
    CallBudget,
    LocalShardHandle,
    RemoteShardHandle,
    ShardHandle,
    ShardSet,
)
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.downstream import open_channel
from facesearch_server.runtime.errors import Unavailable


def queue_build(shard: LocalShard, field: str) -> None:
    """Index builds of every shard of the process run on its one build thread."""
    BuildQueue.shared().submit(lambda: shard.build_now(field))


def local_factory(root: Path) -> ShardFactory:
    """Shards in this process, under ``<root>/collections/<uid>/shard-NNN``."""

    async def make(
        tenant: str,
        name: str,
        uid: str,
        spec: pb.CreateCollectionRequest,
        b: CallBudget,
        create: bool,
    ) -> ShardSet:
        def open_all() -> list[LocalShard]:
            base = root / "collections" / uid
            return [
                LocalShard(base / f"shard-{i:03d}", list(spec.vector_fields), queue_build)
                for i in range(spec.shard_count)
            ]

        shards = await asyncio.to_thread(open_all)
        for s in shards:
            s.resume_builds()  # an index not in the snapshot is rebuilt after a restart
        handles: list[ShardHandle] = [LocalShardHandle(i, s) for i, s in enumerate(shards)]
        return ShardSet(handles)

    return make


def remote_factory(cfg: ServerConfig, servers: list[str]) -> ShardFactory:
    """Shard i of every collection on shard server i, addressed by the collection's uid (so a
    collection re-created under the same name never meets the old one's shards)."""
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
        handles = [RemoteShardHandle(i, a, channels[a], uid) for i, a in enumerate(servers)]
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
