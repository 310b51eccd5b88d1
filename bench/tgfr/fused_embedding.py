"""Learned fusion after TGFR (issue #14 item 3): one fused probe embedding from a (possibly
degraded) face, its quality and a description, searched against the stored face embeddings.

    python -m bench.tgfr.fused_embedding --data bench/.cache/tgfr/celeba_attributes.npz \
        --out bench/.cache/tgfr/tgfr-fusion.onnx

Model (``DescriptionFusion``): the description's MiniLM embedding is mapped into the face
space (``d``, unit length); a gate reads the probe's quality and the agreement of face and
description (cos(face, d)) and gives the description a weight ``w >= 0``; the fused probe is
normalise(face + w * d). Its gate starts near w = 0, so an untrained model is the face
alone. The gallery side is left as it is (the SFace vector every collection already stores),
so no archive has to be re-indexed or captioned.

Losses, as METHODS.md's TGFR section describes, at our scale:
- face-description contrastive alignment: InfoNCE between each description's ``d`` and the
  clean face embeddings in the batch, positives every face of the same identity (SupCon
  form), temperature 0.1;
- identity loss: normalised softmax (NormFace, scale 30) of the fused probe over the training
  identities' clean-face centroids, so a degraded probe plus its description lands on its
  person; the centroids are fixed (they are what a gallery stores), not learned.

Simplified against TGFR (WACV 2024): no word-region attention loss and no sentence loss (our
face side is a frozen 128-d SFace vector, not a feature map), no fine-tuning of the face or
text encoders (110 training identities would be learned by heart), one global description
vector. Losses are written in torch (pytorch-metric-learning is not in the venv); they are
the standard InfoNCE / NormFace forms.

Data: CelebA attribute images of the attribute model's training identities only (its
``.split.json``), each under every degradation the dataset holds (clean, 24/16/12 px, blur 3
and 5, JPEG 10, noise 20), with ``DESCRIPTIONS_PER_FACE`` descriptions drawn from its labels
(bench/tgfr/descriptions.py, MM-CelebA-HQ style). A fifth of the training identities is held
back to pick the step count; held-out (test) identities are never read here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.tgfr.descriptions import describe
from facesearch_server.embedder.attributes.dataset import AttributeSet
from facesearch_server.embedder.attributes.train import ONNX_FILE

FACE_DIM = 128
TEXT_DIM = 384
DESCRIPTIONS_PER_FACE = 4
TEMPERATURE = 0.1
SCALE = 30.0
# Conditions trained on; "noise20" is a training-only degradation (the bench measures the rest).
TRAIN_CONDITIONS = ("clean", "24px", "16px", "12px", "blur3", "blur5", "jpeg10", "noise20")
MODEL_ID = "tgfr-fusion-sface-minilm-v1"
MAX_STEPS = 1000


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

    def forward(
        self, face: torch.Tensor, quality: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        d = self.description(text)
        return F.normalize(face + self.weight(face, quality, d) * d, dim=-1)


def supcon(anchors: torch.Tensor, keys: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """InfoNCE with every same-identity key a positive (SupCon's L_out): anchors (n, d),
    keys (m, d), same (n, m) bool with at least one True per row."""
    logits = anchors @ keys.T / TEMPERATURE
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -((logp * same).sum(1) / same.sum(1)).mean()


@dataclass
class TrainingSet:
    face: np.ndarray  # (n, 128) degraded probe embeddings
    quality: np.ndarray  # (n,)
    text: np.ndarray  # (n, 384) description embeddings
    label: np.ndarray  # (n,) index into the identity centroids
    centroids: np.ndarray  # (k, 128) unit clean-face centroid per identity


def training_set(data: AttributeSet, rows: np.ndarray, texts: dict[int, np.ndarray]) -> TrainingSet:
    """Every (condition, description) of the labelled ``rows``; ``texts[row]`` (m, 384)."""
    ids = data.identities[rows]
    uniq = np.unique(ids)
    index = {p: i for i, p in enumerate(uniq)}
    clean = data.embeddings["clean"]
    centroids = np.stack([clean[rows[ids == p]].mean(0) for p in uniq])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    face, quality, text, label = [], [], [], []
    for cond in (c for c in TRAIN_CONDITIONS if c in data.embeddings):
        for r in rows:
            for t in texts[int(r)]:
                face.append(data.embeddings[cond][r])
                quality.append(data.quality[cond][r])
                text.append(t)
                label.append(index[data.identities[r]])
    return TrainingSet(
        np.asarray(face, np.float32),
        np.asarray(quality, np.float32),
        np.asarray(text, np.float32),
        np.asarray(label),
        centroids.astype(np.float32),
    )


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
    gen = torch.Generator().manual_seed(seed)
    history: list[tuple[int, float]] = []
    for step in range(1, steps + 1):
        pick = torch.randint(len(face), (batch,), generator=gen)
        f, qq, t, y = face[pick], q[pick], text[pick], label[pick]
        fused = model(f, qq, t)
        identity = F.cross_entropy(SCALE * fused @ cent.T, y)
        # Alignment: each description against every identity's clean centroid.
        same = y[:, None] == torch.arange(len(cent))[None, :]
        align = supcon(model.description(t), cent, same)
        loss = identity + align_weight * align
        opt.zero_grad()
        loss.backward()
        opt.step()
        if val is not None and step % 50 == 0:
            history.append((step, identity_accuracy(model, val)))
    return model, history


def export_onnx(model: DescriptionFusion, path: Path) -> None:
    """ONNX with inputs embedding (n, 128), quality (n, 1), text (n, 384); output fused."""
    model.eval()
    args = (torch.zeros(1, FACE_DIM), torch.zeros(1, 1), torch.zeros(1, TEXT_DIM))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        args,
        str(path),
        input_names=["embedding", "quality", "text"],
        output_names=["fused"],
        dynamic_axes={n: {0: "n"} for n in ("embedding", "quality", "text", "fused")},
        opset_version=17,
        dynamo=False,
    )


def describe_rows(
    data: AttributeSet, rows: np.ndarray, per_face: int, seed: int = 100
) -> dict[int, list[str]]:
    """``per_face`` descriptions per row from its labels (seeds apart from the bench's 0/1)."""
    names = list(data.label_names)
    rng = np.random.default_rng(seed)
    return {
        int(r): [
            describe(dict(zip(names, data.labels[r].tolist(), strict=True)), rng)
            for _ in range(per_face)
        ]
        for r in rows
    }


def train_on_training_identities(
    data: AttributeSet, model_dir: str, steps: int = 0, seed: int = 0
) -> tuple[DescriptionFusion, dict[str, object]]:
    """The fusion trained on the attribute model's training identities; ``steps`` 0 = chosen
    on a held-back fifth of them, then retrained on all."""
    from bench.tgfr.bench_tgfr import text_vectors

    torch.set_num_threads(1)  # a tiny model: threads only contend on a shared CPU
    split = json.loads(ONNX_FILE.with_suffix(".split.json").read_text())
    train_ids = np.setdiff1d(np.unique(data.identities), np.asarray(split["test_identities"]))
    labelled = np.abs(data.labels).sum(axis=1) > 0
    rows = np.flatnonzero(np.isin(data.identities, train_ids) & labelled)
    texts = describe_rows(data, rows, DESCRIPTIONS_PER_FACE)
    flat = [t for r in rows for t in texts[int(r)]]
    vecs = text_vectors(flat, model_dir)
    emb = {
        int(r): vecs[i * DESCRIPTIONS_PER_FACE : (i + 1) * DESCRIPTIONS_PER_FACE]
        for i, r in enumerate(rows)
    }
    info: dict[str, object] = {"rows": len(rows), "identities": len(train_ids)}
    if not steps:
        rng = np.random.default_rng(seed)
        held = rng.choice(train_ids, size=len(train_ids) // 5, replace=False)
        inner = rows[~np.isin(data.identities[rows], held)]
        outer = rows[np.isin(data.identities[rows], held)]
        _, history = fit(training_set(data, inner, emb), MAX_STEPS, training_set(data, outer, emb))
        steps = max(history, key=lambda h: h[1])[0]
        info["validation"] = history
    info["steps"] = steps
    model, _ = fit(training_set(data, rows, emb), steps, seed=seed)
    return model.eval(), info


def fused_probes(
    model: DescriptionFusion, face: np.ndarray, quality: np.ndarray, text: np.ndarray
) -> np.ndarray:
    with torch.no_grad():
        out = model(
            torch.from_numpy(face.astype(np.float32)),
            torch.from_numpy(quality.astype(np.float32))[:, None],
            torch.from_numpy(text.astype(np.float32)),
        )
    return out.numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--steps", type=int, default=0, help="0 = chosen on held-back identities")
    parser.add_argument("--out", type=Path, default=Path("bench/.cache/tgfr") / f"{MODEL_ID}.onnx")
    args = parser.parse_args(argv)
    model, info = train_on_training_identities(
        AttributeSet.load(args.data), args.model_dir, args.steps
    )
    export_onnx(model, args.out)
    print(json.dumps(info))
    torch.save(model.state_dict(), args.out.with_suffix(".pt"))


if __name__ == "__main__":
    main()
