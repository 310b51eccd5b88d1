"""Calibrate a face model for open-set identification and write its model card.

    python -m facesearch_server.embedder.calibration --data ../shared/data/lfw \\
        --cache bench/.cache/calibration/lfw.npz

    python -m facesearch_server.embedder.calibration --model sface-archive-v1 \\
        --model-dir models --data ../shared/data/lfw \\
        --cache bench/.cache/calibration/lfw-sface-archive-v1.npz

Embeds the labelled folder under every degradation with ``--model`` (the shipped SFace, or a
fine-tuned face encoder in ``--model-dir``; once: ``--cache`` keeps the result), fits the
calibration on fold 0 of the identities (a hash of each name: fold 1 stays held out for
bench/identify) and writes it into the model's card: the shipped one
(services/embedder/model_cards/<model_id>.json) for SFace, ``<model-dir>/<model_id>.card.json``
for a fine-tuned model, which the embedder then serves with it (ListModels).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from facesearch_server.embedder import model_cards
from facesearch_server.embedder import model_files as mf
from facesearch_server.embedder.calibration.dataset import EmbeddedSet, embed_folder
from facesearch_server.embedder.calibration.fit import fit_calibration, identity_fold
from facesearch_server.embedder.face_encoder_info import CALIBRATION_STATUS
from facesearch_server.embedder.pipeline import FacePipeline

PROG = "python -m facesearch_server.embedder.calibration"


def card_to_update(model_id: str, model_dir: Path) -> Path:
    """The card a calibration belongs in: a fine-tuned model's is beside its file (the shipped
    cards are the package's)."""
    if model_id in mf.ENCODERS:
        return model_cards.card_path(model_id)
    trained = {s.model_id: s for s in mf.trained_encoders(model_dir)}
    if model_id not in trained:
        found = ", ".join(trained) or "none"
        raise ValueError(
            f"--model {model_id!r} is neither shipped ({mf.SFACE}) nor a fine-tuned face encoder "
            f"in --model-dir {model_dir} (found there: {found}; each is <id>.onnx with its "
            "<id>.card.json)"
        )
    return model_cards.card_beside(mf.encoder_path(trained[model_id], model_dir))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with manifest.csv")
    parser.add_argument("--cache", type=Path, help="embeddings .npz (made when missing)")
    parser.add_argument("--model", default=mf.SFACE, help="face encoder to calibrate")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(mf.DEFAULT_MODEL_DIR),
        help="the model files (a fine-tuned --model and its card are here)",
    )
    parser.add_argument("--fold", type=int, default=0, help="identities calibrated on (0/1)")
    parser.add_argument("--limit", type=int, default=0, help="first N manifest rows (0 = all)")
    parser.add_argument("--out", type=Path, help="card to update (default: the model's own)")
    args = parser.parse_args(argv)
    try:
        card_path = args.out or card_to_update(args.model, args.model_dir)
    except ValueError as exc:
        parser.exit(2, f"{PROG}: {exc}\n")
    if args.cache and args.cache.exists():
        data = EmbeddedSet.load(args.cache)
        if data.model_id != args.model:
            parser.exit(
                2,
                f"{PROG}: {args.cache} holds embeddings of {data.model_id}, not {args.model}: "
                "give another --cache (or delete it to embed again)\n",
            )
    else:
        print(
            f"embedding {args.data} with {args.model} under every degradation ...",
            file=sys.stderr,
        )
        pipe = FacePipeline.local(args.model_dir, model_id=args.model)
        data = embed_folder(pipe, args.data, limit=args.limit)
        if args.cache:
            data.save(args.cache)
    identities = {str(p) for p in data.identities if identity_fold(str(p)) == args.fold}
    try:
        calibration = fit_calibration(data, identities, args.model)
    except ValueError as exc:  # too few faces in a quality band: more data is the fix
        parser.exit(2, f"{PROG}: {exc}\n")
    source = {
        **calibration.source,
        "data": args.data.name,
        "images": len(data.identities),
        "split": f"identities with sha1(name) % 2 == {args.fold}; the other fold is held out",
        "measured": dt.date.today().isoformat(),
        "command": f"{PROG} " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    card = model_cards.load_card(card_path) if card_path.exists() else {"model_id": args.model}
    card["calibration"] = {**calibration.to_dict(), "source": source}
    card.pop(CALIBRATION_STATUS, None)  # "pending" no more (training/export.py wrote it)
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    for band in calibration.bands:
        t = [band.impostor.score_at_fmr(f) for f in (1e-3, 1e-4, 1e-6)]
        print(
            f"quality [{band.low}, {band.high}): {band.probes} probes, "
            f"{band.impostor.pairs:,} impostor pairs; score at FMR 1e-3/1e-4/1e-6: "
            f"{t[0]:.3f}/{t[1]:.3f}/{t[2]:.3f}; genuine median {band.genuine_percentiles[49]:.3f}"
        )
    print(f"wrote {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
