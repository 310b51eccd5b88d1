"""gRPC adapter of the retriever. Until the store lands (issue 4) valid requests answer
UNIMPLEMENTED."""

from __future__ import annotations

import grpc

from facesearch.v1 import retriever_pb2 as pb
from facesearch.v1 import retriever_service_pb2_grpc as pb_grpc
from services.runtime.config import ServerConfig
from services.runtime.errors import Unimplemented
from services.runtime.validation import require, require_name


class RetrieverServicer(pb_grpc.RetrieverServicer):
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCollectionResponse:
        require_name(request.name, "name")
        require(request.vector_fields, "vector_fields")
        raise Unimplemented("CreateCollection is not served yet (retriever, issue 4)")

    async def Stats(
        self, request: pb.StatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatsResponse:
        return pb.StatsResponse()
