"""The embedder over real gRPC: faces, crops, text, options, formats, models, deadlines."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.local import LocalRuntime
from facesearch_server.embedder.text_encoding import TextEncoder
from tests.embedder.conftest import package_photos, shared_data


def vec(face: pb.Face) -> np.ndarray:
    return np.asarray(face.embedding.values, dtype=np.float32)


def embed(stub, data: bytes, **options) -> pb.ImageResult:  # type: ignore[no-untyped-def]
    request = pb.EmbedImagesRequest(
        images=[pb.ImageInput(data=data, media_id="m")], options=pb.DetectionOptions(**options)
    )
    return stub.EmbedImages(request, timeout=60).results[0]


def jpeg(bgr: np.ndarray, quality: int = 92) -> bytes:
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def photo_pixels(i: int = 0) -> np.ndarray:
    return cv2.imread(str(package_photos()[i]))


def test_a_face_has_box_landmarks_score_quality_and_unit_embedding(stub) -> None:
    result = embed(stub, package_photos()[0].read_bytes())
    assert (result.width, result.height, result.error_code) == (516, 960, 0)
    (face,) = result.faces
    box = face.box
    assert box.width > 50 and box.height > 50
    assert 0 <= box.x and box.x + box.width <= result.width
    assert len(face.landmarks) == 5
    eyes = face.landmarks[0], face.landmarks[1]
    assert eyes[0].x < eyes[1].x  # the subject's right eye is on the image's left
    for p in face.landmarks:
        assert box.x <= p.x <= box.x + box.width and box.y <= p.y <= box.y + box.height
    assert 0.6 <= face.detection_score <= 1
    assert 0 < face.quality.score <= 1 and face.quality.sharpness > 0
    assert face.quality.face_size == pytest.approx(min(box.width, box.height), rel=1e-4)
    assert face.model_id == "sface-2021dec"
    assert len(face.embedding.values) == 128
    assert np.linalg.norm(vec(face)) == pytest.approx(1.0, abs=1e-5)


def test_an_image_without_a_face_returns_zero_faces(stub) -> None:
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (9, 9), 3)
    cv2.rectangle(texture, (40, 40), (200, 180), (30, 160, 90), -1)
    result = embed(stub, jpeg(texture))
    assert result.error_code == 0
    assert (result.width, result.height) == (320, 240)
    assert list(result.faces) == []


def group_photo() -> np.ndarray:
    """Four people side by side, faces ~45-95 px once YuNet's 640 px copy is made."""
    tiles = [cv2.resize(photo_pixels(i), (258, 480)) for i in (0, 1, 2, 4)]
    return np.hstack(tiles)


def test_options_limit_faces_by_count_size_and_score(stub) -> None:
    data = jpeg(group_photo())
    everyone = embed(stub, data)
    assert len(everyone.faces) == 4
    scores = [f.detection_score for f in everyone.faces]
    assert scores == sorted(scores, reverse=True)
    top2 = embed(stub, data, max_faces=2)
    assert [f.detection_score for f in top2.faces] == pytest.approx(scores[:2])
    assert embed(stub, data, min_face_size=400).faces == []
    strict = embed(stub, data, score_threshold=0.999)
    assert len(strict.faces) < 4


