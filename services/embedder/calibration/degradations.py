"""The image degradations a calibration covers, so that the quality bands it measures include
the poor faces an archive holds (small, blurred, crushed), not only clean portraits."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Degradation = Callable[[np.ndarray], np.ndarray]


def shrink_face_to(px: int, face_fraction: float = 0.45) -> Degradation:
    """Down-scale the whole photo so a face filling ``face_fraction`` of its width is ``px``
    wide (0.45 is an LFW frame's face)."""

    def degrade(bgr: np.ndarray) -> np.ndarray:
        scale = px / (face_fraction * bgr.shape[1])
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)

    return degrade


def gaussian_blur(sigma: float) -> Degradation:
    def degrade(bgr: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(bgr, (0, 0), sigma)

    return degrade


def jpeg(quality: int) -> Degradation:
    def degrade(bgr: np.ndarray) -> np.ndarray:
        data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    return degrade


def identity(bgr: np.ndarray) -> np.ndarray:
    return bgr


CONDITIONS: dict[str, Degradation] = {
    "clean": identity,
    "24px": shrink_face_to(24),
    "16px": shrink_face_to(16),
    "blur3": gaussian_blur(3.0),
    "jpeg10": jpeg(10),
}
