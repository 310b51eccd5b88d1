"""YuNet through the encoder runtime (onnxruntime in-process, or Triton on a GPU host): the
model file model_export writes for the runtimes (model_files.YUNET_SPEC), OpenCV's input and
decode reproduced by yunet_decode.py.

Detection runs in the preparation threads (synchronous, per image) while the runtimes are
asynchronous and tied to the event loop they started in (Triton's gRPC channel is). The
detector therefore remembers that loop (``start``, awaited in it) and hands each inference to
it from the worker thread, waiting in short slices so a call that ended (``CallStop``) stops
waiting at once. A local runtime used outside any loop (scripts) is called directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import numpy as np

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder import yunet_decode
from facesearch_server.embedder.backends.base import EncoderRuntime
from facesearch_server.embedder.call_stop import CallStop
from facesearch_server.embedder.face_detection import NMS_THRESHOLD, TOP_K, YuNetDetector

# How often a worker waiting on the runtime checks whether its call ended.
STOP_POLL_S = 0.05


class RuntimeFaceDetector(YuNetDetector):
    def __init__(self, runtime: EncoderRuntime, max_side: int = 640) -> None:
        super().__init__(max_side)
        self.runtime = runtime
        self.backend = runtime.name
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind to the running loop: the one the runtime serves in."""
        self._loop = asyncio.get_running_loop()

    async def ready(self) -> bool:
        return await self.runtime.ready(mf.YUNET)

    def raw_faces(
        self, bgr: np.ndarray, score_threshold: float, stop: CallStop | None
    ) -> np.ndarray:
        blob = yunet_decode.to_blob(bgr)
        (inp,) = mf.YUNET_SPEC.inputs
        out = self._infer({inp.name: blob}, stop)
        return yunet_decode.decode(
            out[0], (blob.shape[2], blob.shape[3]), score_threshold, NMS_THRESHOLD, TOP_K
        )

    def _infer(self, feeds: dict[str, np.ndarray], stop: CallStop | None) -> np.ndarray:
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                current = asyncio.get_running_loop()
            except RuntimeError:
                current = None
            if current is loop:
                raise RuntimeError(
                    "RuntimeFaceDetector.detect waits for the runtime: call it from a worker "
                    "thread (e.g. asyncio.to_thread), not from the event loop's own thread"
                )
            future = asyncio.run_coroutine_threadsafe(self.runtime.infer(mf.YUNET, feeds), loop)
            while True:
                try:
                    return future.result(timeout=STOP_POLL_S)
                except concurrent.futures.TimeoutError:
                    if stop is not None and stop.why is not None:
                        future.cancel()
                        stop.check()  # raises CallStopped with the reason
        infer_sync = getattr(self.runtime, "infer_sync", None)
        if infer_sync is None:
            raise RuntimeError(
                f"the {self.runtime.name} runtime runs in an event loop: await "
                "RuntimeFaceDetector.start() in that loop before detecting"
            )
        return infer_sync(mf.YUNET, feeds)
