"""The synchronous client: one object holding a channel and a stub per service.

    with FacesearchClient.from_env() as fs:
        models = fs.embedder.ListModels(ListModelsRequest())

``.embedder``, ``.retriever`` and ``.personalizer`` are the generated stubs, so every RPC is
there as a plain call; facesearch.flows composes the common jobs from them. Each call carries
the API key and a default deadline, and idempotent calls are retried on UNAVAILABLE
(facesearch.channels).
"""

from __future__ import annotations

from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch.channels import open_sync_channel
from facesearch.settings import ClientSettings
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub

SERVICE_NAMES = {
    "embedder": "facesearch.v1.Embedder",
    "retriever": "facesearch.v1.Retriever",
    "personalizer": "facesearch.v1.Personalizer",
}


class FacesearchClient:
    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings()
        self._channels = {
            name: open_sync_channel(self.settings.address(name), self.settings)
            for name in SERVICE_NAMES
        }
        self.embedder = EmbedderStub(self._channels["embedder"])
        self.retriever = RetrieverStub(self._channels["retriever"])
        self.personalizer = PersonalizerStub(self._channels["personalizer"])

    @classmethod
    def from_env(cls, **overrides: object) -> FacesearchClient:
        """Settings from FACESEARCH_* variables; keyword overrides win (None = unset)."""
        return cls(ClientSettings.from_env(**overrides))

    def channel(self, service: str) -> grpc.Channel:
        return self._channels[service]

    def health(self, service: str, timeout: float | None = 5.0) -> str:
        """The service's health status name (SERVING, NOT_SERVING, ...)."""
        stub = health_pb2_grpc.HealthStub(self._channels[service])
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAMES[service]), timeout=timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> FacesearchClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
