"""Id-CLIP's metrics for an imported image-text model, computed on its ONNX towers with the
embedder's own preprocessing and tokenizer (what the service serves):

- text -> image recall@1/5/10/50 on MM-CelebA-HQ (every caption of an image is a query whose
  answer is that image):

      python -m bench.idclip.recall --model-dir models --model-id ID \\
          --captions ../shared/data/mm_celeba_hq_captions

- identity recall@k (Id-CLIP: correct / min(k, #relevant), the relevant images being the
  query person's), mAP@10 and text -> image recall@k, on (image, caption with the placeholder,
  face, person) triples after `facesearch train idclip` (the triples' format:
  services/embedder/idclip_train.py; "person" names whose photo it is):

      python -m bench.idclip.recall --model-dir models --model-id ID --triples held_out.jsonl

Random weights score at chance; the figures mean something only with an operator's weights.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from facesearch_server.embedder import image_text
from facesearch_server.embedder.clip_tokenizer import ClipTokenizer
from facesearch_server.embedder.idclip_train import embed_faces

KS = (1, 5, 10, 50)
BATCH = 64


class Towers:
    def __init__(self, model_dir: Path, model_id: str) -> None:
        self.card = image_text.load_card(model_dir, model_id)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.image = ort.InferenceSession(str(model_dir / image_text.image_file(model_id)), opts)
        self.text = ort.InferenceSession(str(model_dir / image_text.text_file(model_id)), opts)
        self.tokenizer = ClipTokenizer(
            model_dir / image_text.tokenizer_file(model_id),
            self.card.context_length,
            self.card.cleaning,
        )

    def images(self, paths: list[Path]) -> np.ndarray:
        out = []
        for i in range(0, len(paths), BATCH):
            pixels = np.stack(
                [
                    image_text.preprocess(Image.open(p).convert("RGB"), self.card)
                    for p in paths[i : i + BATCH]
                ]
            )
            out.append(self.image.run(None, {image_text.IMAGE_INPUT: pixels})[0])
        return np.concatenate(out)

    def texts(self, texts: list[str], faces: np.ndarray | None = None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), BATCH):
            feeds = {image_text.TEXT_INPUT: self.tokenizer.encode(texts[i : i + BATCH])}
            if self.card.identity is not None:
                dim = self.card.identity.face_dim
                part = faces[i : i + BATCH] if faces is not None else None
                feeds[image_text.IDENTITY_INPUT] = (
                    part if part is not None else np.zeros((len(feeds["input_ids"]), dim))
                ).astype(np.float32)
            out.append(self.text.run(None, feeds)[0])
        return np.concatenate(out)


def recall_at(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Mean over queries of (relevant images in the top k) / min(k, #relevant): Id-CLIP's
    identity recall; with one relevant image per query, plain recall@k."""
    top = np.argsort(-scores, axis=1)[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).sum(1)
    return float(np.mean(hits / np.minimum(k, relevant.sum(1))))


def map_at(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    top = np.argsort(-scores, axis=1)[:, :k]
    rel = np.take_along_axis(relevant, top, axis=1).astype(float)
    precision = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (precision * rel).sum(1) / np.minimum(k, relevant.sum(1))
    return float(ap.mean())


def captions(towers: Towers, root: Path) -> dict[str, float]:
    paths, queries, answers = [], [], []
    with (root / "manifest.csv").open() as f:
        for row in csv.DictReader(f):
            paths.append(root / row["relative_path"])
            for i in range(1, 11):
                if row.get(f"caption_{i}"):
                    queries.append(row[f"caption_{i}"])
                    answers.append(len(paths) - 1)
    fits = [len(t) <= towers.card.context_length for t in towers.tokenizer.tokens(queries)]
    queries = [q for q, ok in zip(queries, fits, strict=True) if ok]
    answers = [a for a, ok in zip(answers, fits, strict=True) if ok]
    scores = towers.texts(queries) @ towers.images(paths).T
    relevant = np.zeros_like(scores, dtype=bool)
    relevant[np.arange(len(answers)), answers] = True
    out = {f"recall@{k}": recall_at(scores, relevant, k) for k in KS if k <= len(paths)}
    out.update(images=len(paths), queries=len(queries), too_long=len(fits) - sum(fits))
    return out


def identity(towers: Towers, path: Path, face_model_dir: Path) -> dict[str, float]:
    if towers.card.identity is None:
        raise SystemExit(
            f"{towers.card.model_id} has no identity translator: facesearch train idclip"
        )
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    gallery = list(dict.fromkeys(str(r["image"]) for r in rows))
    person_of = {str(r["image"]): str(r.get("person", r["image"])) for r in rows}
    faces = [r["face"] for r in rows]
    photos = {
        i: (path.parent / str(f)).resolve() for i, f in enumerate(faces) if isinstance(f, str)
    }
    if photos:
        embedded = embed_faces(
            list(photos.values()), towers.card.identity.face_model, face_model_dir
        )
        for i, vec in zip(photos, embedded, strict=True):
            faces[i] = vec
    face = np.asarray(faces, dtype=np.float32)
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    scores = (
        towers.texts([str(r["caption"]) for r in rows], face)
        @ towers.images([(path.parent / g).resolve() for g in gallery]).T
    )
    people = np.array([person_of[g] for g in gallery])
    wanted = np.array([person_of[str(r["image"])] for r in rows])
    relevant = people[None, :] == wanted[:, None]
    own = np.zeros_like(relevant)
    own[np.arange(len(rows)), [gallery.index(str(r["image"])) for r in rows]] = True
    out = {f"identity_recall@{k}": recall_at(scores, relevant, k) for k in KS if k <= len(gallery)}
    out["mAP@10"] = map_at(scores, relevant, min(10, len(gallery)))
    out.update({f"recall@{k}": recall_at(scores, own, k) for k in KS if k <= len(gallery)})
    out.update(images=len(gallery), queries=len(rows))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--captions", type=Path, help="MM-CelebA-HQ folder (manifest.csv)")
    parser.add_argument("--triples", type=Path, help="JSONL triples with a person each")
    parser.add_argument("--face-model-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    towers = Towers(args.model_dir, args.model_id)
    if args.captions:
        print(json.dumps({"captions": captions(towers, args.captions)}, indent=1))
    if args.triples:
        print(
            json.dumps({"identity": identity(towers, args.triples, args.face_model_dir)}, indent=1)
        )
    if not (args.captions or args.triples):
        parser.error("give --captions and/or --triples")


if __name__ == "__main__":
    main()
