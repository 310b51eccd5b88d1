"""The catalog on disk: one file per collection and one per tenant's aliases, so a tenant's
writes never rewrite another tenant's catalog; restarts keep everything; a data directory
written with the single catalog.json of earlier versions migrates on start.

The structural checks compare each catalog file's inode, mtime and bytes before and after a
tenant's writes: a file another tenant's change did not replace is untouched on all three.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.retriever.catalog import Catalog
from facesearch_server.retriever.catalog_store import CatalogStore, tenant_key
from facesearch_server.retriever.shard_factories import local_factory
from facesearch_server.retriever.shard_router import CallBudget
from harness.service_process import ServiceProcess, start_service
from tests.retriever.conftest import DIM, MODEL, Client, point, retriever_env, unit, write_keys

FileState = tuple[int, int, bytes]


def catalog_files(data: Path) -> dict[str, FileState]:
    """Every catalog file under ``data``: relative path -> (inode, mtime_ns, bytes)."""
    paths = [*data.glob("collections/*/collection.json"), *data.glob("tenants/*.json")]
    out = {}
    for p in paths:
        st = p.stat()
        out[str(p.relative_to(data))] = (st.st_ino, st.st_mtime_ns, p.read_bytes())
    return out


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return write_keys(tmp_path / "keys.yaml")


def start(data: Path, keys: Path) -> ServiceProcess:
    return start_service("retriever", retriever_env(data, keys))


def clients(svc: ServiceProcess) -> tuple[Client, Client]:
    return Client(svc.channel(), "key-alpha"), Client(svc.channel(), "key-beta")


def create(client: Client, name: str, **kw: object) -> pb.CollectionInfo:
    req = pb.CreateCollectionRequest(
        name=name,
        vector_fields=[pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)],
        **kw,  # type: ignore[arg-type]
    )
    return client.CreateCollection(req).collection


def describe(client: Client, name: str) -> pb.CollectionInfo:
    return client.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection


def schema(client: Client, name: str) -> dict[str, int]:
    return {f.name: f.type for f in describe(client, name).metadata_fields}


def aliases(client: Client) -> dict[str, str]:
    reply = client.ListAliases(pb.ListAliasesRequest())
    return {a.alias: a.collection for a in reply.aliases}


def ids_where(client: Client, name: str, vec: np.ndarray, field: str, value: int) -> list[str]:
    cond = cpb.FieldCondition(field=field, equals=cpb.MetadataValue(int_value=value))
    return client.ids(name, vec, k=10, flt=cpb.Filter(must=[cond]))[0]


def test_schema_growth_rewrites_only_the_collections_own_file(
    data: Path, keys: Path, rng: np.random.Generator
) -> None:
    svc = start(data, keys)
    try:
        alpha, beta = clients(svc)
        theirs = create(beta, "theirs")
        beta.SetAlias(pb.SetAliasRequest(alias="live", collection="theirs"))
        ours = create(alpha, "ours")
        assert not (data / "catalog.json").exists()
        before = catalog_files(data)
        own = f"collections/{ours.uid}/collection.json"
        assert {own, f"collections/{theirs.uid}/collection.json"} <= before.keys()
        assert f"tenants/{tenant_key('beta')}.json" in before

        x = unit(rng, 5)
        for batch in range(5):
            keys_ = {f"b{batch}_k{i}": i for i in range(20)}
            alpha.upsert("ours", [point(f"p{batch}", x[batch], **keys_)])
        after = catalog_files(data)
        changed = sorted(p for p in after if after[p] != before.get(p))
        assert changed == [own], changed
        assert set(after) == set(before)  # no file added, none removed
        assert "b4_k19" in json.loads(after[own][2])["schema"]

        # An alias change of one tenant writes that tenant's file only.
        alpha.SetAlias(pb.SetAliasRequest(alias="live", collection="ours"))
        again = catalog_files(data)
        changed = sorted(p for p in again if again[p] != after.get(p))
        assert changed == [f"tenants/{tenant_key('alpha')}.json"], changed
        assert aliases(beta) == {"live": "theirs"}
    finally:
        svc.stop()


def test_restart_keeps_collections_schemas_limits_and_aliases(
    data: Path, keys: Path, rng: np.random.Generator
) -> None:
    x = unit(rng, 4)
    svc = start(data, keys)
    try:
        alpha, beta = clients(svc)
        create(alpha, "auto", max_metadata_fields=6)
        alpha.upsert("auto", [point("a", x[0], year=1999, team="red")])
        create(
            alpha,
            "strict",
            metadata_schema=pb.METADATA_SCHEMA_MODE_DECLARED,
            metadata_fields=[pb.MetadataFieldSpec(name="team", type=pb.FIELD_TYPE_STRING)],
        )
        alpha.AddMetadataFields(
            pb.AddMetadataFieldsRequest(
                collection="strict",
                fields=[pb.MetadataFieldSpec(name="year", type=pb.FIELD_TYPE_INT)],
            )
        )
        alpha.upsert("strict", [point("s", x[1], year=2001)])
        create(alpha, "gone")
        alpha.SetAlias(pb.SetAliasRequest(alias="live", collection="auto"))
        alpha.SetAlias(pb.SetAliasRequest(alias="old", collection="gone"))
        alpha.DropCollection(pb.DropCollectionRequest(collection="gone", force=True))
        create(beta, "auto")  # the same name in another tenant
        beta.SetAlias(pb.SetAliasRequest(alias="live", collection="auto"))
        expected = {
            n: (schema(alpha, n), describe(alpha, n).max_metadata_fields)
            for n in ("auto", "strict")
        }
    finally:
        svc.stop()

    svc = start(data, keys)
    try:
        alpha, beta = clients(svc)
        names = {c.name for c in alpha.ListCollections(pb.ListCollectionsRequest()).collections}
        assert names == {"auto", "strict"}
        for n, (fields, cap) in expected.items():
            assert schema(alpha, n) == fields
            assert describe(alpha, n).max_metadata_fields == cap
        assert describe(alpha, "strict").metadata_schema == pb.METADATA_SCHEMA_MODE_DECLARED
        assert aliases(alpha) == {"live": "auto"} and aliases(beta) == {"live": "auto"}
        assert "year" not in schema(beta, "auto")
        assert ids_where(alpha, "live", x[0], "year", 1999) == ["a"]
        assert ids_where(alpha, "strict", x[1], "year", 2001) == ["s"]
        # The cap holds after the restart: 4 built in + year + team = 6.
        with pytest.raises(grpc.RpcError) as err:
            alpha.upsert("auto", [point("b", x[2], extra=True)])
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:
            alpha.upsert("strict", [point("t", x[3], extra=True)])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        svc.stop()


def _to_legacy(data: Path) -> dict[str, object]:
    """Rewrite ``data``'s catalog as the single catalog.json of earlier versions (same shard
    layout; specs without the schema settings, schemas holding only upsert-grown fields) and
    remove the per-collection and per-tenant files. Returns the legacy document."""
    builtin = {"person_id", "media_id", "source", "time"}
    tenants: dict[str, dict[str, dict[str, object]]] = {}
    for path in data.glob("collections/*/collection.json"):
        doc = json.loads(path.read_text())
        spec = pb.CreateCollectionRequest.FromString(base64.b64decode(doc["spec"]))
        declared = {m.name for m in spec.metadata_fields}
        spec.ClearField("metadata_schema")
        spec.ClearField("max_metadata_fields")
        space = tenants.setdefault(doc["tenant"], {"collections": {}, "aliases": {}})
        space["collections"][doc["name"]] = {
            "uid": doc["uid"],
            "spec": base64.b64encode(spec.SerializeToString()).decode(),
            "created": doc["created"],
            "schema": {
                k: v for k, v in doc["schema"].items() if k not in builtin and k not in declared
            },
        }
        path.unlink()
    for path in data.glob("tenants/*.json"):
        doc = json.loads(path.read_text())
        tenants[doc["tenant"]]["aliases"] = doc["aliases"]
        path.unlink()
    (data / "tenants").rmdir()
    legacy = {"tenants": tenants}
    (data / "catalog.json").write_text(json.dumps(legacy))
    return legacy


def test_a_data_directory_with_the_old_catalog_json_migrates_on_start(
    data: Path, keys: Path, rng: np.random.Generator
) -> None:
    x = unit(rng, 3)
    svc = start(data, keys)
    try:
        alpha, beta = clients(svc)
        create(
            alpha,
            "faces",
            metadata_fields=[pb.MetadataFieldSpec(name="team", type=pb.FIELD_TYPE_STRING)],
        )
        alpha.upsert("faces", [point("a", x[0], year=1999, team="red")])
        alpha.SetAlias(pb.SetAliasRequest(alias="live", collection="faces"))
        create(beta, "faces")
        beta.upsert("faces", [point("b", x[1], rank=3)])
        uids = {describe(alpha, "faces").uid, describe(beta, "faces").uid}
    finally:
        svc.stop()
    legacy = _to_legacy(data)
    assert set(legacy["tenants"]) == {"alpha", "beta"}  # type: ignore[arg-type]
    assert not catalog_files(data)

    for _ in range(2):  # the migrating start, then a plain one
        svc = start(data, keys)
        try:
            alpha, beta = clients(svc)
            assert not (data / "catalog.json").exists()
            assert (data / "catalog.json.migrated").exists()
            assert {Path(p).parent.name for p in catalog_files(data) if "collections" in p} == uids
            assert aliases(alpha) == {"live": "faces"} and not aliases(beta)
            info = describe(alpha, "live")
            assert {"team", "year"} <= schema(alpha, "faces").keys()
            assert info.max_metadata_fields == 256  # the default, for a spec without one
            assert info.metadata_schema == pb.METADATA_SCHEMA_MODE_AUTO
            assert ids_where(alpha, "faces", x[0], "year", 1999) == ["a"]
            assert ids_where(beta, "faces", x[1], "rank", 3) == ["b"]
            alpha.upsert("faces", [point("c", x[2], grown=1)])  # writes land in the new files
            assert "grown" in schema(alpha, "faces")
        finally:
            svc.stop()


def test_start_up_repeats_a_migration_a_crash_interrupted(tmp_path: Path) -> None:
    """catalog.json still there beside files it already produced: migrate again, same result."""

    async def scenario() -> None:
        cat = Catalog(tmp_path, local_factory(tmp_path))
        await cat.load()
        spec = pb.CreateCollectionRequest(
            name="faces",
            shard_count=1,
            vector_fields=[pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)],
        )
        coll = await cat.create("t", spec, CallBudget())
        await cat.set_alias("t", "live", "faces")
        await cat.close()
        doc = json.loads(CatalogStore(tmp_path).collection_file(coll.uid).read_text())
        legacy = {
            "tenants": {
                "t": {
                    "collections": {"faces": {k: doc[k] for k in ("uid", "spec", "created")}},
                    "aliases": {"live": "faces"},
                }
            }
        }
        (tmp_path / "catalog.json").write_text(json.dumps(legacy))
        again = Catalog(tmp_path, local_factory(tmp_path))
        await again.load()
        assert again.resolve("t", "live").uid == coll.uid
        assert not (tmp_path / "catalog.json").exists()
        await again.close()

    asyncio.run(scenario())


def test_orphans_are_removed_but_an_unreadable_catalog_file_stops_start_up(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        cat = Catalog(tmp_path, local_factory(tmp_path))
        await cat.load()
        spec = pb.CreateCollectionRequest(
            name="faces",
            shard_count=1,
            vector_fields=[pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)],
        )
        coll = await cat.create("t", spec, CallBudget())
        await cat.close()
        orphan = tmp_path / "collections" / "half-made"
        (orphan / "shard-000").mkdir(parents=True)
        again = Catalog(tmp_path, local_factory(tmp_path))
        await again.load()
        assert not orphan.exists() and again.resolve("t", "faces").uid == coll.uid
        await again.close()

        own = CatalogStore(tmp_path).collection_file(coll.uid)
        own.write_text("{not json")
        with pytest.raises(RuntimeError, match="cannot be read"):
            await Catalog(tmp_path, local_factory(tmp_path)).load()
        assert (own.parent / "shard-000").exists()  # its data is not taken for an orphan's

    asyncio.run(scenario())
