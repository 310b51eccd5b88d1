"""Train Id-CLIP's identity translator for an imported image-text model, and export it inside
the model's text tower (a second input, ``identity``).

    python -m facesearch_server.embedder.idclip_train --model-dir DIR --model-id ID \\
        --checkpoint FILE --data TRIPLES.jsonl [--placeholder sks] [--epochs 10]
    facesearch train idclip ...        (the same command, run by the CLI)

ID is an image-text model that clip_import wrote into DIR from FILE (the same checkpoint: its
sha256 is checked against the card). CLIP stays frozen; only the translator (a face embedding
-> one token embedding, idclip_translator.py) and the loss's scale learn, with symmetric
InfoNCE on (image, caption with the placeholder, face embedding) triples, AdamW (Id-CLIP: lr
5e-5, batch 32, 10 epochs).

TRIPLES.jsonl, one triple a line, paths relative to the file:

    {"image": "photos/0001.jpg", "caption": "sks shaking hands at a summit",
     "face": "faces/anna.jpg"}

``face`` is a photo of the person (its largest face is embedded by the face model, SFace by
default) or the embedding itself, a list of numbers. Every caption must contain the
placeholder, which must be one token of the model's tokenizer.

What changes in DIR: ``ID-text.onnx`` gains the ``identity`` input (a text without the
placeholder gives the same vector as before, checked), ``ID.identity-translator.pt`` holds the
translator's weights, and the card gains ``identity`` (face model, placeholder) and
``identity_training``. The image tower, and so every scene vector stored, is unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facesearch_server.embedder import image_text
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.clip_tokenizer import ClipTokenizer
from facesearch_server.embedder.model_export import _atomic_write, _session

DEFAULT_PLACEHOLDER = "sks"
MIN_COSINE = 0.9999


class TrainingRefused(ValueError):
    """Data, model or checkpoint that cannot be trained on; the message says what to fix."""


@dataclass
class Triples:
    pixels: np.ndarray  # (n, 3, S, S): the image tower's input
    ids: np.ndarray  # (n, context_length) caption token ids
    faces: np.ndarray  # (n, face_dim) unit face embeddings
    images: list[str]


def placeholder_id(tokenizer: ClipTokenizer, placeholder: str) -> int:
    """The placeholder's one token id; TrainingRefused when the tokenizer splits it."""
    ids = tokenizer.tokens([placeholder])[0][1:-1]
    if len(ids) != 1:
        pieces = [tokenizer.piece(i) for i in ids]
        raise TrainingRefused(
            f"the placeholder {placeholder!r} is {len(ids)} tokens in this model's tokenizer "
            f"({', '.join(repr(p) for p in pieces)}), not one: the text tower has no such token "
            f"to replace; choose a word that is one rare token (e.g. {DEFAULT_PLACEHOLDER!r})"
        )
    return ids[0]


