"""The learned description fusion (TGFR, description_fusion/): its ONNX export computes what
PyTorch does, the shipped model and card say what it is, and FuseDescription serves it with
clear statuses for bad input. Synthetic vectors and one embedder process, seconds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facesearch_contract.v1 import common_pb2 as common
from facesearch_contract.v1 import embedder_pb2 as pb
from facesearch_contract.v1 import embedder_service_pb2_grpc as pb_grpc
from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.description_fusion import names as fn
from facesearch_server.embedder.description_fusion.model import (
    SCALE,
    TEMPERATURE,
    DescriptionFusion,
    TrainingSet,
    alignment_loss,
    export_onnx,
    fit,
    fused_probes,
    identity_accuracy,
    identity_loss,
)
from facesearch_server.embedder.description_fusion.serving import DescriptionFusionServer
from facesearch_server.embedder.settings import EmbedderSettings
from facesearch_server.runtime.errors import FailedPrecondition
from harness.service_process import start_service
from tests.embedder.conftest import MAX_BATCH, embedder_env, package_photos

FACE_DIM, TEXT_DIM = fn.FACE_DIM, fn.TEXT_DIM
DESCRIPTION = "an older man with glasses and no beard"


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
    fused, weight = fn.run_onnx(path, face, quality, text)
    np.testing.assert_allclose(fused, fused_probes(model, face, quality, text), atol=1e-5)
    with torch.no_grad():
        _, w = model.fuse(
            torch.from_numpy(face), torch.from_numpy(quality)[:, None], torch.from_numpy(text)
        )
    np.testing.assert_allclose(weight, w.numpy()[:, 0], atol=1e-5)
    assert not np.allclose(fused, face, atol=1e-2)


def test_an_untrained_fusion_is_the_face_alone() -> None:
    rng = np.random.default_rng(2)
    face = unit(rng.normal(size=(4, FACE_DIM)))
    text = unit(rng.normal(size=(4, TEXT_DIM)))
    out = fused_probes(DescriptionFusion().eval(), face, np.zeros(4, np.float32), text)
    assert float(np.min((out * face).sum(1))) > 0.99


def test_the_library_losses_are_the_hand_written_formulas() -> None:
    """pytorch-metric-learning's SupConLoss (centroids as reference set) and
    NormalizedSoftmaxLoss (weights fixed to the centroids) give the values and gradients of
    the formulas trained with before (kept here only as the reference)."""
    gen = torch.Generator().manual_seed(4)
    n, k = 24, 7
    raw_d = torch.randn(n, FACE_DIM, generator=gen, requires_grad=True)
    raw_f = torch.randn(n, FACE_DIM, generator=gen, requires_grad=True)
    cent = F.normalize(torch.randn(k, FACE_DIM, generator=gen), dim=-1)
    y = torch.randint(k, (n,), generator=gen)

    def reference() -> torch.Tensor:
        d, fused = F.normalize(raw_d, dim=-1), F.normalize(raw_f, dim=-1)
        identity = F.cross_entropy(SCALE * fused @ cent.T, y)
        logits = d @ cent.T / TEMPERATURE
        logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        same = y[:, None] == torch.arange(k)[None, :]
        align = -((logp * same).sum(1) / same.sum(1)).mean()
        return torch.stack([identity, align])

    def library() -> torch.Tensor:
        d, fused = F.normalize(raw_d, dim=-1), F.normalize(raw_f, dim=-1)
        identity = identity_loss(cent)(fused, y)
        align = alignment_loss()(d, y, ref_emb=cent, ref_labels=torch.arange(k))
        return torch.stack([identity, align])

    grads = []
    for losses in (reference(), library()):
        losses.sum().backward()
        grads.append((losses.detach(), raw_d.grad.clone(), raw_f.grad.clone()))  # type: ignore[union-attr]
        raw_d.grad, raw_f.grad = None, None
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert float(grads[0][0][0]) > 0.1 and float(grads[0][0][1]) > 0.1  # not a trivial batch
    fixed = identity_loss(cent)
    assert not fixed.W.requires_grad
    torch.testing.assert_close(fixed.W.T, cent)


@pytest.mark.slow  # a second alone; tens under a loaded CPU
def test_training_uses_the_description_where_the_face_is_poor() -> None:
    seed = 0
    train, val = synthetic(seed), synthetic(seed + 1)  # the same people, new probes
    before = identity_accuracy(DescriptionFusion().eval(), val)
    model, _ = fit(train, 80, seed=seed, batch=128)
    after = identity_accuracy(model.eval(), val)
    assert after > before + 0.05, (before, after)


def test_the_shipped_model_and_card_say_what_it_is_and_what_it_does() -> None:
    spec = mf.ENCODERS[mf.DESCRIPTION_FUSION]
    assert spec.kind == "description_fusion" and spec.output.dims == (fn.OUTPUT_DIM,)
    card = model_cards.shipped_card(mf.DESCRIPTION_FUSION)
    assert card is not None
    assert (card["face_model"], card["text_model"]) == (mf.SFACE, mf.MINILM)
    split = card["training"]["identity_split"]
    assert split["overlap"] == 0 and split["train_identities"] > split["test_identities"] > 0
    assert "Not better than the face alone" in card["limitations"]
    assert "CelebA" in card["licence"]
    assert {r["condition"] for r in card["evaluation"]["rank1"]} >= {"clean", "12px"}
    rng = np.random.default_rng(3)
    face = unit(rng.normal(size=(3, FACE_DIM)))
    fused, weight = fn.run_onnx(
        mf.description_fusion_source(), face, np.full(3, 0.5), unit(rng.normal(size=(3, TEXT_DIM)))
    )
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
    assert (weight >= 0).all()


def _face(stub) -> pb.Face:  # type: ignore[no-untyped-def]
    photo = package_photos()[0].read_bytes()
    reply = stub.EmbedImages(pb.EmbedImagesRequest(images=[pb.ImageInput(data=photo)]), timeout=60)
    return reply.results[0].faces[0]


def test_the_service_fuses_a_face_and_a_description(stub) -> None:  # type: ignore[no-untyped-def]
    face = _face(stub)
    request = pb.FuseDescriptionRequest(
        embedding=face.embedding,
        face_model_id=face.model_id,
        quality=face.quality.score,
        description=DESCRIPTION,
    )
    reply = stub.FuseDescription(request, timeout=60)
    assert (reply.model_id, reply.face_model_id, reply.text_model_id) == (
        mf.DESCRIPTION_FUSION,
        mf.SFACE,
        mf.MINILM,
    )
    fused = np.asarray(reply.fused.values)
    emb = np.asarray(face.embedding.values)
    assert fused.shape == (FACE_DIM,) and abs(np.linalg.norm(fused) - 1) < 1e-4
    assert reply.description_weight > 0
    # The description moved the probe, a little (the model leans on the face).
    assert 0.9 < float(fused @ emb) < 1 - 1e-6
    # Equal to the shipped file run directly on the same inputs.
    text = stub.EmbedText(pb.EmbedTextRequest(texts=[DESCRIPTION]), timeout=60).embeddings[0]
    want, w = fn.run_onnx(
        mf.description_fusion_source(),
        unit(emb[None, :]),
        np.array([face.quality.score]),
        np.asarray(text.values)[None, :],
    )
    np.testing.assert_allclose(fused, want[0], atol=1e-5)
    assert reply.description_weight == pytest.approx(float(w[0]), abs=1e-5)
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    (info,) = [m for m in models if m.kind == pb.MODEL_KIND_DESCRIPTION_FUSION]
    assert info.model_id == mf.DESCRIPTION_FUSION and info.ready and info.dimension == FACE_DIM
    assert json.loads(info.card_json)["face_model"] == mf.SFACE


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"description": ""}, "description"),
        ({"description": "   "}, "description"),
        ({"description": "glasses " * 300}, "description"),  # over 256 word pieces
        ({"description": "glasses " * 3000}, "description"),  # over 16,384 bytes
        ({"embedding": common.Vector(values=[0.1] * 512)}, "embedding"),
        ({"embedding": common.Vector(values=[0.0] * 128)}, "embedding"),
        ({"face_model_id": "arcface-r100"}, "face_model_id"),
        ({"quality": 1.5}, "quality"),
        ({"model_id": "another-fusion"}, "model_id"),
    ],
)
def test_bad_input_is_invalid_argument(stub, change: dict, field: str) -> None:  # type: ignore[no-untyped-def, type-arg]
    request = pb.FuseDescriptionRequest(
        embedding=common.Vector(values=unit(np.ones(FACE_DIM)).tolist()),
        face_model_id=mf.SFACE,
        quality=0.5,
        description=DESCRIPTION,
    )
    for key, value in change.items():
        if key == "embedding":
            request.embedding.CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.RpcError) as err:
        stub.FuseDescription(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)


class _Text:
    model_id = mf.MINILM


def test_no_fusion_model_configured_is_failed_precondition() -> None:
    server = DescriptionFusionServer(None, _Text(), "", mf.SFACE)  # type: ignore[arg-type]
    request = pb.FuseDescriptionRequest(
        embedding=common.Vector(values=[1.0] * FACE_DIM), quality=0.5, description=DESCRIPTION
    )
    with pytest.raises(FailedPrecondition, match="description_fusion_model"):
        asyncio.run(server.fuse(request))
    with pytest.raises(ValueError, match="not a description fusion model"):
        EmbedderSettings(description_fusion_model="another-fusion")
    assert EmbedderSettings(description_fusion_model="").description_fusion_model == ""


@pytest.mark.slow  # a second embedder process (~10 s)
def test_an_embedder_serving_no_fusion_model_answers_failed_precondition() -> None:
    svc = start_service(
        "embedder", embedder_env(max_batch=MAX_BATCH, description_fusion_model=""), timeout=180
    )
    try:
        with grpc.insecure_channel(svc.address) as channel:
            stub = pb_grpc.EmbedderStub(channel)
            request = pb.FuseDescriptionRequest(
                embedding=common.Vector(values=unit(np.ones(FACE_DIM)).tolist()),
                quality=0.5,
                description=DESCRIPTION,
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.FuseDescription(request, timeout=60)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "description_fusion_model" in err.value.details()
            kinds = [m.kind for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models]
            assert pb.MODEL_KIND_DESCRIPTION_FUSION not in kinds
    finally:
        svc.stop()
