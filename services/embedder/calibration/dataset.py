"""Embed a labelled face folder (its ``manifest.csv``: ``relative_path``, ``identity``) under
each degradation, with the service's own detection, alignment, quality and encoder, and keep
the result in one ``.npz`` so fitting and benchmarks never embed twice."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.calibration import label_errors
from facesearch_server.embedder.calibration.degradations import CONDITIONS, Degradation
from facesearch_server.embedder.face_quality import face_quality
from facesearch_server.embedder.pipeline import DetectionSettings, FacePipeline

# Small faces need the detector's floor lowered to be found at all; their quality is still
# scored exactly as the service scores it (face_quality's defaults).
_DETECT = DetectionSettings(min_face_size=8, score_threshold=0.5)


@dataclass
class EmbeddedSet:
    """Row i: image ``paths[i]`` of ``identities[i]``; per condition an embedding (NaN when no
    face was found), the face's quality score, size and detection score. Loading corrects the
    labelled set's known errors (``label_errors``). ``model_id``: the face encoder that made the
    embeddings (a cache saved before it was recorded holds SFace's)."""

    paths: np.ndarray
    identities: np.ndarray
    embeddings: dict[str, np.ndarray]
    quality: dict[str, np.ndarray]
    face_size: dict[str, np.ndarray]
    detection: dict[str, np.ndarray]
    model_id: str = mf.SFACE

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "paths": self.paths,
            "identities": self.identities,
            "model_id": np.array(self.model_id),
        }
        for name in self.embeddings:
            arrays[f"emb:{name}"] = self.embeddings[name]
            arrays[f"q:{name}"] = self.quality[name]
            arrays[f"size:{name}"] = self.face_size[name]
            arrays[f"det:{name}"] = self.detection[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> EmbeddedSet:
        z = np.load(path, allow_pickle=False)
        names = [k.split(":", 1)[1] for k in z.files if k.startswith("emb:")]
        return cls(
            paths=z["paths"],
            identities=label_errors.corrected(z["paths"], z["identities"]),
            embeddings={n: z[f"emb:{n}"] for n in names},
            quality={n: z[f"q:{n}"] for n in names},
            face_size={n: z[f"size:{n}"] for n in names},
            detection={n: z[f"det:{n}"] for n in names},
            model_id=str(z["model_id"]) if "model_id" in z.files else mf.SFACE,
        )

    @classmethod
    def concat(cls, parts: list[EmbeddedSet]) -> EmbeddedSet:
        models = {p.model_id for p in parts}
        if len(models) > 1:
            raise ValueError(f"parts embedded by different face models: {sorted(models)}")
        names = parts[0].conditions
        return cls(
            paths=np.concatenate([p.paths for p in parts]),
            identities=np.concatenate([p.identities for p in parts]),
            embeddings={n: np.concatenate([p.embeddings[n] for p in parts]) for n in names},
            quality={n: np.concatenate([p.quality[n] for p in parts]) for n in names},
            face_size={n: np.concatenate([p.face_size[n] for p in parts]) for n in names},
            detection={n: np.concatenate([p.detection[n] for p in parts]) for n in names},
            model_id=parts[0].model_id,
        )

    @property
    def conditions(self) -> list[str]:
        return list(self.embeddings)


def read_manifest(folder: Path) -> tuple[list[Path], list[str]]:
    with (folder / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("identity")]
    return [folder / r["relative_path"] for r in rows], [r["identity"] for r in rows]


def central_face(pipe: FacePipeline, bgr: np.ndarray):  # type: ignore[no-untyped-def]
    """The face nearest the frame's centre: labelled sets centre the labelled person."""
    faces = pipe.prepare_pixels(bgr, _DETECT).faces
    if not faces:
        return None
    h, w = bgr.shape[:2]

    def off_centre(f) -> float:  # type: ignore[no-untyped-def]
        return (f.box[0] + f.box[2] / 2 - w / 2) ** 2 + (f.box[1] + f.box[3] / 2 - h / 2) ** 2

    return min(faces, key=off_centre)


def embed_folder(
    pipe: FacePipeline,
    folder: Path,
    conditions: dict[str, Degradation] | None = None,
    limit: int = 0,
    progress: bool = True,
    start: int = 0,
) -> EmbeddedSet:
    """Rows ``start`` .. ``start + limit`` of the manifest (all with the defaults), embedded by
    the pipeline's default face model; parts embedded in parallel processes join with
    ``EmbeddedSet.concat``."""
    conditions = conditions or CONDITIONS
    paths, identities = read_manifest(folder)
    stop = start + limit if limit else len(paths)
    paths, identities = paths[start:stop], identities[start:stop]
    n, dim = len(paths), pipe.face_models[pipe.model_id].dimension
    out = EmbeddedSet(
        paths=np.array([str(p.relative_to(folder)) for p in paths]),
        identities=np.array(identities),
        embeddings={c: np.full((n, dim), np.nan, np.float32) for c in conditions},
        quality={c: np.full(n, np.nan, np.float32) for c in conditions},
        face_size={c: np.full(n, np.nan, np.float32) for c in conditions},
        detection={c: np.full(n, np.nan, np.float32) for c in conditions},
        model_id=pipe.model_id,
    )
    started = time.monotonic()
    for i, path in enumerate(paths):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        crops, rows = [], []
        for name, degrade in conditions.items():
            face = central_face(pipe, degrade(bgr))
            if face is None:
                continue
            size = min(face.box[2], face.box[3])
            out.quality[name][i] = face_quality(face.aligned, size).score
            out.face_size[name][i] = size
            out.detection[name][i] = face.detection_score
            crops.append(face.aligned)
            rows.append(name)
        if crops:
            vectors = pipe.embed_crops_sync(crops)
            for name, vec in zip(rows, vectors, strict=True):
                out.embeddings[name][i] = vec
        if progress and (i + 1) % 250 == 0:
            rate = (i + 1) / (time.monotonic() - started)
            print(f"  {i + 1}/{n} images ({rate:.1f}/s)", flush=True)
    return out