def read_triples(
    path: Path,
    card: image_text.ImageTextCard,
    tokenizer: ClipTokenizer,
    token: int,
    face_model: str,
    face_model_dir: Path,
) -> Triples:
    """The triples of ``path``, each checked (TrainingRefused naming the line and the fix)."""
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise TrainingRefused(f"--data {path}: cannot read it ({exc})") from exc
    if len(lines) < 2:
        raise TrainingRefused(f"--data {path}: {len(lines)} triple(s); training needs at least 2")
    pixels, texts, faces, images = [], [], [], []
    face_photos: dict[int, Path] = {}
    for n, line in enumerate(lines, 1):
        where = f"--data {path} line {n}"
        try:
            row = json.loads(line)
            image, caption, face = row["image"], row["caption"], row["face"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingRefused(
                f"{where}: not a JSON object with image, caption and face ({exc})"
            ) from exc
        image_path = (path.parent / str(image)).resolve()
        try:
            with Image.open(image_path) as im:
                pixels.append(image_text.preprocess(im.convert("RGB"), card))
        except OSError as exc:
            raise TrainingRefused(f"{where}: image {image_path} cannot be read ({exc})") from exc
        texts.append(str(caption))
        images.append(str(image))
        if isinstance(face, list):
            faces.append(np.asarray(face, dtype=np.float32))
        else:
            face_photos[len(faces)] = (path.parent / str(face)).resolve()
            faces.append(np.zeros(0, np.float32))
    ids = tokenizer.encode(texts, field=f"--data {path} captions")
    for n, row in enumerate(ids, 1):
        if token not in row:
            raise TrainingRefused(
                f"--data {path} line {n}: the caption {texts[n - 1]!r} lacks the placeholder "
                f"{tokenizer.piece(token).removesuffix('</w>')!r}: write the person as that word"
            )
    if face_photos:
        for i, vec in zip(
            face_photos,
            embed_faces(list(face_photos.values()), face_model, face_model_dir),
            strict=True,
        ):
            faces[i] = vec
    dims = {len(f) for f in faces}
    if len(dims) != 1:
        raise TrainingRefused(
            f"--data {path}: face embeddings of {sorted(dims)} values; all must be of the face "
            f"model ({face_model})"
        )
    matrix = np.stack(faces)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return Triples(np.stack(pixels), ids, matrix, images)


def embed_faces(photos: list[Path], face_model: str, model_dir: Path) -> list[np.ndarray]:
    """The largest face of each photo, embedded by ``face_model`` in-process."""
    from facesearch_server.embedder.pipeline import FacePipeline

    pipe = FacePipeline.local(model_dir, model_id=face_model)
    out = []
    for photo, result in zip(
        photos, pipe.embed_images_sync([p.read_bytes() for p in photos]), strict=True
    ):
        faces = getattr(result, "faces", None)
        if not faces:
            why = getattr(result, "message", "no face found")
            raise TrainingRefused(f"face photo {photo}: {why}: give a photo showing the person")
        largest = max(faces, key=lambda f: (f.box[2] * f.box[3]) if f.box else 0.0)
        out.append(np.asarray(largest.embedding, dtype=np.float32))
    return out


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from facesearch_server.embedder.clip_import import (
        export_onnx,
        file_sha256,
        load_model,
        register_config_dict,
    )
    from facesearch_server.embedder.idclip_translator import (
        IdentityTextTower,
        IdentityTokenError,
        Translator,
        text_width,
    )
    from facesearch_server.embedder.open_clip_env import import_open_clip

    model_dir, model_id = Path(args.model_dir), args.model_id
    try:
        card = image_text.load_card(model_dir, model_id)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingRefused(str(exc)) from exc
    if card.identity is not None and not args.replace:
        raise TrainingRefused(
            f"{model_id} already has an identity translator (placeholder "
            f"{card.identity.placeholder!r}); pass --replace to train a new one"
        )
    source = card.raw.get("source", {})
    if file_sha256(args.checkpoint) != source.get("checkpoint_sha256"):
        raise TrainingRefused(
            f"--checkpoint {args.checkpoint} is not the file {model_id} was imported from "
            f"({source.get('checkpoint')!r}, sha256 {str(source.get('checkpoint_sha256'))[:12]}"
            "...): the frozen CLIP must be the one whose image tower made the scene vectors"
        )
    tokenizer = ClipTokenizer(
        model_dir / image_text.tokenizer_file(model_id), card.context_length, card.cleaning
    )
    token = placeholder_id(tokenizer, args.placeholder)
    triples = read_triples(
        args.data, card, tokenizer, token, args.face_model, Path(args.face_model_dir)
    )

    open_clip = import_open_clip()
    # CLIP's own loss (symmetric InfoNCE: cross-entropy both ways over the scaled cosines, the
    # diagonal being the pairs), as open_clip trains with it.
    clip_loss = open_clip.ClipLoss()
    register_config_dict(open_clip, source["arch"], source["model_config"])
    clip = load_model(open_clip, args.checkpoint, source["arch"])
    try:
        width = text_width(clip)
    except IdentityTokenError as exc:
        raise TrainingRefused(str(exc)) from exc
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    for p in clip.parameters():
        p.requires_grad_(False)
    translator = Translator(triples.faces.shape[1], width)
    tower = IdentityTextTower(clip, translator, token)
    with torch.no_grad():
        images = clip.encode_image(torch.from_numpy(triples.pixels), normalize=True)
    ids = torch.from_numpy(triples.ids)
    faces = torch.from_numpy(triples.faces)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    optimiser = torch.optim.AdamW([*translator.parameters(), log_scale], lr=args.lr)
    n = len(ids)
    batch = min(args.batch_size, n)
    epoch_losses: list[float] = []
    steps = 0
    started = time.perf_counter()
    for _epoch in range(args.epochs):
        order = list(range(n))
        random.shuffle(order)
        losses = []
        for lo in range(0, n - 1, batch):
            rows = order[lo : lo + batch]
            if len(rows) < 2:
                continue  # one pair has no negative: no contrast to learn from
            loss = clip_loss(images[rows], tower(ids[rows], faces[rows]), log_scale.exp())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss))
            steps += 1
            if args.max_steps and steps >= args.max_steps:
                break
        epoch_losses.append(float(np.mean(losses)))
        print(f"epoch {len(epoch_losses)}: loss {epoch_losses[-1]:.4f}", flush=True)
        if args.max_steps and steps >= args.max_steps:
            break
    seconds = time.perf_counter() - started
    translator.eval()
    return export(
        model_dir,
        card,
        clip,
        tower,
        tokenizer,
        triples,
        args,
        epoch_losses,
        steps,
        seconds,
        export_onnx,
    )


