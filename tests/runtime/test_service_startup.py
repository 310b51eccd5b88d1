"""Each service is its own process and port: SERVING over gRPC health, listed by reflection."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from harness.service_process import SERVICES, ServiceProcess

FULL_NAMES = {
    "embedder": "facesearch.v1.Embedder",
    "retriever": "facesearch.v1.Retriever",
    "personalizer": "facesearch.v1.Personalizer",
}


@pytest.mark.parametrize("name", SERVICES)
def test_service_reports_serving_overall_and_by_name(
    services: dict[str, ServiceProcess], name: str
) -> None:
    svc = services[name]
    assert svc.proc.poll() is None
    assert svc.health("") == health_pb2.HealthCheckResponse.SERVING
    assert svc.health(FULL_NAMES[name]) == health_pb2.HealthCheckResponse.SERVING


def test_services_listen_on_their_own_ports(services: dict[str, ServiceProcess]) -> None:
    ports = {svc.port for svc in services.values()}
    assert len(ports) == len(SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_reflection_lists_the_service_and_its_methods(
    services: dict[str, ServiceProcess], name: str
) -> None:
    db = ProtoReflectionDescriptorDatabase(services[name].channel())
    listed = set(db.get_services())
    assert FULL_NAMES[name] in listed
    assert "grpc.health.v1.Health" in listed


@pytest.mark.parametrize("name", SERVICES)
def test_reflection_serves_the_service_descriptor(
    services: dict[str, ServiceProcess], name: str
) -> None:
    # grpcurl-like tools need the descriptor, not just the name, to build requests.
    db = ProtoReflectionDescriptorDatabase(services[name].channel())
    file_proto = db.FindFileContainingSymbol(FULL_NAMES[name])
    (service,) = [s for s in file_proto.service if s.name == FULL_NAMES[name].rsplit(".", 1)[1]]
    assert len(service.method) >= 5


def test_unknown_health_service_name_is_not_found(services: dict[str, ServiceProcess]) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        services["embedder"].health("facesearch.v1.NoSuchService")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
