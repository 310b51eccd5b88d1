"""Fine-tune the face encoder (SFace) on labelled face folders with the CoReFace objective.

Python entry point::

    from facesearch_server.embedder.training.train import TrainConfig, train_face_encoder
    result = train_face_encoder(TrainConfig(data=Path("faces"), work_dir=Path("runs/a"),
                                            model_id="sface-archive-v1"))

It converts SFace from the shipped ONNX (checking the conversion on the training faces),
trains, checkpoints into ``work_dir`` (resumed from there when the same run is started
again), then exports ``<model_id>.onnx`` and its card into ``model_dir`` (export.py), where the
embedder serves it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.training.augment import augment, augmenter
from facesearch_server.embedder.training.face_folders import FaceSet, load_face_folders
from facesearch_server.embedder.training.objective import CoReFaceObjective
from facesearch_server.embedder.training.sface_torch import (
    SFaceNet,
    check_against_onnx,
    from_onnx,
)

CONVERSION_MIN_COSINE = 0.9999
CHECKPOINT = "checkpoint.pt"
MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
PROBE_IMAGES = 64  # the fixed batch the eval loss is measured on


@dataclass
class TrainConfig:
    data: Path  # one folder per person
    work_dir: Path  # checkpoint, aligned-crop cache, run log
    model_id: str  # the new model's id, e.g. "sface-archive-v1"
    model_dir: Path = Path(mf.DEFAULT_MODEL_DIR)  # where the ONNX + card are written
    epochs: int = 5
    batch_size: int = 32
    per_identity: int = 2  # images of one person per batch (MPerClassSampler's m)
    lr: float = 1e-4  # encoder (Adam)
    centre_lr: float = 1e-3  # ArcFace class centres
    train_convs: int = 6  # last conv layers trained (+ head); -1 = all; 0 = head only
    contrastive_weight: float = 0.05  # 0 = ArcFace only (the baseline)
    augment: bool = True
    archival: bool = False  # grey + grain + blur augmentation
    max_steps: int | None = None  # stop early (tests, smoke runs)
    max_per_identity: int | None = None
    skip_faceless: bool = False
    checkpoint_every: int = 50
    seed: int = 0
    device: str = "auto"
    export: bool = True
    # ArcFace's class centres start at each person's mean SFace embedding (fast, keeps the
    # encoder from chasing random centres); off = PML's random initialisation.
    init_centres: bool = True

    def check(self) -> None:
        if not MODEL_ID.fullmatch(self.model_id):
            raise ValueError(
                f"model id {self.model_id[:80]!r} must be 1-63 of a-z 0-9 . _ - and start with "
                "a letter or digit (it names a file and a Triton model)"
            )
        if self.model_id in mf.ENCODERS or self.model_id == mf.YUNET:
            raise ValueError(f"model id {self.model_id!r} is a shipped model; pick a new one")
        if self.per_identity < 2:
            raise ValueError("per_identity must be at least 2 (pairs of one person per batch)")
        if self.batch_size < 2 * self.per_identity:
            raise ValueError(
                f"batch_size {self.batch_size} must hold two people of {self.per_identity}"
            )


@dataclass
class TrainResult:
    steps: int
    epochs_done: int
    eval_loss_before: float
    eval_loss_after: float
    conversion_cosine: float
    seconds_per_step: float
    onnx_path: Path | None
    card_path: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _freeze(net: SFaceNet, train_convs: int) -> None:
    """Train only the last ``train_convs`` conv layers (with their BN and PReLU) and the head:
    on CPU a full backward pass is slow, and a few identities cannot re-learn early filters."""
    if train_convs < 0:
        return
    convs = [i for i, m in enumerate(net.features) if isinstance(m, torch.nn.Conv2d)]
    first = convs[-train_convs] if 0 < train_convs <= len(convs) else len(net.features)
    for i, module in enumerate(net.features):
        for p in module.parameters():
            p.requires_grad_(i >= first)


def _probe(faces: FaceSet) -> np.ndarray:
    # Spread over identities so the probe loss is not one person's.
    order = np.argsort(np.arange(len(faces.labels)) % max(1, len(faces.identities)), kind="stable")
    return np.sort(order[:PROBE_IMAGES])


def _batches(labels: np.ndarray, cfg: TrainConfig, epoch: int) -> list[list[int]]:
    return per_class_batches(labels, cfg.batch_size, cfg.per_identity, cfg.seed * 1000 + epoch)


def per_class_batches(
    labels: np.ndarray, batch_size: int, per_identity: int, seed: int
) -> list[list[int]]:
    """One epoch of MPerClassSampler batches (``per_identity`` images of each person drawn);
    also what cached_features trains on."""
    classes = len(np.unique(labels))
    size = min(batch_size, per_identity * classes)
    size -= size % per_identity
    length = max(size, len(labels) - len(labels) % size)
    # The sampler draws from Python's and numpy's global generators: seed them per epoch so a
    # resumed run replays the same batches.
    random.seed(seed)
    np.random.seed(seed)
    sampler = _per_class_sampler()(
        labels, per_identity, batch_size=size, length_before_new_iter=length
    )
    idx = list(iter(sampler))
    return [idx[i : i + size] for i in range(0, len(idx) - size + 1, size)]


def _per_class_sampler() -> type:
    """pytorch-metric-learning's MPerClassSampler, imported without its side effect: the
    samplers package imports the library's testers, which import faiss.contrib.torch_utils,
    and that rewires every faiss index in the process to return torch tensors (the
    retriever's code, in the same test process, then breaks). A stand-in module answers that
    one import while the samplers load; a later real import of torch_utils still works."""
    import sys
    import types

    name = "faiss.contrib.torch_utils"
    stand_in = name not in sys.modules
    if stand_in:
        sys.modules[name] = types.ModuleType(name)
    try:
        from pytorch_metric_learning.samplers import MPerClassSampler
    finally:
        if stand_in:
            del sys.modules[name]
    return MPerClassSampler


def _save(path: Path, state: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


def train_face_encoder(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    cfg.check()
    torch.manual_seed(cfg.seed)
    device = _device(cfg.device)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    log(f"aligning faces under {cfg.data} ...")
    faces = load_face_folders(
        cfg.data, cfg.work_dir / "crops.npz", cfg.skip_faceless, cfg.max_per_identity
    )
    for rel in faces.skipped:
        log(f"skipped (no face): {rel}")
    log(f"{len(faces.labels)} faces of {len(faces.identities)} people")

    net = from_onnx(mf.sface_source())
    probe = _probe(faces)
    cosine = check_against_onnx(net, mf.sface_source(), faces.crops[probe[:8]].astype(np.float32))
    if cosine < CONVERSION_MIN_COSINE:
        raise RuntimeError(f"SFace converted to PyTorch differs from the ONNX (cosine {cosine})")
    log(f"SFace in PyTorch matches the ONNX file (lowest cosine {cosine:.7f})")
    # BatchNorm keeps SFace's running statistics (eval mode throughout): batches of a few
    # people would only pull them off; dropout is drawn explicitly by the objective.
    net.eval().to(device)
    _freeze(net, cfg.train_convs)
    objective = CoReFaceObjective(len(faces.identities), 128, cfg.contrastive_weight).to(device)

    images = torch.from_numpy(faces.crops)
    labels = torch.from_numpy(faces.labels)
    probe_x = images[probe].float().to(device)
    probe_y = labels[probe].to(device)
    with torch.no_grad():  # only the centre initialisation needs them
        all_emb = torch.cat(
            [net(images[i : i + 64].float().to(device)) for i in range(0, len(images), 64)]
        )
    if cfg.init_centres:
        objective.init_class_centres(all_emb, labels.to(device))
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in net.parameters() if p.requires_grad], "lr": cfg.lr},
            {"params": objective.parameters(), "lr": cfg.centre_lr},
        ]
    )
    eval_before = objective.eval_loss(net, probe_x, probe_y)

    ckpt_path = cfg.work_dir / CHECKPOINT
    start_epoch, start_batch, step, history = 0, 0, 0, []
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["identities"] != faces.identities:
            raise ValueError(
                f"{ckpt_path} was trained on other people; use a new --work-dir or delete it"
            )
        net.load_state_dict(state["net"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        eval_before, history = state["eval_loss_before"], state["history"]
        log(f"resumed from {ckpt_path} at epoch {start_epoch + 1}, step {step}")

    def checkpoint(epoch: int, batch: int) -> None:
        _save(
            ckpt_path,
            {
                "net": net.state_dict(),
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "batch": batch,
                "step": step,
                "identities": faces.identities,
                "eval_loss_before": eval_before,
                "history": history,
                "config": {k: str(v) for k, v in dataclasses.asdict(cfg).items()},
            },
        )

    aug = augmenter(cfg.archival).to(device) if cfg.augment else None
    objective.train()
    started, steps_here = time.perf_counter(), 0
    epoch = start_epoch
    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        batches = _batches(faces.labels, cfg, epoch)
        for b, idx in enumerate(batches):
            if epoch == start_epoch and b < start_batch:
                continue  # done before the resume
            x = images[idx].float().to(device)
            if aug is not None:
                x = augment(aug, x)
            loss, parts = objective(net, x, labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            steps_here += 1
            history.append({"step": step, "epoch": epoch + 1, **parts})
            log(
                f"epoch {epoch + 1}/{cfg.epochs} batch {b + 1}/{len(batches)} step {step}: "
                + " ".join(f"{k} {v:.4f}" for k, v in parts.items())
            )
            if cfg.max_steps is not None and step >= cfg.max_steps:
                checkpoint(epoch, b + 1)
                stopped = True
                break
            if step % cfg.checkpoint_every == 0:
                checkpoint(epoch, b + 1)
        if stopped:
            break
        checkpoint(epoch + 1, 0)
        log(f"epoch {epoch + 1} done; eval loss {objective.eval_loss(net, probe_x, probe_y):.4f}")
    per_step = (time.perf_counter() - started) / max(1, steps_here)
    objective.eval()
    eval_after = objective.eval_loss(net, probe_x, probe_y)
    log(f"eval loss (ArcFace, no dropout) {eval_before:.4f} -> {eval_after:.4f}")

    epochs_done = epoch + (0 if stopped else 1)
    onnx_path = card_path = None
    if cfg.export:
        from facesearch_server.embedder.training.export import export_encoder

        summary = {
            "data": str(cfg.data),
            "identities": len(faces.identities),
            "images": len(faces.labels),
            "skipped_without_face": len(faces.skipped),
            "steps": step,
            "epochs_completed": epochs_done,
            "stopped_after_steps": cfg.max_steps if stopped else None,
            "eval_loss_before": eval_before,
            "eval_loss_after": eval_after,
            "conversion_cosine": cosine,
            "config": {k: str(v) for k, v in dataclasses.asdict(cfg).items()},
        }
        onnx_path, card_path = export_encoder(
            net.cpu(), cfg.model_id, cfg.model_dir, probe_x.cpu().numpy(), summary
        )
        log(f"wrote {onnx_path} and {card_path}")
        (cfg.work_dir / "run.json").write_text(json.dumps(summary, indent=1) + "\n")
    return TrainResult(
        steps=step,
        epochs_done=epochs_done,
        eval_loss_before=eval_before,
        eval_loss_after=eval_after,
        conversion_cosine=cosine,
        seconds_per_step=per_step,
        onnx_path=onnx_path,
        card_path=card_path,
        history=history,
    )
