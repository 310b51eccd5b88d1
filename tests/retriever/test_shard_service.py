"""The internal shard service (RetrieverShard) in the deployment it is made for: auth on, a
router talking to its shard servers over mTLS as a trusted peer. Tenants reach their data
through the router; calling a shard server's internal service themselves is PERMISSION_DENIED
and shows them nothing, whatever credentials they hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_internal_pb2 as ipb
from facesearch_contract.v1 import retriever_internal_service_pb2_grpc as ipb_grpc
from facesearch_contract.v1 import retriever_pb2 as pb
from harness.service_process import ServiceProcess, start_service
from harness.tls import certificate_authority
from tests.retriever.conftest import Client, code_of, point, retriever_env, unit, write_keys

pytestmark = pytest.mark.slow

Pair = tuple[Path, Path]


def _channel(address: str, ca: Path, pair: Pair) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        ca.read_bytes(), pair[1].read_bytes(), pair[0].read_bytes()
    )
    return grpc.secure_channel(address, creds)


def _tls(pair: Pair, ca: Path) -> dict[str, str]:
    return {
        "tls_cert_file": str(pair[0]),
        "tls_key_file": str(pair[1]),
        "tls_client_ca_file": str(ca),
    }


@pytest.fixture(scope="module")
def secure(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, list[ServiceProcess], dict[str, Pair]]]:
    base: Path = tmp_path_factory.mktemp("secure")
    pki = certificate_authority(base / "pki", ["router", "shard", "archive-a"])
    ca = pki["ca"][0]
    keys = write_keys(base / "keys.yaml")
    tenant = (pki["archive-a"][0].read_bytes(), pki["archive-a"][1].read_bytes())
    shards: list[ServiceProcess] = []
    router = None
    try:
        for i in range(2):
            env = retriever_env(
                base / f"shard{i}", keys, trusted_peers="router", **_tls(pki["shard"], ca)
            )
            shards.append(
                start_service("retriever", env, tls_ca=ca.read_bytes(), tls_client=tenant)
            )
        servers = "[" + ", ".join(s.address for s in shards) + "]"
        env = retriever_env(base / "router", keys, shard_servers=servers, **_tls(pki["router"], ca))
        router = start_service("retriever", env, tls_ca=ca.read_bytes(), tls_client=tenant)
        yield router, shards, pki
    finally:
        if router is not None:
            router.stop()
        for s in shards:
            s.stop()


def test_tenants_use_the_router_and_are_refused_by_the_internal_service(
    secure: tuple[ServiceProcess, list[ServiceProcess], dict[str, Pair]],
) -> None:
    router, shards, pki = secure
    ca = pki["ca"][0]
    alpha = Client(_channel(router.address, ca, pki["archive-a"]), "key-alpha")
    alpha.create("secrets", shards=0)
    x = unit(np.random.default_rng(5), 40)
    alpha.upsert("secrets", [point(f"s{i}", x[i], person_id="p") for i in range(40)])
    # End to end: tenant -> router -> shard servers (mTLS, the router's certificate).
    assert alpha.ids("secrets", x[:3], k=1) == [["s0"], ["s1"], ["s2"]]
    info = alpha.DescribeCollection(pb.DescribeCollectionRequest(collection="secrets"))
    assert info.collection.points == 40 and all(s.available for s in info.collection.shards)

    # The router's certificate is a trusted peer: it sees the shards, by uid and number.
    trusted = ipb_grpc.RetrieverShardStub(_channel(shards[0].address, ca, pki["router"]))
    (ref,) = trusted.ListShards(ipb.ListShardsRequest(), timeout=10).shards
    held = trusted.GetShard(ipb.ShardGetRequest(ref=ref, ids=[f"s{i}" for i in range(40)]))
    assert held.points

    # A tenant calling the shard server directly: an API key (even over a valid certificate),
    # or a certificate that is not a trusted peer -> PERMISSION_DENIED and no data.
    tenant_channel = _channel(shards[0].address, ca, pki["archive-a"])
    direct = ipb_grpc.RetrieverShardStub(tenant_channel)
    calls = {
        "ListShards": lambda md: direct.ListShards(ipb.ListShardsRequest(), metadata=md),
        "GetShard": lambda md: direct.GetShard(
            ipb.ShardGetRequest(ref=ref, ids=["s0", "s1"]), metadata=md
        ),
        "SearchShard": lambda md: direct.SearchShard(
            ipb.ShardSearchRequest(
                ref=ref, field="face", k=5, queries=[cpb.Vector(values=x[0].tolist())]
            ),
            metadata=md,
        ),
        "ScanShard": lambda md: direct.ScanShard(
            ipb.ShardScanRequest(ref=ref, limit=5), metadata=md
        ),
        "DropShard": lambda md: direct.DropShard(ipb.DropShardRequest(ref=ref), metadata=md),
    }
    for name, call in calls.items():
        for md in ((("x-api-key", "key-alpha"),), ()):
            assert code_of(lambda c=call, m=md: c(m)) == grpc.StatusCode.PERMISSION_DENIED, name
    # Even the router's own certificate may not carry a tenant's API key into it.
    with_key = trusted.ListShards
    assert code_of(
        lambda: with_key(ipb.ListShardsRequest(), metadata=(("x-api-key", "key-alpha"),))
    ) == (grpc.StatusCode.PERMISSION_DENIED)
    assert code_of(
        lambda: direct.ListShards(ipb.ListShardsRequest(), metadata=(("x-api-key", "nope"),))
    ) == (grpc.StatusCode.UNAUTHENTICATED)
    # The refused drop dropped nothing.
    assert alpha.Stats(pb.StatsRequest(collection="secrets")).points == 40


def test_with_api_keys_only_no_caller_may_use_the_internal_service(
    server: ServiceProcess,
) -> None:
    """Auth on without mTLS (the test server of this package): there is no trusted peer, so
    every caller of RetrieverShard is refused, tenants included."""
    stub = ipb_grpc.RetrieverShardStub(server.channel())
    for key in ("key-alpha", "key-beta"):
        assert code_of(
            lambda k=key: stub.ListShards(
                ipb.ListShardsRequest(), metadata=(("x-api-key", k),), timeout=10
            )
        ) == (grpc.StatusCode.PERMISSION_DENIED)
    ref = ipb.ShardRef(collection_uid="ab" * 16, shard=0)
    create = ipb.OpenShardRequest(
        ref=ref,
        vector_fields=[pb.VectorFieldSpec(name="face", dimension=4, model_id="m")],
        create=True,
    )
    assert code_of(
        lambda: stub.OpenShard(create, metadata=(("x-api-key", "key-alpha"),), timeout=10)
    ) == (grpc.StatusCode.PERMISSION_DENIED)
