"""The synchronous client: one object holding a channel and a stub per service.

    with FacesearchClient.from_env() as fs:
        models = fs.embedder.ListModels(ListModelsRequest())

``.embedder``, ``.retriever`` and ``.personalizer`` are the generated stubs, so every RPC is
there as a plain call; facesearch.flows composes the common jobs from them. Each call carries
the API key and a default deadline, and idempotent calls are retried on UNAVAILABLE
(facesearch.channels).

The flows are written once, against the asyncio client (facesearch.core); the first flow a
client runs opens an AsyncFacesearchClient with the same settings on a private event loop
thread (facesearch.sync_bridge), closed with this client.
"""

from __future__ import annotations

import threading
import weakref
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch.async_client import AsyncFacesearchClient
from facesearch.channels import open_sync_channel
from facesearch.settings import SERVICE_NAMES, ClientSettings
from facesearch.sync_bridge import LoopThread
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub
from facesearch_contract.v1.persons_service_pb2_grpc import PersonsStub
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub

__all__ = ["SERVICE_NAMES", "FacesearchClient"]


class FacesearchClient:
    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings()
        self._channels = {
            name: open_sync_channel(self.settings.address(name), self.settings)
            for name in SERVICE_NAMES
        }
        self.embedder = EmbedderStub(self._channels["embedder"])
        self.retriever = RetrieverStub(self._channels["retriever"])
        # Persons and identification are served by the retriever process (persons_service.proto).
        self.persons = PersonsStub(self._channels["retriever"])
        self.personalizer = PersonalizerStub(self._channels["personalizer"])
        self._twin: AsyncTwin | None = None
        self._twin_lock = threading.Lock()
        self._closed = False

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

    def async_twin(self) -> AsyncTwin:
        """The asyncio client the flows run on (opened on first use)."""
        with self._twin_lock:
            if self._closed:
                raise ValueError("this FacesearchClient is closed")
            if self._twin is None:
                self._twin = AsyncTwin(self.settings)
                # A client dropped without close() still stops its loop thread.
                weakref.finalize(self, self._twin.close).atexit = False
            return self._twin

    def close(self) -> None:
        with self._twin_lock:
            self._closed = True
            twin, self._twin = self._twin, None
        if twin is not None:
            twin.close()
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


class AsyncTwin:
    """An AsyncFacesearchClient and the private loop it lives on."""

    def __init__(self, settings: ClientSettings) -> None:
        self.loop = LoopThread()
        # grpc.aio channels belong to the loop they are made on.
        self.client = self.loop.run(_open(settings))
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if not self.loop.in_loop_thread():
                self.loop.run(self.client.close())
        finally:
            self.loop.close()


async def _open(settings: ClientSettings) -> AsyncFacesearchClient:
    return AsyncFacesearchClient(settings)
