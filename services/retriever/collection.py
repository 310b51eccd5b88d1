"""A collection: its resolved spec, its typed metadata schema and its shards.

The schema grows only within the collection's ``max_metadata_fields``, and only through the
catalog (``on_schema``), which saves it to the collection's own file before it takes effect.

Everything here is deployment-agnostic: the same code runs over in-process shards and over
shard servers, because it talks to them only through ``ShardSet``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import filters
from facesearch_server.retriever import records as rec
from facesearch_server.retriever import validation as check
from facesearch_server.retriever.shard_router import (
    CallBudget,
    ShardSet,
    merge_field_stats,
    timestamp,
)
from facesearch_server.runtime.errors import InvalidArgument
from facesearch_server.runtime.validation import quote


@dataclass
class Limits:
    """The operator's settings; each may lower the contract's ceiling, never raise it."""

    max_k: int = 1000
    max_upsert_batch: int = 1024
    max_search_batch: int = 256

    def __post_init__(self) -> None:
        for name, value, ceiling in (
            ("max_k", self.max_k, check.CEILING_K),
            ("max_upsert_batch", self.max_upsert_batch, check.CEILING_UPSERT_BATCH),
            ("max_search_batch", self.max_search_batch, check.CEILING_SEARCH_BATCH),
        ):
            if not 1 <= value <= ceiling:
                raise ValueError(
                    f"{name} is {value}; it must be 1..{ceiling:,} (the contract's ceiling, "
                    "retriever.proto)"
                )


@dataclass
class Collection:
    tenant: str
    name: str
    uid: str
    spec: pb.CreateCollectionRequest
    created: float
    shards: ShardSet
    schema: dict[str, int] = field(default_factory=dict)
    # Persists new metadata fields (the catalog's job) and only then adds them to ``schema``,
    # before records using them are written.
    on_schema: Callable[[Collection, dict[str, int]], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self.fields = {f.name: f for f in self.spec.vector_fields}
        self.primary = self.spec.vector_fields[0].name
        merged = dict(rec.BUILTIN_FIELDS)
        merged.update({m.name: m.type for m in self.spec.metadata_fields})
        merged.update(self.schema)
        self.schema = merged
        # Specs saved before these settings existed hold 0: the defaults apply.
        self.max_fields = self.spec.max_metadata_fields or check.DEFAULT_METADATA_FIELDS
        self.declared_only = self.spec.metadata_schema == pb.METADATA_SCHEMA_MODE_DECLARED

    def field(self, name: str, path: str) -> pb.VectorFieldSpec:
        spec = self.fields.get(name or self.primary)
        if spec is None:
            raise InvalidArgument(
                path,
                f"unknown vector field {quote(name)}; the collection has "
                f"{check.quote_names(sorted(self.fields))}",
            )
        return spec

    def with_field(self, spec: pb.VectorFieldSpec) -> pb.CreateCollectionRequest:
        """The collection's spec with vector field ``spec`` added (AddVectorField)."""
        out = pb.CreateCollectionRequest()
        out.CopyFrom(self.spec)
        out.vector_fields.append(spec)
        return out

    def set_spec(self, spec: pb.CreateCollectionRequest) -> None:
        """Put a saved spec in force (the catalog's job, after writing it)."""
        self.spec = spec
        self.fields = {f.name: f for f in spec.vector_fields}

    def compile(self, flt: object, path: str) -> filters.Predicate | None:
        return filters.compile_filter(flt, self.schema, path)  # type: ignore[arg-type]

    async def upsert(
        self, req: pb.UpsertRequest, limits: Limits, b: CallBudget
    ) -> pb.UpsertResponse:
        points = list(req.points)
        durable = req.durable if req.HasField("durable") else True
        if req.mode not in pb.UpsertMode.values():
            raise InvalidArgument("mode", f"unknown upsert mode {req.mode}")
        if req.mode == pb.UPSERT_MODE_ADD_VECTORS:
            check.check_vector_additions(points, self.fields, limits.max_upsert_batch)
            changed, skipped = await self.shards.add_vectors(points, durable, b)
            return pb.UpsertResponse(upserted=changed, skipped=skipped)
        new = check.check_points(
            points,
            self.fields,
            self.primary,
            self.schema,
            limits.max_upsert_batch,
            self.declared_only,
        )
        if new:
            # Checked here too, so a batch that cannot fit never queues for the catalog's lock;
            # the catalog checks again under it (concurrent upserts may add fields meanwhile).
            check.schema_room(self.name, self.schema, new, self.max_fields, "nothing was stored")
            if self.on_schema is not None:
                await self.on_schema(self, new)
            else:
                self.schema.update(new)
        upserted, replaced = await self.shards.upsert(points, durable, b)
        return pb.UpsertResponse(upserted=upserted, replaced=replaced)

    async def get(self, req: pb.GetRequest, b: CallBudget) -> pb.GetResponse:
        ids = list(req.ids)
        check.batch_size(ids, "ids", check.MAX_GET_IDS)
        for i, pid in enumerate(ids):
            check.check_id(pid, f"ids[{i}]", check.MAX_GET_ID_BYTES)
        return pb.GetResponse(points=await self.shards.get(ids, req.with_vectors, b))

    async def delete(self, req: pb.DeleteRequest, b: CallBudget) -> pb.DeleteResponse:
        which = req.WhichOneof("selector")
        if which == "ids":
            ids = list(req.ids.ids)
            check.batch_size(ids, "ids.ids", check.MAX_DELETE_IDS)
            for i, pid in enumerate(ids):
                check.check_id(pid, f"ids.ids[{i}]", check.MAX_DELETE_ID_BYTES)
            return pb.DeleteResponse(deleted=await self.shards.delete_ids(ids, b))
        if which == "filter":
            if filters.is_empty(req.filter):
                raise InvalidArgument(
                    "filter", "is empty: it would delete everything; drop the collection instead"
                )
            pred = self.compile(req.filter, "filter")
            assert pred is not None
            return pb.DeleteResponse(deleted=await self.shards.delete_filter(req.filter, pred, b))
        if which == "person_id":
            flt = person_filter(req.person_id)
            pred = self.compile(flt, "person_id")
            assert pred is not None
            return pb.DeleteResponse(deleted=await self.shards.delete_filter(flt, pred, b))
        raise InvalidArgument("selector", "set one of ids, filter or person_id")

    async def info(self, aliases: list[str], b: CallBudget) -> pb.CollectionInfo:
        reports = await self.shards.reports(b)
        out = pb.CollectionInfo(
            name=self.name,
            vector_fields=self.spec.vector_fields,
            shard_count=self.shards.count,
            description=self.spec.description,
            aliases=sorted(aliases),
            points=sum(r.points for r in reports),
            created=timestamp(self.created),
            uid=self.uid,
            metadata_schema=(
                pb.METADATA_SCHEMA_MODE_DECLARED
                if self.declared_only
                else pb.METADATA_SCHEMA_MODE_AUTO
            ),
            max_metadata_fields=self.max_fields,
            media_roots=self.spec.media_roots,
        )
        for name, ftype in sorted(self.schema.items()):
            out.metadata_fields.add(name=name, type=ftype)
        for spec in self.spec.vector_fields:
            per = [f for r in reports for f in r.fields if f.name == spec.name]
            out.field_stats.append(merge_field_stats(spec, per))
        for r in reports:
            s = out.shards.add(
                shard=r.number,
                points=r.points,
                location=r.location,
                available=r.available,
                wal_entries=r.wal_entries,
            )
            if r.last_snapshot:
                s.last_snapshot.CopyFrom(timestamp(r.last_snapshot))
        return out

    async def usage(self, b: CallBudget) -> tuple[int, int, int]:
        """(points, memory bytes, disk bytes) over the shards that answer."""
        reports = await self.shards.reports(b)
        return (
            sum(r.points for r in reports),
            sum(r.memory_bytes for r in reports),
            sum(r.disk_bytes for r in reports),
        )


def person_filter(person_id: str) -> pb.Filter:
    from facesearch_contract.v1 import common_pb2 as cpb

    check.require(person_id, "person_id")
    return cpb.Filter(
        must=[
            cpb.FieldCondition(field="person_id", equals=cpb.MetadataValue(string_value=person_id))
        ]
    )


def now() -> float:
    return time.time()
