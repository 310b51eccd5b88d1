"""Train the end of SFace on cached activations of its frozen front.

With ``train_convs`` 0 (the head: Flatten, Linear, BatchNorm after the dropout) or a few last
conv layers trained, the frozen layers before them give the same activations for an image
every step. On a CPU they are nearly all of the cost (a full step is seconds, train.py), so
they are computed once per image and per augmented view (``cache_activations``) and training
then runs only the trainable end (``CachedTail``) on those: the same objective
(``CoReFaceObjective``, both dropout views drawn on the last feature map as in train.py), the
same MPerClassSampler batches, the same centre initialisation and optimiser. What it gives up
is fresh augmentation every step: each image has ``views`` augmented versions, drawn once.

The weights trained are the network's own (``CachedTail`` shares its modules), so the result
exports with export.py like a train.py run.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facesearch_server.embedder.training.objective import CONTRASTIVE_WEIGHT, CoReFaceObjective
from facesearch_server.embedder.training.sface_torch import SFaceNet
from facesearch_server.embedder.training.train import per_class_batches

PREFIX_MIN_COSINE = 0.9999  # onnxruntime's front against PyTorch's, as the conversion check


def split_index(net: SFaceNet, train_convs: int) -> int:
    """The first trained layer of ``net.features``, by train.py's rule (its ``_freeze``): the
    last ``train_convs`` conv layers and all after them; 0 = none (head only)."""
    convs = [i for i, m in enumerate(net.features) if isinstance(m, nn.Conv2d)]
    if not 0 <= train_convs <= len(convs):
        raise ValueError(
            f"train_convs {train_convs}: cached training needs a frozen front, so 0 (head "
            f"only) to {len(convs)} last conv layers"
        )
    return convs[-train_convs] if train_convs else len(net.features)


class CachedTail(nn.Module):
    """The trainable end of ``net``, fed with cached activations of layer ``split``'s input.

    It answers ``feature_map`` and ``embed`` as SFaceNet does, so CoReFaceObjective trains it
    unchanged; its modules are ``net``'s own, so training it trains ``net``.

    It stays in eval mode (``train`` is a no-op): BatchNorm keeps SFace's running statistics
    and the dropout views are drawn explicitly, as in train.py; a BatchNorm switched to batch
    statistics would also change ``net``, which shares it."""

    def __init__(self, net: SFaceNet, split: int) -> None:
        super().__init__()
        self.tail = nn.Sequential(*list(net.features)[split:])
        self.head = net.head
        self.dropout = net.dropout
        super().train(False)

    def train(self, mode: bool = True) -> CachedTail:
        return super().train(False)

    def feature_map(self, cached: torch.Tensor) -> torch.Tensor:
        return self.tail(cached)

    def embed(self, fmap: torch.Tensor, drop: bool) -> torch.Tensor:
        return self.head(F.dropout(fmap, self.dropout, training=drop))

    def forward(self, cached: torch.Tensor) -> torch.Tensor:
        """The embedding without dropout (what the exported model computes)."""
        return self.embed(self.feature_map(cached), drop=False)


def front_runner(
    net: SFaceNet, split: int, onnxruntime: bool = True, threads: int = 0
) -> Callable[[np.ndarray], np.ndarray]:
    """A function from images (N x 3 x 112 x 112, 0..255) to the activations at ``split``.

    onnxruntime runs SFace's front about twice as fast as PyTorch on a CPU; the exported front
    is checked against PyTorch's on a sample before it is used (cosine per image)."""
    front = nn.Sequential(*list(net.features)[:split]).eval()
    if not onnxruntime:

        def run_torch(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return front(torch.from_numpy(images.astype(np.float32))).numpy()

        return run_torch
    import onnxruntime as ort

    sample = torch.rand(2, 3, 112, 112) * 255
    buf = io.BytesIO()
    with torch.no_grad():
        expected = front(sample).flatten(1)
        torch.onnx.export(
            front,
            (sample,),
            buf,
            input_names=["data"],
            output_names=["front"],
            dynamic_axes={"data": {0: "batch"}, "front": {0: "batch"}},
            opset_version=13,
            dynamo=False,
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def run_ort(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"data": images.astype(np.float32)})[0]

    got = torch.from_numpy(run_ort(sample.numpy())).flatten(1)
    cosine = float(F.cosine_similarity(got, expected).min())
    if cosine < PREFIX_MIN_COSINE:
        raise RuntimeError(f"SFace's front in onnxruntime differs from PyTorch ({cosine:.6f})")
    return run_ort


def cache_activations(
    front: Callable[[np.ndarray], np.ndarray],
    crops: np.ndarray,
    views: int = 1,
    transform: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None,
    batch: int = 32,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Activations of every crop (N x 3 x 112 x 112, 0..255), ``views`` times: N x V x C x H x W,
    float16 (half the memory; the test checks embeddings from it against float32's).

    ``transform(images, start, view)`` makes view ``view`` of the batch whose first image is
    ``crops[start]`` (augmentation, degradation); it should seed itself from its arguments, so
    that a cache rebuilt later holds the same views."""
    out: np.ndarray | None = None
    started = time.perf_counter()
    for start in range(0, len(crops), batch):
        x = torch.from_numpy(crops[start : start + batch].astype(np.float32))
        for v in range(views):
            xv = x if transform is None else transform(x, start, v)
            acts = front(xv.numpy())
            if out is None:
                out = np.empty((len(crops), views, *acts.shape[1:]), dtype=np.float16)
            out[start : start + len(x), v] = acts
        if log is not None:
            done = min(start + batch, len(crops))
            rate = (time.perf_counter() - started) / (done * views)
            log(f"  {done}/{len(crops)} images x {views} view(s), {rate:.3f} s per image view")
    if out is None:
        raise ValueError("no images to cache")
    return out


@dataclass
class CachedTrainConfig:
    steps: int
    batch_size: int = 32
    per_identity: int = 2  # MPerClassSampler's m
    lr: float = 1e-4  # the trained layers (Adam), as train.py
    centre_lr: float = 1e-3  # ArcFace class centres, as train.py
    contrastive_weight: float = CONTRASTIVE_WEIGHT  # 0 = ArcFace only
    seed: int = 0
    init_centres: bool = True  # at each person's mean embedding, as train.py


@dataclass
class CachedTrainResult:
    steps: int
    seconds_per_step: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_on_cached(
    tail: CachedTail,
    acts: np.ndarray,
    labels: np.ndarray,
    cfg: CachedTrainConfig,
    at_steps: Callable[[int, dict[str, float]], None] | None = None,
) -> CachedTrainResult:
    """Train ``tail`` (in place) on cached activations ``acts`` (N x V x ...) of images
    labelled ``labels`` (N, 0..classes-1); each time an image is drawn, one of its V views is
    picked at random. ``at_steps(step, losses)`` is called after every step (progress,
    checkpoints, evaluation; its time counts in ``seconds_per_step``). The parameters of
    ``tail`` that require grad are trained (all of them, for a network from ``from_onnx``)."""
    if len(acts) != len(labels):
        raise ValueError(f"{len(acts)} cached images but {len(labels)} labels")
    classes = int(labels.max()) + 1
    if len(np.unique(labels)) < 2:
        raise ValueError("training needs at least two identities")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    objective = CoReFaceObjective(classes, 128, cfg.contrastive_weight)
    if cfg.init_centres:
        first_views = torch.from_numpy(embed_cached(tail, acts[:, 0]))
        objective.init_class_centres(first_views, torch.from_numpy(labels.astype(np.int64)))
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in tail.parameters() if p.requires_grad], "lr": cfg.lr},
            {"params": objective.parameters(), "lr": cfg.centre_lr},
        ]
    )
    y_all = torch.from_numpy(labels.astype(np.int64))
    objective.train()
    history: list[dict[str, float]] = []
    step, epoch = 0, 0
    started = time.perf_counter()
    while step < cfg.steps:
        for idx in per_class_batches(
            labels, cfg.batch_size, cfg.per_identity, cfg.seed * 1000 + epoch
        ):
            views = rng.integers(0, acts.shape[1], size=len(idx))
            x = torch.from_numpy(acts[idx, views].astype(np.float32))
            loss, parts = objective(tail, x, y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            history.append({"step": step, "epoch": epoch + 1, **parts})
            if at_steps is not None:
                at_steps(step, parts)
            if step >= cfg.steps:
                break
        epoch += 1
    per_step = (time.perf_counter() - started) / max(1, step)
    return CachedTrainResult(step, per_step, history)


@torch.no_grad()
def embed_cached(tail: CachedTail, acts: np.ndarray, batch: int = 256) -> np.ndarray:
    """L2-normalised embeddings (no dropout) of cached activations (N x ...), float32."""
    out = [
        F.normalize(tail(torch.from_numpy(acts[i : i + batch].astype(np.float32))), dim=1)
        for i in range(0, len(acts), batch)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, 128), dtype=np.float32)
