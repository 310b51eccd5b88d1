"""gRPC adapter of the internal shard service (RetrieverShard): a router's shard-level calls
in, ``ShardHost`` / ``LocalShard`` calls, replies out. Every call is first checked by
``peer_access`` (only trusted peers when auth is on); the tenant plays no part here, the
router resolved it before calling.

Requests come from a router that validated the tenant's request already, so only what would
corrupt a shard (a vector of the wrong dimension, an unknown field) or break the limits the
contract declares (retriever_internal.proto) is checked again.
"""

from __future__ import annotations

import asyncio
import re

import grpc
import numpy as np

from facesearch_contract.limits import max_bytes, max_items, value_range
from facesearch_contract.v1 import retriever_internal_pb2 as ipb
from facesearch_contract.v1 import retriever_internal_service_pb2_grpc as ipb_grpc
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import filters, index_build, search_batcher
from facesearch_server.retriever import validation as check
from facesearch_server.retriever.peer_access import require_trusted_peer
from facesearch_server.retriever.shard import LocalShard
from facesearch_server.retriever.shard_host import Key, ShardHost
from facesearch_server.retriever.shard_router import timestamp
from facesearch_server.retriever.shard_search import FieldSearch
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.errors import InvalidArgument
from facesearch_server.runtime.validation import batch_size

UID_RE = re.compile(r"^[0-9a-f]+$")
MAX_UID_BYTES = max_bytes(ipb.ShardRef, "collection_uid")
_, MAX_SHARD = value_range(ipb.ShardRef, "shard")
MAX_FIELDS = max_items(ipb.OpenShardRequest, "vector_fields")
MAX_UPSERT = max_items(ipb.ShardUpsertRequest, "points")
MAX_GET_IDS = max_items(ipb.ShardGetRequest, "ids")
_, MAX_GET_LIMIT = value_range(ipb.ShardGetRequest, "limit")
_, MAX_SCAN_LIMIT = value_range(ipb.ShardScanRequest, "limit")
MAX_QUERIES = max_items(ipb.ShardSearchRequest, "queries")
_, MAX_K = value_range(ipb.ShardSearchRequest, "k")
MAX_EXCLUDE = max_items(ipb.ShardSearchRequest, "exclude_ids")
MAX_DELETE_IDS = max_items(pb.IdList, "ids")
# Get by filter without a limit returns as many records as one Get by ids may name.
DEFAULT_GET_LIMIT = MAX_GET_IDS


def shard_key(ref: ipb.ShardRef) -> Key:
    if len(ref.collection_uid.encode()) > MAX_UID_BYTES or not UID_RE.match(ref.collection_uid):
        raise InvalidArgument(
            "ref.collection_uid", f"{ref.collection_uid!r} is not a collection uid (hex)"
        )
    if ref.shard > MAX_SHARD:
        raise InvalidArgument("ref.shard", f"is {ref.shard}; it must be 0..{MAX_SHARD}")
    return ref.collection_uid, ref.shard


def _compile(sf: ipb.ShardFilter, path: str) -> filters.Predicate | None:
    return filters.compile_filter(sf.filter, dict(sf.field_types), f"{path}.filter")


def _check_vectors(shard: LocalShard, name: str, values: list[int], path: str) -> None:
    fi = shard.state.fields.get(name)
    if fi is None:
        raise InvalidArgument(path, f"unknown vector field {name!r}")
    for i, n in enumerate(values):
        if n != fi.spec.dimension:
            raise InvalidArgument(
                f"{path}[{i}]", f"has {n} values; field {name!r} has dimension {fi.spec.dimension}"
            )


