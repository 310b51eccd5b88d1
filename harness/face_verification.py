"""Face verification on identity-labelled pairs (LFW pairs.txt), clean and degraded.

The quality test asserts on it; ``python -m bench.embedder.verification --pairs 300`` prints the
full table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline

# OpenCV's published cosine threshold for SFace; fixed, not tuned on the pairs measured.
SFACE_THRESHOLD = 0.363


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool


def lfw_pairs(lfw: Path, per_kind: int) -> list[Pair]:
    """Up to ``per_kind`` matched and mismatched pairs from pairs.txt whose images exist here,
    spread over the ten folds."""

    def image(name: str, number: str) -> Path:
        return lfw / "lfw" / name / f"{name}_{int(number):04d}.jpg"

    lines = (lfw / "labels" / "pairs.txt").read_text().splitlines()[1:]
    matched, mismatched = [], []
    for line in lines:
        f = line.split()
        if len(f) == 3:
            matched.append(Pair(image(f[0], f[1]), image(f[0], f[2]), True))
        elif len(f) == 4:
            mismatched.append(Pair(image(f[0], f[1]), image(f[2], f[3]), False))
    out = []
    for pool in (matched, mismatched):
        usable = [p for p in pool if p.a.exists() and p.b.exists()]
        step = max(1, len(usable) // per_kind)
        out.extend(usable[::step][:per_kind])
    return out


def shrink_face_to(px: int) -> Callable[[np.ndarray], np.ndarray]:
    """Down-scale the whole photo so its face (about 0.45 of an LFW frame) is ``px`` wide."""

    def degrade(bgr: np.ndarray) -> np.ndarray:
        scale = px / (0.45 * bgr.shape[1])
        size = (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale))
        return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)

    return degrade


def blur(bgr: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(bgr, (0, 0), 3.0)


def jpeg_q10(bgr: np.ndarray) -> np.ndarray:
    data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 10])[1]
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "clean": None,
    "24px faces": shrink_face_to(24),
    "blur sigma 3": blur,
    "JPEG q10": jpeg_q10,
}


@dataclass
class Verification:
    condition: str
    pairs: int
    detected: int  # pairs where both faces were found
    accuracy: float  # at SFACE_THRESHOLD, over detected pairs
    same_mean: float
    different_mean: float


def _embedding(pipe: FacePipeline, bgr: np.ndarray, settings: DetectionSettings):  # type: ignore[no-untyped-def]
    prepared = pipe.prepare_pixels(bgr, settings)
    if not prepared.faces:
        return None
    # LFW frames are centred on the labelled person: take the face nearest the centre.
    h, w = bgr.shape[:2]
    face = min(
        prepared.faces,
        key=lambda f: (
            (f.box[0] + f.box[2] / 2 - w / 2) ** 2 + (f.box[1] + f.box[3] / 2 - h / 2) ** 2
        ),
    )
    return face.aligned


def _aligned_crops(
    pipe: FacePipeline, paths: list[Path], degrade: Callable[[np.ndarray], np.ndarray] | None
) -> list[np.ndarray | None]:
    # Small faces need the detector's minimum lowered; everything else is the service default.
    settings = DetectionSettings(min_face_size=8)
    out = []
    for path in paths:
        bgr = cv2.imread(str(path))
        out.append(_embedding(pipe, bgr if degrade is None else degrade(bgr), settings))
    return out


def verify_all(
    pipe: FacePipeline,
    pairs: list[Pair],
    conditions: dict[str, Callable[[np.ndarray], np.ndarray] | None] = DEGRADATIONS,
) -> list[Verification]:
    """One row per condition. The gallery photo (a) stays clean; the probe (b) is degraded."""
    gallery = _aligned_crops(pipe, [p.a for p in pairs], None)
    rows = []
    for condition, degrade in conditions.items():
        probes = _aligned_crops(pipe, [p.b for p in pairs], degrade)
        kept = [
            i
            for i, (a, b) in enumerate(zip(gallery, probes, strict=True))
            if a is not None and b is not None
        ]
        if not kept:
            rows.append(Verification(condition, len(pairs), 0, 0.0, 0.0, 0.0))
            continue
        ea = pipe.embed_crops_sync([gallery[i] for i in kept])  # type: ignore[misc]
        eb = pipe.embed_crops_sync([probes[i] for i in kept])  # type: ignore[misc]
        cos = (ea * eb).sum(1)
        same = np.array([pairs[i].same for i in kept])
        correct = (cos >= SFACE_THRESHOLD) == same
        rows.append(
            Verification(
                condition,
                len(pairs),
                len(kept),
                float(correct.mean()),
                float(cos[same].mean()) if same.any() else float("nan"),
                float(cos[~same].mean()) if (~same).any() else float("nan"),
            )
        )
    return rows


def format_table(rows: list[Verification]) -> str:
    lines = ["condition      pairs detected accuracy same_mean diff_mean"]
    for v in rows:
        lines.append(
            f"{v.condition:14s} {v.pairs:5d} {v.detected:8d} {v.accuracy:8.3f} "
            f"{v.same_mean:9.3f} {v.different_mean:9.3f}"
        )
    return "\n".join(lines)


def manifest_pairs(folder: Path, per_kind: int, seed: int = 0) -> list[Pair]:
    """Same-identity and different-identity pairs from a ../shared/data folder's manifest.csv."""
    import csv
    import itertools
    import random

    by_identity: dict[str, list[Path]] = {}
    with (folder / "manifest.csv").open() as f:
        for row in csv.DictReader(f):
            if row["identity"]:
                by_identity.setdefault(row["identity"], []).append(folder / row["relative_path"])
    rng = random.Random(seed)
    same = [
        Pair(a, b, True)
        for paths in by_identity.values()
        for a, b in itertools.combinations(paths, 2)
    ]
    rng.shuffle(same)
    ids = sorted(by_identity)
    different = []
    while len(different) < per_kind and len(ids) > 1:
        x, y = rng.sample(ids, 2)
        different.append(Pair(rng.choice(by_identity[x]), rng.choice(by_identity[y]), False))
    return same[:per_kind] + different
