"""Encoders on a Triton Inference Server, through the official async gRPC client.

Every call has a total budget (``timeout_s``) shared by its attempts: an unreachable or
overloaded server is retried with backoff inside that budget and then reported as UNAVAILABLE,
so a caller never waits longer than configured. Reconnection is gRPC's own; its backoff is
capped low so the embedder notices within a second or two when Triton is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from facesearch_server.embedder import model_files as mf
from facesearch_server.runtime.errors import InvalidArgument, Unavailable

log = logging.getLogger("facesearch.embedder.triton")

# Codes worth another attempt within the budget: the server is down, restarting or busy.
RETRYABLE = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.UNKNOWN"}
MAX_MESSAGE = 256 * 1024 * 1024


class TritonRuntime:
    name = "triton"

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_batch: int = 64,
        reconnect_backoff_ms: int = 1000,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._max_batch = max_batch
        self.reconnect_backoff_ms = reconnect_backoff_ms
        self._client: triton.InferenceServerClient | None = None

    def _new_client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(
            self.url,
            channel_args=[
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                # Default reconnect backoff grows to 120 s: after a long outage the embedder
                # would keep failing fast for minutes after Triton is back.
                ("grpc.initial_reconnect_backoff_ms", min(200, self.reconnect_backoff_ms)),
                ("grpc.min_reconnect_backoff_ms", min(200, self.reconnect_backoff_ms)),
                ("grpc.max_reconnect_backoff_ms", self.reconnect_backoff_ms),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
            ],
        )

    @property
    def client(self) -> triton.InferenceServerClient:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    async def start(self) -> None:
        # Connect lazily; a Triton that is still starting must not stop the embedder starting.
        self.client  # noqa: B018
        for model_id in mf.ENCODERS:
            if not await self.ready(model_id):
                log.warning(
                    "triton model not ready yet", extra={"model": model_id, "url": self.url}
                )

    def _inputs(self, inputs: dict[str, np.ndarray]) -> list[triton.InferInput]:
        out = []
        for name, arr in inputs.items():
            arr = np.ascontiguousarray(arr)
            item = triton.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            item.set_data_from_numpy(arr)
            out.append(item)
        return out

    async def infer(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        spec = mf.ENCODERS.get(model_id)
        if spec is None:
            raise InvalidArgument("model_id", f"{model_id!r} is not served here")
        request = self._inputs(inputs)
        outputs = [triton.InferRequestedOutput(spec.output.name)]
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                result = await self.client.infer(
                    model_id, request, outputs=outputs, client_timeout=max(remaining, 0.001)
                )
                return result.as_numpy(spec.output.name)
            except InferenceServerException as exc:
                status = str(exc.status())
                message = exc.message() or ""
                # A model missing or not ready is what a restarting Triton answers: as retryable
                # as a refused connection.
                missing = "unknown model" in message or "not ready" in message
                remaining = deadline - time.monotonic()
                retryable = status in RETRYABLE or missing
                if retryable and attempt < self.retries and remaining > self.backoff_s:
                    attempt += 1
                    await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), remaining / 2))
                    continue
                if retryable or status == "StatusCode.DEADLINE_EXCEEDED":
                    what = "does not serve" if missing else "did not answer for"
                    raise Unavailable(
                        f"the inference server at {self.url} {what} {model_id} within "
                        f"{self.timeout_s:g} s ({message}); retry later"
                    ) from exc
                raise RuntimeError(f"Triton refused {model_id}: {exc}") from exc

    async def ready(self, model_id: str) -> bool:
        try:
            return bool(
                await self.client.is_model_ready(model_id, client_timeout=min(self.timeout_s, 2.0))
            )
        except InferenceServerException:
            return False

    def max_batch(self, model_id: str) -> int:
        return self._max_batch

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
