"""Train the face attribute model on CelebA labels and export it to ONNX.

Features: the 128-d unit SFace embedding (identity-level traits: sex, hair colour, beard) and
the aligned crop averaged down to 16x16 RGB, standardised per face (what an identity embedding
is trained to ignore: glasses, a hat, a smile, make-up). One logistic regression per attribute,
trained on clean and degraded copies of the training identities' faces (so a poor face gets
honest, less confident probabilities), calibrated by Platt scaling on identity-grouped
cross-validated scores (scikit-learn's CalibratedClassifierCV, ``ensemble=False``). A
Platt-calibrated logistic regression is still sigmoid(a x + b), so the model folds into one
graph: AveragePool and a per-face standardisation of the crop, Concat with the embedding,
MatMul + Add + Sigmoid; about 60 KB, served like the encoders.

Identities are split (``--test-fraction``, seeded): no identity is in both train and test; the
test identities are what bench/tgfr measures on.

    python -m facesearch_server.embedder.attributes.train \
        --data bench/.cache/tgfr/celeba_attributes.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facesearch_server.embedder import model_cards
from facesearch_server.embedder.attributes import names as an
from facesearch_server.embedder.attributes.dataset import AttributeSet

PACKAGE_DIR = Path(__file__).resolve().parent
ONNX_FILE = PACKAGE_DIR / f"{an.ATTRIBUTE_MODEL}.onnx"
TRAIN_CONDITIONS = ("clean", "24px", "16px", "12px", "blur3", "blur5", "jpeg10", "noise20")
INPUT, CROP_INPUT, OUTPUT = "embedding", "crop", "probabilities"
# The 112 px crop averaged over 7x7 blocks: 16x16x3 = 768 values.
POOL = 7
PIXELS = 3 * (112 // POOL) ** 2
# Per-face standardisation of the pooled crop: (x - mean) / (std + PIXEL_EPS), in 0..255 units
# (0.001 of the 0..1 range), so a flat grey crop does not blow up.
PIXEL_EPS = 0.255
PIXEL_SCALE = 0.5  # relative weight of pixel features against the scaled embedding


def identity_split(identities: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of rows whose identity is held out for test."""
    unique = np.unique(identities)
    rng = np.random.default_rng(seed)
    test_ids = set(rng.choice(unique, size=round(len(unique) * test_fraction), replace=False))
    return np.array([i in test_ids for i in identities])


# Unit-length 128-d embeddings have components of about 1/sqrt(128); scaled to about unit
# variance (pixels are standardised), one regularisation grid fits every attribute. The
# scales are folded into the exported weights.
SCALE = float(np.sqrt(128))
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
MIN_POSITIVE_IDENTITIES = 3


def _choose_c(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The regularisation with the best identity-grouped cross-validated log-loss."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedGroupKFold

    try:
        folds = list(StratifiedGroupKFold(n_splits=3).split(x, y, groups))
        model = LogisticRegressionCV(
            Cs=list(C_GRID),
            cv=folds,
            scoring="neg_log_loss",
            class_weight="balanced",
            max_iter=5000,
        ).fit(x, y)
        return float(model.C_[0])
    except ValueError:  # too few positive identities to fold: the middle of the grid
        return 0.01


def fit(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float | None = None
) -> tuple[np.ndarray, np.ndarray, list]:
    """Per attribute: Platt-calibrated logistic regression on raw ``features`` (scaled here),
    folded to (W (n, d), b (n,)) over the raw features, and the regularisation chosen for each
    (``c`` fixes it: quicker, for out-of-fold runs)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold

    scale = feature_scale()
    xs = x * scale
    weights, biases, chosen = [], [], []
    for j in range(y.shape[1]):
        # Fewer than MIN_POSITIVE_IDENTITIES people with the attribute cannot be learnt (nor
        # calibrated on identity folds): the model then says the prevalence, for every face.
        if len(np.unique(groups[y[:, j] == 1])) < MIN_POSITIVE_IDENTITIES:
            p = float(np.clip(y[:, j].mean(), 0.01, 0.99))
            weights.append(np.zeros(x.shape[1]))
            biases.append(np.log(p / (1 - p)))
            chosen.append(None)
            continue
        cj = c if c is not None else _choose_c(xs, y[:, j], groups)
        chosen.append(cj)
        base = LogisticRegression(C=cj, class_weight="balanced", max_iter=5000)
        # Folds by identity: a face's calibration score never comes from a model that saw
        # the same person (which would make it over-confident).
        folds = list(StratifiedGroupKFold(n_splits=3).split(xs, y[:, j], groups))
        model = CalibratedClassifierCV(base, method="sigmoid", cv=folds, ensemble=False)
        model.fit(xs, y[:, j])
        (cal,) = model.calibrated_classifiers_
        lr = cal.estimator
        (platt,) = cal.calibrators
        # sklearn's _SigmoidCalibration: p = 1 / (1 + exp(a * f + b)), f = w (s x) + c.
        a, b = float(platt.a_), float(platt.b_)
        weights.append(-a * scale * lr.coef_[0])
        biases.append(-a * lr.intercept_[0] - b)
    return np.array(weights, np.float32), np.array(biases, np.float32), chosen


def feature_scale() -> np.ndarray:
    return np.concatenate([np.full(128, SCALE), np.full(PIXELS, PIXEL_SCALE)]).astype(np.float32)


def model_crops(crops_bgr: np.ndarray) -> np.ndarray:
    """BGR 112x112 crops -> the model's crop input: RGB, 0..255 float, NCHW (as SFace's)."""
    rgb = np.asarray(crops_bgr)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def pixel_features(crop_input: np.ndarray) -> np.ndarray:
    """(n, 3, 112, 112) model crops -> (n, 768): 7x7 block means, standardised per face;
    exactly what the ONNX graph computes."""
    n = len(crop_input)
    side = 112 // POOL
    pooled = crop_input.reshape(n, 3, side, POOL, side, POOL).mean(axis=(3, 5)).reshape(n, -1)
    centred = pooled - pooled.mean(axis=1, keepdims=True)
    std = np.sqrt((centred**2).mean(axis=1, keepdims=True))
    return (centred / (std + PIXEL_EPS)).astype(np.float32)


def features(embeddings: np.ndarray, crops_bgr: np.ndarray) -> np.ndarray:
    """The model's raw features: [embedding, pixel features]."""
    return np.hstack([embeddings, pixel_features(model_crops(crops_bgr))]).astype(np.float32)


