"""A method a servicer does not override answers UNIMPLEMENTED (not INTERNAL), and the
metrics count it under that code."""

from __future__ import annotations

import grpc
import pytest

from facesearch_contract.v1 import embedder_pb2
from facesearch_contract.v1 import embedder_service_pb2_grpc as embedder_grpc
from harness.service_process import running_service


def test_unoverridden_method_is_unimplemented() -> None:
    # The probe's Embedder overrides only ListModels; EmbedText falls to the generated base.
    with running_service("probe", {}, module="tests.runtime.probe_service") as svc:
        stub = embedder_grpc.EmbedderStub(svc.channel())
        with pytest.raises(grpc.RpcError) as err:
            stub.EmbedText(embedder_pb2.EmbedTextRequest(texts=["x"]), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "EmbedText" in err.value.details()
