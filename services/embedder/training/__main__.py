"""``python -m facesearch_server.embedder.training face-encoder DATA --model-id ID``; the CLI's
``facesearch train face-encoder`` runs the same."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from facesearch_server.embedder import model_files as mf


def build_parser(
    prog: str = "python -m facesearch_server.embedder.training",
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Fine-tune a face encoder on labelled face folders (CoReFace)."
    )
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    p = sub.add_parser("face-encoder", help="fine-tune SFace; export ONNX + card into --model-dir")
    p.add_argument("data", type=Path, help="folder with one sub-folder of images per person")
    p.add_argument("--model-id", required=True, help="the new model's id, e.g. sface-archive-v1")
    p.add_argument("--work-dir", type=Path, help="checkpoint and crop cache (default runs/ID)")
    p.add_argument("--model-dir", type=Path, default=Path(mf.DEFAULT_MODEL_DIR))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--per-identity", type=int, default=2, help="images of one person per batch")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train-convs", type=int, default=6, help="last conv layers trained; -1 all")
    p.add_argument(
        "--contrastive-weight", type=float, default=0.05, help="0 = ArcFace only (baseline)"
    )
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--archival", action="store_true", help="augment with grey, grain and blur")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    p.add_argument("--max-per-identity", type=int)
    p.add_argument("--skip-faceless", action="store_true", help="skip images without a face")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda")
    p.add_argument("--no-export", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(*(p for p in [prog] if p)).parse_args(argv)
    # Imported here: torch and the training libraries load only when training runs.
    try:
        from facesearch_server.embedder.training.face_folders import TrainingDataError
        from facesearch_server.embedder.training.train import TrainConfig, train_face_encoder
    except ImportError as exc:
        print(
            f"{prog or 'training'}: {exc}; pip install 'facesearch-server[train]'", file=sys.stderr
        )
        return 1

    cfg = TrainConfig(
        data=args.data,
        work_dir=args.work_dir or Path("runs") / args.model_id,
        model_id=args.model_id,
        model_dir=args.model_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        per_identity=args.per_identity,
        lr=args.lr,
        train_convs=args.train_convs,
        contrastive_weight=args.contrastive_weight,
        augment=not args.no_augment,
        archival=args.archival,
        max_steps=args.max_steps,
        max_per_identity=args.max_per_identity,
        skip_faceless=args.skip_faceless,
        seed=args.seed,
        device=args.device,
        export=not args.no_export,
    )
    try:
        train_face_encoder(cfg, log=lambda line: print(line, flush=True))
    except (TrainingDataError, ValueError) as exc:
        print(f"{prog or 'training'}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