def predict(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ w.T + b)))


def onnx_model(w: np.ndarray, b: np.ndarray) -> bytes:
    """The features and sigmoid(x W^T + b) as an ONNX graph with a dynamic batch (IR 10, as
    the encoders)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from facesearch_server.embedder.model_export import ONNX_IR_VERSION

    nodes = [
        helper.make_node(
            "AveragePool", [CROP_INPUT], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["variance"], axes=[1], keepdims=1),
        helper.make_node("Sqrt", ["variance"], ["std"]),
        helper.make_node("Add", ["std", "eps"], ["denominator"]),
        helper.make_node("Div", ["centred", "denominator"], ["pixels"]),
        helper.make_node("Concat", [INPUT, "pixels"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "w"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        an.ATTRIBUTE_MODEL,
        [
            helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 128]),
            helper.make_tensor_value_info(CROP_INPUT, TensorProto.FLOAT, ["batch", 3, 112, 112]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", w.shape[0]])],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(w.T, dtype=np.float32), "w"),
            numpy_helper.from_array(b.astype(np.float32), "b"),
            numpy_helper.from_array(np.array([PIXEL_EPS], np.float32), "eps"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = ONNX_IR_VERSION
    model.producer_name = "facesearch_server.embedder.attributes.train"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def training_rows(data: AttributeSet, train: np.ndarray) -> tuple[np.ndarray, ...]:
    labelled = np.abs(data.labels).sum(axis=1) > 0
    rows = train & labelled
    y = an.targets(data.labels[rows], list(data.label_names))
    xs, ys, gs = [], [], []
    for cond in TRAIN_CONDITIONS:
        if cond in data.embeddings:
            xs.append(features(data.embeddings[cond][rows], degraded_crops(data, rows, cond)))
            ys.append(y)
            gs.append(data.identities[rows])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def degraded_crops(data: AttributeSet, rows: np.ndarray, condition: str) -> np.ndarray:
    """The aligned crops of ``rows`` under a degradation, as they were embedded."""
    from facesearch_server.embedder.attributes.dataset import CONDITIONS

    return np.stack([CONDITIONS[condition](c) for c in data.crops[rows]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", type=Path, default=ONNX_FILE)
    args = parser.parse_args(argv)
    data = AttributeSet.load(args.data)
    test = identity_split(data.identities, args.test_fraction, args.seed)
    x, y, groups = training_rows(data, ~test)
    w, b, chosen = fit(x, y, groups)
    args.out.write_bytes(onnx_model(w, b))
    split = {
        "seed": args.seed,
        "test_fraction": args.test_fraction,
        "train_identities": len(np.unique(data.identities[~test])),
        "test_identities": sorted(np.unique(data.identities[test]).tolist()),
        "train_rows": len(x),
        "conditions": [c for c in TRAIN_CONDITIONS if c in data.embeddings],
        "C": dict(zip(an.NAMES, chosen, strict=True)),
        # Balanced decisions: present when p >= the attribute's training prevalence.
        "prevalence": {n: round(float(y[:, j].mean()), 4) for j, n in enumerate(an.NAMES)},
    }
    args.out.with_suffix(".split.json").write_text(json.dumps(split, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); {len(x)} training rows")
    card = model_card(data, test, w, b, split)
    path = model_cards.card_path(an.ATTRIBUTE_MODEL)
    path.write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {path}")
    for cond, accs in card["evaluation"]["balanced_accuracy"].items():
        print(cond, " ".join(f"{k}={v:.2f}" for k, v in accs.items()))


def balanced_accuracy(y: np.ndarray, p: np.ndarray, threshold: float) -> float | None:
    """Mean of the recalls of present and absent; None without both in ``y``."""
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        return None
    pred = p >= threshold
    return round(float((pred[pos].mean() + (~pred[neg]).mean()) / 2), 3)


def model_card(
    data: AttributeSet, test: np.ndarray, w: np.ndarray, b: np.ndarray, split: dict
) -> dict:
    """What the model is, how it was trained, and its balanced accuracy per attribute on the
    held-out identities (95 % intervals: bench/tgfr/README.md)."""
    labelled = test & (np.abs(data.labels).sum(axis=1) > 0)
    y = an.targets(data.labels[labelled], list(data.label_names))
    accuracy = {}
    for cond, emb in data.embeddings.items():
        p = predict(w, b, features(emb[labelled], degraded_crops(data, labelled, cond)))
        accuracy[cond] = {
            n: balanced_accuracy(y[:, j], p[:, j], split["prevalence"][n])
            for j, n in enumerate(an.NAMES)
        }
    train_ids = set(np.unique(data.identities[~test]).tolist())
    test_ids = set(np.unique(data.identities[test]).tolist())
    return {
        "model_id": an.ATTRIBUTE_MODEL,
        "kind": "face_attributes",
        "description": "Soft-biometric face attributes from the SFace embedding and the "
        "aligned crop: one Platt-calibrated logistic regression per attribute over [the "
        "embedding, the crop averaged to 16x16 RGB and standardised per face], folded into "
        "one ONNX graph. Inputs: the unit-length SFace (sface-2021dec) embedding and the "
        "aligned 112x112 crop (RGB, 0..255, NCHW: SFace's input); output: the calibrated "
        "probability of each attribute, in the order of 'attributes'.",
        "attributes": list(an.NAMES),
        "celeba_columns": {n: (f"not {c}" if neg else c) for n, (c, neg) in an.ATTRIBUTES.items()},
        "inputs": [
            {"name": INPUT, "dtype": "float32", "dims": [-1, 128]},
            {"name": CROP_INPUT, "dtype": "float32", "dims": [-1, 3, 112, 112]},
        ],
        "outputs": [{"name": OUTPUT, "dtype": "float32", "dims": [-1, len(an.NAMES)]}],
        "training": {
            "data": "../shared/data/celeba_attributes (CelebA, 572 attribute-labelled images of "
            "157 identities), faces detected and aligned by this embedder",
            "conditions": split["conditions"],
            "degradations": "applied to the aligned crop: shrunk to 24/16/12 px and back, "
            "Gaussian blur sigma 3/5, JPEG q10, Gaussian noise sigma 20",
            "rows": split["train_rows"],
            "regularisation_C": split["C"],
            "prevalence": split["prevalence"],
            "calibration": "Platt scaling (sklearn CalibratedClassifierCV, method sigmoid, "
            "ensemble False) on 3 identity-grouped folds; C per attribute by identity-grouped "
            "3-fold log-loss over " + str(list(C_GRID)) + "; an attribute that fewer than "
            f"{MIN_POSITIVE_IDENTITIES} training identities have is predicted at its prevalence",
            "identity_split": {
                "seed": split["seed"],
                "test_fraction": split["test_fraction"],
                "train_identities": len(train_ids),
                "test_identities": len(test_ids),
                "shared_identities": len(train_ids & test_ids),
            },
        },
        "evaluation": {
            "held_out_identities": len(test_ids),
            "probes": int(labelled.sum()),
            "positives": {n: int(y[:, j].sum()) for j, n in enumerate(an.NAMES)},
            "balanced_accuracy": accuracy,
            "note": "balanced decisions: present when p >= the attribute's training "
            "prevalence (the Bayes rule for balanced error on calibrated p); None where the "
            "held-out set has no positive. 95 % intervals and the command: "
            "bench/tgfr/README.md",
        },
        "limitations": "CelebA has no sunglasses label (eyeglasses covers both) and one age "
        "label (young); celebrities, mostly young and white; small positive counts for bald, "
        "hat, gray hair and goatee make those attributes weak.",
        "licence": "weights trained here on CelebA labels: CelebA terms (non-commercial "
        "research and education)",
    }


def predict_onnx(
    embeddings: np.ndarray, crops_bgr: np.ndarray, path: Path = ONNX_FILE
) -> np.ndarray:
    """The shipped model's probabilities for (n, 128) embeddings and their (n, 112, 112, 3)
    BGR crops (onnxruntime, as served)."""
    from facesearch_server.embedder.model_export import _session

    feeds = {INPUT: embeddings.astype(np.float32), CROP_INPUT: model_crops(crops_bgr)}
    return _session(str(path)).run(None, feeds)[0]


if __name__ == "__main__":
    main()
