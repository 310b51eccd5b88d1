"""The faces of the CoReFace evaluation: LFW split by identity, and the domains training never
sees (AT&T, Yale, Extended Yale B), detected and aligned as training aligns them.

The LFW split is a fixed hash of the person's name (``identity_part``), so it does not depend on
the order of the data or on a seed: about half of the people are held out for testing only,
a tenth (``val``) choose the hyperparameters and the other two fifths (``fit``) train.
No person is in two parts. Within a part, people are taken in the order of the same hash and
images in file-name order, so a smaller run is a subset of a larger one.

Aligned crops are cached under the cache folder, keyed by the file list.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch_server.embedder.face_detection import FaceDetector
from facesearch_server.embedder.pipeline import to_model_input
from facesearch_server.embedder.training.face_folders import aligned_crop

SPLIT_SALT = "coreface-split-v1"
HELD_OUT_SHARE = 0.5  # of LFW's people: test only
VAL_SHARE = 0.1  # of LFW's people: hyperparameter choice (the rest trains)
DOMAINS = ("att_faces", "yalefaces", "extended_yaleb_cropped")


def _unit(name: str) -> float:
    """A fixed pseudo-random number in [0, 1) for a person's name."""
    return int(hashlib.sha1(f"{SPLIT_SALT}:{name}".encode()).hexdigest()[:12], 16) / 16**12


def identity_part(name: str) -> str:
    """'held_out', 'val' or 'fit': the LFW person's part of the split."""
    u = _unit(name)
    if u < HELD_OUT_SHARE:
        return "held_out"
    return "val" if u < HELD_OUT_SHARE + VAL_SHARE else "fit"


@dataclass
class FaceList:
    """Images of one evaluation set: paths under ``root`` and the person in each."""

    name: str
    root: Path
    files: list[str]
    identities: list[str]

    def key(self) -> str:
        h = hashlib.sha1(str(self.root).encode())
        for f, who in zip(self.files, self.identities, strict=True):
            h.update(f"{f}\0{who}\n".encode())
        return h.hexdigest()[:16]


def _manifest(folder: Path) -> dict[str, list[str]]:
    people: dict[str, list[str]] = {}
    with (folder / "manifest.csv").open() as f:
        for row in csv.DictReader(f):
            if row["identity"]:
                people.setdefault(row["identity"], []).append(row["relative_path"])
    return {k: sorted(v) for k, v in people.items()}


def lfw_parts(
    lfw: Path, people: dict[str, int], per_person: dict[str, int], min_images: dict[str, int]
) -> dict[str, FaceList]:
    """For each part ('fit', 'val', 'held_out'): up to ``people[part]`` persons with at least
    ``min_images[part]`` images, their first ``per_person[part]`` images."""
    by_person = _manifest(lfw)
    out = {}
    for part in ("fit", "val", "held_out"):
        chosen = sorted(
            (n for n, f in by_person.items() if identity_part(n) == part),
            key=_unit,
        )
        chosen = [n for n in chosen if len(by_person[n]) >= min_images[part]][: people[part]]
        files = [f for n in chosen for f in by_person[n][: per_person[part]]]
        ids = [n for n in chosen for _ in by_person[n][: per_person[part]]]
        out[part] = FaceList(f"lfw-{part}", lfw, files, ids)
    return out


def domain_faces(folder: Path, people: int | None = None) -> FaceList:
    """Every image of a ../shared/data folder (or of its first ``people`` persons)."""
    by_person = _manifest(folder)
    names = sorted(by_person)[:people]
    return FaceList(
        folder.name,
        folder,
        [f for n in names for f in by_person[n]],
        [n for n in names for _ in by_person[n]],
    )


@dataclass
class AlignedFaces:
    """The detected faces of a FaceList: crops (model input, uint8) and who they are; images
    without a face are counted, not guessed."""

    name: str
    crops: np.ndarray  # N x 3 x 112 x 112 uint8 RGB
    identities: np.ndarray  # N str
    files: np.ndarray  # N str, relative to the set's root
    missed: int  # images without a detected face

    def labels(self) -> np.ndarray:
        """Identities as 0..K-1."""
        return np.unique(self.identities, return_inverse=True)[1].astype(np.int64)


def align(
    faces: FaceList, cache_dir: Path, log: Callable[[str], None], detector: FaceDetector
) -> AlignedFaces:
    path = cache_dir / f"crops-{faces.name}-{faces.key()}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return AlignedFaces(
                faces.name, z["crops"], z["identities"], z["files"], int(z["missed"])
            )
    log(f"aligning {len(faces.files)} images of {faces.name} ...")
    crops, ids, files = [], [], []
    for i, (rel, who) in enumerate(zip(faces.files, faces.identities, strict=True)):
        crop = aligned_crop(detector, faces.root / rel)
        if crop is not None:
            crops.append(crop)
            ids.append(who)
            files.append(rel)
        if (i + 1) % 200 == 0:
            log(f"  {i + 1}/{len(faces.files)}")
    out = AlignedFaces(
        faces.name,
        to_model_input(crops).astype(np.uint8),
        np.array(ids, dtype=str),
        np.array(files, dtype=str),
        len(faces.files) - len(crops),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, crops=out.crops, identities=out.identities, files=out.files, missed=out.missed)
    return out


def image_seed(name: str, rel: str) -> int:
    """A fixed seed per evaluation image (its degradation is the same in every run)."""
    return int(hashlib.sha1(f"{name}:{rel}".encode()).hexdigest()[:8], 16)
