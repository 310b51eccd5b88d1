"""The catalog on disk: one small file per collection and one per tenant's aliases.

    <data_dir>/collections/<uid>/collection.json   tenant, name, uid, spec, created, schema
    <data_dir>/tenants/<tenant key>.json           tenant, aliases

A change rewrites only the file of what it changes: a collection's schema growth rewrites that
collection's file, an alias change that tenant's file. So no tenant's writes ever cost another
tenant a rewrite (one shared catalog.json, rewritten whole under one lock on every change, let
one tenant's growing schema slow every other tenant's SetAlias to a second).

A collection's file is the commit point of its existence: created last when a collection is
made (after its shards), removed first when it is dropped. A directory under ``collections/``
without one is a half-made or dropped collection and start-up removes it. Every file is
written whole and atomically (temporary file, fsync, rename, fsync of the directory).

Data directories from before this layout hold one ``catalog.json``; ``load`` moves it into the
files above, then renames it ``catalog.json.migrated`` (kept for the operator; safe to delete).
A crash midway leaves ``catalog.json`` in place and the next start-up migrates again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.wal import fsync_dir, make_dirs

log = logging.getLogger("facesearch.retriever.catalog")

COLLECTION_FILE = "collection.json"
LEGACY_FILE = "catalog.json"
MIGRATED_FILE = "catalog.json.migrated"


@dataclass
class CollectionRecord:
    """What the catalog keeps of one collection."""

    tenant: str
    name: str
    uid: str
    spec: pb.CreateCollectionRequest
    created: float
    schema: dict[str, int] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "name": self.name,
            "uid": self.uid,
            "spec": base64.b64encode(self.spec.SerializeToString()).decode(),
            "created": self.created,
            "schema": dict(self.schema),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any], tenant: str = "", name: str = "") -> CollectionRecord:
        spec = pb.CreateCollectionRequest()
        spec.ParseFromString(base64.b64decode(doc["spec"]))
        return cls(
            tenant=doc.get("tenant", tenant),
            name=doc.get("name", name),
            uid=doc["uid"],
            spec=spec,
            created=float(doc["created"]),
            schema={k: int(v) for k, v in doc.get("schema", {}).items()},
        )


@dataclass
class StoredCatalog:
    collections: list[CollectionRecord]
    aliases: dict[str, dict[str, str]]  # tenant -> alias -> collection name


def tenant_key(tenant: str) -> str:
    """A file name for any tenant name (they come from the operator's key file, unrestricted)."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:32]


class CatalogStore:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.collections_dir = data_dir / "collections"
        self.tenants_dir = data_dir / "tenants"

    def collection_file(self, uid: str) -> Path:
        return self.collections_dir / uid / COLLECTION_FILE

    def tenant_file(self, tenant: str) -> Path:
        return self.tenants_dir / f"{tenant_key(tenant)}.json"

    # ---- writes (blocking: the catalog runs them in a thread) ------------------------------

    def write_file(self, path: Path, doc: dict[str, Any]) -> None:
        """Replace ``path`` with ``doc`` atomically; every catalog write goes through here."""
        make_dirs(path.parent)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)

    def save_collection(self, record: CollectionRecord) -> None:
        self.write_file(self.collection_file(record.uid), record.to_doc())

    def remove_collection(self, uid: str) -> None:
        """Forget a collection (the commit point of a drop); its other files are left to the
        caller, or to start-up's orphan clean-up after a crash."""
        path = self.collection_file(uid)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def save_aliases(self, tenant: str, aliases: dict[str, str]) -> None:
        self.write_file(self.tenant_file(tenant), {"tenant": tenant, "aliases": dict(aliases)})

    # ---- start-up ----------------------------------------------------------------------

    def load(self) -> StoredCatalog:
        make_dirs(self.dir)
        self._migrate_legacy()
        records: list[CollectionRecord] = []
        if self.collections_dir.exists():
            for d in sorted(self.collections_dir.iterdir()):
                path = d / COLLECTION_FILE
                if path.is_file():
                    records.append(CollectionRecord.from_doc(self._read(path)))
        aliases: dict[str, dict[str, str]] = {}
        if self.tenants_dir.exists():
            for path in sorted(self.tenants_dir.glob("*.json")):
                doc = self._read(path)
                aliases[doc["tenant"]] = {str(a): str(c) for a, c in doc["aliases"].items()}
        return StoredCatalog(records, aliases)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            # Refuse to start rather than guess: skipping it would make the collection's data
            # look orphaned, and start-up would delete it.
            raise RuntimeError(
                f"catalog file {path} cannot be read ({exc}); restore it from a backup, or move "
                "the collection's directory away to drop it"
            ) from exc
        if not isinstance(doc, dict):
            raise RuntimeError(f"catalog file {path} does not hold a JSON object")
        return doc

    def _migrate_legacy(self) -> None:
        legacy = self.dir / LEGACY_FILE
        if not legacy.exists():
            return
        data = self._read(legacy)
        moved = 0
        for tenant, space in data.get("tenants", {}).items():
            for name, entry in space.get("collections", {}).items():
                self.save_collection(CollectionRecord.from_doc(entry, tenant, name))
                moved += 1
            if space.get("aliases"):
                self.save_aliases(tenant, space["aliases"])
        os.replace(legacy, self.dir / MIGRATED_FILE)
        fsync_dir(self.dir)
        log.info(
            "catalog migrated to one file per collection",
            extra={"collections": moved, "kept_as": MIGRATED_FILE},
        )
