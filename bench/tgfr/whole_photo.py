"""The whole-photo path: degrade the probe's photo (not its aligned crop) and let the
embedder's detector find the face with the service defaults (min face 16 px, score 0.6), as
`facesearch search IMAGE` does. A probe whose face is not found fails a face search; a
description search falls back to the description alone (facesearch/core/search.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.image_decode import decode_image
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline, to_model_input

LOW_FLOOR = DetectionSettings(min_face_size=8, score_threshold=0.5)
SERVICE = DetectionSettings()


def degrade_photo(bgr: np.ndarray, condition: str, face_width: float) -> np.ndarray:
    """Sizes: the photo shrunk so its face is that wide; blur and JPEG at native size."""
    if condition.endswith("px"):
        scale = min(1.0, float(condition.removesuffix("px")) / max(face_width, 1.0))
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    if condition.startswith("blur"):
        return cv2.GaussianBlur(bgr, (0, 0), float(condition.removeprefix("blur")))
    if condition.startswith("jpeg"):
        q = int(condition.removeprefix("jpeg"))
        return cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1)
    return bgr


def probe_faces(
    pipe: FacePipeline, photos: list[Path], condition: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per photo: found (bool), the largest found face's embedding (zeros if none) and its
    quality."""
    found, vectors, quality = [], [], []
    for path in photos:
        bgr = decode_image(path.read_bytes(), "probe", pipe.limits)
        clean = pipe.prepare_pixels(bgr, LOW_FLOOR)
        width = max((f.box[2] for f in clean.faces), default=0.0) if clean.faces else 0.0
        degraded = degrade_photo(bgr, condition, width)
        image = pipe.prepare_pixels(degraded, SERVICE)
        if not image.faces:
            found.append(False)
            vectors.append(np.zeros(128, np.float32))
            quality.append(0.0)
            continue
        face = max(image.faces, key=lambda f: f.box[2] * f.box[3])
        # Straight through the runtime: one model call per face, no event loop per photo.
        out = pipe.runtime.infer_sync(mf.SFACE, {"data": to_model_input([face.aligned])})[0]  # type: ignore[attr-defined]
        found.append(True)
        vectors.append(out / np.linalg.norm(out))
        quality.append(face.quality.score)
    return np.array(found), np.stack(vectors), np.array(quality, np.float32)
