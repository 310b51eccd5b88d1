"""TLS on a real service: a client trusting the certificate works, a plaintext client fails."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from facesearch_contract.v1 import retriever_pb2
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub
from harness.service_process import running_service
from harness.tls import self_signed


def test_tls_client_works_and_plaintext_client_fails(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    env = {
        "FACESEARCH_TLS_CERT_FILE": str(cert),
        "FACESEARCH_TLS_KEY_FILE": str(key),
        "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path / "data"),
    }
    with running_service("retriever", env, tls_ca=cert.read_bytes()) as svc:
        RetrieverStub(svc.channel()).Stats(retriever_pb2.StatsRequest(), timeout=10)

        plain = grpc.insecure_channel(svc.address)
        try:
            with pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert err.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        finally:
            plain.close()

        # A client that does not trust this certificate fails the handshake.
        other_cert, _ = self_signed(tmp_path / "other")
        untrusting = grpc.secure_channel(
            svc.address,
            grpc.ssl_channel_credentials(other_cert.read_bytes()),
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
        try:
            with pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(untrusting).Check(
                    health_pb2.HealthCheckRequest(), timeout=3
                )
            assert err.value.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        finally:
            untrusting.close()
