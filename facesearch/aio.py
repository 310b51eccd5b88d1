"""The asyncio client, twin of facesearch.client.FacesearchClient.

    async with AsyncFacesearchClient.from_env() as fs:
        models = await fs.embedder.ListModels(ListModelsRequest())

The async flows (search by image or text, sessions) are here too; they build their messages
with facesearch.messages, like the sync flows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch import messages
from facesearch.channels import open_aio_channel
from facesearch.client import SERVICE_NAMES
from facesearch.errors import FacesearchError, NoFaceFound
from facesearch.settings import ClientSettings
from facesearch_contract.v1 import embedder_pb2, personalizer_pb2, retriever_pb2
from facesearch_contract.v1.embedder_service_pb2_grpc import EmbedderStub
from facesearch_contract.v1.personalizer_service_pb2_grpc import PersonalizerStub
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
        self.personalizer = PersonalizerStub(self._channels["personalizer"])

    @classmethod
    def from_env(cls, **overrides: object) -> AsyncFacesearchClient:
        return cls(ClientSettings.from_env(**overrides))

    def channel(self, service: str) -> grpc.aio.Channel:
        return self._channels[service]

    async def health(self, service: str, timeout: float | None = 5.0) -> str:  # noqa: ASYNC109
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


async def collection_fields(
    client: AsyncFacesearchClient, collection: str
) -> messages.CollectionFields:
    reply = await client.retriever.DescribeCollection(
        retriever_pb2.DescribeCollectionRequest(collection=collection)
    )
    return messages.CollectionFields.of(reply.collection)


async def search_by_image(
    client: AsyncFacesearchClient,
    collection: str,
    image: str | Path | bytes,
    *,
    k: int = 10,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Embed the largest face of ``image`` and search ``collection`` with it."""
    fields = await collection_fields(client, collection)
    reply = await client.embedder.EmbedImages(
        messages.embed_images_request([image], model_id=fields.face_model)
    )
    result = reply.results[0]
    if result.error_code:
        raise FacesearchError(f"{messages.describe_image(image)}: {result.error_message}")
    face = messages.largest_face(result)
    if face is None:
        raise NoFaceFound(messages.describe_image(image))
    request = messages.search_request(
        collection, [messages.vector_term(fields.face, face)], k=k, where=where
    )
    return messages.hits((await client.retriever.Search(request)).results[0])


async def search_by_text(
    client: AsyncFacesearchClient,
    collection: str,
    text: str,
    *,
    k: int = 10,
    field: str | None = None,
    where: messages.FilterSpec = None,
) -> list[messages.Hit]:
    """Embed ``text`` and search the collection's text field with it."""
    fields = await collection_fields(client, collection)
    name, model = fields.text_field(field)
    reply = await client.embedder.EmbedText(
        messages.embed_text_request([text], model_id=model, role=embedder_pb2.TEXT_ROLE_QUERY)
    )
    term = messages.text_term(name, reply.embeddings[0], reply.model_id or model)
    request = messages.search_request(collection, [term], k=k, where=where)
    return messages.hits((await client.retriever.Search(request)).results[0])


async def run_session(
    client: AsyncFacesearchClient,
    collection: str,
    user_id: str,
    on_round: Callable[
        [personalizer_pb2.SessionState], Awaitable[list[personalizer_pb2.Feedback] | None]
    ],
    *,
    k: int = 0,
    seed: personalizer_pb2.SessionSeed | None = None,
    max_rounds: int = 50,
) -> messages.SessionOutcome:
    """Start a session, ask ``on_round`` for labels each round until the person is found,
    the collection runs out, ``on_round`` returns None, or ``max_rounds``; end the session."""
    reply = await client.personalizer.StartSession(
        messages.start_session_request(user_id, collection, k=k, seed=seed)
    )
    state = reply.state
    try:
        while not state.finished and state.round < max_rounds:
            labels = await on_round(state)
            if not labels:
                break
            state = (
                await client.personalizer.SubmitFeedback(
                    personalizer_pb2.SubmitFeedbackRequest(
                        session_id=state.session_id, feedback=labels
                    )
                )
            ).state
    finally:
        try:
            ended = await client.personalizer.EndSession(
                personalizer_pb2.EndSessionRequest(session_id=state.session_id)
            )
            rounds = ended.rounds
        except grpc.RpcError as err:
            # A finished session may already be gone; the outcome is known either way.
            if err.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
            rounds = state.round
    return messages.SessionOutcome(
        rounds=rounds or state.round, finished=state.finished, found_id=state.found_id
    )
