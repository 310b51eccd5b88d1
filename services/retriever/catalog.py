"""The tenants' collections and aliases, persisted as one JSON file written atomically.

Names are scoped by tenant: every lookup takes the caller's tenant, so another tenant's
collection is simply not there (NOT_FOUND), never "forbidden". Collections and aliases share
one namespace per tenant. Re-pointing an alias is one dict assignment on the event loop, so a
read resolves to the old or the new collection and never fails in between; a read already
holding the old collection finishes on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from facesearch.v1 import retriever_pb2 as pb
from services.retriever.collection import Collection
from services.retriever.shard_router import CallBudget, ShardSet
from services.retriever.wal import fsync_dir
from services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

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
        self.path = data_dir / "catalog.json"
        self.factory = factory
        self.tenants: dict[str, TenantSpace] = {}
        self._lock = asyncio.Lock()

    # ---- persistence -------------------------------------------------------------------

    async def load(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        for tenant, space in data.get("tenants", {}).items():
            ts = self.tenants.setdefault(tenant, TenantSpace())
            for name, entry in space.get("collections", {}).items():
                spec = pb.CreateCollectionRequest()
                spec.ParseFromString(base64.b64decode(entry["spec"]))
                shards = await self.factory(tenant, name, entry["uid"], spec, CallBudget(), False)
                ts.collections[name] = Collection(
                    tenant,
                    name,
                    entry["uid"],
                    spec,
                    entry["created"],
                    shards,
                    {k: int(v) for k, v in entry.get("schema", {}).items()},
                    self._save_schema,
                )
            ts.aliases = dict(space.get("aliases", {}))
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Directories of collections dropped (or half-created) before a crash."""
        root = self.dir / "collections"
        if not root.exists():
            return
        live = {c.uid for ts in self.tenants.values() for c in ts.collections.values()}
        for d in root.iterdir():
            if d.name not in live:
                shutil.rmtree(d, ignore_errors=True)

    def _write(self) -> None:
        data = {
            "tenants": {
                t: {
                    "collections": {
                        c.name: {
                            "uid": c.uid,
                            "spec": base64.b64encode(c.spec.SerializeToString()).decode(),
                            "created": c.created,
                            "schema": c.schema,
                        }
                        for c in ts.collections.values()
                    },
                    "aliases": ts.aliases,
                }
                for t, ts in self.tenants.items()
            }
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.dir)

    async def _save_schema(self, _coll: Collection) -> None:
        async with self._lock:
            await asyncio.to_thread(self._write)

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
            raise NotFound(f"{path}: no collection or alias named {name!r}")
        return coll

    def aliases_of(self, tenant: str, name: str) -> list[str]:
        return [a for a, c in self.space(tenant).aliases.items() if c == name]

    # ---- changes -----------------------------------------------------------------------

    async def create(
        self, tenant: str, spec: pb.CreateCollectionRequest, b: CallBudget
    ) -> Collection:
        async with self._lock:
            ts = self.tenants.setdefault(tenant, TenantSpace())
            if spec.name in ts.collections or spec.name in ts.aliases:
                raise AlreadyExists(f"name: {spec.name!r} is already a collection or alias")
            uid = uuid.uuid4().hex
            shards = await self.factory(tenant, spec.name, uid, spec, b, True)
            coll = Collection(
                tenant, spec.name, uid, spec, time.time(), shards, {}, self._save_schema
            )
            ts.collections[spec.name] = coll
            await asyncio.to_thread(self._write)
            return coll

    async def drop(self, tenant: str, name: str, force: bool, b: CallBudget) -> None:
        async with self._lock:
            ts = self.space(tenant)
            if name in ts.aliases:
                raise InvalidArgument(
                    "collection", f"{name!r} is an alias: drop the collection by name"
                )
            coll = ts.collections.get(name)
            if coll is None:
                raise NotFound(f"collection: no collection named {name!r}")
            aliases = self.aliases_of(tenant, name)
            if aliases and not force:
                raise FailedPrecondition(
                    f"collection {name!r} is the target of aliases {aliases}: re-point or delete "
                    "them first, or set force to delete them too"
                )
            for a in aliases:
                del ts.aliases[a]
            del ts.collections[name]
            # The catalog forgets it first: a crash after this leaves only orphan files,
            # which start-up removes.
            await asyncio.to_thread(self._write)
        await coll.shards.drop(b)
        await asyncio.to_thread(shutil.rmtree, self.dir / "collections" / coll.uid, True)

    async def set_alias(self, tenant: str, alias: str, target: str) -> str:
        async with self._lock:
            ts = self.tenants.setdefault(tenant, TenantSpace())
            if alias in ts.collections:
                raise InvalidArgument("alias", f"{alias!r} is a collection name")
            coll = ts.collections.get(target)
            if coll is None:
                raise NotFound(f"collection: no collection named {target!r}")
            previous = ts.aliases.get(alias, "")
            if previous and previous in ts.collections:
                old = {f.name: f.model_id for f in ts.collections[previous].spec.vector_fields}
                new = {f.name: f.model_id for f in coll.spec.vector_fields}
                if old != new:
                    raise InvalidArgument(
                        "collection",
                        f"{target!r} holds vectors of other models ({new}) than {previous!r} "
                        f"({old}); callers of {alias!r} would send the wrong vectors. Delete the "
                        "alias first if that is intended",
                    )
            ts.aliases[alias] = target
            await asyncio.to_thread(self._write)
            return previous

    async def delete_alias(self, tenant: str, alias: str) -> None:
        async with self._lock:
            ts = self.space(tenant)
            if alias not in ts.aliases:
                raise NotFound(f"alias: no alias named {alias!r}")
            del ts.aliases[alias]
            await asyncio.to_thread(self._write)

    async def close(self) -> None:
        for ts in self.tenants.values():
            for c in ts.collections.values():
                await c.shards.close()