def test_aligned_crop_round_trips_through_embed_faces(stub) -> None:
    result = embed(stub, package_photos()[1].read_bytes(), return_aligned_crops=True)
    (face,) = result.faces
    crop = cv2.imdecode(np.frombuffer(face.aligned_crop, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)
    reply = stub.EmbedFaces(
        pb.EmbedFacesRequest(crops=[pb.FaceCrop(data=face.aligned_crop, media_id="c")]), timeout=30
    )
    (again,) = reply.results[0].faces
    assert reply.results[0].media_id == "c"
    assert not again.HasField("box") and list(again.landmarks) == []
    assert again.detection_score == 1.0
    assert float(vec(face) @ vec(again)) > 0.999  # PNG is lossless: the same input pixels


@pytest.mark.parametrize("fmt", [".png", ".webp", ".bmp"])
def test_formats_give_the_same_face(stub, fmt: str) -> None:
    bgr = photo_pixels(0)
    base = vec(embed(stub, cv2.imencode(".png", bgr)[1].tobytes()).faces[0])
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if fmt == ".webp" else []  # 101 = lossless
    other = vec(embed(stub, cv2.imencode(fmt, bgr, params)[1].tobytes()).faces[0])
    assert float(base @ other) > 0.999


def test_grayscale_gif_and_pgm_decode(stub) -> None:
    yale = shared_data("yalefaces")
    gif = embed(stub, (yale / "subject02.happy.gif").read_bytes())
    assert (gif.width, gif.height) == (320, 243) and len(gif.faces) == 1
    grey = cv2.cvtColor(photo_pixels(0), cv2.COLOR_BGR2GRAY)
    pgm = embed(stub, cv2.imencode(".pgm", grey)[1].tobytes())
    assert len(pgm.faces) == 1


def test_exif_orientation_is_applied_before_detection(stub) -> None:
    upright = photo_pixels(0)
    h, w = upright.shape[:2]
    # Stored rotated 90 degrees counter-clockwise; orientation 6 tells viewers to turn it back.
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored[:, :, ::-1]).save(buf, "JPEG", quality=95, exif=exif)
    rotated = embed(stub, buf.getvalue())
    plain = embed(stub, jpeg(upright, 95))
    assert (rotated.width, rotated.height) == (w, h)
    assert rotated.faces[0].box.y == pytest.approx(plain.faces[0].box.y, abs=4)
    assert float(vec(rotated.faces[0]) @ vec(plain.faces[0])) > 0.98


def test_text_embeddings_are_normalised_and_meaningful(stub) -> None:
    texts = [
        "a man with glasses speaking at a podium",
        "a bespectacled man giving a speech",
        "a plate of spaghetti with tomato sauce",
    ]
    reply = stub.EmbedText(pb.EmbedTextRequest(texts=texts, role=pb.TEXT_ROLE_QUERY), timeout=30)
    assert reply.model_id == "minilm-l6-v2"
    v = np.array([e.values for e in reply.embeddings], dtype=np.float32)
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    alone = stub.EmbedText(pb.EmbedTextRequest(texts=texts[2:]), timeout=30).embeddings[0]
    assert float(np.asarray(alone.values) @ v[2]) > 0.9999  # padding in a batch changes nothing


def test_text_matches_sentence_transformers(model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["blond woman smiling", "an old man with a grey beard and a hat " * 20]
    expected = SentenceTransformer(str(mf.minilm_source()), device="cpu").encode(texts)
    runtime = LocalRuntime(model_dir)
    runtime.load()
    got = asyncio.run(TextEncoder(runtime).embed(texts))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert (got * expected).sum(1).min() > 0.9999


def test_list_models_reports_ready_defaults(stub) -> None:
    models = {m.model_id: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
    assert set(models) == {
        "yunet-2023mar",
        "sface-2021dec",
        "minilm-l6-v2",
        "celeba-attr-sface-v1",
        "tgfr-fusion-sface-minilm-v1",
    }
    assert models["tgfr-fusion-sface-minilm-v1"].kind == pb.MODEL_KIND_DESCRIPTION_FUSION
    attributes = models["celeba-attr-sface-v1"]
    assert attributes.kind == pb.MODEL_KIND_FACE_ATTRIBUTES
    assert list(attributes.attribute_names)[:3] == ["male", "young", "beard"]
    assert attributes.dimension == 2 * len(attributes.attribute_names)
    assert models["sface-2021dec"].dimension == 128
    assert models["sface-2021dec"].kind == pb.MODEL_KIND_FACE_ENCODER
    assert models["minilm-l6-v2"].dimension == 384
    assert all(m.ready and m.is_default and m.backend == "local" for m in models.values())


def test_a_missed_deadline_is_deadline_exceeded_and_the_service_lives_on(stub, embedder) -> None:
    images = [pb.ImageInput(data=jpeg(group_photo()))] * 8
    with pytest.raises(grpc.RpcError) as err:
        stub.EmbedImages(pb.EmbedImagesRequest(images=images), timeout=0.05)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(embed(stub, package_photos()[0].read_bytes()).faces) == 1
    assert embedder.proc.poll() is None
