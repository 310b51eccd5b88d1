"""Align a face to the 112x112 template SFace was trained on, from YuNet's 5 landmarks.

A similarity transform (rotation, uniform scale, translation; Umeyama's least squares) keeps
the face's proportions, the same alignment OpenCV's FaceRecognizerSF.alignCrop performs.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 112
# Landmark positions in the 112x112 crop: right eye, left eye, nose tip, right and left mouth
# corners (ArcFace/SFace template, as in OpenCV's face_recognize.cpp).
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the similarity transform that maps ``src`` points onto ``dst`` best."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is not a similarity
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var if var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def align_face(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 BGR crop of the face whose 5 landmarks are given (image coordinates)."""
    matrix = similarity_transform(landmarks, TEMPLATE)
    return cv2.warpAffine(bgr, matrix, (CROP_SIZE, CROP_SIZE))


def resize_crop(bgr: np.ndarray) -> np.ndarray:
    """An already aligned crop of any size, brought to the model's input size."""
    if bgr.shape[:2] == (CROP_SIZE, CROP_SIZE):
        return bgr
    shrinking = min(bgr.shape[:2]) > CROP_SIZE
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(bgr, (CROP_SIZE, CROP_SIZE), interpolation=interp)
