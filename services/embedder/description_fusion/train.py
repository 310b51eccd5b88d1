"""Train the description fusion model, ship its ONNX file and write its model card.

    python -m facesearch_server.embedder.description_fusion.train \
        --data bench/.cache/tgfr/celeba_attributes.npz

Data: the dataset the attribute model trains on (``attributes.dataset``: CelebA attribute
images, detected, aligned and embedded by this embedder, clean and degraded). Only the
attribute model's training identities (its ``.split.json``) are trained on, each labelled
image under every condition (clean, 24/16/12 px, blur 3 and 5, JPEG 10, noise 20) with
``DESCRIPTIONS_PER_FACE`` descriptions written from its labels (``descriptions.py``,
MM-CelebA-HQ style). The step count is chosen on a held-back fifth of the training
identities, then the model is retrained on all of them. The held-out (test) identities are
read only by the evaluation written into the card: rank-1 of the served ONNX file's fused
probe against the face alone, the protocol of bench/tgfr (every labelled image of a held-out
identity a probe, degraded; the gallery the other labelled images, clean; 95 % bootstrap over
identities).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facesearch_server.embedder import model_cards
from facesearch_server.embedder.attributes.dataset import AttributeSet
from facesearch_server.embedder.attributes.train import ONNX_FILE as ATTRIBUTE_ONNX
from facesearch_server.embedder.description_fusion import names as fn
from facesearch_server.embedder.description_fusion.descriptions import describe
from facesearch_server.embedder.description_fusion.model import (
    DescriptionFusion,
    TrainingSet,
    export_onnx,
    fit,
)
from facesearch_server.embedder.text_encoding import embed_in_process

DESCRIPTIONS_PER_FACE = 4
# Conditions trained on; "noise20" is a training-only degradation (the evaluation uses the rest).
TRAIN_CONDITIONS = ("clean", "24px", "16px", "12px", "blur3", "blur5", "jpeg10", "noise20")
EVAL_CONDITIONS = TRAIN_CONDITIONS[:-1]
MAX_STEPS = 1000


def attribute_split() -> dict[str, object]:
    return json.loads(ATTRIBUTE_ONNX.with_suffix(".split.json").read_text())


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


def train_on_training_identities(
    data: AttributeSet, model_dir: str, steps: int = 0, seed: int = 0
) -> tuple[DescriptionFusion, dict[str, object]]:
    """The fusion trained on the attribute model's training identities; ``steps`` 0 = chosen
    on a held-back fifth of them, then retrained on all."""
    torch.set_num_threads(1)  # a tiny model: threads only contend on a shared CPU
    split = attribute_split()
    train_ids = np.setdiff1d(np.unique(data.identities), np.asarray(split["test_identities"]))
    labelled = np.abs(data.labels).sum(axis=1) > 0
    rows = np.flatnonzero(np.isin(data.identities, train_ids) & labelled)
    texts = describe_rows(data, rows, DESCRIPTIONS_PER_FACE)
    flat = [t for r in rows for t in texts[int(r)]]
    vecs = embed_in_process(flat, model_dir)
    emb = {
        int(r): vecs[i * DESCRIPTIONS_PER_FACE : (i + 1) * DESCRIPTIONS_PER_FACE]
        for i, r in enumerate(rows)
    }
    info: dict[str, object] = {
        "rows": len(rows),
        "identities": len(train_ids),
        "samples": len(flat) * sum(c in data.embeddings for c in TRAIN_CONDITIONS),
    }
    if not steps:
        rng = np.random.default_rng(seed)
        held = rng.choice(train_ids, size=len(train_ids) // 5, replace=False)
        inner = rows[~np.isin(data.identities[rows], held)]
        outer = rows[np.isin(data.identities[rows], held)]
        _, history = fit(training_set(data, inner, emb), MAX_STEPS, training_set(data, outer, emb))
        steps = max(history, key=lambda h: h[1])[0]
        info["validation_identities"] = len(held)
        info["validation"] = history
    info["steps"] = steps
    model, _ = fit(training_set(data, rows, emb), steps, seed=seed)
    return model.eval(), info


def rank1(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per probe 1 when a correct gallery item is first, counting ties as a fraction."""
    best = scores.max(axis=1, keepdims=True)
    top = np.isclose(scores, best, atol=1e-6)
    return (top & correct).sum(axis=1) / top.sum(axis=1)


