"""``python -m services.retriever`` (or ``facesearch-retriever``)."""

from __future__ import annotations

from facesearch.v1 import retriever_service_pb2_grpc as pb_grpc
from services.retriever.servicer import RetrieverServicer
from services.runtime.config import ServerConfig
from services.runtime.server import ServiceDefinition, Servicer, run_service


def build(cfg: ServerConfig) -> ServiceDefinition:
    servicer = RetrieverServicer(cfg)
    return ServiceDefinition(
        servicers=[
            Servicer("facesearch.v1.Retriever", servicer, pb_grpc.add_RetrieverServicer_to_server)
        ],
    )


def main() -> None:
    run_service("retriever", build)


if __name__ == "__main__":
    main()
