"""Labelled training faces: one folder per person, each image detected and aligned the way the
embedder does it (YuNet landmarks -> the 112x112 SFace template), so training sees exactly the
crops the served model will see.

Alignment costs a detection per image; the crops are cached in the run's work folder
(``crops.npz``), keyed by the file list, so a resumed run does not detect again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch_server.embedder.face_alignment import align_face
from facesearch_server.embedder.face_detection import FaceDetector
from facesearch_server.embedder.image_decode import decode_image
from facesearch_server.embedder.pipeline import DetectionSettings, to_model_input

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MIN_IDENTITIES = 2  # a margin loss separates identities: one alone teaches nothing
MIN_IMAGES_PER_IDENTITY = 2  # and the contrastive term masks same-identity pairs


class TrainingDataError(ValueError):
    """The training folder cannot be trained on; the message says what to change."""


@dataclass
class FaceSet:
    crops: np.ndarray  # N x 3 x 112 x 112 uint8, RGB (the model's input, as float)
    labels: np.ndarray  # N int64, index into identities
    identities: list[str]
    files: list[str]  # relative to the root, one per crop
    skipped: list[str]  # files without a usable face (only with skip_faceless)


def list_images(root: Path) -> dict[str, list[Path]]:
    """Person name -> image files, from ``root/<person>/<image>``."""
    if not root.is_dir():
        raise TrainingDataError(f"{root} is not a folder of person folders")
    people = {
        d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    people = {k: v for k, v in people.items() if v}
    if len(people) < MIN_IDENTITIES:
        raise TrainingDataError(
            f"{root} has {len(people)} person folder(s) with images; training needs at least "
            f"{MIN_IDENTITIES} (one sub-folder per person, images inside)"
        )
    few = [k for k, v in people.items() if len(v) < MIN_IMAGES_PER_IDENTITY]
    if few:
        raise TrainingDataError(
            f"{len(few)} person folder(s) have fewer than {MIN_IMAGES_PER_IDENTITY} images "
            f"(e.g. {few[0]!r}); add images or remove those folders"
        )
    return people


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def aligned_crop(detector: FaceDetector, path: Path) -> np.ndarray | None:
    """The aligned BGR crop of the image's most confident face, or None when there is none."""
    bgr = decode_image(path.read_bytes(), str(path))
    d = DetectionSettings()
    found = detector.detect(bgr, d.score_threshold, d.min_face_size, max_faces=1)
    return align_face(bgr, found[0].landmarks) if found else None


def load_face_folders(
    root: Path,
    cache: Path | None = None,
    skip_faceless: bool = False,
    max_per_identity: int | None = None,
) -> FaceSet:
    """Detect and align every image; an image without a face is an error (it would be a
    silently wrong label otherwise) unless ``skip_faceless``, which lists it instead."""
    people = list_images(root)
    if max_per_identity:
        people = {k: v[:max_per_identity] for k, v in people.items()}
    files = [f for v in people.values() for f in v]
    key = _fingerprint(files)
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return FaceSet(
                    z["crops"],
                    z["labels"],
                    list(z["identities"]),
                    list(z["files"]),
                    list(z["skipped"]),
                )
    detector = FaceDetector()
    crops, labels, kept, skipped = [], [], [], []
    names = list(people)
    for label, name in enumerate(names):
        for f in people[name]:
            crop = aligned_crop(detector, f)
            rel = str(f.relative_to(root))
            if crop is None:
                skipped.append(rel)
                continue
            crops.append(crop)
            labels.append(label)
            kept.append(rel)
    if skipped and not skip_faceless:
        raise TrainingDataError(
            f"no face found in {len(skipped)} image(s), e.g. {skipped[0]!r}: remove them, or "
            "pass --skip-faceless to train without them"
        )
    counts = np.bincount(np.array(labels, dtype=np.int64), minlength=len(names))
    usable = [n for n, c in zip(names, counts, strict=True) if c >= MIN_IMAGES_PER_IDENTITY]
    if len(usable) < MIN_IDENTITIES:
        raise TrainingDataError(
            f"after face detection only {len(usable)} person(s) keep "
            f"{MIN_IMAGES_PER_IDENTITY}+ faces; training needs {MIN_IDENTITIES}"
        )
    faces = FaceSet(
        to_model_input(crops).astype(np.uint8),
        np.array(labels, dtype=np.int64),
        names,
        kept,
        skipped,
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache,
            key=key,
            crops=faces.crops,
            labels=faces.labels,
            identities=np.array(names),
            files=np.array(kept),
            skipped=np.array(skipped, dtype=str),
        )
    return faces
