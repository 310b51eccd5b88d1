"""TGFR on CelebA identities the attribute model never saw: attribute accuracy, and rank-1
identification of degraded probes with and without a description.

    python -m bench.tgfr.bench_tgfr --data bench/.cache/tgfr/celeba_attributes.npz

The embedded set comes from ``python -m facesearch_server.embedder.attributes.dataset``
(aligned faces, each degradation applied to the aligned crop). Test identities are the
attribute model's held-out ones (its ``.split.json``). Protocol, per condition: every
attribute-labelled image of a test identity is a probe (degraded); the gallery is every other
labelled image of the test identities (clean), each storing what indexing stores: its
embedding, its attribute vector and a caption written from its own labels. The probe's
description is written from the probe's labels (bench/tgfr/descriptions.py, another draw
of the same style), and read by the embedder's DescriptionReader.

Rows: face only; caption fusion (today: cosine + 0.5 x caption cosine); attribute fusion
(quality-weighted face + attribute log-likelihood, facesearch/core/search.py's weights);
description only (attributes alone). 95 % intervals: bootstrap over identities (probes of one
person are not independent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from bench.tgfr.descriptions import describe
from facesearch.core.search import (
    ATTRIBUTE_WEIGHT,
    CAPTION_WEIGHT,
    FACE_WEIGHT_FLOOR,
    face_weight_for,
)
from facesearch_server.embedder.attributes import names as an
from facesearch_server.embedder.attributes.dataset import AttributeSet
from facesearch_server.embedder.attributes.description import DescriptionReader, query_vector
from facesearch_server.embedder.attributes.train import ONNX_FILE, degraded_crops, predict_onnx
from facesearch_server.embedder.text_encoding import embed_in_process

SYSTEMS = (
    "face only",
    "caption fusion",
    "attribute fusion",
    "oracle attributes",
    "learned fusion",
    "fused embedding",
)
# The oracle row's weight: not tuned (it shows what better attributes would be worth).
ORACLE_WEIGHT = 0.1
CONDITIONS = ("clean", "24px", "16px", "12px", "blur3", "blur5", "jpeg10")


def bootstrap_ci(
    values: np.ndarray, groups: np.ndarray, stat, n: int = 1000, seed: int = 0
) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """95 % interval of ``stat(rows)`` resampling whole groups (identities)."""
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    index = {g: np.flatnonzero(groups == g) for g in unique}
    stats = []
    for _ in range(n):
        pick = rng.choice(unique, size=len(unique), replace=True)
        rows = np.concatenate([index[g] for g in pick])
        value = stat(rows)
        if np.isfinite(value):
            stats.append(value)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def balanced_accuracy(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        return float("nan")
    pred = p >= threshold
    return float((pred[pos].mean() + (~pred[neg]).mean()) / 2)


def attribute_table(
    data: AttributeSet, test: np.ndarray, prevalence: dict[str, float]
) -> list[dict[str, object]]:
    labelled = test & (np.abs(data.labels).sum(axis=1) > 0)
    y = an.targets(data.labels[labelled], list(data.label_names))
    groups = data.identities[labelled]
    rows = []
    for cond in CONDITIONS:
        p = predict_onnx(data.embeddings[cond][labelled], degraded_crops(data, labelled, cond))
        for j, name in enumerate(an.NAMES):
            yj, pj, t = y[:, j], p[:, j], prevalence[name]
            acc = balanced_accuracy(yj, pj, t)
            lo, hi = bootstrap_ci(
                np.arange(len(yj)),
                groups,
                lambda r, yj=yj, pj=pj, t=t: balanced_accuracy(yj[r], pj[r], t),
            )
            rows.append(
                {
                    "condition": cond,
                    "attribute": name,
                    "probes": len(yj),
                    "positives": int(yj.sum()),
                    "balanced_accuracy": acc,
                    "ci": (lo, hi),
                    "brier": float(((pj - yj) ** 2).mean()),
                }
            )
    return rows


async def read_descriptions(texts: list[str], model_dir: str) -> list[list]:  # type: ignore[type-arg]
    from facesearch_server.embedder.backends.local import LocalRuntime
    from facesearch_server.embedder.text_encoding import TextEncoder

    runtime = LocalRuntime(model_dir, intra_op_threads=1)
    runtime.load()
    encoder = TextEncoder(runtime)
    reader = DescriptionReader(encoder.embed)
    out = []
    for start in range(0, len(texts), 64):
        out.extend(await reader.read_many(texts[start : start + 64]))
    await runtime.close()
    return out


def out_of_fold_probabilities(data: AttributeSet, rows: np.ndarray, folds: int = 3) -> np.ndarray:
    """Attribute probabilities of the clean faces ``rows`` from models that never saw their
    identity (identity-grouped folds over ``rows``): what held-out faces get, on the training
    identities, so fusion weights can be chosen there without touching the test identities."""
    from sklearn.model_selection import GroupKFold

    from facesearch_server.embedder.attributes.train import (
        TRAIN_CONDITIONS,
        features,
        fit,
        predict,
    )

    ids = data.identities[rows]
    y = an.targets(data.labels[rows], list(data.label_names))
    out = np.zeros((len(rows), len(an.NAMES)), np.float32)
    for train_i, test_i in GroupKFold(n_splits=folds).split(rows, groups=ids):
        conds = [c for c in TRAIN_CONDITIONS if c in data.embeddings]
        x = np.concatenate(
            [
                features(data.embeddings[c][rows[train_i]], degraded_crops(data, rows[train_i], c))
                for c in conds
            ]
        )
        w, b, _ = fit(
            x, np.concatenate([y[train_i]] * len(conds)), np.tile(ids[train_i], len(conds)), c=0.01
        )
        clean = features(data.embeddings["clean"][rows[test_i]], data.crops[rows[test_i]])
        out[test_i] = predict(w, b, clean)
    return out


def tar_at_far(scores: np.ndarray, correct: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Share of genuine pairs above the threshold that ``far`` of the impostor pairs pass."""
    imp = np.sort(scores[impostor])[::-1]
    k = int(far * len(imp))
    threshold = imp[k] if k < len(imp) else -np.inf
    return float((scores[correct] > threshold).mean())


