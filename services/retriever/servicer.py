"""gRPC adapter of the retriever: requests in, catalog and collection calls, replies out.

The tenant always comes from the caller's credentials (``current_tenant()``), never from the
request. Errors are raised as ``facesearch_server.runtime.errors`` and mapped by the call pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc

from facesearch_contract.limits import value_range
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from facesearch_server.retriever import fusion, media_roots, scan_cursor
from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.collection import Collection, Limits
from facesearch_server.retriever.shard_router import CallBudget, LocalShardHandle, timestamp
from facesearch_server.retriever.validation import (
    MAX_ADD_FIELDS,
    check_create,
    check_vector_field,
)
from facesearch_server.runtime.auth import current_tenant
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.downstream import call_options
from facesearch_server.runtime.errors import InvalidArgument, ServiceError
from facesearch_server.runtime.validation import NAME_RE, batch_size, require, require_name

log = logging.getLogger("facesearch.retriever")

_, MAX_PAGE = value_range(cpb.PageRequest, "page_size")
# Scan's page when the caller names no size (common.proto PageRequest: the server default).
DEFAULT_SCAN_PAGE = 100


class RetrieverServicer(pb_grpc.RetrieverServicer):
    def __init__(
        self,
        cfg: ServerConfig,
        catalog: Catalog,
        limits: Limits,
        fixed_shards: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.limits = limits
        # Router mode: every collection has one shard per shard server.
        self.fixed_shards = fixed_shards

    def _budget(self, context: grpc.aio.ServicerContext) -> CallBudget:
        opts = call_options(context, self.cfg.downstream_timeout_s)
        if self.fixed_shards is None:
            # Every shard is in this process: their work is bounded by the caller's deadline
            # only. downstream_timeout_s is for calls to other processes; applied here it would
            # cut a long snapshot or filter delete of a caller who set no deadline.
            remaining = context.time_remaining()
            local = None if remaining is None else remaining * 0.9
            return CallBudget(timeout=local)
        # Shards get 90% of the time left, so when one stalls the merge of the others' answers
        # (allow_partial) still reaches the caller before its deadline.
        timeout = float(opts["timeout"]) * 0.9  # type: ignore[arg-type]
        return CallBudget(timeout=timeout)

    def _resolve(self, name: str, path: str = "collection") -> Collection:
        return self.catalog.resolve(current_tenant(), name, path)

    async def _info(self, coll: Collection, b: CallBudget) -> pb.CollectionInfo:
        return await coll.info(self.catalog.aliases_of(coll.tenant, coll.name), b)

    # ---- collections -------------------------------------------------------------------

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCollectionResponse:
        spec = check_create(request, self.fixed_shards)
        roots = media_roots.check(spec.media_roots, "media_roots")
        del spec.media_roots[:]
        spec.media_roots.extend(roots)
        b = self._budget(context)
        coll = await self.catalog.create(current_tenant(), spec, b)
        return pb.CreateCollectionResponse(collection=await self._info(coll, b))

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        size = request.page.page_size or 100
        if size > MAX_PAGE:
            raise InvalidArgument("page.page_size", f"is {size}; at most {MAX_PAGE:,}")
        space = self.catalog.space(current_tenant())
        token = request.page.page_token
        if token and not NAME_RE.match(token):
            # Tokens are collection names; anything else did not come from this server, and
            # answering the first page for it would hide the caller's bug.
            raise InvalidArgument(
                "page.page_token", "is not a token this server issued: start from the first page"
            )
        names = sorted(n for n in space.collections if n > token)
        page, rest = names[:size], names[size:]
        b = self._budget(context)
        infos = [await self._info(space.collections[n], b) for n in page]
        out = pb.ListCollectionsResponse(collections=infos)
        if rest:
            out.page.next_page_token = page[-1]
        return out

    async def DescribeCollection(
        self, request: pb.DescribeCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DescribeCollectionResponse:
        coll = self._resolve(request.collection)
        return pb.DescribeCollectionResponse(
            collection=await self._info(coll, self._budget(context))
        )

    async def DropCollection(
        self, request: pb.DropCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DropCollectionResponse:
        require(request.collection, "collection")
        await self.catalog.drop(
            current_tenant(), request.collection, request.force, self._budget(context)
        )
        return pb.DropCollectionResponse()

    async def AddMetadataFields(
        self, request: pb.AddMetadataFieldsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddMetadataFieldsResponse:
        coll = self._resolve(request.collection)
        batch_size(request.fields, "fields", MAX_ADD_FIELDS)
        added = await self.catalog.add_metadata_fields(coll, request.fields)
        out = pb.AddMetadataFieldsResponse(added=added)
        for name, ftype in sorted(coll.schema.items()):
            out.metadata_fields.add(name=name, type=ftype)
        return out

    async def AddVectorField(
        self, request: pb.AddVectorFieldRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddVectorFieldResponse:
        coll = self._resolve(request.collection)
        if not request.HasField("field"):
            raise InvalidArgument("field", "is required: the vector field to add")
        spec = pb.VectorFieldSpec()
        spec.CopyFrom(request.field)
        check_vector_field(spec, "field")
        b = self._budget(context)
        added = await self.catalog.add_vector_field(coll, spec, b)
        return pb.AddVectorFieldResponse(collection=await self._info(coll, b), added=added)

    async def SetAlias(
        self, request: pb.SetAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetAliasResponse:
        require_name(request.alias, "alias")
        require(request.collection, "collection")
        prev = await self.catalog.set_alias(
            current_tenant(), request.alias, request.collection, request.allow_model_change
        )
        return pb.SetAliasResponse(previous_collection=prev)

    async def DeleteAlias(
        self, request: pb.DeleteAliasRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAliasResponse:
        require(request.alias, "alias")
        await self.catalog.delete_alias(current_tenant(), request.alias)
        return pb.DeleteAliasResponse()

    async def ListAliases(
        self, request: pb.ListAliasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAliasesResponse:
        space = self.catalog.space(current_tenant())
        return pb.ListAliasesResponse(
            aliases=[pb.AliasInfo(alias=a, collection=c) for a, c in sorted(space.aliases.items())]
        )

    # ---- data --------------------------------------------------------------------------

    async def Upsert(
        self, request: pb.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertResponse:
        coll = self._resolve(request.collection)
        return await coll.upsert(request, self.limits, self._budget(context))

    async def UpsertStream(
        self, request_iterator: AsyncIterator[pb.UpsertRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.UpsertAck]:
        seq = 0
        async for request in request_iterator:
            ack = pb.UpsertAck(sequence=seq)
            try:
                coll = self._resolve(request.collection)
                ack.result.CopyFrom(await coll.upsert(request, self.limits, self._budget(context)))
            except ServiceError as exc:
                # One bad batch must not end a bulk load: report it in its ack and go on.
                ack.error_code = exc.code.value[0]
                ack.error_message = exc.message
            seq += 1
            yield ack

    async def Get(
        self, request: pb.GetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetResponse:
        return await self._resolve(request.collection).get(request, self._budget(context))

    async def Scan(
        self, request: pb.ScanRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScanResponse:
        coll = self._resolve(request.collection)
        size = request.page.page_size or DEFAULT_SCAN_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument("page.page_size", f"is {size}; at most {MAX_PAGE:,}")
        cursor = scan_cursor.parse(request.page.page_token, coll.uid, coll.shards.count)
        points, after = await scan_cursor.page(
            coll.shards, cursor, size, request.with_vectors, self._budget(context)
        )
        out = pb.ScanResponse(points=points)
        if after is not None:
            out.page.next_page_token = after.token(coll.uid)
        return out

    async def AddMediaRoots(
        self, request: pb.AddMediaRootsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddMediaRootsResponse:
        coll = self._resolve(request.collection)
        require(request.media_roots, "media_roots")
        roots = await self.catalog.add_media_roots(coll, request.media_roots)
        return pb.AddMediaRootsResponse(media_roots=roots)

    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteResponse:
        return await self._resolve(request.collection).delete(request, self._budget(context))

    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        coll = self._resolve(request.collection)
        tenant = current_tenant()

        def resolve(name: str, path: str) -> Collection:
            return self.catalog.resolve(tenant, name, path)

        return await fusion.search(coll, request, self.limits, self._budget(context), resolve)

    async def Stats(
        self, request: pb.StatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatsResponse:
        b = self._budget(context)
        if request.collection:
            coll = self._resolve(request.collection)
            points, mem, disk = await coll.usage(b)
            return pb.StatsResponse(
                collections=1,
                points=points,
                memory_bytes=mem,
                disk_bytes=disk,
                collection=await self._info(coll, b),
            )
        out = pb.StatsResponse()
        for coll in self.catalog.space(current_tenant()).collections.values():
            points, mem, disk = await coll.usage(b)
            out.collections += 1
            out.points += points
            out.memory_bytes += mem
            out.disk_bytes += disk
        return out

    async def Snapshot(
        self, request: pb.SnapshotRequest, context: grpc.aio.ServicerContext
    ) -> pb.SnapshotResponse:
        coll = self._resolve(request.collection)
        b = self._budget(context)
        started = time.time()
        out = pb.SnapshotResponse(started=timestamp(started))
        if request.wait:
            out.sequence = await coll.shards.snapshot(b)
            out.finished.CopyFrom(timestamp(time.time()))
        else:
            task = asyncio.create_task(coll.shards.snapshot(CallBudget()))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
        return out

    # ---- background --------------------------------------------------------------------

    async def snapshot_loop(self, interval_s: float, min_entries: int) -> None:
        """Snapshot every local shard whose log has grown, so restarts replay little."""
        while True:
            await asyncio.sleep(interval_s)
            for space in list(self.catalog.tenants.values()):
                for coll in list(space.collections.values()):
                    for h in coll.shards.handles:
                        if isinstance(h, LocalShardHandle) and h.shard.wal.entries >= min_entries:
                            try:
                                await asyncio.to_thread(h.shard.snapshot)
                            except Exception:
                                log.exception("background snapshot failed")


_BACKGROUND: set[asyncio.Task[int]] = set()
