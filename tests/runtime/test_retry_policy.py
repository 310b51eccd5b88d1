"""Retries are gRPC's own retry policy: between services, the reads the contract marks
NO_SIDE_EFFECTS, on UNAVAILABLE only (runtime.downstream); to Triton, ModelInfer on UNAVAILABLE
(embedder.backends.triton). Both against small in-process gRPC servers that fail on purpose and
count the attempts that reached them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from facesearch_contract.v1 import retriever_pb2 as rpb
from facesearch_contract.v1.retriever_service_pb2_grpc import RetrieverStub
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.triton import TritonRuntime
from facesearch_server.runtime import downstream
from facesearch_server.runtime.config import ServerConfig
from facesearch_server.runtime.errors import Unavailable

# How each method answers the n-th call (from 1): None = success, else the status to fail with.
Script = Callable[[int], grpc.StatusCode | None]


def fail_first(n: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> Script:
    return lambda call: code if call <= n else None


def always(code: grpc.StatusCode) -> Script:
    return lambda call: code


class Flaky(grpc.GenericRpcHandler):
    """Raw-bytes handlers for ``/<service>/<method>`` that follow their scripts; success answers
    with an empty message (valid for every response type)."""

    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts
        self.calls: Counter[str] = Counter()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if method not in self.scripts:
            return None

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls[method] += 1
            code = self.scripts[method](self.calls[method])
            if code is not None:
                await context.abort(code, f"scripted {code.name} #{self.calls[method]}")
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)


@asynccontextmanager
async def serving(handler: grpc.GenericRpcHandler | None = None, **servicers: Any):  # type: ignore[no-untyped-def]
    server = grpc.aio.server()
    if handler is not None:
        server.add_generic_rpc_handlers((handler,))
    if "triton" in servicers:
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicers["triton"], server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


# ---------------------------------------------------------------- between services

SEARCH = "/facesearch.v1.Retriever/Search"
UPSERT = "/facesearch.v1.Retriever/Upsert"


def test_the_reads_are_the_methods_the_contract_marks_without_side_effects() -> None:
    reads = set(downstream.read_methods())
    assert ("facesearch.v1.Retriever", "Search") in reads
    assert ("facesearch.v1.Embedder", "EmbedImages") in reads
    assert ("grpc.health.v1.Health", "Check") in reads
    # Writes, idempotent or not, and the personalizer's session calls are never retried here.
    for write in ("Upsert", "Delete", "SetAlias", "CreateCollection", "Snapshot"):
        assert ("facesearch.v1.Retriever", write) not in reads
    assert not {m for s, m in reads if s == "facesearch.v1.Personalizer"} - {"DescribeUser"}


def test_a_read_is_retried_on_unavailable_until_it_succeeds() -> None:
    async def main() -> None:
        flaky = Flaky({SEARCH: fail_first(2)})
        async with serving(flaky) as address:
            async with downstream.open_channel(address, ServerConfig()) as channel:
                reply = await RetrieverStub(channel).Search(rpb.SearchRequest(), timeout=10)
        assert reply == rpb.SearchResponse()
        assert flaky.calls[SEARCH] == 3

    run(main())


def test_a_read_gives_up_after_the_policy_s_attempts() -> None:
    async def main() -> None:
        flaky = Flaky({SEARCH: always(grpc.StatusCode.UNAVAILABLE)})
        async with serving(flaky) as address:
            async with downstream.open_channel(address, ServerConfig()) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await RetrieverStub(channel).Search(rpb.SearchRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert flaky.calls[SEARCH] == downstream.RETRY_POLICY["maxAttempts"]

    run(main())


def test_other_codes_and_writes_are_not_retried() -> None:
    async def main() -> None:
        flaky = Flaky(
            {SEARCH: always(grpc.StatusCode.INTERNAL), UPSERT: always(grpc.StatusCode.UNAVAILABLE)}
        )
        async with serving(flaky) as address:
            async with downstream.open_channel(address, ServerConfig()) as channel:
                stub = RetrieverStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Search(rpb.SearchRequest(), timeout=10)
                assert err.value.code() == grpc.StatusCode.INTERNAL
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Upsert(rpb.UpsertRequest(), timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert flaky.calls == Counter({SEARCH: 1, UPSERT: 1})

    run(main())


def test_retries_stay_within_the_call_s_deadline() -> None:
    async def main() -> None:
        flaky = Flaky({SEARCH: always(grpc.StatusCode.UNAVAILABLE)})
        async with serving(flaky) as address:
            async with downstream.open_channel(address, ServerConfig()) as channel:
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    # Shorter than the policy's first backoffs could need: the deadline wins.
                    await RetrieverStub(channel).Search(rpb.SearchRequest(), timeout=0.02)
                elapsed = time.monotonic() - started
        assert err.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        assert elapsed < 1.0

    run(main())


# ---------------------------------------------------------------- to Triton


class FakeTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ModelInfer by script; a success answers a (rows, 384) float32 ``embedding``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls = 0

    async def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        code = self.script(self.calls)
        if code is not None:
            await context.abort(code, f"scripted {code.name} #{self.calls}")
        rows = int(request.inputs[0].shape[0])
        out = np.full((rows, 384), 0.5, np.float32)
        return service_pb2.ModelInferResponse(
            model_name=request.model_name,
            outputs=[
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name="embedding", datatype="FP32", shape=list(out.shape)
                )
            ],
            raw_output_contents=[out.tobytes()],
        )


FEEDS = {
    "input_ids": np.ones((2, 3), np.int64),
    "attention_mask": np.ones((2, 3), np.int64),
    "token_type_ids": np.zeros((2, 3), np.int64),
}


async def infer(triton: FakeTriton, **runtime: Any) -> np.ndarray:
    async with serving(triton=triton) as address:
        rt = TritonRuntime(address, **runtime)
        try:
            return await rt.infer(mf.MINILM, FEEDS)
        finally:
            await rt.close()


def test_triton_infer_is_retried_by_the_channel_on_unavailable() -> None:
    async def main() -> None:
        triton = FakeTriton(fail_first(2))
        out = await infer(triton, timeout_s=5.0, retries=3, backoff_s=0.01)
        assert out.shape == (2, 384)
        assert triton.calls == 3

    run(main())


def test_triton_gives_up_after_its_retries_as_unavailable() -> None:
    async def main() -> None:
        triton = FakeTriton(always(grpc.StatusCode.UNAVAILABLE))
        with pytest.raises(Unavailable, match="retry later"):
            await infer(triton, timeout_s=5.0, retries=1, backoff_s=0.01)
        assert triton.calls == 2

    run(main())


@pytest.mark.parametrize(
    ("code", "error"),
    [
        # A model this embedder serves but Triton has not loaded (yet): try again later.
        (grpc.StatusCode.NOT_FOUND, Unavailable),
        # Triton refusing the request this embedder built is a bug here: INTERNAL.
        (grpc.StatusCode.INVALID_ARGUMENT, RuntimeError),
    ],
)
def test_triton_refusals_are_not_retried(code: grpc.StatusCode, error: type[Exception]) -> None:
    async def main() -> None:
        triton = FakeTriton(always(code))
        with pytest.raises(error):
            await infer(triton, timeout_s=5.0, retries=3, backoff_s=0.01)
        assert triton.calls == 1

    run(main())


def test_no_retry_policy_when_retries_are_off() -> None:
    async def main() -> None:
        triton = FakeTriton(always(grpc.StatusCode.UNAVAILABLE))
        with pytest.raises(Unavailable):
            await infer(triton, timeout_s=5.0, retries=0)
        assert triton.calls == 1

    run(main())