class ShardServicer(ipb_grpc.RetrieverShardServicer):
    def __init__(self, cfg: ServerConfig, host: ShardHost) -> None:
        self.cfg = cfg
        self.host = host

    async def _shard(self, ref: ipb.ShardRef, context: grpc.aio.ServicerContext) -> LocalShard:
        require_trusted_peer(context, self.cfg)
        return await self.host.open(shard_key(ref))

    @staticmethod
    async def _describe(ref: ipb.ShardRef, shard: LocalShard) -> ipb.ShardDescription:
        if shard.profiles_stale():
            await asyncio.to_thread(shard.refresh_profiles)
        out = ipb.ShardDescription(
            ref=ref,
            points=shard.count(),
            wal_entries=shard.wal.entries,
            field_stats=shard.field_stats(),
            memory_bytes=shard.memory_bytes(),
            disk_bytes=await asyncio.to_thread(shard.disk_bytes),
        )
        if shard.last_snapshot:
            out.last_snapshot.CopyFrom(timestamp(shard.last_snapshot))
        return out

    async def OpenShard(
        self, request: ipb.OpenShardRequest, context: grpc.aio.ServicerContext
    ) -> ipb.OpenShardResponse:
        require_trusted_peer(context, self.cfg)
        key = shard_key(request.ref)
        fields = list(request.vector_fields)
        if request.create:
            batch_size(fields, "vector_fields", MAX_FIELDS)
            for i, f in enumerate(fields):
                if not f.name or f.dimension == 0 or f.index.kind not in pb.IndexKind.values():
                    raise InvalidArgument(
                        f"vector_fields[{i}]", "needs a name, a dimension and a known index kind"
                    )
                # Idempotent: a router resolved them already; a shard must never see "unset".
                f.index.CopyFrom(index_build.resolve_params(f.dimension, f.index))
        shard = await self.host.open(key, fields if request.create else None)
        return ipb.OpenShardResponse(shard=await self._describe(request.ref, shard))

    async def UpsertShard(
        self, request: ipb.ShardUpsertRequest, context: grpc.aio.ServicerContext
    ) -> ipb.ShardUpsertResponse:
        shard = await self._shard(request.ref, context)
        points = list(request.points)
        batch_size(points, "points", MAX_UPSERT)
        for i, p in enumerate(points):
            for name, v in p.vectors.items():
                _check_vectors(shard, name, [len(v.values)], f"points[{i}].vectors")
        if request.mode not in pb.UpsertMode.values():
            raise InvalidArgument("mode", f"unknown upsert mode {request.mode}")
        if request.mode == pb.UPSERT_MODE_ADD_VECTORS:
            changed, skipped = await asyncio.to_thread(shard.add_vectors, points, request.durable)
            return ipb.ShardUpsertResponse(upserted=changed, skipped=skipped)
        upserted, replaced = await asyncio.to_thread(shard.upsert, points, request.durable)
        return ipb.ShardUpsertResponse(upserted=upserted, replaced=replaced)

    async def AddShardField(
        self, request: ipb.AddShardFieldRequest, context: grpc.aio.ServicerContext
    ) -> ipb.AddShardFieldResponse:
        require_trusted_peer(context, self.cfg)
        key = shard_key(request.ref)
        f = pb.VectorFieldSpec()
        f.CopyFrom(request.field)
        if not f.name or f.dimension == 0 or f.index.kind not in pb.IndexKind.values():
            raise InvalidArgument("field", "needs a name, a dimension and a known index kind")
        f.index.CopyFrom(index_build.resolve_params(f.dimension, f.index))
        return ipb.AddShardFieldResponse(added=await self.host.add_field(key, f))

    async def DeleteShard(
        self, request: ipb.ShardDeleteRequest, context: grpc.aio.ServicerContext
    ) -> ipb.ShardDeleteResponse:
        shard = await self._shard(request.ref, context)
        which = request.WhichOneof("selector")
        if which == "ids":
            ids = list(request.ids.ids)
            batch_size(ids, "ids.ids", MAX_DELETE_IDS)
            return ipb.ShardDeleteResponse(deleted=await asyncio.to_thread(shard.delete_ids, ids))
        if which == "filter":
            pred = _compile(request.filter, "filter")
            if pred is None:
                raise InvalidArgument("filter", "is empty: it would delete everything")
            n = await asyncio.to_thread(shard.delete_matching, pred)
            return ipb.ShardDeleteResponse(deleted=n)
        raise InvalidArgument("selector", "set one of ids or filter")

    async def GetShard(
        self, request: ipb.ShardGetRequest, context: grpc.aio.ServicerContext
    ) -> ipb.ShardGetResponse:
        shard = await self._shard(request.ref, context)
        if request.HasField("filter"):
            if request.ids:
                raise InvalidArgument("ids", "give ids or a filter, not both")
            limit = request.limit or DEFAULT_GET_LIMIT
            if limit > MAX_GET_LIMIT:
                raise InvalidArgument("limit", f"is {limit}; at most {MAX_GET_LIMIT:,}")
            name = request.vector_field
            if name and name not in shard.state.fields:
                raise InvalidArgument("vector_field", f"unknown vector field {name!r}")
            pred = _compile(request.filter, "filter") or (lambda m: True)
            pts = await asyncio.to_thread(shard.get_matching, pred, name, limit)
            return ipb.ShardGetResponse(points=pts)
        ids = list(request.ids)
        batch_size(ids, "ids", MAX_GET_IDS)
        pts = await asyncio.to_thread(shard.get, ids, request.with_vectors)
        return ipb.ShardGetResponse(points=pts)

    async def ScanShard(
        self, request: ipb.ShardScanRequest, context: grpc.aio.ServicerContext
    ) -> ipb.ShardScanResponse:
        shard = await self._shard(request.ref, context)
        if not 1 <= request.limit <= MAX_SCAN_LIMIT:
            raise InvalidArgument("limit", f"is {request.limit}; it must be 1..{MAX_SCAN_LIMIT:,}")
        points, last, more = await asyncio.to_thread(
            shard.scan, request.after_position, request.limit, request.with_vectors
        )
        return ipb.ShardScanResponse(points=points, last_position=last, more=more)

    async def SearchShard(
        self, request: ipb.ShardSearchRequest, context: grpc.aio.ServicerContext
    ) -> ipb.ShardSearchResponse:
        shard = await self._shard(request.ref, context)
        batch_size(request.queries, "queries", MAX_QUERIES)
        if not 1 <= request.k <= MAX_K:
            raise InvalidArgument("k", f"is {request.k}; it must be 1..{MAX_K:,}")
        if len(request.exclude_ids) > MAX_EXCLUDE:
            n = len(request.exclude_ids)
            raise InvalidArgument("exclude_ids", f"has {n:,} ids; at most {MAX_EXCLUDE:,}")
        if request.params.rescore_top > check.MAX_RESCORE:
            raise InvalidArgument("params.rescore_top", f"is over {check.MAX_RESCORE:,}")
        _check_vectors(shard, request.field, [len(q.values) for q in request.queries], "queries")
        queries = np.array([list(q.values) for q in request.queries], dtype=np.float32)
        pred = _compile(request.filter, "filter") if request.HasField("filter") else None
        search = FieldSearch(
            field=request.field,
            queries=queries,
            k=request.k,
            pred=pred,
            exclude=list(request.exclude_ids),
            params=request.params,
            with_meta=request.with_metadata,
            with_vectors=request.with_vectors,
        )
        if search_batcher.enabled():
            fkey = request.filter.SerializeToString(deterministic=True) if pred is not None else b""
            rows = await shard.batcher.search(search, filter_key=fkey)
        else:
            rows = await asyncio.to_thread(shard.search, search)
        out = ipb.ShardSearchResponse()
        for row in rows:
            hits = out.results.add()
            for score, point in row:
                hits.hits.add(score=score, point=point)
        return out

    async def DescribeShard(
        self, request: ipb.DescribeShardRequest, context: grpc.aio.ServicerContext
    ) -> ipb.DescribeShardResponse:
        shard = await self._shard(request.ref, context)
        return ipb.DescribeShardResponse(shard=await self._describe(request.ref, shard))

    async def SnapshotShard(
        self, request: ipb.SnapshotShardRequest, context: grpc.aio.ServicerContext
    ) -> ipb.SnapshotShardResponse:
        shard = await self._shard(request.ref, context)
        return ipb.SnapshotShardResponse(sequence=await asyncio.to_thread(shard.snapshot))

    async def DropShard(
        self, request: ipb.DropShardRequest, context: grpc.aio.ServicerContext
    ) -> ipb.DropShardResponse:
        require_trusted_peer(context, self.cfg)
        await self.host.drop(shard_key(request.ref))
        return ipb.DropShardResponse()

    async def ListShards(
        self, request: ipb.ListShardsRequest, context: grpc.aio.ServicerContext
    ) -> ipb.ListShardsResponse:
        require_trusted_peer(context, self.cfg)
        held = self.host.held()  # on the loop: it reads the open shards' dict
        return ipb.ListShardsResponse(
            shards=[ipb.ShardRef(collection_uid=u, shard=n) for u, n in held]
        )
