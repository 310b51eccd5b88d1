"""The retriever exports what each collection holds on its metrics port."""

from __future__ import annotations

import time

import pytest

from facesearch_contract.v1 import common_pb2 as cpb
from facesearch_contract.v1 import retriever_pb2 as pb
from facesearch_contract.v1 import retriever_service_pb2_grpc as pb_grpc
from harness.service_process import metric_value, running_service, scrape_metrics


@pytest.mark.parametrize("names", [False, True])
def test_points_per_collection_are_exported(tmp_path, names: bool) -> None:  # type: ignore[no-untyped-def]
    # /metrics has no auth: tenant and collection names appear only when an operator opts in.
    env = {
        "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path),
        "FACESEARCH_RETRIEVER_METRICS_REFRESH_S": "0.2",
        "FACESEARCH_RETRIEVER_METRICS_COLLECTION_NAMES": str(names).lower(),
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
        uid = stub.DescribeCollection(
            pb.DescribeCollectionRequest(collection="m"), timeout=10
        ).collection.uid
        labels = {"tenant": "default", "collection": "m"} if names else {
            "tenant": "redacted", "collection": uid
        }  # fmt: skip
        deadline = time.monotonic() + 10
        value = -1.0
        while time.monotonic() < deadline:
            text = scrape_metrics(svc.metrics_port)
            value = metric_value(text, "facesearch_retriever_points", **labels)
            if value == 7:
                break
            time.sleep(0.1)
        assert value == 7
        assert metric_value(text, "facesearch_retriever_memory_bytes", **labels) > 0
        if not names:
            assert '"default"' not in text and 'collection="m"' not in text
