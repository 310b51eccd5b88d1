"""gRPC adapter of the embedder. Until the models land (issue 3) valid requests answer
UNIMPLEMENTED."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from facesearch.v1 import embedder_pb2 as pb
from facesearch.v1 import embedder_service_pb2_grpc as pb_grpc
from services.runtime.config import ServerConfig
from services.runtime.errors import Unimplemented
from services.runtime.validation import batch_size, require


class EmbedderServicer(pb_grpc.EmbedderServicer):
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.max_batch = int(cfg.get("max_batch", 64))
        self.max_text_batch = int(cfg.get("max_text_batch", 256))

    async def EmbedImages(
        self, request: pb.EmbedImagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedImagesResponse:
        batch_size(request.images, "images", self.max_batch)
        for i, image in enumerate(request.images):
            require(image.data, f"images[{i}].data")
        raise Unimplemented("EmbedImages is not served yet (embedder, issue 3)")

    async def EmbedFaces(
        self, request: pb.EmbedFacesRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedFacesResponse:
        batch_size(request.crops, "crops", self.max_batch)
        raise Unimplemented("EmbedFaces is not served yet (embedder, issue 3)")

    async def EmbedText(
        self, request: pb.EmbedTextRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedTextResponse:
        batch_size(request.texts, "texts", self.max_text_batch)
        for i, text in enumerate(request.texts):
            require(text.strip(), f"texts[{i}]")
        raise Unimplemented("EmbedText is not served yet (embedder, issue 3)")

    async def EmbedImagesStream(
        self,
        request_iterator: AsyncIterator[pb.EmbedStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ImageResult]:
        raise Unimplemented("EmbedImagesStream is not served yet (embedder, issue 3)")
        yield pb.ImageResult()  # pragma: no cover - makes this an async generator

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse()
