"""The retriever exports what each collection holds on its metrics port."""

from __future__ import annotations

import time

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from harness.service_process import metric_value, running_service, scrape_metrics


def test_points_per_collection_are_exported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path),
        "FACESEARCH_RETRIEVER_METRICS_REFRESH_S": "0.2",
    }
    with running_service("retriever", env, metrics=True) as svc:
        stub = pb_grpc.RetrieverStub(svc.channel())
        stub.CreateCollection(
            pb.CreateCollectionRequest(
                name="m",
                vector_fields=[pb.VectorFieldSpec(name="face", dimension=4, model_id="x")],
            ),
            timeout=10,
        )
        points = [
            pb.Point(
                id=f"p{i}",
                vectors={"face": cpb.Vector(values=[1.0, float(i), 0.0, 0.0])},
                model_ids={"face": "x"},
            )
            for i in range(7)
        ]
        stub.Upsert(pb.UpsertRequest(collection="m", points=points), timeout=10)
        deadline = time.monotonic() + 10
        value = -1.0
        while time.monotonic() < deadline:
            text = scrape_metrics(svc.metrics_port)
            value = metric_value(
                text, "facesearch_retriever_points", tenant="default", collection="m"
            )
            if value == 7:
                break
            time.sleep(0.1)
        assert value == 7
        assert (
            metric_value(
                text, "facesearch_retriever_memory_bytes", tenant="default", collection="m"
            )
            > 0
        )
