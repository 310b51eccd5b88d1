"""One tenant never sees another's collections, through the API with two tenants' keys."""

from __future__ import annotations

import grpc
import numpy as np

from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import ServiceProcess
from tests.retriever.conftest import Client, code_of, point, unit


def test_tenants_are_isolated(alpha: Client, beta: Client, rng: np.random.Generator) -> None:
    x = unit(rng, 5)
    alpha.create("private")
    alpha.upsert("private", [point(f"a{i}", x[i], person_id="p") for i in range(5)])
    alpha.SetAlias(pb.SetAliasRequest(alias="private-alias", collection="private"))

    assert [c.name for c in beta.ListCollections(pb.ListCollectionsRequest()).collections] == []
    assert list(beta.ListAliases(pb.ListAliasesRequest()).aliases) == []
    assert beta.Stats(pb.StatsRequest()).points == 0
    not_found = grpc.StatusCode.NOT_FOUND
    for name in ("private", "private-alias"):
        assert code_of(lambda n=name: beta.search(n, x[:1])) == not_found
        assert (
            code_of(lambda n=name: beta.Get(pb.GetRequest(collection=n, ids=["a0"]))) == not_found
        )
        assert code_of(lambda n=name: beta.upsert(n, [point("b", x[0])])) == not_found
        delete = pb.DeleteRequest(collection=name, person_id="p")
        assert code_of(lambda d=delete: beta.Delete(d)) == not_found
        describe = pb.DescribeCollectionRequest(collection=name)
        assert code_of(lambda d=describe: beta.DescribeCollection(d)) == not_found
        assert code_of(lambda n=name: beta.Stats(pb.StatsRequest(collection=n))) == not_found
    drop = pb.DropCollectionRequest(collection="private", force=True)
    assert code_of(lambda: beta.DropCollection(drop)) == not_found
    alias = pb.SetAliasRequest(alias="mine", collection="private")
    assert code_of(lambda: beta.SetAlias(alias)) == not_found

    # The same name in another tenant is another collection.
    beta.create("private")
    beta.upsert("private", [point("b0", x[0])])
    assert beta.ids("private", x[0], k=5) == [["b0"]]
    assert alpha.ids("private", x[0], k=1) == [["a0"]]
    assert (
        alpha.DescribeCollection(
            pb.DescribeCollectionRequest(collection="private")
        ).collection.points
        == 5
    )


def test_calls_without_a_valid_key_are_refused(server: ServiceProcess) -> None:
    for key in (None, "not-a-key"):
        c = Client(server.channel(), key)
        assert (
            code_of(lambda c=c: c.ListCollections(pb.ListCollectionsRequest()))
            == grpc.StatusCode.UNAUTHENTICATED
        )