def rank1(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per probe 1 when a correct gallery item is first, counting ties as a fraction."""
    best = scores.max(axis=1, keepdims=True)
    top = np.isclose(scores, best, atol=1e-6)
    return (top & correct).sum(axis=1) / top.sum(axis=1)


def identification(
    data: AttributeSet,
    test: np.ndarray,
    model_dir: str,
    seed: int = 0,
    sweep: bool = False,
    out_of_fold: bool = False,
    photos: Path | None = None,
    learned=None,  # type: ignore[no-untyped-def]
    fused=None,  # type: ignore[no-untyped-def]
) -> dict[str, object]:
    labelled = np.flatnonzero(test & (np.abs(data.labels).sum(axis=1) > 0))
    names = list(data.label_names)
    labels = [dict(zip(names, data.labels[i].tolist(), strict=True)) for i in labelled]
    rng_probe, rng_gallery = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    descriptions = [describe(lab, rng_probe) for lab in labels]
    captions = [describe(lab, rng_gallery) for lab in labels]
    evidence = asyncio.run(read_descriptions(descriptions, model_dir))
    queries = np.stack([query_vector(e) for e in evidence])
    desc_vec = embed_in_process(descriptions, model_dir)
    cap_vec = embed_in_process(captions, model_dir)
    ids = data.identities[labelled]
    gallery_emb = data.embeddings["clean"][labelled]
    gallery_p = (
        out_of_fold_probabilities(data, labelled)
        if out_of_fold
        else predict_onnx(gallery_emb, data.crops[labelled])
    )
    gallery_attr = an.attribute_vector(gallery_p)
    same = ids[:, None] == ids[None, :]
    self_pair = np.eye(len(labelled), dtype=bool)
    correct = same & ~self_pair
    attr_term = queries @ gallery_attr.T  # mean log-likelihood
    # The bound of attribute fusion: gallery faces "predicted" from their own labels (0.9 / 0.1).
    truth = an.targets(data.labels[labelled], names)
    oracle_term = queries @ an.attribute_vector(np.where(truth == 1, 0.9, 0.1)).T
    caption_term = desc_vec @ cap_vec.T
    out: dict[str, object] = {
        "probes": len(labelled),
        "identities": len(np.unique(ids)),
        "gallery": int(len(labelled) - 1),
        "descriptions_with_evidence": int(sum(1 for e in evidence if e)),
        "genuine_pairs": int(correct.sum()),
        "impostor_pairs": int((~same).sum()),
        "example": {"description": descriptions[0], "evidence": [str(e) for e in evidence[0]]},
        "rows": [],
    }

    def masked(s: np.ndarray) -> np.ndarray:
        return np.where(self_pair, -np.inf, s)

    only = rank1(masked(attr_term), correct)
    if sweep:
        print("floor  weight  " + "  ".join(f"{c:>6}" for c in CONDITIONS) + "  mean")
        for floor in (0.2, 0.35, 0.5, 0.75, 1.0):
            for lam in (0.01, 0.02, 0.03, 0.05, 0.1, 0.2):
                r1s = []
                for cond in CONDITIONS:
                    face = data.embeddings[cond][labelled] @ gallery_emb.T
                    wq = np.array([face_weight_for(q, floor) for q in data.quality[cond][labelled]])
                    fused = wq[:, None] * face + lam * attr_term
                    r1s.append(float(rank1(masked(fused), correct).mean()))
                cells = "  ".join(f"{r:6.3f}" for r in r1s)
                print(f"{floor:5.2f}  {lam:6.2f}  {cells}  {np.mean(r1s):.3f}")
    out["description_only"] = {
        "rank1": float(only.mean()),
        "ci": bootstrap_ci(only, ids, lambda r: float(only[r].mean())),
    }
    for cond in CONDITIONS:
        face = data.embeddings[cond][labelled] @ gallery_emb.T
        weight = np.array([face_weight_for(q) for q in data.quality[cond][labelled]])
        systems = {
            "face only": face,
            "caption fusion": face + CAPTION_WEIGHT * caption_term,
            "attribute fusion": weight[:, None] * face + ATTRIBUTE_WEIGHT * attr_term,
            "oracle attributes": weight[:, None] * face + ORACLE_WEIGHT * oracle_term,
        }
        if learned is not None:
            from bench.tgfr import learned_fusion

            feats = learned_fusion.pair_features(
                face, data.quality[cond][labelled], queries, gallery_attr
            )
            systems["learned fusion"] = learned_fusion.score(learned, feats)
        if fused is not None:
            probe = data.embeddings[cond][labelled]
            z = fused(probe, data.quality[cond][labelled], desc_vec)
            systems["fused embedding"] = z @ gallery_emb.T
        row: dict[str, object] = {"condition": cond, "quality": float(weight.mean())}
        impostor = ~same
        row["tar"] = {
            name: [tar_at_far(sc, correct, impostor, far) for far in (1e-2, 1e-3)]
            for name, sc in systems.items()
        }
        base = rank1(masked(face), correct)
        for name, scores in systems.items():
            r1 = rank1(masked(scores), correct)
            row[name] = (
                float(r1.mean()),
                bootstrap_ci(r1, ids, lambda r, r1=r1: float(r1[r].mean())),
            )
            if name != "face only":
                diff = r1 - base
                row[f"{name} - face"] = bootstrap_ci(
                    diff, ids, lambda r, d=diff: float(d[r].mean())
                )
        out["rows"].append(row)  # type: ignore[union-attr]
    if photos is not None:
        out["whole_photo"] = whole_photo_rows(
            data, labelled, photos, model_dir, gallery_emb, attr_term, masked, correct
        )
    return out


def whole_photo_rows(  # type: ignore[no-untyped-def]
    data, labelled, photos, model_dir, gallery_emb, attr_term, masked, correct
) -> list[dict[str, object]]:
    from bench.tgfr.whole_photo import probe_faces
    from facesearch_server.embedder.pipeline import FacePipeline

    pipe = FacePipeline.local(model_dir, threads=1)
    paths = [photos / p for p in data.paths[labelled]]
    ids = data.identities[labelled]
    only = rank1(masked(attr_term), correct)
    rows = []
    for cond in ("24px", "16px", "12px", "blur3", "blur5", "jpeg10"):
        found, emb, quality = probe_faces(pipe, paths, cond)
        face = emb @ gallery_emb.T
        weight = np.array([face_weight_for(q) for q in quality])
        fused = weight[:, None] * face + ATTRIBUTE_WEIGHT * attr_term
        # Today a probe without a face fails (counted as a miss); a description search
        # falls back to the description alone.
        face_r1 = np.where(found, rank1(masked(face), correct), 0.0)
        fused_r1 = np.where(found, rank1(masked(fused), correct), only)
        rows.append(
            {
                "condition": cond,
                "probes": len(paths),
                "no_face": int((~found).sum()),
                "face only": (
                    float(face_r1.mean()),
                    bootstrap_ci(face_r1, ids, lambda r, a=face_r1: float(a[r].mean())),
                ),
                "attribute fusion": (
                    float(fused_r1.mean()),
                    bootstrap_ci(fused_r1, ids, lambda r, a=fused_r1: float(a[r].mean())),
                ),
            }
        )
        print(f"whole photo {cond}: {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-dir", default="models")
    parser.add_argument(
        "--train-identities",
        action="store_true",
        help="measure on the training identities, their gallery attributes predicted "
        "out of fold (to choose the fusion weights)",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="rank-1 over a grid of fusion weights (choose them)"
    )
    parser.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="the celeba_attributes folder: also run the whole-photo path (detection included)",
    )
    parser.add_argument(
        "--learned",
        action="store_true",
        help="also train and measure the learned fusion (learned_fusion.py; bench only)",
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="also measure the fused embedding as served (the ONNX file shipped in "
        "facesearch_server.embedder.description_fusion)",
    )
    parser.add_argument(
        "--fused-retrain",
        action="store_true",
        help="with --fused: train a fresh one on the training identities and measure that",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    data = AttributeSet.load(args.data)
    split = json.loads(ONNX_FILE.with_suffix(".split.json").read_text())
    test = np.isin(data.identities, split["test_identities"])
    if args.train_identities:
        test = ~test
    attrs = attribute_table(data, test, split["prevalence"])
    learned = None
    if args.learned:
        from bench.tgfr import learned_fusion

        learned = learned_fusion.train(data, ~test, args.model_dir)
    fused = None
    if args.fused and args.fused_retrain:
        from bench.tgfr.fused_embedding import fused_probes, train_on_training_identities

        model, info = train_on_training_identities(data, args.model_dir)
        print(f"fused embedding trained: {json.dumps(info)}")

        def fused(face: np.ndarray, quality: np.ndarray, text: np.ndarray) -> np.ndarray:
            return fused_probes(model, face, quality, text)

    elif args.fused:
        from bench.tgfr.fused_embedding import served_probes as fused
    ident = identification(
        data,
        test,
        args.model_dir,
        sweep=args.sweep,
        out_of_fold=args.train_identities,
        photos=args.photos,
        learned=learned,
        fused=fused,
    )
    print(f"attribute accuracy, {'train' if args.train_identities else 'held-out'} identities")
    print("| attribute | n (pos) | " + " | ".join(CONDITIONS) + " |")
    print("|---|---|" + "---|" * len(CONDITIONS))
    for name in an.NAMES:
        cells = [r for r in attrs if r["attribute"] == name]
        n = f"{cells[0]['probes']} ({cells[0]['positives']})"
        fmt = [
            f"{c['balanced_accuracy']:.2f} ({c['ci'][0]:.2f}-{c['ci'][1]:.2f})"  # type: ignore[index]
            for c in cells
        ]
        print(f"| {name} | {n} | " + " | ".join(fmt) + " |")
    print()
    print(
        f"rank-1: {ident['probes']} probes of {ident['identities']} identities, gallery "
        f"{ident['gallery']} clean faces; face weight floor {FACE_WEIGHT_FLOOR}, attribute "
        f"weight {ATTRIBUTE_WEIGHT}, caption weight {CAPTION_WEIGHT}"
    )
    print(f"descriptions with attribute evidence: {ident['descriptions_with_evidence']}")
    print(f"example: {ident['example']}")
    d = ident["description_only"]
    print(f"description only (attributes): {d['rank1']:.3f} ({d['ci'][0]:.3f}-{d['ci'][1]:.3f})")  # type: ignore[index]
    shown = [n for n in ident["rows"][0] if n in SYSTEMS]  # type: ignore[index]
    diffs = [n for n in ("attribute fusion", "learned fusion", "fused embedding") if n in shown]
    heads = [f"{n.split()[0]} - face (95 % CI)" for n in diffs]
    print("| probe | " + " | ".join(shown + heads) + " |")
    print("|---|" + "---|" * (len(shown) + len(diffs)))
    for row in ident["rows"]:  # type: ignore[union-attr]
        cells = []
        for name in shown:
            v, (lo, hi) = row[name]
            cells.append(f"{v:.3f} ({lo:.3f}-{hi:.3f})")
        for name in diffs:
            lo, hi = row[f"{name} - face"]
            cells.append(f"{lo:+.3f} .. {hi:+.3f}")
        print(f"| {row['condition']} | " + " | ".join(cells) + " |")
    print()
    pairs = ident["rows"][0]  # type: ignore[index]
    print(
        f"TAR at FAR 1e-2 / 1e-3 ({ident['genuine_pairs']} genuine, "  # type: ignore[index]
        f"{ident['impostor_pairs']} impostor pairs; point estimates)"
    )
    names = list(pairs["tar"])
    print("| probe | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in ident["rows"]:  # type: ignore[union-attr]
        cells = [f"{row['tar'][n][0]:.3f} / {row['tar'][n][1]:.3f}" for n in names]
        print(f"| {row['condition']} | " + " | ".join(cells) + " |")
    if "whole_photo" in ident:
        print(
            "| probe photo | no face found | face only (a miss when no face) "
            "| attribute fusion (description alone when no face) |"
        )
        print("|---|---|---|---|")
        for row in ident["whole_photo"]:  # type: ignore[union-attr]
            cells = [
                f"{row[n][0]:.3f} ({row[n][1][0]:.3f}-{row[n][1][1]:.3f})"
                for n in ("face only", "attribute fusion")
            ]
            print(
                f"| {row['condition']} | {row['no_face']}/{row['probes']} | "
                + " | ".join(cells)
                + " |"
            )
    if args.json:
        args.json.write_text(json.dumps({"attributes": attrs, "identification": ident}, indent=1))


if __name__ == "__main__":
    main()
