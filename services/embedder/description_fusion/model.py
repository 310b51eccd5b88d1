"""The description fusion model (TGFR's fused embedding at our scale), its losses and its
ONNX export.

Model (``DescriptionFusion``): the description's MiniLM embedding is mapped into the face
space (``d``, unit length); a gate reads the probe's quality and the agreement of face and
description (cos(face, d)) and gives the description a weight ``w >= 0``; the fused probe is
normalise(face + w * d). Its gate starts near w = 0, so an untrained model is the face
alone. The gallery side is left as it is (the SFace vector every collection already stores),
so no archive has to be re-indexed or captioned.

Losses, as METHODS.md's TGFR section describes, at our scale:
- face-description contrastive alignment: InfoNCE between each description's ``d`` and the
  clean face centroids, positives the description's own identity (SupCon form),
  temperature 0.1;
- identity loss: normalised softmax (NormFace, scale 30) of the fused probe over the training
  identities' clean-face centroids, so a degraded probe plus its description lands on its
  person; the centroids are fixed (they are what a gallery stores), not learned.

Simplified against TGFR (WACV 2024): no word-region attention loss and no sentence loss (our
face side is a frozen 128-d SFace vector, not a feature map), no fine-tuning of the face or
text encoders (110 training identities would be learned by heart), one global description
vector. Both losses are pytorch-metric-learning's (the embedder's ``train`` extra):
``SupConLoss`` with the centroids as its reference set (``ref_emb``/``ref_labels``) and
``NormalizedSoftmaxLoss`` with its class weights fixed to the centroids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from torch import nn

from facesearch_server.embedder.description_fusion.names import (
    FACE_DIM,
    INPUTS,
    OUTPUT,
    TEXT_DIM,
)

TEMPERATURE = 0.1
SCALE = 30.0


class DescriptionFusion(nn.Module):
    """(face (n, 128) unit, quality (n, 1) 0..1, text (n, 384) unit) -> fused (n, 128) unit."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.describe = nn.Linear(TEXT_DIM, FACE_DIM)
        self.gate = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        # Start as the face alone: softplus(-4) = 0.018.
        nn.init.constant_(self.gate[2].bias, -4.0)  # type: ignore[arg-type]

    def description(self, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.describe(text), dim=-1)

    def weight(self, face: torch.Tensor, quality: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        agree = (face * d).sum(-1, keepdim=True)
        return F.softplus(self.gate(torch.cat([quality, agree], dim=-1)))

    def fuse(
        self, face: torch.Tensor, quality: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused probe (n, 128) and the description's weight (n, 1)."""
        d = self.description(text)
        w = self.weight(face, quality, d)
        return F.normalize(face + w * d, dim=-1), w

    def forward(
        self, face: torch.Tensor, quality: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        return self.fuse(face, quality, text)[0]


class _Served(nn.Module):
    """The graph the runtimes serve: one output, the fused probe and the weight side by side."""

    def __init__(self, model: DescriptionFusion) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, face: torch.Tensor, quality: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        return torch.cat(self.model.fuse(face, quality, text), dim=-1)


def alignment_loss() -> losses.SupConLoss:
    """SupCon/InfoNCE of description vectors (anchors) against the identity centroids (the
    reference set): called as ``loss(d, label, ref_emb=centroids, ref_labels=arange(k))``;
    with a reference set no anchor is its own key, so each row's positive is its centroid."""
    return losses.SupConLoss(temperature=TEMPERATURE)


def identity_loss(centroids: torch.Tensor) -> losses.NormalizedSoftmaxLoss:
    """NormFace over fixed classes: the library's class weights are set to the centroids
    and frozen, since they are what a gallery stores (a learned class would drift from it).
    Its ``temperature`` divides the cosine, so 1 / SCALE is NormFace's scale."""
    k, dim = centroids.shape
    # zeros_: the library's default (normal_) would draw from torch's global generator.
    loss = losses.NormalizedSoftmaxLoss(
        k, dim, temperature=1.0 / SCALE, weight_init_func=torch.nn.init.zeros_
    )
    loss.W.requires_grad_(False)
    loss.W.copy_(centroids.T)
    return loss


@dataclass
class TrainingSet:
    face: np.ndarray  # (n, 128) degraded probe embeddings
    quality: np.ndarray  # (n,)
    text: np.ndarray  # (n, 384) description embeddings
    label: np.ndarray  # (n,) index into the identity centroids
    centroids: np.ndarray  # (k, 128) unit clean-face centroid per identity


def _tensors(s: TrainingSet) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(s.face),
        torch.from_numpy(s.quality)[:, None],
        torch.from_numpy(s.text),
        torch.from_numpy(s.label),
        torch.from_numpy(s.centroids),
    )


def identity_accuracy(model: DescriptionFusion, s: TrainingSet) -> float:
    """Share of degraded probes whose fused embedding is nearest its own identity centroid."""
    face, q, text, label, cent = _tensors(s)
    with torch.no_grad():
        return float(((model(face, q, text) @ cent.T).argmax(1) == label).float().mean())


def fit(
    train: TrainingSet,
    steps: int,
    val: TrainingSet | None = None,
    seed: int = 0,
    batch: int = 512,
    align_weight: float = 1.0,
) -> tuple[DescriptionFusion, list[tuple[int, float]]]:
    """Adam with weight decay; returns the model and (step, validation accuracy) every 50."""
    torch.manual_seed(seed)
    model = DescriptionFusion()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    face, q, text, label, cent = _tensors(train)
    identity, align = identity_loss(cent), alignment_loss()
    classes = torch.arange(len(cent))
    gen = torch.Generator().manual_seed(seed)
    history: list[tuple[int, float]] = []
    for step in range(1, steps + 1):
        pick = torch.randint(len(face), (batch,), generator=gen)
        f, qq, t, y = face[pick], q[pick], text[pick], label[pick]
        # Alignment: each description against every identity's clean centroid.
        d = model.description(t)
        loss = identity(model(f, qq, t), y) + align_weight * align(
            d, y, ref_emb=cent, ref_labels=classes
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if val is not None and step % 50 == 0:
            history.append((step, identity_accuracy(model, val)))
    return model, history


def export_onnx(model: DescriptionFusion, path: Path) -> None:
    """ONNX with inputs embedding (n, 128), quality (n, 1), text (n, 384); output fused
    (n, 129): the unit fused probe, then the description's weight."""
    model.eval()
    names = [n for n, _ in INPUTS]
    args = tuple(torch.zeros(1, dim) for _, dim in INPUTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        _Served(model),
        args,
        str(path),
        input_names=names,
        output_names=[OUTPUT],
        dynamic_axes={n: {0: "n"} for n in (*names, OUTPUT)},
        opset_version=17,
        dynamo=False,
    )


def fused_probes(
    model: DescriptionFusion, face: np.ndarray, quality: np.ndarray, text: np.ndarray
) -> np.ndarray:
    """The fused probes (n, 128) of PyTorch's model; ``quality`` (n,)."""
    with torch.no_grad():
        out = model(
            torch.from_numpy(face.astype(np.float32)),
            torch.from_numpy(quality.astype(np.float32))[:, None],
            torch.from_numpy(text.astype(np.float32)),
        )
    return out.numpy()
