"""API-key auth mapped to tenants, over real sockets.

The retriever's own tests prove one tenant cannot read another's data; here we prove what the
runtime guarantees: no or wrong key is UNAUTHENTICATED, probes work without a key, and the
tenant a handler sees comes from the key, never from request data (the test-only probe
service echoes ``current_tenant()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from facesearch_contract.v1 import retriever_pb2
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub
from harness.service_process import ServiceProcess, running_service

KEY_A = "key-for-tenant-a-0123456789"
KEY_B = "key-for-tenant-b-9876543210"


def auth_env(tmp: Path) -> dict[str, str]:
    keys = tmp / "keys.yaml"
    keys.write_text(f"{KEY_A}: tenant-a\n{KEY_B}: tenant-b\n")
    return {"FACESEARCH_AUTH_ENABLED": "true", "FACESEARCH_AUTH_KEYS_FILE": str(keys)}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = auth_env(tmp_path_factory.mktemp("auth"))
    with running_service("probe", env, module="tests.runtime.probe_service") as svc:
        yield svc


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("auth-retriever")
    env = {**auth_env(tmp), "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp / "data")}
    with running_service("retriever", env) as svc:
        yield svc


def who_am_i(svc: ServiceProcess, metadata=None, body: bytes = b"") -> str:
    call = svc.channel().unary_unary("/facesearch.test.Probe/WhoAmI")
    return call(body, metadata=metadata, timeout=10).decode()


def test_no_key_is_unauthenticated_with_a_hint(probe: ServiceProcess) -> None:
    with pytest.raises(grpc.RpcError) as err:
        who_am_i(probe)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-api-key" in err.value.details()


def test_wrong_key_is_unauthenticated(probe: ServiceProcess) -> None:
    with pytest.raises(grpc.RpcError) as err:
        who_am_i(probe, [("x-api-key", KEY_A + "x")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_each_key_acts_as_its_own_tenant(probe: ServiceProcess) -> None:
    assert who_am_i(probe, [("x-api-key", KEY_A)]) == "tenant-a"
    assert who_am_i(probe, [("x-api-key", KEY_B)]) == "tenant-b"
    assert who_am_i(probe, [("authorization", f"Bearer {KEY_B}")]) == "tenant-b"


def test_key_for_a_cannot_act_as_b_through_request_data_or_headers(probe: ServiceProcess) -> None:
    # Whatever else the caller sends, the tenant is the key's.
    metadata = [("x-api-key", KEY_A), ("x-tenant", "tenant-b"), ("tenant", "tenant-b")]
    assert who_am_i(probe, metadata, body=b"tenant=tenant-b") == "tenant-a"


def test_health_needs_no_key(probe: ServiceProcess) -> None:
    assert probe.health() == health_pb2.HealthCheckResponse.SERVING


def test_real_service_refuses_unauthenticated_calls(retriever: ServiceProcess) -> None:
    stub = RetrieverStub(retriever.channel())
    with pytest.raises(grpc.RpcError) as err:
        stub.Stats(retriever_pb2.StatsRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.Stats(retriever_pb2.StatsRequest(), metadata=[("x-api-key", "nope")], timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stub.Stats(retriever_pb2.StatsRequest(), metadata=[("x-api-key", KEY_A)], timeout=10)
    assert retriever.health() == health_pb2.HealthCheckResponse.SERVING


def test_auth_on_without_keys_refuses_to_start() -> None:
    with pytest.raises(AssertionError, match="no API keys are configured"):
        with running_service("retriever", {"FACESEARCH_AUTH_ENABLED": "true"}, timeout=30):
            pass