def bootstrap_ci(
    groups: np.ndarray, stat: Callable[[np.ndarray], float], n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of ``stat(rows)`` resampling whole groups (identities)."""
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    index = {g: np.flatnonzero(groups == g) for g in unique}
    stats = [
        stat(np.concatenate([index[g] for g in rng.choice(unique, size=len(unique))]))
        for _ in range(n)
    ]
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def held_out_evaluation(data: AttributeSet, onnx: Path, model_dir: str) -> dict[str, object]:
    """Rank-1 of the face alone and of the ONNX file's fused probe, held-out identities, per
    condition (the bench/tgfr protocol, probe descriptions from seed 0 as there)."""
    split = attribute_split()
    test = np.isin(data.identities, split["test_identities"])
    labelled = np.flatnonzero(test & (np.abs(data.labels).sum(axis=1) > 0))
    names = list(data.label_names)
    rng = np.random.default_rng(0)
    descriptions = [
        describe(dict(zip(names, data.labels[i].tolist(), strict=True)), rng) for i in labelled
    ]
    text = embed_in_process(descriptions, model_dir)
    ids = data.identities[labelled]
    gallery = data.embeddings["clean"][labelled]
    self_pair = np.eye(len(labelled), dtype=bool)
    correct = (ids[:, None] == ids[None, :]) & ~self_pair
    rows = []
    for cond in EVAL_CONDITIONS:
        probe, quality = data.embeddings[cond][labelled], data.quality[cond][labelled]
        fused, weight = fn.run_onnx(onnx, probe, quality, text)
        face_r1 = rank1(np.where(self_pair, -np.inf, probe @ gallery.T), correct)
        fused_r1 = rank1(np.where(self_pair, -np.inf, fused @ gallery.T), correct)
        diff = fused_r1 - face_r1
        rows.append(
            {
                "condition": cond,
                "face_only": round(float(face_r1.mean()), 3),
                "fused": round(float(fused_r1.mean()), 3),
                "fused_minus_face_ci95": [
                    round(v, 3) for v in bootstrap_ci(ids, lambda r, d=diff: float(d[r].mean()))
                ],
                "mean_description_weight": round(float(weight.mean()), 4),
            }
        )
    return {
        "protocol": "rank-1 identification on the held-out identities: every labelled image "
        "a probe (degraded as named), its description written from its own labels; gallery "
        "the other labelled images (clean SFace vectors, as a collection stores them); 95 % "
        "interval of the paired difference by bootstrap over identities (1,000 resamples)",
        "probes": len(labelled),
        "identities": len(np.unique(ids)),
        "rank1": rows,
    }


def model_card(info: dict[str, object], evaluation: dict[str, object]) -> dict[str, object]:
    split = attribute_split()
    return {
        "model_id": fn.FUSION_MODEL,
        "kind": "description_fusion",
        "description": "Learned description fusion after TGFR: the description's MiniLM "
        "embedding mapped into the SFace space (d, unit length) and a gate on the probe's "
        "quality and cos(face, d) giving the description a weight w >= 0; the fused probe is "
        "normalise(face + w d), searched against the stored SFace vectors (no re-indexing). "
        f"Bound to {fn.FACE_MODEL} face embeddings and {fn.TEXT_MODEL} description "
        "embeddings.",
        "face_model": fn.FACE_MODEL,
        "text_model": fn.TEXT_MODEL,
        "inputs": [{"name": n, "dtype": "float32", "dims": [-1, d]} for n, d in fn.INPUTS],
        "outputs": [
            {
                "name": fn.OUTPUT,
                "dtype": "float32",
                "dims": [-1, fn.OUTPUT_DIM],
                "columns": f"0..{fn.FACE_DIM - 1}: the unit fused probe; {fn.FACE_DIM}: the "
                "description's weight w",
            }
        ],
        "training": {
            "data": "../shared/data/celeba_attributes (CelebA, attribute-labelled images), "
            "faces detected, aligned and embedded by this embedder "
            "(facesearch_server.embedder.attributes.dataset)",
            "identity_split": {
                "source": f"{ATTRIBUTE_ONNX.stem}.split.json (the attribute model's split)",
                "seed": split["seed"],
                "train_identities": info["identities"],
                "test_identities": len(split["test_identities"]),  # type: ignore[arg-type]
                "overlap": 0,
            },
            "rows": info["rows"],
            "samples": info["samples"],
            "conditions": list(TRAIN_CONDITIONS),
            "descriptions_per_face": DESCRIPTIONS_PER_FACE,
            "losses": "NormFace softmax (scale 30) of the fused probe over the training "
            "identities' clean centroids + SupCon InfoNCE (T 0.1) of d against them; both "
            "pytorch-metric-learning's (NormalizedSoftmaxLoss with its weights fixed to the "
            "centroids, SupConLoss with the centroids as reference set)",
            "optimiser": "AdamW lr 3e-3, weight decay 1e-2, batch 512, seed 0",
            "steps": info["steps"],
            "step_choice": "nearest-centroid accuracy on a held-back fifth of the training "
            "identities every 50 steps, best kept, then retrained on all training identities",
            "validation": info.get("validation", []),
        },
        "evaluation": evaluation,
        "limitations": "Not better than the face alone: on the held-out identities every "
        "interval of (fused - face) rank-1 spans 0 (see evaluation), so it is offered as an "
        "option, never the default. 110 training identities; the description-to-face mapping "
        "overfits within tens of steps, so the learned weight stays small. Celebrities, mostly "
        "young and white. Vectors of any face model but sface-2021dec, or of any text model "
        "but minilm-l6-v2, are meaningless to it.",
        "licence": "weights trained here on CelebA images and labels: CelebA terms "
        "(non-commercial research and education); inputs from SFace (Apache-2.0) and "
        "all-MiniLM-L6-v2 (Apache-2.0)",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--steps", type=int, default=0, help="0 = chosen on held-back identities")
    parser.add_argument("--out", type=Path, default=fn.ONNX_FILE)
    args = parser.parse_args(argv)
    data = AttributeSet.load(args.data)
    model, info = train_on_training_identities(data, args.model_dir, args.steps)
    export_onnx(model, args.out)
    evaluation = held_out_evaluation(data, args.out, args.model_dir)
    card = model_card(info, evaluation)
    if args.out == fn.ONNX_FILE:  # the shipped model: its card ships too
        model_cards.card_path(fn.FUSION_MODEL).write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k != "validation"}))
    for row in evaluation["rank1"]:  # type: ignore[attr-defined]
        print(json.dumps(row))


if __name__ == "__main__":
    main()
