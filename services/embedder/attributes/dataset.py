"""Embed the CelebA attribute folder once, clean and degraded, for training the attribute
model and for bench/tgfr: every image's aligned face (the detected face nearest the centre),
its SFace embedding under each degradation of the aligned crop, and the 40 CelebA labels.

``python -m facesearch_server.embedder.attributes.dataset --data ../shared/data/celeba_attributes
--out bench/.cache/tgfr/celeba_attributes.npz``

Degradations act on the aligned 112x112 crop (a face of N px is the crop shrunk to N px and
brought back up, as the encoder would see it), so "16 px" means a 16 px face whatever the
photo's framing; the whole-photo path (detection included) is measured separately.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facesearch_server.embedder.face_alignment import CROP_SIZE
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline

CropDegradation = Callable[[np.ndarray], np.ndarray]

_DETECT = DetectionSettings(min_face_size=8, score_threshold=0.5)


def shrink(px: int) -> CropDegradation:
    def degrade(crop: np.ndarray) -> np.ndarray:
        small = cv2.resize(crop, (px, px), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)

    return degrade


def blur(sigma: float) -> CropDegradation:
    return lambda crop: cv2.GaussianBlur(crop, (0, 0), sigma)


def jpeg(quality: int) -> CropDegradation:
    def degrade(crop: np.ndarray) -> np.ndarray:
        data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    return degrade


def noise(sigma: float, seed: int = 0) -> CropDegradation:
    rng = np.random.default_rng(seed)

    def degrade(crop: np.ndarray) -> np.ndarray:
        noisy = crop.astype(np.float32) + rng.normal(0, sigma, crop.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)

    return degrade


CONDITIONS: dict[str, CropDegradation] = {
    "clean": lambda crop: crop,
    "24px": shrink(24),
    "16px": shrink(16),
    "12px": shrink(12),
    "blur3": blur(3.0),
    "blur5": blur(5.0),
    "jpeg10": jpeg(10),
    "noise20": noise(20.0),
}


@dataclass
class AttributeSet:
    """Row i: ``paths[i]`` of ``identities[i]``; ``labels[i]`` the 40 CelebA attributes (+1/-1,
    0 where the image has none); per condition the embedding of the degraded aligned crop
    and its quality score."""

    paths: np.ndarray
    identities: np.ndarray
    label_names: np.ndarray
    labels: np.ndarray
    crops: np.ndarray
    embeddings: dict[str, np.ndarray]
    quality: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "paths": self.paths,
            "identities": self.identities,
            "label_names": self.label_names,
            "labels": self.labels,
            "crops": self.crops,
        }
        for name, emb in self.embeddings.items():
            arrays[f"emb:{name}"] = emb
            arrays[f"q:{name}"] = self.quality[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> AttributeSet:
        z = np.load(path, allow_pickle=False)
        names = [k.split(":", 1)[1] for k in z.files if k.startswith("emb:")]
        return cls(
            paths=z["paths"],
            identities=z["identities"],
            label_names=z["label_names"],
            labels=z["labels"],
            crops=z["crops"],
            embeddings={n: z[f"emb:{n}"] for n in names},
            quality={n: z[f"q:{n}"] for n in names},
        )


def _central_face(pipe: FacePipeline, data: bytes) -> np.ndarray | None:
    image = pipe.prepare_image(data, _DETECT)
    if not image.faces:
        return None
    cx, cy = image.width / 2, image.height / 2

    def off_centre(face) -> float:  # type: ignore[no-untyped-def]
        x, y, w, h = face.box
        return (x + w / 2 - cx) ** 2 + (y + h / 2 - cy) ** 2 - (w * h)

    return min(image.faces, key=off_centre).aligned


def build(folder: Path, pipe: FacePipeline, conditions: list[str]) -> AttributeSet:
    from facesearch_server.embedder.face_quality import face_quality

    with (folder / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    label_names = [
        c
        for c in rows[0]
        if c not in {"relative_path", "identity", "celeba_filename", "has_attributes"}
    ]
    paths, ids, labels, crops = [], [], [], []
    t0 = time.monotonic()
    for i, row in enumerate(rows):
        crop = _central_face(pipe, (folder / row["relative_path"]).read_bytes())
        if crop is None:
            continue
        paths.append(row["relative_path"])
        ids.append(row["identity"])
        labels.append([int(row[n]) if row["has_attributes"] == "1" else 0 for n in label_names])
        crops.append(crop)
        if i % 100 == 0:
            print(f"detected {i}/{len(rows)} in {time.monotonic() - t0:.0f} s", flush=True)
    crop_arr = np.stack(crops)
    embeddings, quality = {}, {}
    for name in conditions:
        degraded = [CONDITIONS[name](c) for c in crop_arr]
        embeddings[name] = pipe.embed_crops_sync(degraded)
        # A shrunk face's size is its pixels, not the 112 it was brought back up to.
        size = float(name.removesuffix("px")) if name.endswith("px") else float(CROP_SIZE)
        quality[name] = np.array([face_quality(c, size).score for c in degraded], np.float32)
        print(f"embedded {name} in {time.monotonic() - t0:.0f} s", flush=True)
    return AttributeSet(
        paths=np.array(paths),
        identities=np.array(ids),
        label_names=np.array(label_names),
        labels=np.array(labels, dtype=np.int8),
        crops=crop_arr,
        embeddings=embeddings,
        quality=quality,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--conditions", nargs="*", default=list(CONDITIONS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    pipe = FacePipeline.local(args.model_dir, threads=args.threads)
    build(args.data, pipe, args.conditions).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
