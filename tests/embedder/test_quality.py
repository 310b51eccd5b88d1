"""Quality on real faces: the same person scores above different people, clean and degraded.

Accuracy is measured at OpenCV's published SFace threshold (0.363), not tuned here. The full
table over every usable LFW pair: ``python -m bench.embedder.verification --pairs 300``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder.pipeline import FacePipeline
from harness.face_verification import format_table, lfw_pairs, verify_all
from tests.embedder.conftest import MODEL_DIR, package_photos, shared_data


def service_vectors(stub, images: list[bytes]) -> np.ndarray:  # type: ignore[no-untyped-def]
    request = pb.EmbedImagesRequest(images=[pb.ImageInput(data=d) for d in images])
    reply = stub.EmbedImages(request, timeout=120)
    out = []
    for r in reply.results:
        assert r.error_code == 0 and r.faces, r.error_message
        out.append(np.asarray(r.faces[0].embedding.values, dtype=np.float32))
    return np.stack(out)


def another_rendering(path: Path) -> bytes:
    """The same face in a different picture: mirrored, at 60% size, re-compressed."""
    bgr = cv2.flip(cv2.imread(str(path)), 1)
    small = cv2.resize(bgr, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def test_package_photos_same_person_scores_above_different_people(stub) -> None:
    # The package's photos carry no identity labels, but their names carry the gender, so a
    # woman and a man are certainly different people.
    women = [p for p in package_photos() if p.name.startswith("Female")][:3]
    men = [p for p in package_photos() if p.name.startswith("Male")][:3]
    people = women + men
    originals = service_vectors(stub, [p.read_bytes() for p in people])
    renderings = service_vectors(stub, [another_rendering(p) for p in people])
    same = (originals * renderings).sum(1)
    different = (originals[:3] @ originals[3:].T).ravel()
    assert same.min() > 0.6
    assert different.max() < 0.363
    assert same.min() > different.max()


@pytest.fixture(scope="module")
def lfw() -> Path:
    return shared_data("lfw")


def test_service_and_in_process_pipeline_agree_on_lfw(stub, lfw: Path) -> None:
    pairs = lfw_pairs(lfw, 2)
    paths = [p.a for p in pairs]
    over_grpc = service_vectors(stub, [p.read_bytes() for p in paths])
    pipe = FacePipeline.local(MODEL_DIR)
    local = pipe.embed_images_sync([p.read_bytes() for p in paths])
    in_process = np.stack([r.faces[0].embedding for r in local])  # type: ignore[union-attr]
    assert (over_grpc * in_process).sum(1).min() > 0.9999


@pytest.mark.slow
def test_lfw_verification_clean_and_degraded(lfw: Path) -> None:
    pairs = lfw_pairs(lfw, 60)  # 60 matched + 60 mismatched pairs over the ten folds
    assert sum(p.same for p in pairs) == 60 and len(pairs) == 120
    rows = {r.condition: r for r in verify_all(FacePipeline.local(MODEL_DIR), pairs)}
    print("\n" + format_table(list(rows.values())))
    clean = rows["clean"]
    assert clean.detected == 120
    assert clean.accuracy >= 0.96
    assert clean.same_mean > clean.different_mean + 0.4
    for name in ("24px faces", "blur sigma 3", "JPEG q10"):
        row = rows[name]
        assert row.detected >= 114, name
        assert row.accuracy >= 0.88, name
        # Degradation costs similarity of the same person, and never helps it.
        assert row.same_mean < clean.same_mean, name
        assert row.same_mean > row.different_mean + 0.3, name
