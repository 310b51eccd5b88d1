"""``python -m services.personalizer`` (or ``facesearch-personalizer``)."""

from __future__ import annotations

from facesearch.v1 import personalizer_service_pb2_grpc as pb_grpc
from services.personalizer.servicer import PersonalizerServicer
from services.runtime.config import ServerConfig
from services.runtime.server import ServiceDefinition, Servicer, run_service


def build(cfg: ServerConfig) -> ServiceDefinition:
    servicer = PersonalizerServicer(cfg)
    return ServiceDefinition(
        servicers=[
            Servicer(
                "facesearch.v1.Personalizer", servicer, pb_grpc.add_PersonalizerServicer_to_server
            )
        ],
    )


def main() -> None:
    run_service("personalizer", build)


if __name__ == "__main__":
    main()
