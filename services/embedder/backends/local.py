"""Encoders in-process on onnxruntime: the embedded default, no server needed. On the CPU, or
on a GPU through onnxruntime's CUDA provider (``device="cuda"``, onnxruntime-gpu)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.batching import DynamicBatcher
from facesearch_server.embedder.model_export import export_all
from facesearch_server.runtime.errors import InvalidArgument

log = logging.getLogger("facesearch.embedder.local")


class LocalRuntime:
    name = "local"

    def __init__(
        self,
        model_dir: Path | str | None = None,
        intra_op_threads: int = 0,
        max_batch: int = 64,
        concurrency: int = 1,
        export_missing: bool = True,
        spinning: bool = False,
        device: str = "cpu",
    ) -> None:
        self.model_dir = mf.model_dir(model_dir)
        # Operators the CUDA provider lacks fall back to the CPU one, per node.
        self.providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if device == "cuda"
            else ["CPUExecutionProvider"]
        )
        self.intra_op_threads = intra_op_threads
        self._max_batch = max_batch
        self.export_missing = export_missing
        # onnxruntime's idle workers spin for a while after each run; in a service that also
        # decodes images and serves gRPC on the same few cores, that steals their CPU.
        self.spinning = spinning
        self.sessions: dict[str, ort.InferenceSession] = {}
        # Fine-tuned face encoders in the model dir (embedder/training) are served too; the
        # table is read once, here, so the pipeline and ListModels know it before load().
        self.specs: dict[str, mf.EncoderSpec] = mf.served_encoders(self.model_dir)
        # onnxruntime already spreads one batch over the cores; running several batches at once
        # on a small machine only makes them contend, so the default is one at a time.
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ort")
        self._batcher = DynamicBatcher(self._run, max_batch)

    def load(self) -> None:
        """Load every encoder, exporting missing files first (a fresh machine works)."""
        missing = mf.missing_encoders(self.model_dir)
        if missing:
            if not self.export_missing:
                names = ", ".join(str(mf.encoder_path(s, self.model_dir)) for s in missing)
                raise FileNotFoundError(
                    f"missing {names}: run python -m facesearch_server.embedder.model_export "
                    f"--out {self.model_dir}"
                )
            log.info("exporting missing models", extra={"model_dir": str(self.model_dir)})
            export_all(self.model_dir, only_missing=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.log_severity_level = 3
        if not self.spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for spec in self.specs.values():
            self.sessions[spec.model_id] = ort.InferenceSession(
                str(mf.encoder_path(spec, self.model_dir)), opts, providers=self.providers
            )

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    def infer_sync(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        session = self.sessions.get(model_id)
        if session is None:
            raise InvalidArgument("model_id", f"{model_id!r} is not served here")
        spec = self.specs[model_id]
        return session.run([spec.output.name], inputs)[0]

    async def _run(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.infer_sync, model_id, inputs)

    async def infer(self, model_id: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        # Concurrent requests (e.g. many clients sending one face each) share one model run.
        return await self._batcher.infer(model_id, inputs)

    async def ready(self, model_id: str) -> bool:
        return model_id in self.sessions

    def max_batch(self, model_id: str) -> int:
        return self._max_batch

    async def close(self) -> None:
        await self._batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
