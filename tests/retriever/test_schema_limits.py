"""A collection's metadata schema grows only within its max_metadata_fields, and only as its
metadata_schema mode allows: past the cap an upsert or a declaration is refused with a bounded
message and changes nothing; a DECLARED collection takes only declared keys, added by
AddMetadataFields. Over gRPC, against a real retriever."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from facesearch.async_client import AsyncFacesearchClient
from facesearch.core.collections import add_metadata_fields
from facesearch.settings import ClientSettings
from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_server.runtime.errors import MAX_MESSAGE_CHARS
from harness.service_process import ServiceProcess
from tests.retriever.conftest import DIM, MODEL, Client, point, unit

BUILTIN = 4  # person_id, media_id, source, time


def create(
    client: Client,
    name: str,
    cap: int = 0,
    mode: int = pb.METADATA_SCHEMA_MODE_UNSPECIFIED,
    declared: dict[str, int] | None = None,
) -> pb.CollectionInfo:
    req = pb.CreateCollectionRequest(
        name=name,
        vector_fields=[pb.VectorFieldSpec(name="face", dimension=DIM, model_id=MODEL)],
        max_metadata_fields=cap,
        metadata_schema=mode,
        metadata_fields=[pb.MetadataFieldSpec(name=n, type=t) for n, t in (declared or {}).items()],
    )
    return client.CreateCollection(req).collection


def refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value


def fields_of(client: Client, name: str) -> dict[str, int]:
    info = client.DescribeCollection(pb.DescribeCollectionRequest(collection=name)).collection
    return {f.name: f.type for f in info.metadata_fields}


def long_keys(prefix: str, n: int) -> dict[str, str]:
    """``n`` distinct keys of the longest allowed size (64 bytes)."""
    return {f"{prefix}{i:04d}".ljust(64, "k"): "v" for i in range(n)}


def test_upsert_past_the_default_cap_is_refused_with_a_bounded_message_and_stores_nothing(
    alpha: Client, rng: np.random.Generator
) -> None:
    info = create(alpha, "cap-default")
    assert info.max_metadata_fields == 256
    assert info.metadata_schema == pb.METADATA_SCHEMA_MODE_AUTO
    x = unit(rng, 5)
    # A writer minting 60 keys per batch: four batches fit in 256 fields (4 built in).
    for batch in range(4):
        alpha.upsert("cap-default", [point(f"p{batch}", x[batch], **long_keys(f"b{batch}-", 60))])
    before = fields_of(alpha, "cap-default")
    assert len(before) == BUILTIN + 240
    err = refused(lambda: alpha.upsert("cap-default", [point("p4", x[4], **long_keys("b4-", 60))]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
    details = err.details()
    assert len(details) < MAX_MESSAGE_CHARS, len(details)
    assert "max_metadata_fields" in details and "256" in details, details
    assert "and 55 more" in details, details  # five keys quoted, not sixty
    assert fields_of(alpha, "cap-default") == before
    got = alpha.Get(pb.GetRequest(collection="cap-default", ids=["p4"]))
    assert not got.points
    # Keys the schema already has still work: only growth is capped.
    alpha.upsert("cap-default", [point("p5", x[4], **long_keys("b0-", 60))])


def test_cap_set_at_creation_counts_built_in_and_declared_fields(
    alpha: Client, rng: np.random.Generator
) -> None:
    info = create(alpha, "cap-small", cap=7, declared={"team": pb.FIELD_TYPE_STRING})
    assert info.max_metadata_fields == 7
    x = unit(rng, 3)
    alpha.upsert("cap-small", [point("a", x[0], team="red", year=1999, tag="x")])  # 7 fields
    err = refused(lambda: alpha.upsert("cap-small", [point("b", x[1], extra=True)]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'extra'" in err.details() and "nothing was stored" in err.details()
    assert "extra" not in fields_of(alpha, "cap-small")
    assert not alpha.Get(pb.GetRequest(collection="cap-small", ids=["b"])).points


def test_create_refuses_a_cap_the_declared_fields_pass_or_over_the_ceiling(alpha: Client) -> None:
    declared = {f"f{i}": pb.FIELD_TYPE_INT for i in range(4)}
    err = refused(lambda: create(alpha, "cap-too-small", cap=7, declared=declared))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata_fields" in err.details()
    err = refused(lambda: create(alpha, "cap-too-big", cap=1025))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_metadata_fields" in err.details() and "1,024" in err.details()
    names = {c.name for c in alpha.ListCollections(pb.ListCollectionsRequest()).collections}
    assert not {"cap-too-small", "cap-too-big"} & names


def test_declared_schema_takes_only_declared_keys(alpha: Client, rng: np.random.Generator) -> None:
    info = create(
        alpha,
        "declared",
        cap=8,
        mode=pb.METADATA_SCHEMA_MODE_DECLARED,
        declared={"team": pb.FIELD_TYPE_STRING},
    )
    assert info.metadata_schema == pb.METADATA_SCHEMA_MODE_DECLARED
    x = unit(rng, 3)
    alpha.upsert("declared", [point("a", x[0], team="red", person_id="p")])
    err = refused(lambda: alpha.upsert("declared", [point("b", x[1], year=2001)]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'year'" in err.details() and "AddMetadataFields" in err.details()
    assert not alpha.Get(pb.GetRequest(collection="declared", ids=["b"])).points

    add = pb.AddMetadataFieldsRequest(
        collection="declared",
        fields=[
            pb.MetadataFieldSpec(name="year", type=pb.FIELD_TYPE_INT),
            pb.MetadataFieldSpec(name="team", type=pb.FIELD_TYPE_STRING),  # already there
        ],
    )
    reply = alpha.AddMetadataFields(add)
    assert list(reply.added) == ["year"]
    assert {f.name for f in reply.metadata_fields} >= {"team", "year", "person_id", "time"}
    assert list(alpha.AddMetadataFields(add).added) == []  # a retry changes nothing
    alpha.upsert("declared", [point("b", x[1], year=2001)])
    found = alpha.search(
        "declared",
        x[1],
        k=3,
        flt=cpb.Filter(
            must=[cpb.FieldCondition(field="year", equals=cpb.MetadataValue(int_value=2001))]
        ),
    )
    assert [h.id for h in found.results[0].hits] == ["b"]


def test_add_metadata_fields_is_all_or_nothing(alpha: Client) -> None:
    create(alpha, "declare-more", cap=6, mode=pb.METADATA_SCHEMA_MODE_DECLARED)
    before = fields_of(alpha, "declare-more")

    def add(*fields: tuple[str, int]) -> object:
        return lambda: alpha.AddMetadataFields(
            pb.AddMetadataFieldsRequest(
                collection="declare-more",
                fields=[pb.MetadataFieldSpec(name=n, type=t) for n, t in fields],
            )
        )

    err = refused(add(("a", pb.FIELD_TYPE_INT), ("b", pb.FIELD_TYPE_INT), ("c", pb.FIELD_TYPE_INT)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "nothing was added" in err.details()
    err = refused(add(("a", pb.FIELD_TYPE_INT), ("time", pb.FIELD_TYPE_INT)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # a built-in field's type is fixed
    err = refused(add(("a", pb.FIELD_TYPE_INT), ("a", pb.FIELD_TYPE_BOOL)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(alpha, "declare-more") == before
    alpha.AddMetadataFields(
        pb.AddMetadataFieldsRequest(
            collection="declare-more", fields=[pb.MetadataFieldSpec(name="a", type=1)]
        )
    )
    err = refused(add(("a", pb.FIELD_TYPE_INT)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already of type string" in err.details()
    err = refused(lambda: alpha.AddMetadataFields(pb.AddMetadataFieldsRequest(collection="nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_another_tenant_cannot_declare_fields_in_my_collection(alpha: Client, beta: Client) -> None:
    create(alpha, "mine-only")
    err = refused(
        lambda: beta.AddMetadataFields(
            pb.AddMetadataFieldsRequest(
                collection="mine-only",
                fields=[pb.MetadataFieldSpec(name="x", type=pb.FIELD_TYPE_STRING)],
            )
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "x" not in fields_of(alpha, "mine-only")


def test_unknown_filter_field_message_quotes_a_few_known_fields(
    alpha: Client, rng: np.random.Generator
) -> None:
    create(alpha, "many-fields")
    x = unit(rng, 1)
    alpha.upsert("many-fields", [point("a", x[0], **long_keys("f", 60))])
    flt = cpb.Filter(must=[cpb.FieldCondition(field="nope", exists=True)])
    err = refused(lambda: alpha.search("many-fields", x[0], flt=flt))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'nope'" in err.details() and "more" in err.details(), err.details()
    assert err.details().count("'f0") == 5, err.details()


def test_sdk_declares_fields(server: ServiceProcess, alpha: Client) -> None:
    create(alpha, "sdk-declared", mode=pb.METADATA_SCHEMA_MODE_DECLARED)

    async def declare() -> list[str]:
        settings = ClientSettings(retriever_address=server.address, api_key="key-alpha")
        async with AsyncFacesearchClient(settings) as fs:
            return await add_metadata_fields(fs, "sdk-declared", {"year": pb.FIELD_TYPE_INT})

    assert asyncio.run(declare()) == ["year"]
    assert fields_of(alpha, "sdk-declared")["year"] == pb.FIELD_TYPE_INT
