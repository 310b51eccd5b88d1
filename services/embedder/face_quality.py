"""A face's quality from the evidence an indexer can act on: its size and its sharpness.

Both saturate: beyond ``good_size`` pixels or ``good_sharpness`` Laplacian variance a face is
as good as this score can tell. The overall score is their geometric mean, so a face that is
tiny *or* blurred scores low.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Quality:
    score: float
    face_size: float
    sharpness: float


def laplacian_variance(bgr: np.ndarray) -> float:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def face_quality(
    aligned_bgr: np.ndarray,
    face_size: float,
    min_size: float = 16.0,
    good_size: float = 80.0,
    good_sharpness: float = 250.0,
) -> Quality:
    """``face_size`` is the shorter side of the box in the source image, pixels."""
    size_score = float(np.clip((face_size - min_size) / max(good_size - min_size, 1e-6), 0, 1))
    sharpness = laplacian_variance(aligned_bgr)
    sharp_score = float(np.clip(sharpness / good_sharpness, 0, 1))
    return Quality(float(np.sqrt(size_score * sharp_score)), float(face_size), sharpness)
