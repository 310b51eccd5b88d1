"""A process that cannot start says why and exits non-zero; health Watch works through the
call pipeline."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.service_process import REPO_ROOT, running_service


def _run(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    child.update(env)
    return subprocess.run(
        [sys.executable, "-m", f"facesearch_server.{name}"],
        cwd=REPO_ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_taken_port_is_an_error_not_a_shared_port(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path / "a")}
    with running_service("retriever", env) as first:
        second = _run(
            "retriever",
            {
                "FACESEARCH_RETRIEVER_PORT": str(first.port),
                "FACESEARCH_RETRIEVER_METRICS_PORT": "0",
                "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path / "b"),
            },
        )
        assert second.returncode == 1
        assert "cannot start" in second.stderr
        assert "Traceback" not in second.stderr


def test_a_broken_config_file_is_a_configuration_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "facesearch.yaml"
    bad.write_text("common: [unclosed\n")
    result = _run("retriever", {"FACESEARCH_CONFIG": str(bad)})
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_watch_streams_the_status(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with running_service("retriever", {"FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path)}) as svc:
        stub = health_pb2_grpc.HealthStub(svc.channel())
        stream = stub.Watch(
            health_pb2.HealthCheckRequest(service="facesearch.v1.Retriever"), timeout=10
        )
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()
        assert stream.code() == grpc.StatusCode.CANCELLED