def export(
    model_dir: Path,
    card: image_text.ImageTextCard,
    clip: Any,
    tower: Any,
    tokenizer: ClipTokenizer,
    triples: Triples,
    args: argparse.Namespace,
    losses: list[float],
    steps: int,
    seconds: float,
    export_onnx: Any,
) -> dict[str, Any]:
    """The text tower with the translator as ONNX, checked against PyTorch (with the
    placeholder) and against the tower it replaces (without); then the files and the card."""
    import torch
    import torch.nn.functional as F

    model_id = card.model_id
    ids = torch.from_numpy(triples.ids[:8])
    faces = torch.from_numpy(triples.faces[:8])
    plain_texts = ["a photo taken at a press conference", "two people shaking hands"]
    plain = torch.from_numpy(tokenizer.encode(plain_texts))
    zeros = torch.zeros(len(plain), triples.faces.shape[1])
    with torch.no_grad():
        expected = tower(ids, faces).numpy()
        expected_plain = F.normalize(clip.encode_text(plain), dim=-1).numpy()
    onnx_bytes = export_onnx(
        tower,
        (ids[:2], faces[:2]),
        [image_text.TEXT_INPUT, image_text.IDENTITY_INPUT],
        image_text.TEXT_OUTPUT,
    )
    session = _session(onnx_bytes)
    got = session.run(
        None, {image_text.TEXT_INPUT: ids.numpy(), image_text.IDENTITY_INPUT: faces.numpy()}
    )[0]
    got_plain = session.run(
        None, {image_text.TEXT_INPUT: plain.numpy(), image_text.IDENTITY_INPUT: zeros.numpy()}
    )[0]
    with_token = float((got * expected).sum(1).min())
    without_token = float((got_plain * expected_plain).sum(1).min())
    if not (with_token >= MIN_COSINE and without_token >= MIN_COSINE):
        raise TrainingRefused(
            f"the exported text tower differs from PyTorch (cosine {with_token:.6f} with the "
            f"identity token, {without_token:.6f} without): not written"
        )
    raw = dict(card.raw)
    raw["identity"] = {
        "face_model": args.face_model,
        "face_dim": int(triples.faces.shape[1]),
        "placeholder": args.placeholder,
        "placeholder_id": int(tower.placeholder_id),
        "translator": f"{tower.translator.face_dim} -> {tower.translator.width} (ReLU) -> "
        f"{tower.translator.width}, Id-CLIP's MLP",
        "weights": f"{model_id}.identity-translator.pt",
    }
    raw["identity_training"] = {
        "data": str(args.data),
        "triples": len(triples.ids),
        "epochs": len(losses),
        "steps": steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "loss_first_epoch": round(losses[0], 5),
        "loss_last_epoch": round(losses[-1], 5),
        "seconds": round(seconds, 1),
        "objective": "symmetric InfoNCE, learnable scale (init 1/0.07), CLIP frozen, AdamW",
        "verification": {
            "with_token_min_cosine": round(with_token, 7),
            "without_token_min_cosine": round(without_token, 7),
        },
    }
    import io

    buffer = io.BytesIO()
    torch.save(tower.translator.state_dict(), buffer)
    _atomic_write(buffer.getvalue(), model_dir / f"{model_id}.identity-translator.pt")
    _atomic_write(onnx_bytes, model_dir / image_text.text_file(model_id))
    _atomic_write(json.dumps(raw, indent=1).encode(), model_dir / image_text.card_file(model_id))
    return raw


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m facesearch_server.embedder.idclip_train",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--model-dir", type=Path, default=Path(mf.DEFAULT_MODEL_DIR))
    parser.add_argument("--model-id", required=True, help="the imported image-text model")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the file it came from")
    parser.add_argument("--data", type=Path, required=True, help="the triples (JSONL)")
    parser.add_argument("--placeholder", default=DEFAULT_PLACEHOLDER)
    parser.add_argument("--face-model", default=mf.SFACE, help="embeds the face photos")
    parser.add_argument(
        "--face-model-dir", default=mf.DEFAULT_MODEL_DIR, help="where the face model is"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replace", action="store_true", help="retrain an existing translator")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        raw = train(args)
    except (TrainingRefused, RuntimeError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    t = raw["identity_training"]
    print(
        f"trained {args.model_id}'s identity translator: loss {t['loss_first_epoch']} -> "
        f"{t['loss_last_epoch']} over {t['steps']} steps ({t['seconds']} s); text tower "
        f"written with input {image_text.IDENTITY_INPUT!r} (placeholder {args.placeholder!r})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
