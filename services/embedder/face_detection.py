"""YuNet face detection. Two interchangeable paths compute the same faces:

- ``FaceDetector``: OpenCV's FaceDetectorYN (it decodes YuNet's anchor-free outputs and runs
  NMS), in-process on CPU. Cheap next to encoding on a CPU host, and it keeps whole images off
  the network to Triton.
- ``RuntimeFaceDetector`` (face_detection_runtime.py): the same model through the encoder
  runtime (onnxruntime in-process, or Triton), decoded by yunet_decode.py, so that on a GPU
  host no model runs on the embedder's CPU.

Both share the shrinking of large photos, the size filter and the ordering here; the setting
``detector_runtime`` picks one (settings.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.call_stop import CallStop

NMS_THRESHOLD = 0.3
# Candidates kept before NMS; YuNet's own default.
TOP_K = 5000


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x, y, width, height in the input image
    landmarks: np.ndarray  # 5x2: right eye, left eye, nose tip, right/left mouth corner
    score: float


class YuNetDetector:
    """What every YuNet path shares; subclasses say how one image's raw faces are found."""

    model_id = mf.YUNET
    backend = "local"  # reported by ListModels: where the model runs

    def __init__(self, max_side: int = 640) -> None:
        # Large photos are detected on a down-scaled copy; faces are then aligned from the
        # full-resolution pixels, so small-scale detection costs little accuracy.
        self.max_side = max_side

    async def start(self) -> None:
        """Called in the service's event loop before serving; nothing to do in-process."""

    async def ready(self) -> bool:
        return True

    def raw_faces(
        self, bgr: np.ndarray, score_threshold: float, stop: CallStop | None
    ) -> np.ndarray:
        """(n, 15) rows as OpenCV returns them: x, y, w, h, 5 landmarks (x, y), score."""
        raise NotImplementedError

    def detect(
        self,
        bgr: np.ndarray,
        score_threshold: float,
        min_face_size: float,
        max_faces: int,
        stop: CallStop | None = None,
    ) -> list[Detection]:
        """Faces, best first; ``stop`` is checked after the shrinking (the costly part on a
        large photo) and raises CallStopped once the call has ended."""
        h, w = bgr.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = bgr
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        if stop is not None:
            stop.check()
        found = []
        for row in self.raw_faces(small, score_threshold, stop):
            x, y, bw, bh = (float(v) / scale for v in row[:4])
            if min(bw, bh) < min_face_size:
                continue
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            found.append(Detection((x, y, bw, bh), landmarks, float(row[14])))
        found.sort(key=lambda d: d.score, reverse=True)
        return found[:max_faces]


class FaceDetector(YuNetDetector):
    """OpenCV's FaceDetectorYN on the shipped file. Thread-safe: OpenCV's detector object
    holds per-call state, so each thread gets one."""

    def __init__(self, model_path: Path | None = None, max_side: int = 640) -> None:
        super().__init__(max_side)
        self.model_path = str(model_path or mf.yunet_source())
        self._local = threading.local()

    def _detector(self) -> cv2.FaceDetectorYN:
        det = getattr(self._local, "detector", None)
        if det is None:
            det = cv2.FaceDetectorYN.create(
                self.model_path, "", (320, 320), 0.5, NMS_THRESHOLD, TOP_K
            )
            self._local.detector = det
        return det

    def raw_faces(
        self, bgr: np.ndarray, score_threshold: float, stop: CallStop | None
    ) -> np.ndarray:
        det = self._detector()
        det.setInputSize((bgr.shape[1], bgr.shape[0]))
        det.setScoreThreshold(float(score_threshold))
        _, rows = det.detect(bgr)
        return np.zeros((0, 15), np.float32) if rows is None else rows
