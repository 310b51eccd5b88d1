"""Model cards ship with the models: beside each exported ONNX file, in the Triton repository,
and through ListModels, whose face encoder carries the card's open-set calibration. A model
dir with its own card (another model version) brings its own thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.runtime.calibration_proto import calibration_from_proto
from harness.service_process import running_service
from tests.embedder.conftest import MODEL_DIR, embedder_env


def face_encoder(stub: pb_grpc.EmbedderStub) -> pb.ModelInfo:
    models = stub.ListModels(pb.ListModelsRequest(), timeout=30).models
    # The default one: a model dir may hold fine-tuned face encoders too.
    (info,) = [m for m in models if m.kind == pb.MODEL_KIND_FACE_ENCODER and m.is_default]
    return info


def test_every_encoder_has_a_card_beside_its_file(model_dir: Path) -> None:
    for spec in mf.ENCODERS.values():
        beside = model_cards.card_beside(mf.encoder_path(spec, model_dir))
        card = model_cards.load_card(beside)
        assert card == model_cards.shipped_card(spec.model_id)
        assert card["licence"] and card["inputs"] and card["outputs"]


def test_the_face_encoder_is_served_with_its_calibration(stub) -> None:  # type: ignore[no-untyped-def]
    info = face_encoder(stub)
    shipped = model_cards.calibration_of(model_cards.shipped_card(mf.SFACE))
    if shipped is None:
        pytest.fail("the SFace card ships without a calibration: run the calibration")
    served = calibration_from_proto(info.calibration)
    assert served.model_id == mf.SFACE and len(served.bands) == len(shipped.bands)
    assert served.threshold(1e-3, 0.9, 1000) == pytest.approx(
        shipped.threshold(1e-3, 0.9, 1000), abs=1e-4
    )
    assert json.loads(info.card_json)["model_id"] == mf.SFACE


def test_a_model_dir_with_its_own_card_brings_its_own_thresholds(
    model_dir: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "models"
    fresh.mkdir()
    for spec in mf.ENCODERS.values():
        (fresh / spec.file_name).symlink_to(mf.encoder_path(spec, MODEL_DIR))
    card = model_cards.shipped_card(mf.SFACE)
    assert card is not None and "calibration" in card
    # The same model, calibrated elsewhere: every impostor score shifted up by 0.1.
    for band in card["calibration"]["bands"]:
        tail = band["impostor"]
        tail["grid"] = [g + 0.1 for g in tail["grid"]]
        tail["threshold"] += 0.1
    model_cards.card_beside(mf.encoder_path(mf.SFACE_SPEC, fresh)).write_text(json.dumps(card))
    env = {**embedder_env(), "FACESEARCH_EMBEDDER_MODEL_DIR": str(fresh)}
    with running_service("embedder", env, timeout=120) as svc:
        served = calibration_from_proto(
            face_encoder(pb_grpc.EmbedderStub(svc.channel())).calibration
        )
    shipped = model_cards.calibration_of(model_cards.shipped_card(mf.SFACE))
    assert shipped is not None
    assert served.threshold(1e-3, 0.9, 1000) == pytest.approx(
        shipped.threshold(1e-3, 0.9, 1000) + 0.1, abs=1e-3
    )
