"""A service calling another reconnects as soon as the other is back (runtime.downstream): the
personalizer's first call after a restarted retriever answers health succeeds; a call made
while the peer is away waits a bounded time for it and still answers within its deadline.

gRPC's default reconnect backoff grows 1 s, 1.6 s, 2.6 s, 4.1 s, 6.6 s ... up to 120 s, and a call
made while the channel waits out that backoff fails at once: after an outage of a few seconds the
personalizer kept failing for seconds after the retriever was back (issue #12: 6.6 s, 274 calls).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from facesearch_contract.v1 import personalizer_pb2 as ppb
from facesearch_contract.v1 import personalizer_service_pb2_grpc as ppb_grpc
from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1 import retriever_service_pb2_grpc as rpb_grpc
from facesearch_server.runtime import downstream
from facesearch_server.runtime.config import ServerConfig
from harness.service_process import ServiceProcess, free_port, start_service

DIM = 8
# Long enough for gRPC's default backoff to grow past the retriever's restart time (the next
# attempt after an 8 s outage is about 4-6 s away), so the old channel options fail this test.
OUTAGE_S = 8.0


def _create_collection(retriever: ServiceProcess) -> None:
    stub = rpb_grpc.RetrieverStub(retriever.channel())
    stub.CreateCollection(
        rpb.CreateCollectionRequest(
            name="faces",
            vector_fields=[
                rpb.VectorFieldSpec(
                    name="face", dimension=DIM, model_id="m", metric=rpb.METRIC_INNER_PRODUCT
                )
            ],
        ),
        timeout=30,
    )
    rng = np.random.default_rng(0)
    points = []
    for i, v in enumerate(rng.standard_normal((40, DIM)).astype(np.float32)):
        p = rpb.Point(id=f"p{i}")
        p.vectors["face"].values.extend((v / np.linalg.norm(v)).tolist())
        p.model_ids["face"] = "m"
        points.append(p)
    stub.Upsert(rpb.UpsertRequest(collection="faces", points=points), timeout=30)


def _start_session(stub: ppb_grpc.PersonalizerStub) -> ppb.StartSessionResponse:
    return stub.StartSession(
        ppb.StartSessionRequest(user_id="u", collection="faces", ephemeral=True), timeout=10
    )


class _Echo(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


async def _serve_on(port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Echo(),))
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    return server


def test_a_call_made_while_the_peer_is_away_goes_through_once_it_is_back() -> None:
    async def main() -> None:
        port = free_port()
        cfg = ServerConfig(downstream_connect_wait_s=30)
        async with downstream.open_channel(f"127.0.0.1:{port}", cfg) as channel:
            echo = channel.unary_unary("/facesearch.test.Echo/Echo")
            with pytest.raises(grpc.aio.AioRpcError):  # nobody there: the channel backs off
                await echo(b"first", timeout=0.2)
            # The peer comes up while the next call waits; the call reaches it.
            call = asyncio.ensure_future(echo(b"second", timeout=60))
            await asyncio.sleep(0.3)
            assert not call.done()  # waiting for the connection, not failed at once
            server = await _serve_on(port)
            try:
                assert await call == b"second"
            finally:
                await server.stop(None)

    asyncio.run(asyncio.wait_for(main(), 120))


def test_a_peer_that_stays_away_is_unavailable_within_the_call_s_deadline() -> None:
    async def main() -> None:
        cfg = ServerConfig(downstream_connect_wait_s=30)
        async with downstream.open_channel(f"127.0.0.1:{free_port()}", cfg) as channel:
            echo = channel.unary_unary("/facesearch.test.Echo/Echo")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await echo(b"x", timeout=1.0)
        # The wait took at most half the deadline: the caller learns the peer is down, not
        # merely that time ran out.
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.slow
def test_first_call_after_the_retriever_is_back_succeeds(tmp_path: Path) -> None:
    port = free_port()
    retriever_env = {
        "FACESEARCH_RETRIEVER_DATA_DIR": str(tmp_path / "retriever"),
        # The restarted retriever must come back where the personalizer looks for it.
        "FACESEARCH_RETRIEVER_PORT": str(port),
    }
    procs: list[ServiceProcess] = []
    try:
        retriever = start_service("retriever", retriever_env, log_dir=tmp_path / "r1")
        procs.append(retriever)
        _create_collection(retriever)
        personalizer = start_service(
            "personalizer",
            {
                "FACESEARCH_PERSONALIZER_DATA_DIR": str(tmp_path / "personalizer"),
                "FACESEARCH_PERSONALIZER_RETRIEVER_ADDRESS": retriever.address,
                "FACESEARCH_PERSONALIZER_EMBEDDER_ADDRESS": f"127.0.0.1:{free_port()}",
            },
            log_dir=tmp_path / "p",
        )
        procs.append(personalizer)
        stub = ppb_grpc.PersonalizerStub(personalizer.channel())
        assert _start_session(stub).state.candidates

        retriever.proc.kill()  # a crash: no drain, connections reset
        retriever.proc.wait(timeout=10)
        failures = 0
        outage_end = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_end:
            with pytest.raises(grpc.RpcError) as err:
                _start_session(stub)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            failures += 1
            time.sleep(0.1)
        assert failures > 0

        # Same port, same data; start_service returns once it answers gRPC health.
        retriever = start_service("retriever", retriever_env, log_dir=tmp_path / "r2")
        procs.append(retriever)
        try:
            reply = _start_session(stub)
        except grpc.RpcError as exc:
            pytest.fail(
                "the personalizer's first call after the retriever answered health failed: "
                f"{exc.code().name} {exc.details()}"
            )
        assert reply.state.candidates
    finally:
        for p in reversed(procs):
            p.stop()


def test_the_sdk_s_channels_reconnect_as_promptly_as_the_services_do() -> None:
    from facesearch.channels import channel_options
    from facesearch.settings import ClientSettings

    sdk = dict(channel_options(ClientSettings()))
    services = dict(downstream.RECONNECT_BACKOFF)
    for key in ("grpc.initial_reconnect_backoff_ms", "grpc.max_reconnect_backoff_ms"):
        assert sdk[key] == services[key] <= 1000, key
