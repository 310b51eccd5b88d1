"""CoReFace evaluation (issue #16 item 4): SFace as shipped, fine-tuned with ArcFace only, and
fine-tuned with ArcFace + CoReFace, on LFW people never trained on and on face sets of other
domains; and the same after training on archival (grey, blurred, grainy) faces, tested on
archival versions of the held-out faces.

    python -m bench.train.bench_coreface                   # the README's table
    python -m bench.train.bench_coreface --help            # sizes, grid, seeds

Protocol (bench/train/README.md says why):
- LFW split by a fixed hash of the person's name (coreface_data): held-out people are only
  tested; ``val`` people choose the learning rate and the step count; ``fit`` people train.
- Training is the training package's, on cached activations (training/cached_features.py):
  the frozen front of SFace runs once per image and augmented view; the head (and optionally
  the last conv layers) trains with the real CoReFaceObjective and MPerClassSampler batches.
- Each trained variant gets the same grid (learning rates x step counts, seed 0, clean views);
  the point with the best mean TAR over FAR <= 1e-2 on the val people is run with every seed,
  on clean and on archival training views. Nothing is chosen on held-out people.
- Verification on all pairs of each test set (pair_metrics): TAR at FAR 1e-3 (95 % interval
  from resampling people) and balanced accuracy with the threshold chosen on other folds of
  people.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.train.coreface_data import (
    DOMAINS,
    AlignedFaces,
    align,
    domain_faces,
    image_seed,
    lfw_parts,
)
from bench.train.pair_metrics import Verification, verify
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.face_detection import FaceDetector
from facesearch_server.embedder.training.augment import archival_degrade, augment, augmenter
from facesearch_server.embedder.training.cached_features import (
    CachedTail,
    CachedTrainConfig,
    cache_activations,
    embed_cached,
    front_runner,
    split_index,
    train_on_cached,
)
from facesearch_server.embedder.training.objective import CONTRASTIVE_WEIGHT
from facesearch_server.embedder.training.sface_torch import SFaceNet, check_against_onnx, from_onnx
from harness.shared_data import shared_data_dir

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "coreface"
CACHE_VERSION = "1"  # bump when the cached activations change meaning
VARIANTS = {"arcface": 0.0, "coreface": CONTRASTIVE_WEIGHT}  # contrastive weight
VAL_FAR = 1e-2  # the val set is small: at FAR 1e-3 its TAR would rest on ~30 impostor pairs


@dataclass
class EvalSet:
    """A test (or val) set: who is in each image, and its cached activations at the cache
    point (``split``) and at the head (the last feature map)."""

    name: str
    identities: np.ndarray
    at_split: np.ndarray  # N x C x H x W float16
    at_head: np.ndarray


@dataclass
class RunResult:
    variant: str
    domain: str  # training views: clean or archival
    train_convs: int
    lr: float
    steps: int
    seed: int
    seconds_per_step: float
    metrics: dict[str, Verification]


def log(line: str) -> None:
    print(line, flush=True)


def _key(*parts: object) -> str:
    return hashlib.sha1(repr((CACHE_VERSION, *parts)).encode()).hexdigest()[:16]


def _cached(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    if path.exists():
        return np.load(path)
    array = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
    return array


def _advance(layers: nn.Module, acts: np.ndarray, batch: int = 64) -> np.ndarray:
    """Run frozen layers over cached activations (any leading shape), float16 out."""
    flat = acts.reshape(-1, *acts.shape[-3:])
    out = []
    with torch.inference_mode():
        for i in range(0, len(flat), batch):
            out.append(layers(torch.from_numpy(flat[i : i + batch].astype(np.float32))).numpy())
    res = np.concatenate(out).astype(np.float16)
    return res.reshape(*acts.shape[:-3], *res.shape[1:])


def _view_maker(archival: bool, seed: int) -> Callable[[torch.Tensor, int, int], torch.Tensor]:
    """Augmented views for the cache: the training augmenter (archival mode or not), its
    random draws seeded by the batch and view, so a rebuilt cache holds the same views."""
    aug = augmenter(archival)

    def make(x: torch.Tensor, start: int, view: int) -> torch.Tensor:
        torch.manual_seed(seed * 1_000_003 + start * 101 + view)
        return augment(aug, x)

    return make


def _archival_test(faces: AlignedFaces) -> Callable[[torch.Tensor, int, int], torch.Tensor]:
    """The fixed archival degradation of evaluation images, one seed per image."""
    seeds = [image_seed(faces.name, str(f)) for f in faces.files]

    def degrade(x: torch.Tensor, start: int, view: int) -> torch.Tensor:
        return archival_degrade(x, seeds[start : start + len(x)])

    return degrade


def run_bench(
    args: argparse.Namespace, save: Callable[[dict[str, object]], None]
) -> dict[str, object]:
    root = shared_data_dir()
    if root is None:
        raise SystemExit("../shared/data is absent: this bench needs LFW, AT&T and Yale there")
    cache: Path = args.cache_dir
    started = time.perf_counter()
    timings: dict[str, float] = {}

    base = from_onnx(mf.sface_source())
    parts = lfw_parts(
        root / "lfw",
        people={"fit": args.fit_people, "val": args.val_people, "held_out": args.test_people},
        per_person={"fit": args.fit_images, "val": args.val_images, "held_out": args.test_images},
        min_images={"fit": args.min_train_images, "val": args.min_train_images, "held_out": 2},
    )
    train_people = set(parts["fit"].identities) | set(parts["val"].identities)
    if train_people & set(parts["held_out"].identities):
        raise AssertionError("a held-out person is also a training person")
    lists = [parts["fit"], parts["val"], parts["held_out"]] + [
        domain_faces(root / d, args.domain_people) for d in args.domains
    ]
    detector = FaceDetector()
    t0 = time.perf_counter()
    aligned = {f.name: align(f, cache, log, detector) for f in lists}
    timings["align_s"] = time.perf_counter() - t0
    for a in aligned.values():
        log(
            f"{a.name}: {len(a.crops)} faces of {len(set(a.identities))} people ({a.missed} missed)"
        )

    fit = aligned["lfw-fit"]
    cosine = check_against_onnx(base, mf.sface_source(), fit.crops[:8].astype(np.float32))
    log(f"SFace in PyTorch against the ONNX: lowest cosine {cosine:.7f}")
    if cosine < 0.9999:
        raise RuntimeError("the converted SFace differs from the ONNX file")

    split = split_index(base, args.conv_layers)
    to_head = nn.Sequential(*list(base.features)[split:]).eval()
    front = front_runner(base, split)

    def activations(
        faces: AlignedFaces,
        what: str,
        views: int,
        transform: Callable[[torch.Tensor, int, int], torch.Tensor] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cached activations at the cache point and at the head (N x views x ...): the frozen
        layers between the two run once too, for the head-only runs."""
        key = _key(faces.name, faces.files.tolist(), split, what, views, args.view_seed)
        path = cache / f"acts-{faces.name}-{what}-{key}.npy"
        if path.exists():
            at_split = np.load(path)
        else:
            log(f"caching SFace's front for {faces.name} ({what}, {views} view(s)) ...")
            t = time.perf_counter()
            at_split = _cached(
                path, lambda: cache_activations(front, faces.crops, views, transform, log=log)
            )
            timings["front_s"] = timings.get("front_s", 0.0) + time.perf_counter() - t
            timings["front_image_views"] = (
                timings.get("front_image_views", 0) + len(at_split) * views
            )
        at_head = _cached(
            path.with_name("head" + path.name[4:]), lambda: _advance(to_head, at_split)
        )
        return at_split, at_head

    fit_clean = activations(fit, "clean-views", args.views, _view_maker(False, args.view_seed))
    fit_archival = activations(fit, "archival-views", args.views, _view_maker(True, args.view_seed))
    train_acts = {
        "clean": fit_clean[0],
        "clean@head": fit_clean[1],
        "archival": fit_archival[0],
        "archival@head": fit_archival[1],
    }
    eval_sets: dict[str, EvalSet] = {}
    for name, faces, condition in [
        ("val", aligned["lfw-val"], "clean"),
        ("lfw-held-out", aligned["lfw-held_out"], "clean"),
        ("lfw-held-out-archival", aligned["lfw-held_out"], "archival"),
        *[(d, aligned[d], "clean") for d in args.domains],
    ]:
        transform = _archival_test(faces) if condition == "archival" else None
        at_split, at_head = activations(faces, condition, 1, transform)
        eval_sets[name] = EvalSet(name, faces.identities, at_split[:, 0], at_head[:, 0])

    labels = fit.labels()

    def evaluate(tail: CachedTail | None, train_convs: int) -> dict[str, Verification]:
        out = {}
        head_only = CachedTail(base, len(base.features)) if tail is None else tail
        for es in eval_sets.values():
            acts = es.at_head if train_convs == 0 else es.at_split
            emb = embed_cached(head_only, acts)
            out[es.name] = verify(emb, es.identities, far=VAL_FAR if es.name == "val" else args.far)
        return out

    shipped = evaluate(None, 0)
    log("shipped: " + _summary(shipped))

    def train(
        variant: str,
        domain: str,
        lr: float,
        steps: int,
        seed: int,
        train_convs: int,
        eval_at: Sequence[int],
    ) -> list[RunResult]:
        net: SFaceNet = copy.deepcopy(base)
        tail = CachedTail(net, split_index(net, train_convs))
        acts = train_acts[domain if train_convs else f"{domain}@head"]
        cfg = CachedTrainConfig(
            steps=steps,
            batch_size=args.batch_size,
            per_identity=args.per_identity,
            lr=lr,
            contrastive_weight=VARIANTS[variant],
            seed=seed,
        )
        results: list[RunResult] = []
        # Step times exclude the evaluations; the median leaves out the first step's set-up.
        step_s: list[float] = []
        last = [time.perf_counter()]

        def at_step(step: int, losses: dict[str, float]) -> None:
            step_s.append(time.perf_counter() - last[0])
            if step in eval_at:
                metrics = evaluate(tail, train_convs)
                per_step = float(np.median(step_s))
                results.append(
                    RunResult(variant, domain, train_convs, lr, step, seed, per_step, metrics)
                )
                log(
                    f"  {variant} {domain} convs {train_convs} lr {lr:g} seed {seed} step {step}: "
                    + _summary(metrics)
                )
            if step % 10 == 0:
                log(
                    f"  {variant} {domain} convs {train_convs} lr {lr:g} seed {seed} step "
                    f"{step}/{steps}: " + " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                )
            last[0] = time.perf_counter()

        train_on_cached(tail, acts, labels, cfg, at_steps=at_step)
        return results

    # 1. The grid on the val people (seed 0, clean views), per variant.
    grid: dict[str, list[RunResult]] = {}
    chosen: dict[str, RunResult] = {}
    for variant in VARIANTS:
        grid[variant] = []
        for lr in args.lrs:
            log(f"grid: {variant} lr {lr:g}")
            grid[variant] += train(variant, "clean", lr, max(args.steps), 0, 0, args.steps)
        # Best val mean TAR over FAR <= 1e-2; ties go to fewer steps, then the smaller lr.
        chosen[variant] = max(
            grid[variant], key=lambda r: (r.metrics["val"].mean_tar, -r.steps, -r.lr)
        )
        c = chosen[variant]
        log(
            f"chosen on val for {variant}: lr {c.lr:g}, {c.steps} steps (val mean TAR to FAR "
            f"1e-2 {c.metrics['val'].mean_tar:.4f}, shipped {shipped['val'].mean_tar:.4f})"
        )

    runs: list[RunResult] = []

    def results() -> dict[str, object]:
        timings["total_s"] = time.perf_counter() - started
        return {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "conversion_cosine": cosine,
            "sets": {
                a.name: {
                    "faces": len(a.crops),
                    "people": len(set(a.identities)),
                    "missed": a.missed,
                }
                for a in aligned.values()
            },
            "fit_images": len(fit.crops),
            "steps_per_epoch": len(fit.crops) / args.batch_size,
            "timings": timings,
            "shipped": {k: asdict(v) for k, v in shipped.items()},
            "grid": [_run_json(r) for rs in grid.values() for r in rs],
            "chosen": {k: {"lr": v.lr, "steps": v.steps} for k, v in chosen.items()},
            "runs": [_run_json(r) for r in runs],
        }

    # 2. Every seed, clean and archival training views, at the chosen point.
    for domain in ("clean", "archival"):
        for variant in VARIANTS:
            c = chosen[variant]
            for seed in range(args.seeds):
                if domain == "clean" and seed == 0:
                    runs.append(c)  # the grid's own run
                    continue
                runs += train(variant, domain, c.lr, c.steps, seed, 0, [c.steps])
        save(results())  # the main table survives a stop during the optional conv runs
    # 3. Optionally the last conv layers trained too (same chosen point; not tuned for them).
    for variant in VARIANTS if args.conv_seeds else ():
        c = chosen[variant]
        for seed in range(args.conv_seeds):
            runs += train(variant, "clean", c.lr, c.steps, seed, args.conv_layers, [c.steps])
            save(results())
    return results()


def _run_json(r: RunResult) -> dict[str, object]:
    d = asdict(r)
    d["metrics"] = {k: asdict(v) for k, v in r.metrics.items()}
    return d


def _summary(metrics: dict[str, Verification]) -> str:
    return ", ".join(f"{k} TAR {v.tar:.3f} acc {v.accuracy:.3f}" for k, v in metrics.items())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.train.bench_coreface", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--fit-people", type=int, default=80, help="LFW training people")
    p.add_argument("--fit-images", type=int, default=6, help="images per training person")
    p.add_argument("--val-people", type=int, default=60, help="LFW people choosing the grid point")
    p.add_argument("--val-images", type=int, default=4)
    p.add_argument("--min-train-images", type=int, default=4, help="fit/val people need this many")
    p.add_argument("--test-people", type=int, default=200, help="held-out LFW people tested")
    p.add_argument("--test-images", type=int, default=4, help="images per held-out person")
    p.add_argument("--domains", nargs="*", default=list(DOMAINS), choices=DOMAINS)
    p.add_argument("--domain-people", type=int, help="people per other-domain set (default all)")
    p.add_argument("--views", type=int, default=2, help="augmented views cached per image")
    p.add_argument("--view-seed", type=int, default=0)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 1e-3])
    p.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200], help="grid step counts")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--per-identity", type=int, default=2)
    p.add_argument("--far", type=float, default=1e-3)
    p.add_argument("--conv-layers", type=int, default=3, help="last conv layers of the conv runs")
    p.add_argument("--conv-seeds", type=int, default=1, help="seeds of the conv runs; 0 = none")
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--out", type=Path, help="results JSON (default CACHE_DIR/results.json)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or args.cache_dir / "results.json"

    def save(results: dict[str, object]) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")

    results = run_bench(args, save)
    save(results)
    from bench.train.coreface_report import report

    print(report(results))
    log(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
