"""Fine-tuned face encoders served beside SFace (issue 16, "export and register"): requests pick
one by model_id, the face_model setting picks the default, an unknown id is refused naming the
served ones, ListModels lists each with its card (trained_from, calibration or why none), the
Triton repository generator writes them, and the calibration tool writes into their card.

The "fine-tuned" model is SFace with its last layer perturbed (trained_model.py): cheap, and
its vectors differ from SFace's so every assertion can tell which model made a vector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.backends.local import LocalRuntime
from facesearch_server.embedder.backends.triton import TritonRuntime
from facesearch_server.embedder.face_encoder_info import face_encoder_info
from facesearch_server.embedder.pipeline import FacePipeline
from facesearch_server.embedder.settings import EmbedderSettings
from facesearch_server.embedder.triton_repository import main as repository_main
from facesearch_server.embedder.triton_repository import write_repository
from harness.service_process import ServiceProcess
from tests.embedder.conftest import REPO, embedder_env, package_photos, shared_data
from tests.embedder.trained_model import TRAINED_ID, make_trained_model_dir, read_card

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def trained_stub(trained_embedder: ServiceProcess) -> pb_grpc.EmbedderStub:
    return pb_grpc.EmbedderStub(trained_embedder.channel())


def images(n: int = 4) -> list[pb.ImageInput]:
    return [pb.ImageInput(data=p.read_bytes(), media_id=p.name) for p in package_photos()[:n]]


def faces_of(reply: pb.EmbedImagesResponse) -> list[pb.Face]:
    return [r.faces[0] for r in reply.results]


def vectors(faces: list[pb.Face]) -> np.ndarray:
    return np.stack([np.asarray(f.embedding.values, np.float32) for f in faces])


def test_model_id_picks_the_face_encoder_and_empty_is_the_configured_default(
    trained_stub, stub
) -> None:  # type: ignore[no-untyped-def]
    default = faces_of(trained_stub.EmbedImages(pb.EmbedImagesRequest(images=images()), timeout=60))
    trained = faces_of(
        trained_stub.EmbedImages(
            pb.EmbedImagesRequest(images=images(), model_id=TRAINED_ID), timeout=60
        )
    )
    sface = faces_of(
        trained_stub.EmbedImages(pb.EmbedImagesRequest(images=images(), model_id=mf.SFACE), 60)
    )
    # face_model=TRAINED_ID on this service: an empty model_id gets the fine-tuned model.
    assert {f.model_id for f in default} == {f.model_id for f in trained} == {TRAINED_ID}
    assert {f.model_id for f in sface} == {mf.SFACE}
    np.testing.assert_allclose(vectors(default), vectors(trained), atol=1e-5)
    # SFace here is SFace as the shipped-only service computes it; the fine-tuned model is not.
    shipped = faces_of(stub.EmbedImages(pb.EmbedImagesRequest(images=images()), timeout=60))
    assert (vectors(sface) * vectors(shipped)).sum(1).min() >= 0.9999
    same_face = (vectors(trained) * vectors(sface)).sum(1)
    assert same_face.max() < 0.99 and same_face.min() > 0.5
    # Still a face encoder: the four people are told apart.
    t = vectors(trained)
    assert (t @ t.T)[~np.eye(len(t), dtype=bool)].max() < same_face.min()


def test_faces_embedded_by_a_fine_tuned_model_get_sface_attributes(trained_stub) -> None:  # type: ignore[no-untyped-def]
    """The attribute model reads SFace embeddings: for a fine-tuned model's face the service
    embeds the same crop with SFace for them, so attributes do not depend on the face model."""
    trained = faces_of(
        trained_stub.EmbedImages(
            pb.EmbedImagesRequest(images=images(), model_id=TRAINED_ID), timeout=60
        )
    )
    sface = faces_of(
        trained_stub.EmbedImages(pb.EmbedImagesRequest(images=images(), model_id=mf.SFACE), 60)
    )
    for a, b in zip(trained, sface, strict=True):
        assert a.attributes.model_id == b.attributes.model_id == mf.ATTRIBUTES
        np.testing.assert_allclose(
            a.attributes.probabilities, b.attributes.probabilities, atol=1e-5
        )


def test_crops_and_streams_take_the_model_id_too(trained_stub) -> None:  # type: ignore[no-untyped-def]
    request = pb.EmbedImagesRequest(
        images=images(1), model_id=mf.SFACE, options=pb.DetectionOptions(return_aligned_crops=True)
    )
    face = trained_stub.EmbedImages(request, timeout=60).results[0].faces[0]
    crops = [pb.FaceCrop(data=face.aligned_crop)]
    by_sface = trained_stub.EmbedFaces(pb.EmbedFacesRequest(crops=crops, model_id=mf.SFACE), 60)
    by_default = trained_stub.EmbedFaces(pb.EmbedFacesRequest(crops=crops), timeout=60)
    assert by_sface.results[0].faces[0].model_id == mf.SFACE
    assert by_default.results[0].faces[0].model_id == TRAINED_ID

    def stream(model_id: str) -> list[pb.ImageResult]:
        first = pb.EmbedStreamRequest(model_id=model_id, options=pb.DetectionOptions())
        rest = [pb.EmbedStreamRequest(image=image) for image in images(2)]
        return list(trained_stub.EmbedImagesStream(iter([first, *rest]), timeout=60))

    assert [r.faces[0].model_id for r in stream(mf.SFACE)] == [mf.SFACE, mf.SFACE]
    assert [r.faces[0].model_id for r in stream("")] == [TRAINED_ID, TRAINED_ID]


def test_an_unknown_model_id_is_invalid_argument_naming_the_served_ones(trained_stub) -> None:  # type: ignore[no-untyped-def]
    calls = [
        lambda: trained_stub.EmbedImages(
            pb.EmbedImagesRequest(images=images(1), model_id="sface-nope"), timeout=30
        ),
        lambda: trained_stub.EmbedFaces(
            pb.EmbedFacesRequest(crops=[pb.FaceCrop(data=b"x")], model_id="sface-nope"), 30
        ),
        lambda: list(
            trained_stub.EmbedImagesStream(
                iter([pb.EmbedStreamRequest(image=images(1)[0], model_id="sface-nope")]), 30
            )
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == INVALID
        details = err.value.details()
        assert "'sface-nope' is not a face model served here" in details
        assert f"{TRAINED_ID} (default)" in details and mf.SFACE in details


def test_list_models_lists_every_face_encoder_with_its_card(trained_stub, trained_embedder) -> None:  # type: ignore[no-untyped-def]
    models = trained_stub.ListModels(pb.ListModelsRequest(), timeout=30).models
    faces = {m.model_id: m for m in models if m.kind == pb.MODEL_KIND_FACE_ENCODER}
    assert list(faces) == [mf.SFACE, TRAINED_ID]
    trained, sface = faces[TRAINED_ID], faces[mf.SFACE]
    assert trained.is_default and not sface.is_default
    assert all(m.ready and m.dimension == 128 and m.backend == "local" for m in faces.values())
    assert trained.trained_from == mf.SFACE and sface.trained_from == ""
    # Not calibrated yet: no borrowed SFace thresholds, and the reason with the command.
    assert not trained.HasField("calibration")
    assert trained.calibration_pending.startswith("pending: not calibrated")
    assert f"--model {TRAINED_ID}" in trained.calibration_pending
    assert json.loads(trained.card_json)["trained_from"] == mf.SFACE
    assert sface.HasField("calibration") and sface.calibration_pending == ""
    # The attribute model and the text encoder are still listed, and readiness covers all.
    kinds = {m.kind for m in models}
    assert {pb.MODEL_KIND_TEXT_ENCODER, pb.MODEL_KIND_FACE_ATTRIBUTES} <= kinds
    assert trained_embedder.health("readiness") == health_pb2.HealthCheckResponse.SERVING


def test_an_unknown_face_model_setting_stops_the_start_listing_what_there_is(
    trained_model_dir: Path,
) -> None:
    with pytest.raises(ValueError, match="available: sface-2021dec, sface-test-v1"):
        EmbedderSettings(model_dir=str(trained_model_dir), face_model="sface-typo")
    # With Triton the card alone names a fine-tuned model (the weights are Triton's).
    cards_only = trained_model_dir.parent / "cards-only"
    cards_only.mkdir(exist_ok=True)
    card = model_cards.card_beside(trained_model_dir / f"{TRAINED_ID}.onnx")
    (cards_only / card.name).write_bytes(card.read_bytes())
    with pytest.raises(ValueError, match=r"available: sface-2021dec \("):
        EmbedderSettings(model_dir=str(cards_only), face_model=TRAINED_ID)
    assert EmbedderSettings(model_dir=str(cards_only), face_model=TRAINED_ID, backend="triton")
    assert TRAINED_ID in TritonRuntime(model_dir=cards_only).specs

    env = {
        **os.environ,
        **embedder_env(face_model="sface-typo"),
        "FACESEARCH_EMBEDDER_MODEL_DIR": str(trained_model_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "facesearch_server.embedder"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "face_model = 'sface-typo'" in done.stderr
    assert "available: sface-2021dec, sface-test-v1" in done.stderr


def test_the_in_process_pipeline_serves_the_model_dir_s_face_encoders(
    trained_model_dir: Path,
) -> None:
    runtime = LocalRuntime(trained_model_dir, export_missing=False, intra_op_threads=1)
    runtime.load()
    with pytest.raises(ValueError, match="served: sface-2021dec, sface-test-v1"):
        FacePipeline(runtime, "sface-nope")
    pipe = FacePipeline(runtime, TRAINED_ID)
    (result,) = pipe.embed_images_sync([package_photos()[0].read_bytes()])
    assert not isinstance(result, Exception) and result.faces[0].model_id == TRAINED_ID
    (again,) = pipe.embed_images_sync([package_photos()[0].read_bytes()], model_id=mf.SFACE)
    assert not isinstance(again, Exception) and again.faces[0].model_id == mf.SFACE


def test_triton_repository_writes_the_fine_tuned_models_of_trained_dir(
    trained_model_dir: Path, tmp_path: Path
) -> None:
    written = write_repository(tmp_path / "a", trained_model_dir, trained_dir=trained_model_dir)
    folder = tmp_path / "a" / TRAINED_ID
    assert {folder / "config.pbtxt", folder / "card.json", folder / "1" / "model.onnx"} <= set(
        written
    )
    config = (folder / "config.pbtxt").read_text()
    assert f'name: "{TRAINED_ID}"' in config and 'name: "fc1"' in config
    assert "dims: [ 128 ]" in config and 'backend: "onnxruntime"' in config
    assert json.loads((folder / "card.json").read_text()) == read_card(trained_model_dir)
    assert (folder / "1" / "model.onnx").read_bytes() == (
        trained_model_dir / f"{TRAINED_ID}.onnx"
    ).read_bytes()
    # Without the flag only the shipped models (what deploy/triton commits).
    plain = write_repository(tmp_path / "b", trained_model_dir, copy_weights=False)
    assert not any(TRAINED_ID in str(p) for p in plain)
    # A --trained-dir with no fine-tuned model is an error, not an empty success.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_:
        repository_main(
            ["--out", str(tmp_path / "c"), "--configs-only", "--trained-dir", str(empty)]
        )
    assert exit_.value.code == 2


def tiny_labelled_set(dest: Path, people: int, per_person: int) -> Path:
    """A manifest.csv folder of the first LFW people with ``per_person`` images (symlinks)."""
    lfw = shared_data("lfw")
    rows, seen = ["relative_path,identity"], 0
    for person in sorted(p for p in (lfw / "lfw").iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))[:per_person]
        if len(photos) < per_person:
            continue
        (dest / person.name).mkdir(parents=True)
        for photo in photos:
            (dest / person.name / photo.name).symlink_to(photo)
            rows.append(f"{person.name}/{photo.name},{person.name}")
        seen += 1
        if seen == people:
            break
    (dest / "manifest.csv").write_text("\n".join(rows) + "\n")
    return dest


@pytest.mark.slow
def test_calibrating_a_fine_tuned_model_writes_its_own_card(
    model_dir: Path, tmp_path: Path
) -> None:
    from facesearch_server.embedder.calibration.__main__ import main as calibrate

    models = make_trained_model_dir(tmp_path / "models", model_dir)
    data = tiny_labelled_set(tmp_path / "faces", people=32, per_person=4)
    shipped_before = model_cards.card_path(mf.SFACE).read_bytes()
    cache = tmp_path / "cache.npz"
    args = ["--model", TRAINED_ID, "--model-dir", str(models), "--data", str(data)]
    assert calibrate([*args, "--cache", str(cache)]) == 0
    card = read_card(models)
    assert "calibration_status" not in card and card["trained_from"] == mf.SFACE
    assert card["calibration"]["model_id"] == TRAINED_ID
    assert card["calibration"]["source"]["identities"] > 0
    assert model_cards.card_path(mf.SFACE).read_bytes() == shipped_before
    info = face_encoder_info(
        mf.trained_encoders(models)[0],
        card,
        backend="local",
        ready=True,
        is_default=False,
        max_batch=8,
    )
    assert info.calibration.bands and info.calibration_pending == ""
    # The cache remembers whose embeddings it holds: another model is refused, not fitted on.
    out = tmp_path / "not-written.json"
    with pytest.raises(SystemExit) as exit_:
        calibrate(
            ["--model", mf.SFACE, "--data", str(data), "--cache", str(cache), "--out", str(out)]
        )
    assert exit_.value.code == 2 and not out.exists()
    # A model that is not in --model-dir is named with what is there.
    with pytest.raises(SystemExit):
        calibrate(["--model", "sface-nope", "--model-dir", str(models), "--data", str(data)])
