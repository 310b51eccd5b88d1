"""The fused embedding (TGFR fusion): its ONNX export computes what PyTorch does, an untrained
model is the face alone, and training uses a description that carries what a degraded face
lost. Synthetic vectors, seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bench.tgfr.fused_embedding import (
    FACE_DIM,
    TEXT_DIM,
    DescriptionFusion,
    TrainingSet,
    export_onnx,
    fit,
    fused_probes,
    identity_accuracy,
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(seed: int, people: int = 40, per_person: int = 12) -> TrainingSet:
    """Faces: identity centroid plus heavy noise (a poor probe); texts: a fixed projection of
    a coarse identity group (as a description names sex and hair, not the person)."""
    cent = unit(np.random.default_rng(98).normal(size=(people, FACE_DIM)))
    rng = np.random.default_rng(seed)
    group = np.arange(people) % 8
    words = unit(np.random.default_rng(99).normal(size=(8, TEXT_DIM)))
    label = np.repeat(np.arange(people), per_person)
    face = unit(cent[label] + rng.normal(scale=0.45, size=(len(label), FACE_DIM)))
    text = unit(words[group[label]] + rng.normal(scale=0.05, size=(len(label), TEXT_DIM)))
    quality = np.full(len(label), 0.1, np.float32)
    return TrainingSet(face, quality, text, label, cent)


def test_the_onnx_export_computes_what_pytorch_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DescriptionFusion().eval()
    with torch.no_grad():
        model.gate[2].bias.fill_(0.5)  # a gate far from its start, so the description counts
    path = tmp_path / "fusion.onnx"
    export_onnx(model, path)
    rng = np.random.default_rng(1)
    face = unit(rng.normal(size=(5, FACE_DIM)))
    quality = rng.uniform(size=5).astype(np.float32)
    text = unit(rng.normal(size=(5, TEXT_DIM)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"embedding": face, "quality": quality[:, None], "text": text})
    expected = fused_probes(model, face, quality, text)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert not np.allclose(out, face, atol=1e-2)


def test_an_untrained_fusion_is_the_face_alone() -> None:
    rng = np.random.default_rng(2)
    face = unit(rng.normal(size=(4, FACE_DIM)))
    text = unit(rng.normal(size=(4, TEXT_DIM)))
    out = fused_probes(DescriptionFusion().eval(), face, np.zeros(4, np.float32), text)
    assert float(np.min((out * face).sum(1))) > 0.99


@pytest.mark.slow  # a second alone; tens under a loaded CPU
def test_training_uses_the_description_where_the_face_is_poor() -> None:
    seed = 0
    train, val = synthetic(seed), synthetic(seed + 1)  # the same people, new probes
    before = identity_accuracy(DescriptionFusion().eval(), val)
    model, _ = fit(train, 80, seed=seed, batch=128)
    after = identity_accuracy(model.eval(), val)
    assert after > before + 0.05, (before, after)
