"""The asyncio client: one object holding a channel and a stub per service.

    async with AsyncFacesearchClient.from_env() as fs:
        models = await fs.embedder.ListModels(ListModelsRequest())

The twin of facesearch.client.FacesearchClient, and the client every flow is written against
(facesearch.core); the sync client runs those flows on one of these (facesearch.sync_bridge).
"""

from __future__ import annotations

from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch.channels import open_aio_channel
from facesearch.settings import SERVICE_NAMES, ClientSettings
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub
from facesearch_contract.v1.persons_service_pb2_grpc import PersonsStub
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub


class AsyncFacesearchClient:
    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings()
        self._channels = {
            name: open_aio_channel(self.settings.address(name), self.settings)
            for name in SERVICE_NAMES
        }
        self.embedder = EmbedderStub(self._channels["embedder"])
        self.retriever = RetrieverStub(self._channels["retriever"])
        # Persons and identification are served by the retriever process (persons_service.proto).
        self.persons = PersonsStub(self._channels["retriever"])
        self.personalizer = PersonalizerStub(self._channels["personalizer"])

    @classmethod
    def from_env(cls, **overrides: object) -> AsyncFacesearchClient:
        """Settings from FACESEARCH_* variables; keyword overrides win (None = unset)."""
        return cls(ClientSettings.from_env(**overrides))

    def channel(self, service: str) -> grpc.aio.Channel:
        return self._channels[service]

    async def health(self, service: str, timeout: float | None = 5.0) -> str:  # noqa: ASYNC109
        """The service's health status name (SERVING, NOT_SERVING, ...)."""
        stub = health_pb2_grpc.HealthStub(self._channels[service])
        reply = await stub.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAMES[service]), timeout=timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def __aenter__(self) -> AsyncFacesearchClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
