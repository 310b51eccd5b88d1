"""Large photos: faces are found on a copy shrunk to 640 px, but aligned and cropped from the
original pixels. The service's embedding of a face in a 1.3-5k px photo equals OpenCV's own
SFace pipeline (``FaceRecognizerSF.alignCrop`` + ``feature``) run on the full image with the
same landmarks; cutting the crop from the 640 px copy would not (cosine 0.95-0.99 there)."""

from __future__ import annotations

import csv

import cv2
import numpy as np

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder import model_files as mf
from tests.embedder.conftest import shared_data


def large_photos(count: int = 4) -> list[bytes]:
    folder = shared_data("celeba_wild")
    out = []
    with (folder / "manifest.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            path = folder / row["relative_path"]
            im = cv2.imread(str(path))
            if im is not None and max(im.shape[:2]) >= 1500:
                out.append(path.read_bytes())
            if len(out) == count:
                break
    assert len(out) == count, "celeba_wild should hold photos of 1,500 px and more"
    return out


def bare_embedding(bgr: np.ndarray, face: pb.Face) -> np.ndarray:
    recognizer = cv2.FaceRecognizerSF.create(str(mf.sface_source()), "")
    b = face.box
    row = np.array(
        [[b.x, b.y, b.width, b.height, *[v for p in face.landmarks for v in (p.x, p.y)], 1.0]],
        np.float32,
    )
    vec = recognizer.feature(recognizer.alignCrop(bgr, row)).reshape(-1)
    return vec / np.linalg.norm(vec)


def test_large_photo_faces_are_cropped_from_the_full_resolution_pixels(stub) -> None:  # type: ignore[no-untyped-def]
    photos = large_photos()
    reply = stub.EmbedImages(
        pb.EmbedImagesRequest(images=[pb.ImageInput(data=d) for d in photos]), timeout=120
    )
    from_small_copy = []
    for data, result in zip(photos, reply.results, strict=True):
        assert result.error_code == 0 and result.faces, result.error_message
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for face in result.faces:
            ours = np.asarray(face.embedding.values, np.float32)
            assert float(ours @ bare_embedding(bgr, face)) >= 0.999
        # The same landmarks on the 640 px copy: what a crop from the shrunk image would give.
        face = max(result.faces, key=lambda f: f.box.width)
        scale = 640 / max(bgr.shape[:2])
        small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        shrunk = pb.Face()
        shrunk.CopyFrom(face)
        for p in shrunk.landmarks:
            p.x, p.y = p.x * scale, p.y * scale
        b = shrunk.box
        b.x, b.y, b.width, b.height = b.x * scale, b.y * scale, b.width * scale, b.height * scale
        ours = np.asarray(face.embedding.values, np.float32)
        from_small_copy.append(float(ours @ bare_embedding(small, shrunk)))
    # Proof the check can tell the two apart: the small copy's crops differ measurably.
    assert min(from_small_copy) < 0.99, from_small_copy
