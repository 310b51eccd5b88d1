"""YuNet's input and output outside OpenCV: the padded blob it reads and the decode of its
anchor-free outputs into faces, so the model can run in any runtime (onnxruntime, Triton).

Follows OpenCV's FaceDetectorYN (objdetect/src/face_detect.cpp) step for step, so both paths
find the same faces: the image is padded bottom/right with zeros to multiples of 32 and fed as
BGR 0..255 NCHW; for each stride (8, 16, 32) and grid cell, score = sqrt(cls * obj) with both
clamped to [0, 1], the box centre is (cell + offset) * stride and its size exp(log size) *
stride, each landmark (cell + offset) * stride; boxes truncated to integers go through
cv2.dnn.NMSBoxes (the same function OpenCV calls). The runtimes' model file takes the pixels
as bytes and gives its twelve outputs as one tensor (model_files.YUNET_SPEC): one row per
anchor, stride 8's grid first.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from facesearch_server.embedder import model_files as mf

DIVISOR = 32
STRIDES = (8, 16, 32)
ROW = len(mf.YUNET_COLUMNS)  # cls, obj, 4 box terms, 10 landmark terms


def padded_size(height: int, width: int) -> tuple[int, int]:
    """The input size YuNet runs at: each side rounded up to a multiple of 32."""
    return (-(-height // DIVISOR) * DIVISOR, -(-width // DIVISOR) * DIVISOR)


def to_blob(bgr: np.ndarray) -> np.ndarray:
    """(1, 3, H', W') uint8 BGR, zero-padded bottom/right to multiples of 32 (the model
    casts to float: the same values OpenCV's float blob holds)."""
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 BGR image, got shape {bgr.shape}")
    h, w = bgr.shape[:2]
    ph, pw = padded_size(h, w)
    blob = np.zeros((1, 3, ph, pw), dtype=np.uint8)
    blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
    return blob


@lru_cache(maxsize=32)
def anchors(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column, row and stride of every anchor of a padded input, in the model's row order."""
    cols, rows, strides = [], [], []
    for s in STRIDES:
        gh, gw = height // s, width // s
        r, c = np.divmod(np.arange(gh * gw, dtype=np.float32), np.float32(gw))
        cols.append(c)
        rows.append(r)
        strides.append(np.full(gh * gw, s, dtype=np.float32))
    out = (np.concatenate(cols), np.concatenate(rows), np.concatenate(strides))
    for a in out:
        a.setflags(write=False)  # shared between calls through the cache
    return out


def decode(
    raw: np.ndarray,
    padded_hw: tuple[int, int],
    score_threshold: float,
    nms_threshold: float,
    top_k: int,
) -> np.ndarray:
    """One image's model output (anchors, 16) -> faces (n, 15) as OpenCV's detector returns
    them: x, y, w, h, five landmarks (x, y), score; best first after NMS."""
    col, row, stride = anchors(int(padded_hw[0]), int(padded_hw[1]))
    if raw.shape != (len(col), ROW):
        raise ValueError(
            f"YuNet output has shape {raw.shape}; a {padded_hw[0]}x{padded_hw[1]} input has "
            f"{len(col)} anchors of {ROW} values"
        )
    raw = raw.astype(np.float32, copy=False)
    score = np.sqrt(np.clip(raw[:, 0], 0.0, 1.0) * np.clip(raw[:, 1], 0.0, 1.0))
    keep = np.flatnonzero(score >= np.float32(score_threshold))
    if not len(keep):
        return np.zeros((0, 15), dtype=np.float32)
    r, c, s, p = row[keep], col[keep], stride[keep], raw[keep]
    w = np.exp(p[:, 4]) * s
    h = np.exp(p[:, 5]) * s
    x = (c + p[:, 2]) * s - w / 2
    y = (r + p[:, 3]) * s - h / 2
    landmarks = np.empty((len(keep), 10), dtype=np.float32)
    landmarks[:, 0::2] = (p[:, 6::2] + c[:, None]) * s[:, None]
    landmarks[:, 1::2] = (p[:, 7::2] + r[:, None]) * s[:, None]
    faces = np.column_stack([x, y, w, h, landmarks, score[keep]]).astype(np.float32)
    if len(faces) == 1:  # OpenCV runs no NMS on a single candidate either
        return faces
    # OpenCV suppresses on integer boxes (C++ int(): truncation toward zero).
    boxes = np.trunc(faces[:, :4]).astype(np.int64).tolist()
    kept = cv2.dnn.NMSBoxes(
        boxes, faces[:, 14].tolist(), float(score_threshold), float(nms_threshold), 1.0, top_k
    )
    return faces[np.asarray(kept, dtype=np.int64).reshape(-1)]
