"""The tenants' collections and aliases, each collection and each tenant's aliases persisted in
its own file (``catalog_store.py``).

Names are scoped by tenant: every lookup takes the caller's tenant, so another tenant's
collection is simply not there (NOT_FOUND), never "forbidden". Collections and aliases share
one namespace per tenant. Re-pointing an alias is one dict assignment on the event loop, so a
read resolves to the old or the new collection and never fails in between; a read already
holding the old collection finishes on it.

Every change is written to disk before memory: under its lock, the record as it will be is
built on the event loop, written in a thread, and only then applied. A failed write therefore
changes nothing a caller can see (no upserts into a collection that the next start-up would not
know).

Locks are as narrow as the files: a tenant's lock orders its creates, drops and alias changes
(its namespace); a collection's lock orders its schema changes. One tenant's writes never wait
for another's, and a collection's schema growth never waits for its tenant's alias changes.
A drop takes both (tenant, then collection), so a schema write cannot re-create the file of a
collection being dropped.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever import media_roots
from facesearch_server.retriever import validation as check
from facesearch_server.retriever.catalog_store import CatalogStore, CollectionRecord
from facesearch_server.retriever.collection import Collection
from facesearch_server.retriever.shard_router import CallBudget, ShardSet
from facesearch_server.retriever.wal import disk_error
from facesearch_server.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from facesearch_server.runtime.validation import quote

log = logging.getLogger("facesearch.retriever.catalog")

# (tenant, collection name, uid, resolved spec, budget) -> its shards, opened or created.
ShardFactory = Callable[
    [str, str, str, pb.CreateCollectionRequest, CallBudget, bool], Awaitable[ShardSet]
]


@dataclass
class TenantSpace:
    collections: dict[str, Collection] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class Catalog:
    def __init__(self, data_dir: Path, factory: ShardFactory) -> None:
        self.dir = data_dir
        self.store = CatalogStore(data_dir)
        self.factory = factory
        self.tenants: dict[str, TenantSpace] = {}
        self._tenant_locks: dict[str, asyncio.Lock] = {}
        self._collection_locks: dict[str, asyncio.Lock] = {}

    def _tenant_lock(self, tenant: str) -> asyncio.Lock:
        return self._tenant_locks.setdefault(tenant, asyncio.Lock())

    def _collection_lock(self, uid: str) -> asyncio.Lock:
        return self._collection_locks.setdefault(uid, asyncio.Lock())

    # ---- persistence -------------------------------------------------------------------

    async def load(self) -> None:
        stored = await asyncio.to_thread(self.store.load)
        for r in stored.collections:
            ts = self.tenants.setdefault(r.tenant, TenantSpace())
            if r.name in ts.collections:
                raise RuntimeError(
                    f"two catalog files name collection {r.name!r} of tenant {r.tenant!r} "
                    f"({ts.collections[r.name].uid} and {r.uid}); move one collection's "
                    "directory away"
                )
            shards = await self.factory(r.tenant, r.name, r.uid, r.spec, CallBudget(), False)
            ts.collections[r.name] = self._collection(r, shards)
        for tenant, aliases in stored.aliases.items():
            ts = self.tenants.setdefault(tenant, TenantSpace())
            for alias, target in aliases.items():
                if target in ts.collections:
                    ts.aliases[alias] = target
                else:  # its collection's drop committed before the alias file was rewritten
                    log.warning("alias of a dropped collection ignored", extra={"alias": alias})
        self._remove_orphans()

    def _collection(self, r: CollectionRecord, shards: ShardSet) -> Collection:
        return Collection(
            r.tenant, r.name, r.uid, r.spec, r.created, shards, dict(r.schema), self._save_schema
        )

    @staticmethod
    def _record(
        coll: Collection,
        schema: dict[str, int] | None = None,
        spec: pb.CreateCollectionRequest | None = None,
    ) -> CollectionRecord:
        return CollectionRecord(
            coll.tenant,
            coll.name,
            coll.uid,
            coll.spec if spec is None else spec,
            coll.created,
            dict(coll.schema if schema is None else schema),
        )

    def _remove_orphans(self) -> None:
        """Directories of collections dropped (or half-created) before a crash."""
        root = self.store.collections_dir
        if not root.exists():
            return
        live = {c.uid for ts in self.tenants.values() for c in ts.collections.values()}
        for d in root.iterdir():
            if d.name not in live:
                shutil.rmtree(d, ignore_errors=True)

    async def _save(self, write: Callable[..., None], *args: Any) -> None:
        """Run one store write; the caller applies its change in memory only after this."""
        try:
            await asyncio.to_thread(write, *args)
        except OSError as exc:
            raise disk_error("the catalog update", exc, "nothing changed") from exc

    async def _save_schema(self, coll: Collection, new: dict[str, int]) -> None:
        """Persist metadata fields first seen in an upsert, then add them to the schema; the
        upsert stores its records only after this, so a stored value always has a saved type."""
        async with self._collection_lock(coll.uid):
            clash = sorted(k for k, t in new.items() if k in coll.schema and coll.schema[k] != t)
            if clash:
                raise InvalidArgument(
                    "points",
                    f"metadata field {quote(clash[0])} was just given another type by a "
                    "concurrent write; send values of that type",
                )
            fresh = {k: t for k, t in new.items() if k not in coll.schema}
            if fresh:
                await self._grow(coll, fresh, "nothing was stored")

    async def add_metadata_fields(
        self, coll: Collection, specs: Sequence[pb.MetadataFieldSpec]
    ) -> list[str]:
        """Declare ``specs`` (AddMetadataFields); the names added, sorted."""
        wanted = check.check_field_specs(specs, "fields")
        async with self._collection_lock(coll.uid):
            for i, spec in enumerate(specs):
                have = coll.schema.get(spec.name)
                if have is not None and have != spec.type:
                    raise InvalidArgument(
                        f"fields[{i}].type",
                        f"field {quote(spec.name)} is already of type {check.type_name(have)} "
                        "in this collection; a field's type cannot change",
                    )
            fresh = {k: t for k, t in wanted.items() if k not in coll.schema}
            if fresh:
                await self._grow(coll, fresh, "nothing was added")
            return sorted(fresh)

    async def add_media_roots(self, coll: Collection, roots: Sequence[str]) -> list[str]:
        """Record folders the collection's media were indexed from (AddMediaRoots); every root
        after the call, oldest first. Saved in the collection's own file (inside its spec)
        before the collection shows them."""
        wanted = media_roots.check(roots, "media_roots")
        async with self._collection_lock(coll.uid):
            have = list(coll.spec.media_roots)
            after = media_roots.merged(coll.name, have, wanted)
            if after == have:
                return have
            if self.space(coll.tenant).collections.get(coll.name) is not coll:
                raise NotFound(f"collection: {quote(coll.name)} was dropped")
            spec = pb.CreateCollectionRequest()
            spec.CopyFrom(coll.spec)
            spec.media_roots.extend(after[len(have) :])
            record = self._record(coll)
            record.spec = spec
            await self._save(self.store.save_collection, record)
            coll.spec = spec
            return after

    async def _grow(self, coll: Collection, fresh: dict[str, int], outcome: str) -> None:
        """Write the collection's own file with ``fresh`` added, then add them in memory;
        within the collection's max_metadata_fields only. The caller holds its lock."""
        check.schema_room(coll.name, coll.schema, fresh, coll.max_fields, outcome)
        if self.space(coll.tenant).collections.get(coll.name) is not coll:
            raise NotFound(f"collection: {quote(coll.name)} was dropped")
        await self._save(self.store.save_collection, self._record(coll, coll.schema | fresh))
        coll.schema.update(fresh)

    async def add_vector_field(
        self, coll: Collection, spec: pb.VectorFieldSpec, b: CallBudget
    ) -> bool:
        """Add vector field ``spec`` (checked, defaults resolved) to ``coll`` (AddVectorField);
        False when it has this very field already.

        Every shard gets the field first (a shard server saves it with the shard), then the
        collection's file is written with it, and only then may upserts use it: a crash or a
        failure before the file is written leaves at most empty fields on shards that the
        collection does not know, which a retry adopts (same spec) or replaces (another)."""
        async with self._collection_lock(coll.uid):
            if self.space(coll.tenant).collections.get(coll.name) is not coll:
                raise NotFound(f"collection: {quote(coll.name)} was dropped")
            have = coll.fields.get(spec.name)
            if have is not None:
                if have == spec:
                    return False
                raise AlreadyExists(
                    f"field.name: collection {quote(coll.name)} has a vector field "
                    f"{quote(spec.name)} already (model {quote(have.model_id)}, dimension "
                    f"{have.dimension}); a field's spec cannot change: give the new one another "
                    "name"
                )
            if len(coll.fields) >= check.MAX_VECTOR_FIELDS:
                raise FailedPrecondition(
                    f"collection {quote(coll.name)} has {len(coll.fields)} vector fields, the "
                    f"most it may hold ({check.MAX_VECTOR_FIELDS}); nothing was added"
                )
            await coll.shards.add_field(spec, b)
            new = coll.with_field(spec)
            await self._save(self.store.save_collection, self._record(coll, spec=new))
            coll.set_spec(new)
            log.info(
                "vector field added",
                extra={"collection": coll.uid, "field": spec.name, "model": spec.model_id},
            )
            return True

    # ---- lookups -----------------------------------------------------------------------

    def space(self, tenant: str) -> TenantSpace:
        return self.tenants.get(tenant) or TenantSpace()

    def resolve(self, tenant: str, name: str, path: str = "collection") -> Collection:
        """A collection by name or alias, in the caller's tenant only."""
        if not name:
            raise InvalidArgument(path, "is required")
        ts = self.space(tenant)
        target = ts.aliases.get(name, name)
        coll = ts.collections.get(target)
        if coll is None:
            raise NotFound(f"{path}: no collection or alias named {quote(name)}")
        return coll

    def aliases_of(self, tenant: str, name: str) -> list[str]:
        return [a for a, c in self.space(tenant).aliases.items() if c == name]

    # ---- changes -----------------------------------------------------------------------

    async def create(
        self, tenant: str, spec: pb.CreateCollectionRequest, b: CallBudget
    ) -> Collection:
        async with self._tenant_lock(tenant):
            ts = self.tenants.setdefault(tenant, TenantSpace())
            if spec.name in ts.collections or spec.name in ts.aliases:
                raise AlreadyExists(f"name: {quote(spec.name)} is already a collection or alias")
            uid = uuid.uuid4().hex
            try:
                shards = await self.factory(tenant, spec.name, uid, spec, b, True)
            except OSError as exc:
                await self._remove_files(uid)
                raise disk_error("a new collection", exc, "nothing was created") from exc
            coll = self._collection(
                CollectionRecord(tenant, spec.name, uid, spec, time.time()), shards
            )
            try:
                await self._save(self.store.save_collection, self._record(coll))
            except Exception:
                # Not in the catalog, so nobody can reach it: remove what the factory made.
                try:
                    await coll.shards.drop(b)
                except Exception:
                    log.warning("cleanup of an unsaved collection failed", exc_info=True)
                await self._remove_files(uid)
                raise
            ts.collections[spec.name] = coll
            return coll

    async def _remove_files(self, uid: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.store.collections_dir / uid, True)

    async def drop(self, tenant: str, name: str, force: bool, b: CallBudget) -> None:
        async with self._tenant_lock(tenant):
            ts = self.space(tenant)
            if name in ts.aliases:
                raise InvalidArgument(
                    "collection", f"{quote(name)} is an alias: drop the collection by name"
                )
            coll = ts.collections.get(name)
            if coll is None:
                raise NotFound(f"collection: no collection named {quote(name)}")
            aliases = self.aliases_of(tenant, name)
            if aliases and not force:
                raise FailedPrecondition(
                    f"collection {quote(name)} is the target of aliases "
                    f"{check.quote_names(sorted(aliases))}: re-point or delete them first, or "
                    "set force to delete them too"
                )
            if aliases:
                kept = {a: c for a, c in ts.aliases.items() if c != name}
                await self._save(self.store.save_aliases, tenant, kept)
                for a in aliases:
                    del ts.aliases[a]
            async with self._collection_lock(coll.uid):
                # The catalog forgets it first: a crash after this leaves only orphan files,
                # which start-up removes.
                await self._save(self.store.remove_collection, coll.uid)
                del ts.collections[name]
            self._collection_locks.pop(coll.uid, None)
        await coll.shards.drop(b)
        await self._remove_files(coll.uid)

    async def set_alias(
        self, tenant: str, alias: str, target: str, allow_model_change: bool = False
    ) -> str:
        async with self._tenant_lock(tenant):
            ts = self.tenants.setdefault(tenant, TenantSpace())
            if alias in ts.collections:
                raise InvalidArgument("alias", f"{quote(alias)} is a collection name")
            coll = ts.collections.get(target)
            if coll is None:
                raise NotFound(f"collection: no collection named {quote(target)}")
            previous = ts.aliases.get(alias, "")
            if previous and previous in ts.collections and not allow_model_change:
                old = _models(ts.collections[previous].spec.vector_fields)
                new = _models(coll.spec.vector_fields)
                if old != new:
                    raise InvalidArgument(
                        "collection",
                        f"{quote(target)} holds vectors of other models ({_listed(new)}) than "
                        f"{quote(previous)} ({_listed(old)}); callers of {quote(alias)} would "
                        "send the wrong vectors. Set allow_model_change if that is intended (a "
                        "re-embedding rolling out), or delete the alias first",
                    )
            await self._save(self.store.save_aliases, tenant, ts.aliases | {alias: target})
            ts.aliases[alias] = target
            return previous

    async def delete_alias(self, tenant: str, alias: str) -> None:
        async with self._tenant_lock(tenant):
            ts = self.space(tenant)
            if alias not in ts.aliases:
                raise NotFound(f"alias: no alias named {quote(alias)}")
            kept = {a: c for a, c in ts.aliases.items() if a != alias}
            await self._save(self.store.save_aliases, tenant, kept)
            del ts.aliases[alias]

    async def close(self) -> None:
        for ts in self.tenants.values():
            for c in ts.collections.values():
                await c.shards.close()


def _models(fields: Iterable[pb.VectorFieldSpec]) -> dict[str, str]:
    return {f.name: f.model_id for f in fields}


def _listed(models: dict[str, str]) -> str:
    """Field -> model pairs for a message, a bounded few of them."""
    return check.quote_names([f"{k}={v}" for k, v in sorted(models.items())])
