"""Fine-tuning the face encoder (embedder/training): the PyTorch rebuild of SFace equals the
ONNX file, a short CoReFace run lowers the loss, resumes, and exports an ONNX file the
embedder serves under its own id; bad training folders get a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.training.face_folders import TrainingDataError, load_face_folders
from facesearch_server.embedder.training.objective import ContrastiveRegularizer
from facesearch_server.embedder.training.sface_torch import check_against_onnx, from_onnx
from facesearch_server.embedder.training.train import TrainConfig, train_face_encoder
from facesearch_server.embedder.triton_repository import write_repository
from tests.embedder.conftest import MODEL_DIR, shared_data

NEW_ID = "sface-test-finetune"


def tiny_lfw(dest: Path, people: int = 6, per_person: int = 4) -> Path:
    """The first ``people`` LFW identities with ``per_person`` images, as symlinks."""
    root = shared_data("lfw") / "lfw"
    taken = 0
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) < per_person:
            continue
        (dest / person.name).mkdir(parents=True)
        for image in images[:per_person]:
            (dest / person.name / image.name).symlink_to(image)
        taken += 1
        if taken == people:
            return dest
    raise AssertionError("LFW has too few people with enough images")


def test_converted_sface_matches_the_onnx_on_real_faces(tmp_path: Path) -> None:
    faces = load_face_folders(tiny_lfw(tmp_path / "faces", people=3, per_person=2))
    net = from_onnx(mf.sface_source())
    x = faces.crops.astype(np.float32)
    assert check_against_onnx(net, mf.sface_source(), x) >= 0.9999
    # And against the dynamic-batch file the embedder serves.
    assert check_against_onnx(net, mf.encoder_path(mf.SFACE_SPEC, MODEL_DIR), x) >= 0.9999
    # A training-mode network (batch statistics) is not the ONNX: the check must catch it.
    net.train()
    with torch.no_grad():
        drifted = torch.nn.functional.cosine_similarity(
            net(torch.from_numpy(x)), from_onnx(mf.sface_source())(torch.from_numpy(x))
        )
    assert float(drifted.min()) < 0.9999


def test_contrastive_term_masks_other_images_of_the_same_person() -> None:
    reg = ContrastiveRegularizer().eval()  # margin stays 0
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    x = torch.stack([a, a, b])  # images 0 and 1: one person, identical embeddings
    same = reg(x, x, torch.tensor([0, 0, 1]))
    others = reg(x, x, torch.tensor([0, 1, 2]))
    assert float(same) < 1e-6  # 0 and 1 are not each other's negatives
    assert float(others) > 0.4  # unmasked, each is confused with the other (log 2 per row)


@pytest.mark.slow
def test_short_run_lowers_loss_resumes_and_exports_a_served_model(tmp_path: Path) -> None:
    data = tiny_lfw(tmp_path / "faces")
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    for spec in mf.ENCODERS.values():  # the shipped files, so the runtime exports nothing
        (model_dir / spec.file_name).symlink_to(mf.encoder_path(spec, MODEL_DIR))
    cfg = TrainConfig(
        data=data,
        work_dir=tmp_path / "run",
        model_id=NEW_ID,
        model_dir=model_dir,
        batch_size=12,
        max_steps=2,
        init_centres=False,  # random centres: a loss SFace does not already satisfy
        export=False,
    )
    first = train_face_encoder(cfg, log=lambda _: None)
    assert first.steps == 2 and first.conversion_cosine >= 0.9999
    assert first.eval_loss_after < first.eval_loss_before

    cfg.max_steps, cfg.export = 3, True
    lines: list[str] = []
    second = train_face_encoder(cfg, log=lines.append)
    assert any(line.startswith("resumed from") for line in lines)
    assert second.steps == 3 and second.eval_loss_before == first.eval_loss_before

    import onnxruntime as ort

    session = ort.InferenceSession(str(second.onnx_path), providers=["CPUExecutionProvider"])
    faces = load_face_folders(data, tmp_path / "run" / "crops.npz")
    batch = faces.crops[:5].astype(np.float32)
    assert session.run(None, {"data": batch})[0].shape == (5, 128)  # dynamic batch, 128-d
    card = json.loads(second.card_path.read_text())
    assert card["model_id"] == NEW_ID and card["trained_from"] == mf.SFACE
    assert card["training"]["identities"] == 6 and card["training"]["steps"] == 3

    from facesearch_server.embedder.backends.local import LocalRuntime

    runtime = LocalRuntime(model_dir, export_missing=False)
    runtime.load()
    out = runtime.infer_sync(NEW_ID, {"data": batch})
    assert out.shape == (5, 128)
    # Fine-tuned, not a copy of SFace.
    base = runtime.infer_sync(mf.SFACE, {"data": batch})
    assert not np.allclose(out, base, atol=1e-4)

    repo = tmp_path / "triton"
    write_repository(repo, model_dir, copy_weights=False, trained_dir=model_dir)
    config = (repo / NEW_ID / "config.pbtxt").read_text()
    assert f'name: "{NEW_ID}"' in config and "dims: [ 128 ]" in config
    assert json.loads((repo / NEW_ID / "card.json").read_text())["model_id"] == NEW_ID


def test_one_person_is_refused(tmp_path: Path) -> None:
    data = tiny_lfw(tmp_path / "faces", people=2, per_person=2)
    shutil.rmtree(next(data.iterdir()))
    with pytest.raises(TrainingDataError, match="at least 2"):
        load_face_folders(data)


def test_an_image_without_a_face_is_refused_by_name(tmp_path: Path) -> None:
    data = tiny_lfw(tmp_path / "faces", people=2, per_person=3)
    person = sorted(data.iterdir())[0]
    cv2.imwrite(str(person / "wall.png"), np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(TrainingDataError, match=r"no face found in 1 image.*wall\.png.*--skip"):
        load_face_folders(data)
    kept = load_face_folders(data, skip_faceless=True)
    assert kept.skipped == [f"{person.name}/wall.png"] and len(kept.labels) == 6


def test_a_shipped_model_id_is_refused(tmp_path: Path) -> None:
    cfg = TrainConfig(data=tmp_path, work_dir=tmp_path / "run", model_id=mf.SFACE)
    with pytest.raises(ValueError, match="shipped model"):
        train_face_encoder(cfg)
