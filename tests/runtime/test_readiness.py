"""Health tells the truth: readiness (health name "readiness" and each service's full name)
follows what the service needs to do its job, liveness ("") stays SERVING through a dependency's
outage, and readiness comes back by itself when the dependency does (runtime.readiness).

Real service processes over sockets; the dependencies are real too: a redis-server started and
killed here, the retriever's data directory, a Triton gRPC endpoint that is absent and then
answers (an in-process stand-in for the inference protocol's ModelReady).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tritonclient.grpc import service_pb2, service_pb2_grpc

from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from harness.service_process import ServiceProcess, free_port, running_service
from tests.personalizer.conftest import OwnRedis

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Re-checked this often in these tests, so a change shows within a few tenths of a second;
# the waits below are generous bounds on a loaded machine, not timing assertions.
INTERVAL = "0.2"


def _status_name(status: int) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def wait_for_health(svc: ServiceProcess, name: str, want: int, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    status = svc.health(name)
    while status != want:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{svc.name} health {name!r} is {_status_name(status)} after {within_s} s, "
                f"expected {_status_name(want)}; log:\n{svc.log()[-3000:]}"
            )
        time.sleep(0.1)
        status = svc.health(name)


def assert_ready(svc: ServiceProcess, full_name: str, ready: bool) -> None:
    want = SERVING if ready else NOT_SERVING
    wait_for_health(svc, "readiness", want)
    # The service's own name says the same; liveness never follows a dependency.
    assert svc.health(full_name) == want
    assert svc.health("") == SERVING


def _closed_address() -> str:
    return f"127.0.0.1:{free_port()}"


def test_personalizer_is_not_ready_while_redis_is_down_and_recovers(tmp_path: Path) -> None:
    redis_server = OwnRedis(free_port(), tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis_server.start()
    env = {
        "FACESEARCH_PERSONALIZER_REDIS_URL": redis_server.url,
        "FACESEARCH_PERSONALIZER_REDIS_TIMEOUT_S": "1",
        "FACESEARCH_PERSONALIZER_READINESS_INTERVAL_S": INTERVAL,
        "FACESEARCH_PERSONALIZER_DATA_DIR": str(tmp_path / "personalizer"),
        "FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS": _closed_address(),
        "FACESEARCH_PERSONALIZER_EMBEDDER_ADDRESS": _closed_address(),
    }
    try:
        with running_service("personalizer", env, log_dir=tmp_path) as svc:
            assert_ready(svc, "facesearch.v1.Personalizer", True)
            redis_server.stop()
            assert_ready(svc, "facesearch.v1.Personalizer", False)
            # What readiness claims is what a call gets.
            stub = ppb_grpc.PersonalizerStub(svc.channel())
            with pytest.raises(grpc.RpcError) as err:
                stub.DescribeUser(ppb.DescribeUserRequest(user_id="u"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            redis_server.start()  # same port; the personalizer is not restarted
            assert_ready(svc, "facesearch.v1.Personalizer", True)
            stub.DescribeUser(ppb.DescribeUserRequest(user_id="u"), timeout=10)
            records = svc.log_records()
            assert any(
                r.get("msg") == "not ready" and r.get("dependency") == "redis" for r in records
            )
            assert any(r.get("msg") == "ready again" for r in records)
    finally:
        redis_server.stop()


def test_retriever_is_not_ready_while_its_data_directory_takes_no_writes(tmp_path: Path) -> None:
    # Permission bits do not stop root (tests may run as root), so the directory is made
    # unwritable in a way that binds every user: its path stops being a directory, as when a
    # volume is unmounted or replaced. Creating a file under it then fails (ENOTDIR) for root
    # too; the probe reports any failed write the same way, whatever its errno.
    data = tmp_path / "data"
    env = {
        "FACESEARCH_RETRIEVER_DATA_DIR": str(data),
        "FACESEARCH_RETRIEVER_READINESS_INTERVAL_S": INTERVAL,
    }
    with running_service("retriever", env, log_dir=tmp_path) as svc:
        assert_ready(svc, "facesearch.v1.Retriever", True)
        aside = tmp_path / "data.aside"
        data.rename(aside)
        data.write_text("not a directory")
        assert_ready(svc, "facesearch.v1.Retriever", False)
        assert svc.health("facesearch.v1.Persons") == NOT_SERVING
        # What readiness claims is what a call gets: a write cannot be stored.
        with pytest.raises(grpc.RpcError):
            rpb_grpc.RetrieverStub(svc.channel()).CreateCollection(
                rpb.CreateCollectionRequest(
                    name="c",
                    vector_fields=[
                        rpb.VectorFieldSpec(
                            name="f", dimension=4, model_id="m", metric=rpb.METRIC_INNER_PRODUCT
                        )
                    ],
                ),
                timeout=10,
            )
        data.unlink()
        aside.rename(data)
        assert_ready(svc, "facesearch.v1.Retriever", True)
    shutil.rmtree(data, ignore_errors=True)


class _TritonStandIn(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Answers ModelReady: every model is loaded (what a healthy Triton says)."""

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=True)


@contextmanager
def triton_answering(port: int) -> Iterator[None]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_TritonStandIn(), server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    server.start()
    try:
        yield
    finally:
        server.stop(None)


def test_embedder_on_triton_is_ready_only_while_triton_serves_its_models(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "FACESEARCH_EMBEDDER_BACKEND": "triton",
        "FACESEARCH_EMBEDDER_TRITON_URL": f"127.0.0.1:{port}",
        "FACESEARCH_EMBEDDER_READINESS_INTERVAL_S": INTERVAL,
    }
    # Starts with nothing on Triton's port: the process serves (liveness), it is not ready.
    with running_service("embedder", env, log_dir=tmp_path) as svc:
        assert_ready(svc, "facesearch.v1.Embedder", False)
        with triton_answering(port):
            assert_ready(svc, "facesearch.v1.Embedder", True)
        assert_ready(svc, "facesearch.v1.Embedder", False)
