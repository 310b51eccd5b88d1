"""The tenants' collections and aliases, persisted as one JSON file written atomically.

Names are scoped by tenant: every lookup takes the caller's tenant, so another tenant's
collection is simply not there (NOT_FOUND), never "forbidden". Collections and aliases share
one namespace per tenant. Re-pointing an alias is one dict assignment on the event loop, so a
read resolves to the old or the new collection and never fails in between; a read already
holding the old collection finishes on it.

Every change is written to disk before memory: under the lock, a plain copy of the catalog as
it will be is built on the event loop, written in a thread, and only then applied. A failed
write therefore changes nothing a caller can see (no upserts into a collection that the next
start-up would not know).
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
from typing import Any

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.collection import Collection
from facesearch_server.retriever.shard_router import CallBudget, ShardSet
from facesearch_server.retriever.wal import disk_error, fsync_dir, make_dirs
from facesearch_server.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

log = logging.getLogger("facesearch.retriever.catalog")

Doc = dict[str, Any]  # the catalog as JSON-ready data

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
        make_dirs(self.dir)
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

    @staticmethod
    def _entry(c: Collection) -> Doc:
        return {
            "uid": c.uid,
            "spec": base64.b64encode(c.spec.SerializeToString()).decode(),
            "created": c.created,
            "schema": dict(c.schema),
        }

    def _doc(self) -> Doc:
        """The catalog as plain, freshly copied data; built on the event loop, so the writer
        thread never reads dicts the loop is changing."""
        return {
            "tenants": {
                t: {
                    "collections": {c.name: self._entry(c) for c in ts.collections.values()},
                    "aliases": dict(ts.aliases),
                }
                for t, ts in self.tenants.items()
            }
        }

    @staticmethod
    def _space_doc(doc: Doc, tenant: str) -> Doc:
        return doc["tenants"].setdefault(tenant, {"collections": {}, "aliases": {}})

    def _write(self, doc: Doc) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.dir)

    async def _save(self, doc: Doc) -> None:
        """Write ``doc``; the caller applies its change in memory only after this returns."""
        try:
            await asyncio.to_thread(self._write, doc)
        except OSError as exc:
            raise disk_error("the catalog update", exc, "nothing changed") from exc

    async def _save_schema(self, coll: Collection, new: dict[str, int]) -> None:
        """Persist metadata fields first seen in an upsert, then add them to the schema; the
        upsert stores its records only after this, so a stored value always has a saved type."""
        async with self._lock:
            clash = sorted(k for k, t in new.items() if k in coll.schema and coll.schema[k] != t)
            if clash:
                raise InvalidArgument(
                    "points",
                    f"metadata field {clash[0]!r} was just given another type by a concurrent "
                    "write; send values of that type",
                )
            fresh = {k: t for k, t in new.items() if k not in coll.schema}
            if not fresh:
                return
            doc = self._doc()
            entry = self._space_doc(doc, coll.tenant)["collections"].get(coll.name)
            if entry is None or entry["uid"] != coll.uid:
                raise NotFound(f"collection: {coll.name!r} was dropped")
            entry["schema"].update(fresh)
            await self._save(doc)
            coll.schema.update(fresh)

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
            doc = self._doc()
            self._space_doc(doc, tenant)["collections"][spec.name] = self._entry(coll)
            try:
                await self._save(doc)
            except Exception:
                # Not in the catalog, so nobody can reach it: remove what the factory made.
                try:
                    await coll.shards.drop(b)
                except Exception:
                    log.warning("cleanup of an unsaved collection failed", exc_info=True)
                await asyncio.to_thread(shutil.rmtree, self.dir / "collections" / uid, True)
                raise
            ts.collections[spec.name] = coll
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
            doc = self._doc()
            sd = self._space_doc(doc, tenant)
            for a in aliases:
                del sd["aliases"][a]
            del sd["collections"][name]
            # The catalog forgets it first: a crash after this leaves only orphan files,
            # which start-up removes.
            await self._save(doc)
            for a in aliases:
                del ts.aliases[a]
            del ts.collections[name]
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
            doc = self._doc()
            self._space_doc(doc, tenant)["aliases"][alias] = target
            await self._save(doc)
            ts.aliases[alias] = target
            return previous

    async def delete_alias(self, tenant: str, alias: str) -> None:
        async with self._lock:
            ts = self.space(tenant)
            if alias not in ts.aliases:
                raise NotFound(f"alias: no alias named {alias!r}")
            doc = self._doc()
            del self._space_doc(doc, tenant)["aliases"][alias]
            await self._save(doc)
            del ts.aliases[alias]

    async def close(self) -> None:
        for ts in self.tenants.values():
            for c in ts.collections.values():
                await c.shards.close()
