"""``python -m services.embedder`` (or ``facesearch-embedder``)."""

from __future__ import annotations

from facesearch.v1 import embedder_service_pb2_grpc as pb_grpc
from services.embedder.servicer import EmbedderServicer
from services.runtime.config import ServerConfig
from services.runtime.server import ServiceDefinition, Servicer, run_service


def build(cfg: ServerConfig) -> ServiceDefinition:
    servicer = EmbedderServicer(cfg)
    return ServiceDefinition(
        servicers=[
            Servicer("facesearch.v1.Embedder", servicer, pb_grpc.add_EmbedderServicer_to_server)
        ],
    )


def main() -> None:
    run_service("embedder", build)


if __name__ == "__main__":
    main()
