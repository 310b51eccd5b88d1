"""Encoders on a Triton Inference Server, through the official async gRPC client.

Every call has a total budget (``timeout_s``), the deadline of the gRPC call. Retries are gRPC's
own: the channel's service config gives ModelInfer a retry policy (UNAVAILABLE only, exponential
backoff with jitter, ``retries`` attempts after the first), and gRPC stops retrying when the
call's deadline is spent, so a caller never waits longer than configured. What still fails is
reported as UNAVAILABLE. Reconnection is gRPC's own too; its backoff is capped low so the
embedder notices within a second or two when Triton is back.

Which models: the shipped table, plus each fine-tuned face encoder whose card
(``<id>.card.json``, ``trained_from`` a shipped face encoder) is in ``model_dir``, the same
folder the repository generator read with ``--trained-dir`` (the ONNX file need not be there:
Triton holds the weights). The card gives the id, the base's tensors and dimension, and the
calibration ListModels reports; readiness then requires the model READY on Triton too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from facesearch_server.embedder import model_files as mf
from facesearch_server.runtime.errors import InvalidArgument, Unavailable

log = logging.getLogger("facesearch.embedder.triton")

MAX_MESSAGE = 256 * 1024 * 1024
# KServe v2 gRPC API, as tritonclient calls it.
INFER_METHOD = {"service": "inference.GRPCInferenceService", "method": "ModelInfer"}
# gRPC caps a retry policy at 5 attempts.
MAX_ATTEMPTS = 5
# What Triton answers, after the channel's retries, when it cannot serve a model now: down or
# restarting (UNAVAILABLE, also a model not ready), too slow for the budget (DEADLINE_EXCEEDED),
# a model not loaded (yet) though this embedder serves it (NOT_FOUND), busy (RESOURCE_EXHAUSTED),
# or failing in a way that says nothing about the request (UNKNOWN, CANCELLED). The caller may
# retry; anything else is a bug here and surfaces as INTERNAL.
_CANNOT_SERVE = {
    str(code)
    for code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    )
}


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
        model_dir: Path | str | None = None,
    ) -> None:
        self.url = url
        # Cards only: the servicer reads them from here too (trained models' calibration).
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.specs: dict[str, mf.EncoderSpec] = (
            mf.served_encoders(self.model_dir, weights=False)
            if self.model_dir is not None
            else dict(mf.ENCODERS)
        )
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._max_batch = max_batch
        self.reconnect_backoff_ms = reconnect_backoff_ms
        self._client: triton.InferenceServerClient | None = None

    def service_config(self) -> str:
        """The channel's retry policy for ModelInfer: ``retries`` more attempts on UNAVAILABLE.

        Only ModelInfer: readiness probes must answer at once, not after backoff. A throttle
        stops retrying once about half of recent calls failed, so a long outage costs one
        attempt per call, not ``retries`` + 1.
        """
        attempts = min(self.retries + 1, MAX_ATTEMPTS)
        method: dict[str, object] = {"name": [INFER_METHOD]}
        if attempts > 1:  # gRPC refuses a policy of one attempt
            method["retryPolicy"] = {
                "maxAttempts": attempts,
                "initialBackoff": f"{self.backoff_s:g}s",
                "maxBackoff": f"{self.backoff_s * 2 ** (attempts - 2):g}s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            }
        return json.dumps(
            {
                "methodConfig": [method],
                "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
            }
        )

    def _new_client(self) -> triton.InferenceServerClient:
        return triton.InferenceServerClient(
            self.url,
            channel_args=[
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.enable_retries", 1),
                ("grpc.service_config", self.service_config()),
                # A call is retried only while its request is still buffered (default 256 KiB);
                # a batch of face crops is megabytes.
                ("grpc.per_rpc_retry_buffer_size", MAX_MESSAGE),
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
        for model_id in self.specs:
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
        spec = self.specs.get(model_id)
        if spec is None:
            raise InvalidArgument("model_id", f"{model_id!r} is not served here")
        request = self._inputs(inputs)
        outputs = [triton.InferRequestedOutput(spec.output.name)]
        try:
            # The one deadline of every attempt: the channel's retry policy works inside it.
            result = await self.client.infer(
                model_id, request, outputs=outputs, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            status = str(exc.status())
            if status in _CANNOT_SERVE:
                raise Unavailable(
                    f"the inference server at {self.url} could not serve {model_id} within "
                    f"{self.timeout_s:g} s ({status.removeprefix('StatusCode.')}: "
                    f"{exc.message() or ''}); retry later"
                ) from exc
            raise RuntimeError(f"Triton refused {model_id}: {exc}") from exc
        return result.as_numpy(spec.output.name)

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
