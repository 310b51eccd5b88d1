"""A TEST-ONLY service, for testing the shared runtime (services/runtime), not a product service.

It runs on ``runtime.server.run_service`` exactly as the real services do (same call
pipeline, auth, metrics, health, SIGTERM drain) but with handlers whose behaviour a test can
steer, which the product services do not have:

- ``/facesearch.test.Probe/Sleep``: sleeps for the seconds given as ASCII in the request body,
  then answers ``b"slept <s>"``: a deliberately slow call for the graceful-shutdown tests.
- ``/facesearch.test.Probe/WhoAmI``: answers ``current_tenant()``. Whatever the request body
  says (e.g. ``b"tenant=B"``) is ignored, which is the point: the tenant comes from the key.
- ``/facesearch.test.Probe/Attempts``: how many times each method below was called.
- ``facesearch.v1.Embedder/ListModels`` fails UNAVAILABLE for the first ``PROBE_FLAKY_FAILS``
  calls, then answers; ``facesearch.v1.Personalizer/StartSession`` always fails UNAVAILABLE.
  The SDK's retry tests count attempts with them (idempotent retried, non-idempotent not).

Run as ``python -m tests.runtime.probe_service`` (config name "probe": FACESEARCH_PROBE_*).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter

import grpc

from facesearch_contract.v1 import embedder_pb2, personalizer_pb2
from facesearch_contract.v1 import embedder_service_pb2_grpc as embedder_grpc
from facesearch_contract.v1 import personalizer_service_pb2_grpc as personalizer_grpc
from facesearch_server.runtime.auth import current_tenant
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.errors import Unavailable
from facesearch_server.runtime.server import ServiceDefinition, Servicer, run_service

PROBE_SERVICE = "facesearch.test.Probe"
ATTEMPTS: Counter[str] = Counter()


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    seconds = float(request.decode() or "0")
    await asyncio.sleep(seconds)
    return f"slept {seconds}".encode()


async def who_am_i(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return current_tenant().encode()


async def attempts(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return json.dumps(ATTEMPTS).encode()


def _register_probe(_impl: object, server: grpc.aio.Server) -> None:
    # Raw bytes in and out (no (de)serializers): no proto needed for a test service.
    handlers = {
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
        "WhoAmI": grpc.unary_unary_rpc_method_handler(who_am_i),
        "Attempts": grpc.unary_unary_rpc_method_handler(attempts),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(PROBE_SERVICE, handlers),)
    )


class FlakyEmbedder(embedder_grpc.EmbedderServicer):
    def __init__(self, fails: int) -> None:
        self.fails = fails

    async def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        ATTEMPTS["ListModels"] += 1
        if ATTEMPTS["ListModels"] <= self.fails:
            raise Unavailable(f"flaky on purpose (attempt {ATTEMPTS['ListModels']})")
        return embedder_pb2.ListModelsResponse(
            models=[embedder_pb2.ModelInfo(model_id="probe-model", dimension=4, ready=True)]
        )


class DownPersonalizer(personalizer_grpc.PersonalizerServicer):
    async def StartSession(self, request, context):  # type: ignore[no-untyped-def]
        ATTEMPTS["StartSession"] += 1
        raise Unavailable("always down on purpose")
        return personalizer_pb2.StartSessionResponse()  # pragma: no cover


def build(cfg: ServerConfig) -> ServiceDefinition:
    fails = int(os.environ.get("PROBE_FLAKY_FAILS", "0"))
    return ServiceDefinition(
        servicers=[
            Servicer(PROBE_SERVICE, None, _register_probe),
            Servicer(
                "facesearch.v1.Embedder",
                FlakyEmbedder(fails),
                embedder_grpc.add_EmbedderServicer_to_server,
            ),
            Servicer(
                "facesearch.v1.Personalizer",
                DownPersonalizer(),
                personalizer_grpc.add_PersonalizerServicer_to_server,
            ),
        ]
    )


if __name__ == "__main__":
    run_service("probe", build)
