"""The metrics port: per-RPC counter by status code and latency histogram move after calls."""

from __future__ import annotations

import grpc
import pytest

from facesearch_contract.v1 import embedder_pb2, retriever_pb2
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub
from harness.service_process import ServiceProcess, metric_value, scrape_metrics


def test_rpc_counter_and_histogram_move_after_calls(services: dict[str, ServiceProcess]) -> None:
    svc = services["embedder"]
    stub = EmbedderStub(svc.channel())
    before = scrape_metrics(svc.metrics_port)

    for _ in range(3):
        stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.EmbedText(embedder_pb2.EmbedTextRequest(), timeout=10)

    after = scrape_metrics(svc.metrics_port)
    ok = {"service": "embedder", "method": "ListModels", "code": "OK"}
    bad = {"service": "embedder", "method": "EmbedText", "code": "INVALID_ARGUMENT"}
    assert metric_value(after, "facesearch_rpc_total", **ok) - metric_value(
        before, "facesearch_rpc_total", **ok
    ) == pytest.approx(3)
    assert metric_value(after, "facesearch_rpc_total", **bad) - metric_value(
        before, "facesearch_rpc_total", **bad
    ) == pytest.approx(1)
    hist = {"service": "embedder", "method": "ListModels"}
    name = "facesearch_rpc_duration_seconds"
    assert metric_value(after, f"{name}_count", **hist) - metric_value(
        before, f"{name}_count", **hist
    ) == pytest.approx(3)
    assert metric_value(after, f"{name}_sum", **hist) > metric_value(before, f"{name}_sum", **hist)
    # Bucket counts are cumulative: the +Inf bucket holds every call.
    assert metric_value(after, f"{name}_bucket", le="+Inf", **hist) >= 3


@pytest.mark.parametrize("name", ["retriever", "personalizer"])
def test_every_service_exposes_rpc_and_process_metrics(
    services: dict[str, ServiceProcess], name: str
) -> None:
    svc = services[name]
    if name == "retriever":
        RetrieverStub(svc.channel()).Stats(retriever_pb2.StatsRequest(), timeout=10)
    else:
        from facesearch_contract.v1 import personalizer_pb2
        from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub

        with pytest.raises(grpc.RpcError):
            PersonalizerStub(svc.channel()).StartSession(
                personalizer_pb2.StartSessionRequest(), timeout=10
            )
    text = scrape_metrics(svc.metrics_port)
    assert metric_value(text, "facesearch_rpc_total", service=name) >= 1
    assert "facesearch_rpc_duration_seconds_bucket" in text
    assert metric_value(text, "process_resident_memory_bytes") > 0
